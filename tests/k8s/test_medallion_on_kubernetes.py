"""The medallion flow, unchanged, on the Kubernetes backend: Prefect (test harness server) ->
the real task -> KubernetesBackend with credentials from a KubernetesCredentials block (the
worker's ServiceAccount of k8s/, RBAC on) -> SparkApplications on the real API server, the
operator's status played by a thread, driver logs served through the real pods/log path by the
fake kubelet. Checks the flow result (metrics read from the driver log), one artifact per app,
the labels linking each app to its flow run and task run, and the driver log in the run logs."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from lakehouse.jobs import METRICS_MARKER
from lakehouse.k8s.render import FLOW_RUN_LABEL, TASK_RUN_LABEL
from lakehouse.settings import get_settings
from tests.fixtures.k8s import K8sCluster
from tests.k8s.support import FakeKubelet, Operator, apply, load_kustomization

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]
NS = "spark-jobs"
BLOCK = "lakehouse-k8s-e2e"
START = dt.date(2026, 1, 1)


def job_metrics(job: str, n: int) -> list[dict[str, Any]]:
    """What a driver of ``job`` (the n-th app) reports; distinct per app."""
    return [{"job": job, "layer": f"layer-{n}", "table": t, "rows_read": 100 * n + i,
             "rows_written": 90 * n + i, "version": i, "duration_s": 1.25}
            for i, t in enumerate(("orders", "users"))]


class AutoOperator(threading.Thread):
    """Drives every app whose arguments carry ``marker`` to COMPLETED, as operator + kubelet."""

    def __init__(self, operator: Operator, kubelet: FakeKubelet, marker: str) -> None:
        super().__init__(name="auto-operator", daemon=True)
        self.operator, self.kubelet, self.marker = operator, kubelet, marker
        self.seen: list[str] = []
        self.emitted: list[dict[str, Any]] = []
        self.errors: list[BaseException] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                items = self.operator.objects.list_namespaced_custom_object(
                    "sparkoperator.k8s.io", "v1beta2", NS, "sparkapplications")["items"]
                for app in items:
                    name = app["metadata"]["name"]
                    if self.marker in app["spec"].get("arguments", []) and name not in self.seen:
                        self.seen.append(name)
                        self.drive(app)
            except BaseException as exc:
                self.errors.append(exc)
                return
            self.stop.wait(0.05)

    def drive(self, app: dict[str, Any]) -> None:
        name = app["metadata"]["name"]
        job = app["metadata"]["labels"]["lakehouse.io/job"]
        metrics = job_metrics(job, len(self.seen))
        pod = f"{name}-driver"
        op, kubelet = self.operator, self.kubelet
        op.submit(name)
        driver = app["spec"]["driver"]
        kubelet.start_pod(NS, pod, pod_security=driver["podSecurityContext"],
                          security=driver["securityContext"])
        op.running(name)
        kubelet.write(NS, pod, f"{job} driver: starting",
                      METRICS_MARKER + json.dumps(metrics), f"{job} driver: done")
        self.emitted += metrics
        kubelet.finish(NS, pod)
        op.succeeding(name)
        op.completed(name)


@pytest.fixture
def prefect_server(prefect_harness: None) -> None:
    """The session's Prefect test server (tests/conftest.py)."""


@pytest.fixture
def kubernetes_backend_env(
    k8s_cluster: K8sCluster, prefect_server: None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    from prefect_kubernetes.credentials import KubernetesClusterConfig, KubernetesCredentials

    with k8s_cluster.api_client() as admin:
        apply(admin, load_kustomization(ROOT / "k8s"))
    kubeconfig = k8s_cluster.service_account_kubeconfig("prefect-worker", "prefect")
    KubernetesCredentials(
        cluster_config=KubernetesClusterConfig.from_file(kubeconfig, context_name="lakehouse-test")
    ).save(BLOCK, overwrite=True)
    marker = f"s3a://lake/e2e-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("LAKEHOUSE_BACKEND", "kubernetes")
    monkeypatch.setenv("LAKEHOUSE_KUBERNETES__NAMESPACE", NS)
    monkeypatch.setenv("LAKEHOUSE_KUBERNETES__CREDENTIALS_BLOCK", BLOCK)
    monkeypatch.setenv("LAKEHOUSE_STORAGE__ROOT", marker)
    get_settings.cache_clear()
    yield marker
    get_settings.cache_clear()


def test_medallion_flow_runs_as_spark_applications(
    kubernetes_backend_env: str, admin_api: client.ApiClient, kubelet: FakeKubelet
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterKey,
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterTaskRunId,
    )

    from flows.medallion import medallion

    marker = kubernetes_backend_env
    auto = AutoOperator(Operator(admin_api, NS), kubelet, marker)
    auto.start()
    try:
        state = medallion(start_date=START, end_date=START, return_state=True)
    finally:
        auto.stop.set()
        auto.join(10)
    assert not auto.errors, auto.errors
    rows = state.result()
    assert auto.seen  # the flow's jobs (one per layer, or one for all) became apps
    expected = [{c: m[c] for c in ("layer", "table", "rows_read", "rows_written", "version",
                                   "duration_s")} for m in auto.emitted]
    assert rows == expected  # metrics read from the driver logs, as locally
    flow_run_id = str(state.state_details.flow_run_id)

    apps = [Operator(admin_api, NS).get(name) for name in auto.seen]
    with get_client(sync_client=True) as prefect:
        task_runs = prefect.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id])))
        by_id = {str(t.id): t for t in task_runs}
        for app in apps:
            labels = app["metadata"]["labels"]
            assert labels[FLOW_RUN_LABEL] == flow_run_id
            task_run = by_id[labels[TASK_RUN_LABEL]]
            assert task_run.name == labels["lakehouse.io/job"]
            assert labels["lakehouse.io/attempt"] == "1"
            assert app["metadata"]["annotations"]["prefect.io/task-run-name"] == task_run.name

        keys = [f"spark-app-{a['metadata']['name']}" for a in apps]
        artifacts = prefect.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys)))
        assert sorted(a.key for a in artifacts) == sorted(keys)  # one per app
        for artifact in artifacts:
            assert artifact.type == "markdown"
            assert "| final state | COMPLETED |" in artifact.data
            app_name = artifact.key.removeprefix("spark-app-")
            assert (f"| Spark UI | `kubectl -n {NS} port-forward svc/{app_name}-ui-svc "
                    "4040:4040`, then open http://127.0.0.1:4040 ") in artifact.data
            assert "10.0.0.17" not in artifact.data
            assert "SUBMITTED" in artifact.data and "RUNNING" in artifact.data
            assert str(artifact.flow_run_id) == flow_run_id

        first = apps[0]["metadata"]["labels"]
        deadline = time.monotonic() + 20
        while True:
            logs = prefect.read_logs(log_filter=LogFilter(
                task_run_id=LogFilterTaskRunId(any_=[uuid.UUID(first[TASK_RUN_LABEL])])))
            messages = [log.message for log in logs]
            done = f"{first['lakehouse.io/job']} driver: done"
            if done in messages or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert f"{first['lakehouse.io/job']} driver: starting" in messages and done in messages
        assert not any(METRICS_MARKER in m for m in messages)
