"""Flows the lakehouse command calls itself run without flow-run heartbeats; deployments and a
frequency the user set keep theirs."""

from __future__ import annotations

import pytest
from prefect import flow
from prefect.flow_engine import FlowRunEngine

from lakehouse.prefect_env import HEARTBEAT_ENV, direct_run


@flow
def probe() -> None:
    return None


def _heartbeat_seconds() -> int | None:
    """What the flow engine reads to decide whether to start its heartbeat thread."""
    return FlowRunEngine(flow=probe).heartbeat_seconds


def test_a_direct_run_sends_no_heartbeats_and_the_setting_comes_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(HEARTBEAT_ENV, raising=False)
    before = _heartbeat_seconds()
    assert before is not None and before >= 30  # Prefect's default: on
    with direct_run():
        assert _heartbeat_seconds() is None
    assert _heartbeat_seconds() == before


def test_a_frequency_the_user_set_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

    monkeypatch.delenv(HEARTBEAT_ENV, raising=False)
    with temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: 45}), direct_run():  # a profile's value
        assert _heartbeat_seconds() == 45
    # the environment read when the process started: kept even at Prefect's default value
    monkeypatch.setenv(HEARTBEAT_ENV, "180")
    with direct_run():
        assert _heartbeat_seconds() == 180


def test_prefect_clients_share_one_verifying_tls_context(monkeypatch: pytest.MonkeyPatch) -> None:
    """After share_client_tls_context, Prefect's clients load the CA bundle once between them; a
    client told to skip verification still gets an unverified context of its own, and the
    shared one keeps verifying."""
    import ssl

    import prefect.client.orchestration as orchestration
    from prefect.client.orchestration import PrefectClient, SyncPrefectClient
    from prefect.settings import PREFECT_API_TLS_INSECURE_SKIP_VERIFY, temporary_settings

    from lakehouse.prefect_env import share_client_tls_context

    monkeypatch.setattr(orchestration, "ssl", ssl)  # as Prefect ships it; put back after the test
    made: list[ssl.SSLContext] = []
    real = ssl.create_default_context

    def counted(*args: object, **kwargs: object) -> ssl.SSLContext:
        made.append(real(*args, **kwargs))  # type: ignore[arg-type]
        return made[-1]

    monkeypatch.setattr(ssl, "create_default_context", counted)
    api = "http://127.0.0.1:9/api"
    SyncPrefectClient(api), PrefectClient(api)
    assert len(made) == 2  # Prefect alone: one per client

    share_client_tls_context()
    share_client_tls_context()  # idempotent
    del made[:]
    SyncPrefectClient(api), PrefectClient(api), SyncPrefectClient(api)
    assert len(made) == 1 and made[0].verify_mode == ssl.CERT_REQUIRED and made[0].check_hostname

    with temporary_settings(updates={PREFECT_API_TLS_INSECURE_SKIP_VERIFY: True}):
        SyncPrefectClient(api), SyncPrefectClient(api)
    assert len(made) == 3 and [c.verify_mode for c in made[1:]] == [ssl.CERT_NONE, ssl.CERT_NONE]
    SyncPrefectClient(api)
    assert len(made) == 3 and made[0].verify_mode == ssl.CERT_REQUIRED and made[0].check_hostname


def test_dbt_node_threads_take_the_callers_settings_as_they_are(monkeypatch: pytest.MonkeyPatch) -> None:
    """prefect-dbt hands its node threads a serialized context. As Prefect serializes it, each
    hydration builds Prefect's settings anew; after share_settings_with_dbt_nodes it builds none,
    and the thread sees the caller's settings object, temporary values included."""
    import threading

    from prefect.context import SettingsContext, hydrated_context
    from prefect.settings import PREFECT_API_URL, PREFECT_CLIENT_MAX_RETRIES, Settings, temporary_settings
    from prefect_dbt.core import runner

    from lakehouse.prefect_env import share_settings_with_dbt_nodes

    # Prefect's own, also when an earlier dbt run in this process shared the settings already;
    # whatever was there comes back after the test
    as_shipped = getattr(runner.serialize_context, "__wrapped__", runner.serialize_context)
    monkeypatch.setattr(runner, "serialize_context", as_shipped)
    built: list[object] = []
    real_init = Settings.__init__

    def counted(self: Settings, *args: object, **kwargs: object) -> None:
        built.append(self)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(Settings, "__init__", counted)

    def in_a_node_thread(context: dict[str, object]) -> SettingsContext:
        seen: list[SettingsContext] = []

        def node() -> None:
            with hydrated_context(context):
                found = SettingsContext.get()
                assert found is not None
                seen.append(found)

        thread = threading.Thread(target=node)
        thread.start()
        thread.join()
        return seen[0]

    # an API URL that is never dialled: a hydration makes a client, which must not start a server
    updates = {PREFECT_API_URL: "http://127.0.0.1:9/api", PREFECT_CLIENT_MAX_RETRIES: 7}
    with temporary_settings(updates=updates):
        caller = SettingsContext.get()
        assert caller is not None
        del built[:]
        found = in_a_node_thread(runner.serialize_context())
        assert len(built) >= 1 and found.settings is not caller.settings  # Prefect alone: built anew
        assert found.settings.client.max_retries == 7

        share_settings_with_dbt_nodes()
        patched = runner.serialize_context
        share_settings_with_dbt_nodes()  # idempotent
        assert runner.serialize_context is patched
        del built[:]
        context = runner.serialize_context()
        found = in_a_node_thread(context)
        assert built == []
        assert found.settings is caller.settings and found.profile is caller.profile
        assert found.settings.client.max_retries == 7
        # the rest of the context is Prefect's own serialization, untouched
        assert set(context) >= {"flow_run_context", "task_run_context", "tags_context", "settings_context"}
