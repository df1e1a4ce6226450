"""The ``streaming`` and ``streaming-monitor`` flows through Prefect's test harness (a real
temporary server): locally on the real broker and spark-submit, and on Kubernetes against the
real API server with the operator's CRDs (the long-running SparkApplication is created, left
alone when unchanged, and updated when the spec changes)."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.client.schemas.sorting import ArtifactSort

from lakehouse.kafka import MALFORMED_KINDS, produce_events
from lakehouse.settings import get_settings
from lakehouse.testing.kafka_broker import KafkaBroker
from tests.e2e.support import latest_run_name
from tests.fixtures.k8s import K8sCluster
from tests.kafka.streaming_support import BASE, RULES

N = 300


@pytest.fixture
def prefect_server(prefect_harness: None) -> None:
    """The session's Prefect test server (tests/conftest.py)."""


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """Set ``LAKEHOUSE_*`` variables for the flows (and the jobs they launch)."""

    def set_env(**values: str) -> None:
        for key, value in values.items():
            monkeypatch.setenv(key, value)
        get_settings.cache_clear()

    yield set_env
    monkeypatch.undo()
    get_settings.cache_clear()


def _latest_lag_artifact(key: str = "streaming-lag") -> list[dict[str, object]]:
    with get_client(sync_client=True) as prefect:
        found = prefect.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
            sort=ArtifactSort.CREATED_DESC,
            limit=1,
        )
    assert found, f"no {key} artifact"
    data = found[0].data
    assert isinstance(data, list | str)
    if isinstance(data, str):
        data = json.loads(data)
    return list(data)


@pytest.mark.kafka
@pytest.mark.spark
@pytest.mark.timeout(900)
def test_local_streaming_flow_and_monitor(
    prefect_server: None,
    env: Callable[..., None],
    kafka_broker: KafkaBroker,
    kafka_topic_factory: Callable[..., str],
    lake_root: Path,
) -> None:
    from flows.streaming import streaming, streaming_monitor

    topic = kafka_topic_factory("flow", partitions=3)
    env(
        LAKEHOUSE_STORAGE__ROOT=str(lake_root),
        LAKEHOUSE_KAFKA__BOOTSTRAP_SERVERS=kafka_broker.bootstrap_servers,
        LAKEHOUSE_KAFKA__TOPIC=topic,
        LAKEHOUSE_STREAMING__MAX_LAG="100",
        LAKEHOUSE_STREAMING__MAX_OFFSETS_PER_TRIGGER="200",
    )
    sent = produce_events(
        kafka_broker.bootstrap_servers,
        topic,
        count=N,
        malformed_share=0.1,
        seed=5,
        event_time=lambda i: BASE + dt.timedelta(seconds=i),
    )

    # Behind and never run: the monitor fails (so notifications fire) and says why.
    state = streaming_monitor(return_state=True)
    assert state.is_failed()
    message = str(state.message or "") + str(state.result(raise_on_failure=False))
    assert f"lag {N} messages is above the threshold of 100" in message
    assert "never committed a batch" in message
    assert _latest_lag_artifact()[-1]["lag"] == N
    assert latest_run_name("streaming-monitor") == f"streaming-monitor {get_settings().streaming.query_name}"

    # The streaming flow runs the job locally (availableNow) and reports what it wrote.
    out = streaming(trigger="available-now")
    assert out["backend"] == "local" and out["job"] == "events-stream"
    written = {r["layer"]: r["rows_written"] for r in out["rows"]}
    assert written["bronze"] == N - sent.malformed and written["quarantine"] == sent.malformed
    # The events contract's rule outcomes: the producer cycles through the malformed kinds, so
    # each kind's count, hence each rule's failures, is known independently of the stream.
    want: Counter[str] = Counter()
    for i in range(sent.malformed):
        want.update(RULES[MALFORMED_KINDS[i % len(MALFORMED_KINDS)]])
    quality = _latest_lag_artifact("data-quality")
    assert {r["rule"]: r["failed"] for r in quality if r["failed"]} == dict(want)
    assert {r["evaluated"] for r in quality} == {N}
    assert {r["table"] for r in quality} == {"events_stream"}
    # lineage: the topic feeds bronze and the dead letters, bronze feeds the windowed gold table
    events = [json.loads(line) for line in (lake_root / "lineage" / "openlineage.jsonl").read_text().splitlines()]
    graph = {
        (o["namespace"], o["name"]): {(i["namespace"], i["name"]) for i in e["inputs"]}
        for e in events
        if e["eventType"] == "COMPLETE"
        for o in e["outputs"]
    }
    s = get_settings().streaming
    kafka = (f"kafka://{kafka_broker.bootstrap_servers.split(',')[0]}", topic)
    assert graph == {
        ("spark://lakehouse", f"bronze.{s.bronze_table}"): {kafka},
        ("spark://lakehouse", f"quarantine.{s.dead_letter_table}"): {kafka},
        ("spark://lakehouse", f"gold.{s.gold_table}"): {("spark://lakehouse", f"bronze.{s.bronze_table}")},
    }

    # Caught up: the monitor passes and reports lag 0 on every partition.
    rows = streaming_monitor()
    assert [r["partition"] for r in rows] == [0, 1, 2, "total"]
    assert all(r["lag"] == 0 for r in rows)
    assert rows[-1]["end_offset"] == N and rows[-1]["committed_offset"] == N
    assert _latest_lag_artifact() == rows


@pytest.mark.kafka
@pytest.mark.k8s
@pytest.mark.timeout(300)
def test_streaming_flow_keeps_the_app_running_on_kubernetes(
    prefect_server: None,
    env: Callable[..., None],
    kafka_broker: KafkaBroker,
    k8s_cluster: K8sCluster,
) -> None:
    from flows.streaming import streaming

    namespace = "stream-flow"
    k8s_cluster.create_namespace(namespace)
    topic = f"k8s-{uuid.uuid4().hex[:12]}"  # created by the flow
    env(
        KUBECONFIG=str(k8s_cluster.kubeconfig_path),
        LAKEHOUSE_BACKEND="kubernetes",
        LAKEHOUSE_KUBERNETES__NAMESPACE=namespace,
        LAKEHOUSE_STORAGE__ROOT="s3a://lake",
        LAKEHOUSE_KAFKA__BOOTSTRAP_SERVERS=kafka_broker.bootstrap_servers,
        LAKEHOUSE_KAFKA__TOPIC=topic,
    )

    assert streaming() == {"backend": "kubernetes", "job": "events-stream", "action": "created"}
    assert streaming()["action"] == "unchanged"
    md = kafka_broker.admin().list_topics(topic=topic, timeout=10)
    assert len(md.topics[topic].partitions) == 3  # the flow created the topic
    env(LAKEHOUSE_STREAMING__MAX_OFFSETS_PER_TRIGGER="5000")
    assert streaming()["action"] == "updated"
    assert streaming()["action"] == "unchanged"
    kafka_broker.delete_topic(topic)
