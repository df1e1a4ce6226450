"""Fixtures of the k8s tests: admin client, a fake kubelet Node, restricted namespaces,
settings and a backend wired to the test cluster."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client

from lakehouse.backends.base import JobResult
from lakehouse.backends.kubernetes import KubernetesBackend
from lakehouse.jobs import SparkJob
from lakehouse.k8s.report import AppReport
from lakehouse.k8s.runinfo import RunInfo
from lakehouse.settings import KubernetesSettings, Settings, SparkSettings
from tests.fixtures.k8s import K8sCluster
from tests.k8s.support import FakeKubelet, Operator

RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}


@pytest.fixture(scope="session")
def admin_api(k8s_cluster: K8sCluster) -> Iterator[client.ApiClient]:
    with k8s_cluster.api_client() as api:
        yield api


@pytest.fixture(scope="session")
def kubelet(admin_api: client.ApiClient) -> Iterator[FakeKubelet]:
    k = FakeKubelet(admin_api).start()
    yield k
    k.stop()


@pytest.fixture
def namespace(k8s_cluster: K8sCluster, admin_api: client.ApiClient) -> str:
    """A fresh namespace enforcing Pod Security "restricted", with the driver's SA."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    k8s_cluster.create_namespace(name)
    client.CoreV1Api(admin_api).patch_namespace(name, {"metadata": {"labels": RESTRICTED}})
    k8s_cluster.create_service_account("spark-driver", name)
    return name


@pytest.fixture
def operator(admin_api: client.ApiClient, namespace: str) -> Operator:
    return Operator(admin_api, namespace)


def make_settings(namespace: str, **k8s: Any) -> Settings:
    """Settings for the test namespace; jobs time out after 90 s unless they say otherwise, so
    a failed test never leaves a run() thread behind for long."""
    return Settings(
        kubernetes=KubernetesSettings(namespace=namespace, **{"log_drain_seconds": 5.0, **k8s}),
        spark=SparkSettings(job_timeout_seconds=90.0),
    )


def make_job(name: str = "medallion-bronze", **kw: Any) -> SparkJob:
    kw.setdefault("args", ("--root", "s3a://lake", "--start", "2026-01-01"))
    return SparkJob(name=name, entrypoint="spark_jobs.bronze", **kw)


class Harness:
    """A backend on the test cluster with a fixed run identity; reports are kept."""

    def __init__(self, api: client.ApiClient, namespace: str, **k8s: Any) -> None:
        self.run_info = RunInfo(
            flow_run_id=str(uuid.uuid4()),
            attempt=1,
            task_run_id=str(uuid.uuid4()),
            flow_run_name="test-flow",
            task_run_name="test-task",
        )
        self.reports: list[AppReport] = []
        self.settings = make_settings(namespace, **k8s)
        self.backend = KubernetesBackend(
            self.settings, api_client=api, run_info=lambda: self.run_info, on_report=self.reports.append
        )

    def name(self, job: SparkJob) -> str:
        return self.backend.app_name(job, self.run_info)

    def start(self, job: SparkJob) -> BackgroundRun:
        return BackgroundRun(self.backend, job)


class BackgroundRun:
    """``backend.run(job)`` in a thread; the log lines it emits are collected."""

    def __init__(
        self,
        backend: KubernetesBackend,
        job: SparkJob,
        wrap: Callable[[Callable[[], JobResult]], JobResult] | None = None,
    ) -> None:
        self.lines: list[str] = []
        self.result: JobResult | None = None
        self.error: BaseException | None = None
        self.finished_at: float | None = None
        self._done = threading.Event()

        def go() -> None:
            try:
                call = lambda: backend.run(job, log=self.lines.append)  # noqa: E731
                self.result = wrap(call) if wrap else call()
            except BaseException as exc:
                self.error = exc
            finally:
                self.finished_at = time.perf_counter()
                self._done.set()

        self.thread = threading.Thread(target=go, name=f"run-{job.name}", daemon=True)
        self.thread.start()

    def wait(self, timeout: float = 30.0) -> JobResult:
        assert self._done.wait(timeout), f"run() still running after {timeout}s: {self.lines}"
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result

    def wait_error(self, timeout: float = 30.0) -> BaseException:
        assert self._done.wait(timeout), f"run() still running after {timeout}s: {self.lines}"
        assert self.error is not None, f"run() succeeded: {self.result}"
        return self.error

    def wait_for_line(self, part: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(part in line for line in list(self.lines)):
            if self._done.is_set():
                raise AssertionError(f"run() ended before logging {part!r}: {self.error!r} {self.lines}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no log line with {part!r} after {timeout}s: {self.lines}")
            time.sleep(0.01)

    @property
    def done(self) -> bool:
        return self._done.is_set()


@pytest.fixture
def harness(admin_api: client.ApiClient, namespace: str) -> Harness:
    return Harness(admin_api, namespace)
