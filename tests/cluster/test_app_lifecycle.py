"""What happens to a SparkApplication on the real cluster when a job fails, is cancelled, times
out, cannot start, outlives its worker or finishes: each case provoked for real (the real
operator, kubelet, garbage collector), and the cluster checked afterwards. The job is the
project's diagnostics job (spark_jobs/diagnostics.py: count rows, sleep, exit with a code)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from lakehouse.backends.kubernetes import KubernetesBackend
from lakehouse.errors import CONTRACT_VIOLATION_EXIT, SparkJobError
from lakehouse.k8s.errors import SparkApplicationFailed
from lakehouse.settings import get_settings
from tests.cluster.conftest import Apps, BackendRun, chown_for_pods, diagnostics, fresh_lake, new_run, wait_until
from tests.fixtures.cluster import RealCluster

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]


def _state(apps: Apps, name: str) -> str | None:
    app = apps.app(name)
    return (app or {}).get("status", {}).get("applicationState", {}).get("state")


def test_contract_fail_fails_the_flow_without_retry(
    cluster_settings: RealCluster, prefect_harness: None, apps: Apps, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A contract rule with ``on_violation: fail`` broken on the cluster: the driver exits 65,
    the backend takes that exit code from the driver pod, so the task's retry condition sees a
    contract violation and the flow fails after one attempt, naming the rule; one app only."""
    from prefect.client.orchestration import get_client

    from flows.medallion import medallion
    from lakehouse.k8s.render import FLOW_RUN_LABEL
    from spark_jobs.contract import DEFAULT_CONTRACTS_DIR

    host_root, pod_root = fresh_lake(cluster_settings, "contract-fail")
    contracts = host_root / "contracts"
    shutil.copytree(DEFAULT_CONTRACTS_DIR, contracts)
    doc = yaml.safe_load((contracts / "orders.yaml").read_text())
    next(f for f in doc["schema"] if f["name"] == "amount")["on_violation"] = "fail"
    (contracts / "orders.yaml").write_text(yaml.safe_dump(doc))
    day = host_root / "lake" / "landing" / "orders" / "date=2026-02-01"
    day.mkdir(parents=True)
    row = {
        "order_id": "o1",
        "user_id": "u1",
        "amount": 5,
        "status": "completed",
        "created_at": "2026-02-01T10:00:00Z",
        "updated_at": "2026-02-01T10:00:00Z",
    }
    (day / "part-00000.json").write_text(
        json.dumps(row) + "\n" + json.dumps({**row, "order_id": "o2", "amount": -3}) + "\n"
    )
    chown_for_pods(host_root)
    monkeypatch.setenv("LAKEHOUSE_CONTRACTS_DIR", f"{pod_root}/contracts")
    monkeypatch.setenv("LAKEHOUSE_STORAGE__ROOT", f"{pod_root}/lake")
    get_settings.cache_clear()

    state = medallion(start_date=dt.date(2026, 2, 1), dbt_marts=False, return_state=True)
    assert state.is_failed()
    with pytest.raises(SparkJobError) as err:
        state.result()
    assert err.value.exit_code == CONTRACT_VIOLATION_EXIT
    assert "orders: amount.min" in str(err.value)
    flow_run_id = str(state.state_details.flow_run_id)
    created = apps.apps(f"{FLOW_RUN_LABEL}={flow_run_id}")
    assert len(created) == 1, [a["metadata"]["name"] for a in created]  # no second attempt
    assert created[0]["status"]["applicationState"]["state"] == "FAILED"
    with get_client(sync_client=True) as prefect:
        runs = [r for r in prefect.read_task_runs() if str(r.flow_run_id) == flow_run_id and r.name == "medallion"]
    assert [r.run_count for r in runs] == [1]
    assert not (host_root / "lake" / "warehouse" / "gold").exists()


