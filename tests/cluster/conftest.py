"""Fixtures of the tests on the real single-node cluster (tests/fixtures/cluster.py)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lakehouse.backends.kubernetes import KubernetesBackend
from lakehouse.jobs import SparkJob
from lakehouse.k8s.report import AppReport
from lakehouse.k8s.runinfo import RunInfo
from lakehouse.settings import Settings, get_settings
from tests.fixtures.cluster import REPO_ROOT, RealCluster

NS = "spark-jobs"
FLOW_NS = "prefect"
"""Namespace of the Prefect worker and the flow-run Jobs (k8s/worker)."""
FLOW_RUN_POD_LABEL = "prefect.io/flow-run-id"
BLOCK = "lakehouse-test-cluster"
POD_ROOT = "/data"
"""Where the pods mount the PVC spark-jobs/lake (the cluster's data dir on the host)."""


def chown_for_pods(path: Path) -> None:
    """Pods run as uid/gid 185 (Pod Security "restricted"): they own what they must write."""
    for p in [path, *path.rglob("*")]:
        os.chown(p, 185, 185)


@pytest.fixture
def cluster_settings(real_cluster: RealCluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[RealCluster]:
    """The process's settings point at the cluster, as `source .lakehouse/cluster/env` does:
    backend kubernetes, the image built here, the data PVC, the worker's kubeconfig."""
    for key, value in real_cluster.env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    yield real_cluster
    get_settings.cache_clear()


@pytest.fixture
def worker_credentials_block(
    cluster_settings: RealCluster, prefect_harness: None, monkeypatch: pytest.MonkeyPatch
) -> str:
    """A prefect-kubernetes KubernetesCredentials block of the Prefect worker's ServiceAccount
    (a token of prefect/prefect-worker: the project's own RBAC is what the flow may do)."""
    from prefect_kubernetes.credentials import KubernetesClusterConfig, KubernetesCredentials

    KubernetesCredentials(
        cluster_config=KubernetesClusterConfig.from_file(
            cluster_settings.worker_kubeconfig, context_name="lakehouse-test"
        )
    ).save(BLOCK, overwrite=True)
    monkeypatch.setenv("LAKEHOUSE_KUBERNETES__CREDENTIALS_BLOCK", BLOCK)
    monkeypatch.delenv("KUBECONFIG", raising=False)  # the block, not a kubeconfig, is used
    get_settings.cache_clear()
    return BLOCK


@dataclass
class Apps:
    """Admin view of the SparkApplications and their pods on the cluster."""

    cluster: RealCluster

    def get_json(self, *args: str) -> Any:
        return json.loads(self.cluster.kubectl(*args, "-o", "json"))

    def apps(self, selector: str | None = None) -> list[dict[str, Any]]:
        args = ["-n", NS, "get", "sparkapplications"]
        if selector:
            args += ["-l", selector]
        items: list[dict[str, Any]] = self.get_json(*args)["items"]
        return items

    def app(self, name: str) -> dict[str, Any] | None:
        out = self.cluster.kubectl("-n", NS, "get", "sparkapplication", name, "-o", "json", "--ignore-not-found")
        return json.loads(out) if out.strip() else None

    def objects_of(self, name: str) -> list[str]:
        """Pods, Services and ConfigMaps the operator and Spark made for app ``name``."""
        left = []
        for kind in ("pods", "services", "configmaps"):
            for item in self.get_json("-n", NS, "get", kind)["items"]:
                meta = item["metadata"]
                labels = meta.get("labels", {})
                owners = [o.get("name") for o in meta.get("ownerReferences", [])]
                if (
                    labels.get("sparkoperator.k8s.io/app-name") == name
                    or name in owners
                    or meta["name"].startswith(name)
                ):
                    left.append(f"{kind}/{meta['name']}")
        return left

    def wait_gone(self, name: str, timeout: float = 120) -> list[str]:
        deadline = time.monotonic() + timeout
        while True:
            left = ([f"sparkapplication/{name}"] if self.app(name) else []) + self.objects_of(name)
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(2)


@pytest.fixture
def apps(real_cluster: RealCluster) -> Apps:
    return Apps(real_cluster)


class BackendRun:
    """``KubernetesBackend.run(job)`` in a thread with a fixed run identity."""

    def __init__(
        self, job: SparkJob, settings: Settings, run: RunInfo, wrap: Callable[[Callable[[], Any]], Any] | None = None
    ) -> None:
        self.job, self.run_info = job, run
        self.lines: list[tuple[float, str]] = []
        self.reports: list[AppReport] = []
        self.backend = KubernetesBackend(settings, run_info=lambda: run, on_report=self.reports.append)
        self.name = self.backend.app_name(job, run)
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = threading.Event()

        def go() -> None:
            try:
                call = lambda: self.backend.run(job, log=lambda line: self.lines.append((time.time(), line)))  # noqa: E731
                self.result = wrap(call) if wrap else call()
            except BaseException as exc:
                self.error = exc
            finally:
                self.done.set()

        self.thread = threading.Thread(target=go, name=f"run-{job.name}", daemon=True)
        self.thread.start()

    def wait(self, timeout: float) -> None:
        assert self.done.wait(timeout), f"run() still running after {timeout}s: {self.lines[-20:]}"


def new_run(attempt: int = 1) -> RunInfo:
    return RunInfo(
        flow_run_id=str(uuid.uuid4()),
        attempt=attempt,
        task_run_id=str(uuid.uuid4()),
        flow_run_name="cluster-test",
        task_run_name="cluster-test",
    )


def diagnostics(
    name: str = "diagnostics", *, sleep: float = 0, exit_code: int = 0, timeout: float | None = None
) -> SparkJob:
    return SparkJob(
        name=name,
        entrypoint="spark_jobs.diagnostics",
        args=("--rows", "2000", "--sleep", str(sleep), "--exit-code", str(exit_code)),
        timeout_seconds=timeout,
    )


def wait_until(what: str, check: Callable[[], Any], timeout: float, every: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.0f}s: {what}")
        time.sleep(every)


def fresh_lake(real_cluster: RealCluster, name: str) -> tuple[Path, str]:
    """An empty lakehouse root on the data PVC: (host path, path in the pods)."""
    host = real_cluster.data_dir / name
    if host.exists():
        shutil.rmtree(host)
    host.mkdir(parents=True)
    return host, f"{POD_ROOT}/{name}"


class ClusterPrefect:
    """The cluster's Prefect server, seen from this process."""

    def __init__(self, cluster: RealCluster) -> None:
        self.cluster = cluster
        self.api_url = cluster.env["LAKEHOUSE_CLUSTER_PREFECT_API_URL"]

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        return {**env, "PREFECT_API_URL": self.api_url, "PREFECT_HOME": str(self.cluster.directory / "prefect-cli")}

    def cli(self, *args: str, timeout: float = 300) -> str:
        proc = subprocess.run(
            [str(REPO_ROOT / ".venv/bin/prefect"), "--no-prompt", *args],
            cwd=REPO_ROOT,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert proc.returncode == 0, f"prefect {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc.stdout

    @contextlib.contextmanager
    def client(self) -> Iterator[Any]:
        """A sync client of the cluster's server (over the session's Prefect test harness)."""
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        with temporary_settings(updates={PREFECT_API_URL: self.api_url}), get_client(sync_client=True) as c:
            yield c

    def deploy(self, name: str, full_name: str) -> None:
        """``prefect deploy --name NAME`` from deployments/prefect.yaml, schedule cleared (a test
        does not wait for the cron)."""
        self.cli("deploy", "--prefect-file", "deployments/prefect.yaml", "--name", name)
        self.cli("deployment", "schedule", "clear", full_name, "-y")

    def run(self, deployment: str, **parameters: Any) -> str:
        """``prefect deployment run`` as a user types it; returns the flow run id."""
        args = ["deployment", "run", deployment]
        for key, value in parameters.items():
            args += ["--param", f"{key}={json.dumps(value) if not isinstance(value, str) else value}"]
        out = self.cli(*args)
        for line in out.splitlines():
            if "UUID:" in line:
                return line.split("UUID:")[1].strip()
        raise AssertionError(f"no flow run id in: {out}")

    def flow_run(self, flow_run_id: str) -> Any:
        with self.client() as prefect:
            return prefect.read_flow_run(uuid.UUID(flow_run_id))

    def wait_final(self, flow_run_id: str, timeout: float) -> Any:
        return wait_until(
            f"flow run {flow_run_id} in a final state",
            lambda: (fr := self.flow_run(flow_run_id)).state and fr.state.is_final() and fr,
            timeout,
            every=3,
        )

    def logs(self, flow_run_id: str) -> list[str]:
        from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

        with self.client() as prefect:
            logs = prefect.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[uuid.UUID(flow_run_id)]))
            )
        return [log.message for log in logs]

    def wait_logs(self, flow_run_id: str, text: str, timeout: float = 60) -> list[str]:
        """The run's log once a line containing ``text`` arrived (a pod ships its last lines a
        moment after the run's final state); the log as it is after ``timeout`` otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            logs = self.logs(flow_run_id)
            if any(text in m for m in logs) or time.monotonic() > deadline:
                return logs
            time.sleep(2)


def flow_run_pods(cluster: RealCluster, flow_run_id: str) -> list[dict[str, Any]]:
    out = json.loads(
        cluster.kubectl("-n", FLOW_NS, "get", "pods", "-l", f"{FLOW_RUN_POD_LABEL}={flow_run_id}", "-o", "json")
    )
    items: list[dict[str, Any]] = out["items"]
    return items
