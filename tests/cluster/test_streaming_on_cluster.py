"""The Kafka -> bronze stream as the long-running SparkApplication, kept by the streaming
deployment, on the real cluster.

``scripts/cluster.sh up`` runs a real Kafka broker on the node: the pods reach it through the
Service kafka/lakehouse-kafka-bootstrap (the bootstrap of k8s/worker's settings), this process
through a forwarder on 127.0.0.1. ``streaming/ensure`` runs in a flow-run pod and creates the
app (restartPolicy Always); events produced here must reach bronze and the dead-letter table
exactly once: after the driver pod is deleted (the operator starts a new one), after a spec
change (the app is replaced), after the app was stopped and the backlog grew. The stream's
tables and checkpoint are in a bucket of the cluster's object store (every ``streaming/ensure``
run gets its settings as job variables; the flow-run pod and the app's pods read the key pair
from the Secret lakehouse-credentials); the monitor reports the lag from that checkpoint, read
from the bucket by this process.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from lakehouse.backends.kubernetes import KubernetesBackend
from lakehouse.k8s.render import KIND_LABEL
from lakehouse.kafka import SentMessage, produce_events
from lakehouse.settings import DeploySettings, Settings
from lakehouse.streaming import read_stream_status, streaming_job
from lakehouse.testing.stream_chaos import exactly_once_problems
from tests.cluster.conftest import NS, Apps, ClusterPrefect, flow_run_pods, wait_until
from tests.fixtures.cluster import RealCluster
from tests.fixtures.s3 import new_bucket
from tests.kafka.streaming_support import BASE, read_table, settings_for

pytestmark = [pytest.mark.cluster, pytest.mark.kafka, pytest.mark.spark, pytest.mark.timeout(2400)]

TOPIC = "events"  # the kafka.topic of k8s/worker's settings (the default)


class Stream:
    """The stream on the cluster, seen from this process: produce, read its tables."""

    def __init__(self, cluster: RealCluster, prefect: ClusterPrefect, spark: Any) -> None:
        self.cluster, self.prefect, self.spark = cluster, prefect, spark
        self.flow_run_id = ""  # of the last ensure run
        self.bootstrap = cluster.env["LAKEHOUSE_CLUSTER_KAFKA_BOOTSTRAP"]
        store = cluster.s3()
        root = f"s3a://{new_bucket(store, spark, 'stream')}/lake"
        pods = cluster.s3_settings(root)
        # what the flow-run pods get on top of k8s/worker's settings: the root and the store as
        # the pods reach it (the keys come from the Secret, never as job variables)
        self.pod_env = {
            k: pods[k]
            for k in (
                "LAKEHOUSE_STORAGE__ROOT",
                "LAKEHOUSE_DEPLOY__OBJECT_STORE_ENDPOINT",
                "LAKEHOUSE_DEPLOY__OBJECT_STORE_REGION",
            )
        }
        # the same tables and checkpoint, seen from this process through the store's door here
        base = settings_for(root, self.bootstrap, TOPIC)
        self.host: Settings = base.model_copy(
            update={
                "deploy": DeploySettings(
                    object_store_endpoint=store.endpoint,
                    object_store_region=store.region,
                    object_store_access_key_id=SecretStr(store.access_key),
                    object_store_secret_access_key=SecretStr(store.secret_key),
                )
            }
        )
        self.sent: list[SentMessage] = []
        self.apps = Apps(cluster)

    def produce(self, count: int, prefix: str) -> None:
        stats = produce_events(
            self.bootstrap,
            TOPIC,
            count=count,
            malformed_share=0.05,
            seed=len(self.sent),
            id_prefix=prefix,
            record=True,
            event_time=lambda i: BASE + dt.timedelta(milliseconds=250 * i),
        )
        assert stats.messages is not None and stats.sent == count
        self.sent += stats.messages

    def keys(self) -> tuple[list[str], list[str]]:
        def rows(which: str, col: str) -> list[str]:
            try:
                return [r[0] for r in read_table(self.spark, self.host, which, col)]
            except Exception as exc:  # not created yet
                if any(t in str(exc) for t in ("is not a Delta table", "PATH_NOT_FOUND", "DELTA_TABLE_NOT_FOUND")):
                    return []
                raise

        return rows("bronze", "event_id"), rows("dead_letter", "_kafka_key")

    def wait_exactly_once(self, timeout: float = 420) -> None:
        def caught_up() -> bool:
            bronze, dead = self.keys()
            return len(bronze) + len(dead) >= len(self.sent)

        wait_until(f"{len(self.sent)} produced records in bronze + dead letters", caught_up, timeout, every=3)
        bronze, dead = self.keys()
        assert exactly_once_problems(self.sent, bronze, dead) == []
        assert len(bronze) + len(dead) == len(self.sent)

    def app(self) -> dict[str, Any]:
        [app] = self.apps.apps(f"{KIND_LABEL}=streaming")
        return app

    def running(self) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            apps = self.apps.apps(f"{KIND_LABEL}=streaming")
            if len(apps) == 1 and apps[0].get("status", {}).get("applicationState", {}).get("state") == "RUNNING":
                return apps[0]
            return None

        app: dict[str, Any] = wait_until("the streaming app RUNNING", check, 300, every=2)
        return app

    def ensure(self, outcome: str, **job_env: str) -> list[str]:
        """Run the ``streaming/ensure`` deployment (a flow-run pod) to Completed; its log lines,
        once they say ``streaming app ...: <outcome>``."""
        args = [
            "deployment",
            "run",
            "streaming/ensure",
            "--job-variable",
            "env=" + json.dumps({**self.pod_env, **job_env}),
        ]
        out = self.prefect.cli(*args)
        flow_run_id = next(line.split("UUID:")[1].strip() for line in out.splitlines() if "UUID:" in line)
        final = self.prefect.wait_final(flow_run_id, 420)
        self.flow_run_id = flow_run_id
        logs = self.prefect.wait_logs(flow_run_id, f": {outcome}")
        assert final.state.is_completed(), (final.state, logs[-20:])
        assert any(m.startswith("streaming app ") and m.endswith(f": {outcome}") for m in logs), logs[-20:]
        return logs


@pytest.fixture(scope="module")
def stream(real_cluster: RealCluster, spark: Any) -> Iterator[Stream]:
    prefect = ClusterPrefect(real_cluster)
    prefect.deploy("ensure", "streaming/ensure")
    s = Stream(real_cluster, prefect, spark)
    s.ensure("created")
    yield s
    # the stream writes into the bucket until it is stopped
    real_cluster.kubectl(
        "-n", NS, "delete", "sparkapplications", "-l", f"{KIND_LABEL}=streaming", "--wait=true", "--timeout=120s"
    )


def test_events_reach_bronze_and_dead_letters_exactly_once(stream: Stream) -> None:
    app = stream.running()
    assert app["spec"]["restartPolicy"]["type"] == "Always"
    # the deployment's own job variables (deployments/prefect.yaml: small_pod_pool) sized the pod
    [pod] = flow_run_pods(stream.cluster, stream.flow_run_id)
    flow = next(c for c in pod["spec"]["containers"] if c["name"] == "prefect-job")
    want = {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"cpu": "1", "memory": "1Gi"}}
    assert flow["resources"] == want
    stream.produce(1500, "c1")
    stream.wait_exactly_once()
    bronze, dead = stream.keys()
    assert len(dead) > 0 and len(bronze) > 1000


def test_deleted_driver_pod_is_restarted_and_exactly_once_holds(stream: Stream) -> None:
    before = stream.running()
    driver = before["status"]["driverInfo"]["podName"]
    uid = json.loads(stream.cluster.kubectl("-n", NS, "get", "pod", driver, "-o", "json"))["metadata"]["uid"]
    stream.produce(800, "c2")
    stream.cluster.kubectl("-n", NS, "delete", "pod", driver, "--wait=false")
    stream.produce(800, "c3")

    def new_driver() -> bool:
        out = stream.cluster.kubectl("-n", NS, "get", "pod", driver, "-o", "json", "--ignore-not-found", check=False)
        app = stream.app()
        return (
            bool(out.strip())
            and json.loads(out)["metadata"]["uid"] != uid
            and app["status"]["applicationState"]["state"] == "RUNNING"
        )

    wait_until("the operator's new driver pod RUNNING", new_driver, 300, every=2)
    assert stream.app()["metadata"]["uid"] == before["metadata"]["uid"]  # the same app, restarted
    stream.wait_exactly_once()


def test_spec_change_replaces_the_app_and_exactly_once_holds(stream: Stream) -> None:
    before = stream.running()
    logs = stream.ensure("updated", LAKEHOUSE_STREAMING__MAX_OFFSETS_PER_TRIGGER="777")
    assert any("its spec changed: " in m for m in logs), logs[-20:]
    after = stream.running()
    assert after["metadata"]["uid"] != before["metadata"]["uid"]
    assert "777" in " ".join(after["spec"].get("arguments", [])), after["spec"].get("arguments")
    stream.produce(600, "c4")
    stream.wait_exactly_once()
    # the same spec again: left alone
    stream.ensure("unchanged", LAKEHOUSE_STREAMING__MAX_OFFSETS_PER_TRIGGER="777")
    assert stream.app()["metadata"]["uid"] == after["metadata"]["uid"]


def test_monitor_reports_the_backlog_from_the_checkpoint_then_relaunch_catches_up(stream: Stream) -> None:
    stream.running()
    stream.wait_exactly_once()
    assert read_stream_status(stream.host).total_lag == 0
    # stopped (as a crash that outlived the operator's restarts would leave it): the backlog grows
    backend = KubernetesBackend(stream.host, api_client=stream.cluster.admin_api())
    assert backend.stop(streaming_job(stream.host, continuous=True))
    stream.produce(500, "c5")
    status = read_stream_status(stream.host)
    assert status.total_lag == 500, status.rows()
    assert status.last_batch_id is not None
    stream.ensure("created", LAKEHOUSE_STREAMING__MAX_OFFSETS_PER_TRIGGER="777")
    stream.running()
    stream.wait_exactly_once()
    wait_until("lag 0 in the checkpoint", lambda: read_stream_status(stream.host).total_lag == 0, 120, every=3)