def test_other_failures_are_retried_as_new_apps(
    cluster_settings: RealCluster, prefect_harness: None, apps: Apps, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The counterpart: exit code 3 is an ordinary failure, retried by Prefect, each attempt a new
    SparkApplication."""
    from prefect import flow

    from lakehouse.k8s.render import ATTEMPT_LABEL, FLOW_RUN_LABEL
    from tasks.spark import run_spark_job

    @flow(name="cluster-exit-3")
    def one_job() -> Any:
        return run_spark_job.with_options(retries=1, retry_delay_seconds=0)(diagnostics("exit-three", exit_code=3))

    state = one_job(return_state=True)
    assert state.is_failed()
    created = apps.apps(f"{FLOW_RUN_LABEL}={state.state_details.flow_run_id}")
    assert sorted(a["metadata"]["labels"][ATTEMPT_LABEL] for a in created) == ["1", "2"]
    for app in created:
        assert app["status"]["applicationState"]["state"] == "FAILED"


def test_timeout_deletes_the_app_and_everything_it_made(cluster_settings: RealCluster, apps: Apps) -> None:
    run = BackendRun(diagnostics("timeout", sleep=600, timeout=60), get_settings(), new_run())
    wait_until("driver running", lambda: _state(apps, run.name) == "RUNNING", timeout=240, every=2)
    run.wait(timeout=180)
    assert run.error is not None and "timeout" in type(run.error).__name__.lower(), run.error
    assert run.reports[-1].outcome == "timeout"
    assert apps.wait_gone(run.name) == []  # app, driver + executor pods, UI Service, ConfigMaps


def test_cancellation_deletes_the_app_and_everything_it_made(cluster_settings: RealCluster, apps: Apps) -> None:
    """Prefect's cancellation as a task timeout delivers it: injected into the running thread."""
    from prefect.utilities.timeout import timeout as prefect_timeout

    def cancel_when_running(call: Any) -> Any:
        with prefect_timeout(seconds=150):
            return call()

    run = BackendRun(diagnostics("cancel", sleep=600), get_settings(), new_run(), wrap=cancel_when_running)
    wait_until("driver running", lambda: _state(apps, run.name) == "RUNNING", timeout=150, every=2)
    seen_pods = apps.objects_of(run.name)
    assert any(p.endswith("-driver") for p in seen_pods), seen_pods
    run.wait(timeout=240)
    assert isinstance(run.error, TimeoutError), run.error
    assert run.reports[-1].outcome == "cancelled"
    assert apps.wait_gone(run.name) == []


def test_finished_app_is_deleted_after_its_ttl(
    cluster_settings: RealCluster, apps: Apps, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAKEHOUSE_KUBERNETES__TIME_TO_LIVE_SECONDS", "20")
    get_settings.cache_clear()
    run = BackendRun(diagnostics("ttl"), get_settings(), new_run())
    run.wait(timeout=400)
    assert run.error is None, run.error
    assert _state(apps, run.name) == "COMPLETED"
    finished = time.monotonic()
    assert apps.wait_gone(run.name, timeout=180) == []
    assert time.monotonic() - finished >= 5  # deleted by its TTL, not at once


def test_killed_worker_then_retry_reattaches_to_the_same_app(cluster_settings: RealCluster, apps: Apps) -> None:
    """The worker process is SIGKILLed while the app runs (nothing in it can clean up); the run is
    retried with the same run identity (flow run, attempt): it re-attaches to the running app,
    streams its log and returns its result; no second app is created."""
    run_info = new_run()
    job = diagnostics("reattach", sleep=45)
    script = textwrap.dedent(f"""
        from lakehouse.backends.kubernetes import KubernetesBackend
        from lakehouse.jobs import SparkJob
        from lakehouse.k8s.runinfo import RunInfo
        from lakehouse.settings import get_settings
        run = RunInfo(**{dataclasses.asdict(run_info)!r})
        job = SparkJob.model_validate_json({job.model_dump_json()!r})
        KubernetesBackend(get_settings(), run_info=lambda: run).run(job, log=print)
    """)
    # The Kubernetes client writes the kubeconfig's embedded certificates and key to temporary
    # files and removes them at exit, which a SIGKILL skips: the worker gets a temporary directory
    # of its own, removed here.
    worker_tmp = Path(tempfile.mkdtemp(prefix="lakehouse-killed-worker-"))
    worker = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=REPO,
        env={**os.environ, "TMPDIR": str(worker_tmp)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    name = KubernetesBackend(get_settings(), run_info=lambda: run_info).app_name(job, run_info)
    try:
        wait_until("app running", lambda: _state(apps, name) == "RUNNING", timeout=240, every=2)
        uid = apps.app(name)["metadata"]["uid"]  # type: ignore[index]
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        shutil.rmtree(worker_tmp, ignore_errors=True)
    assert _state(apps, name) == "RUNNING"  # the kill left the app running
    retry = BackendRun(job, get_settings(), run_info)
    retry.wait(timeout=400)
    assert retry.error is None, retry.error
    assert retry.name == name and retry.reports[-1].reattached
    app = apps.app(name)
    assert app is not None and app["metadata"]["uid"] == uid  # the same object, not a new one
    assert app["status"]["applicationState"]["state"] == "COMPLETED"
    same_run = apps.apps(f"prefect.io/flow-run-id={run_info.flow_run_id}")
    assert [a["metadata"]["name"] for a in same_run] == [name]
    assert any("rows" in line or "diagnostics" in line for _, line in retry.lines), retry.lines[-10:]


@pytest.mark.parametrize("case", ["missing-image", "missing-secret"])
def test_driver_that_cannot_start_fails_with_the_reason(
    case: str, cluster_settings: RealCluster, apps: Apps, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LAKEHOUSE_KUBERNETES__DRIVER_START_TIMEOUT_SECONDS", "30")
    if case == "missing-image":
        monkeypatch.setenv("LAKEHOUSE_KUBERNETES__IMAGE", "localhost/lakehouse-no-such-image:1")
        reasons = ("ErrImagePull", "ImagePullBackOff")
    else:
        monkeypatch.setenv("LAKEHOUSE_KUBERNETES__ENV_SECRET_REFS", '{"LAKEHOUSE_TOKEN": "no-such-secret:token"}')
        reasons = ("CreateContainerConfigError",)
    get_settings.cache_clear()
    started = time.monotonic()
    run = BackendRun(diagnostics(case), get_settings(), new_run())
    run.wait(timeout=300)
    elapsed = time.monotonic() - started
    assert isinstance(run.error, SparkApplicationFailed), run.error
    message = str(run.error)
    assert any(r in message for r in reasons), message
    if case == "missing-secret":
        assert "no-such-secret" in message
    assert elapsed < 240, elapsed  # bounded: the start timeout, not the job timeout
    assert apps.wait_gone(run.name) == []
