"""KubernetesBackend.run against the real kube-apiserver: the operator's status transitions
(written to the status subresource as the operator v2 writes them) end in the right result;
timeouts, cancellation and crashes leave no app behind; a restarted worker re-attaches."""

from __future__ import annotations

import _thread
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from kubernetes import client

from lakehouse.errors import ConfigError, SparkJobError, SparkJobTimeout
from lakehouse.k8s.client import SparkApplications
from lakehouse.k8s.errors import (
    SparkApplicationConflict,
    SparkApplicationFailed,
    SparkApplicationTimeout,
)
from lakehouse.k8s.render import FLOW_RUN_LABEL, SPEC_HASH
from lakehouse.k8s.watch import AppWatcher
from tests.fixtures.k8s import K8sCluster
from tests.k8s.conftest import BackgroundRun, Harness, make_job
from tests.k8s.support import Operator, TcpProxy

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(120)]

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def states_of(h: Harness) -> list[str]:
    assert len(h.reports) == 1
    return [c.state for c in h.reports[0].timeline]


def test_submitted_running_completed(harness: Harness, operator: Operator) -> None:
    job = make_job()
    name = harness.name(job)
    run = harness.start(job)
    app = operator.wait_for(name)
    assert app["metadata"]["annotations"][SPEC_HASH].startswith("sha256:")
    run.wait_for_line("submitted")
    operator.submit(name)
    run.wait_for_line(": SUBMITTED")
    operator.running(name)
    run.wait_for_line(": RUNNING")
    operator.succeeding(name)
    operator.completed(name)
    result = run.wait()
    assert (result.backend, result.state, result.exit_code) == ("kubernetes", "COMPLETED", None)
    assert states_of(harness) == ["NEW", "SUBMITTED", "RUNNING", "SUCCEEDING", "COMPLETED"]
    report = harness.reports[0]
    assert (report.outcome, report.execution_attempts, report.submission_attempts) == ("succeeded", 1, 1)
    # Something to open from outside the cluster, not the UI Service's ClusterIP.
    assert report.spark_ui == "http://127.0.0.1:4040"
    assert report.spark_ui_port_forward == (f"kubectl -n {operator.namespace} port-forward svc/{name}-ui-svc 4040:4040")
    assert "10.0.0.17" not in report.markdown()
    assert (
        f"`kubectl -n {operator.namespace} port-forward svc/{name}-ui-svc 4040:4040`, then "
        "open http://127.0.0.1:4040" in report.markdown()
    )
    assert any(
        line.endswith(f"port-forward svc/{name}-ui-svc 4040:4040`, then open http://127.0.0.1:4040")
        and "Spark UI of" in line
        for line in run.lines
    )
    assert report.driver_pods == [f"{name}-driver"]
    assert not report.reattached
    # A finished app is left for the operator's TTL, not deleted by the backend.
    assert operator.get(name)["status"]["applicationState"]["state"] == "COMPLETED"


def test_failing_rerun_then_completed(harness: Harness, operator: Operator) -> None:
    job = make_job()
    name = harness.name(job)
    run = harness.start(job)
    operator.wait_for(name)
    operator.submit(name)
    operator.running(name)
    run.wait_for_line(": RUNNING (execution attempts 1)")
    operator.failing(name, exit_code=137, reason="OOMKilled")
    operator.pending_rerun(name)
    operator.submit(name)
    operator.running(name)
    run.wait_for_line(": RUNNING (execution attempts 2)")
    operator.succeeding(name)
    operator.completed(name)
    result = run.wait()
    assert result.state == "COMPLETED"
    timeline = states_of(harness)
    assert timeline[timeline.index("RUNNING") :] == [
        "RUNNING",
        "FAILING",
        "PENDING_RERUN",
        "SUBMITTED",
        "RUNNING",
        "SUCCEEDING",
        "COMPLETED",
    ]
    assert harness.reports[0].execution_attempts == 2
    failing = next(c for c in harness.reports[0].timeline if c.state == "FAILING")
    assert failing.error_message == "driver container failed with ExitCode: 137, Reason: OOMKilled"


def test_submission_failed(harness: Harness, operator: Operator) -> None:
    job = make_job()
    name = harness.name(job)
    run = harness.start(job)
    operator.wait_for(name)
    operator.submission_failed(name, "exit status 1: image pull failed")
    error = run.wait_error()
    assert isinstance(error, SparkApplicationFailed)
    assert error.state == "SUBMISSION_FAILED"
    assert error.error_message == "failed to submit spark application: exit status 1: image pull failed"
    assert error.attempts == 1
    assert "image pull failed" in str(error)
    assert harness.reports[0].outcome == "failed"


def test_failed_with_error_message(harness: Harness, operator: Operator) -> None:
    job = make_job()
    name = harness.name(job)
    run = harness.start(job)
    operator.wait_for(name)
    operator.submit(name)
    operator.running(name)
    operator.failing(name, exit_code=1)
    run.wait_for_line(": FAILING")
    assert not run.done  # FAILING is not final: the operator decides about reruns
    operator.failed(name)
    error = run.wait_error()
    assert isinstance(error, SparkApplicationFailed) and isinstance(error, SparkJobError)
    # No driver pod to read: the exit code comes from the operator's errorMessage.
    assert (error.state, error.attempts, error.exit_code) == ("FAILED", 1, 1)
    assert error.error_message == "driver container failed with ExitCode: 1, Reason: Error"
    assert "failed with exit code 1" in str(error)
    assert error.app == name
    assert f"SparkApplication {operator.namespace}/{name}" in str(error)
    # The failed app stays for inspection (the operator's TTL removes it).
    assert operator.exists(name)


def test_every_intermediate_state_is_followed(harness: Harness, operator: Operator) -> None:
    """All non-final states of the operator keep the job waiting; COMPLETED ends it."""
    job = make_job()
    name = harness.name(job)
    run = harness.start(job)
    operator.wait_for(name)
    operator.submit(name)
    for state in (
        "RUNNING",
        "SUSPENDING",
        "SUSPENDED",
        "RESUMING",
        "SUBMITTED",
        "INVALIDATING",
        "PENDING_RERUN",
        "UNKNOWN",
        "RUNNING",
        "SUCCEEDING",
    ):
        operator.set_state(name, state)
        run.wait_for_line(f": {state}")
        assert not run.done, state
    operator.completed(name)
    assert run.wait().state == "COMPLETED"
    assert states_of(harness) == [
        "NEW",
        "SUBMITTED",
        "RUNNING",
        "SUSPENDING",
        "SUSPENDED",
        "RESUMING",
        "SUBMITTED",
        "INVALIDATING",
        "PENDING_RERUN",
        "UNKNOWN",
        "RUNNING",
        "SUCCEEDING",
        "COMPLETED",
    ]


def test_unknown_past_its_timeout_fails_and_deletes(
    admin_api: client.ApiClient, namespace: str, operator: Operator
) -> None:
    h = Harness(admin_api, namespace, unknown_state_timeout_seconds=1.0)
    job = make_job()
    name = h.name(job)
    run = h.start(job)
    operator.wait_for(name)
    operator.submit(name)
    operator.running(name)
    operator.unknown(name)
    started = time.monotonic()
    error = run.wait_error()
    assert 1.0 <= time.monotonic() - started < 10
    assert isinstance(error, SparkApplicationFailed)
    assert error.state == "UNKNOWN"
    assert "UNKNOWN for more than 1s" in str(error)
    assert not operator.exists(name)
    assert h.reports[0].timeline[-1].state == "DELETED"


def test_job_timeout_deletes_the_app(harness: Harness, operator: Operator) -> None:
    job = make_job(timeout_seconds=1.5)
    name = harness.name(job)
    run = harness.start(job)
    operator.wait_for(name)
    operator.submit(name)
    operator.running(name)
    error = run.wait_error()
    assert isinstance(error, SparkApplicationTimeout) and isinstance(error, SparkJobTimeout)
    assert error.state == "RUNNING"
    assert not operator.exists(name)  # confirmed gone before run() raised
    assert harness.reports[0].outcome == "timeout"


def test_cancellation_deletes_the_app(harness: Harness, operator: Operator) -> None:
    """An interrupt of the caller (what Prefect's cancellation or a Ctrl-C delivers to the
    flow's main thread) deletes the app and waits for its 404 before propagating."""
    job = make_job()
    name = harness.name(job)

    def operator_then_interrupt() -> None:
        operator.wait_for(name)
        operator.submit(name)
        operator.running(name)
        time.sleep(0.3)
        _thread.interrupt_main()

    threading.Thread(target=operator_then_interrupt, daemon=True).start()
    lines: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        harness.backend.run(job, log=lines.append)
    with pytest.raises(client.ApiException) as gone:
        client.CustomObjectsApi(operator.objects.api_client).get_namespaced_custom_object(
            "sparkoperator.k8s.io", "v1beta2", operator.namespace, "sparkapplications", name
        )
    assert gone.value.status == 404
    assert harness.reports[0].outcome == "cancelled"
    assert any(line.endswith("deleted") for line in lines)


def test_prefect_task_timeout_in_a_worker_thread_deletes_the_app(harness: Harness, operator: Operator) -> None:
    """Prefect's own timeout scope (as used for task timeouts) injects its cancellation into a
    thread running the task; the backend deletes the app before the TimeoutError surfaces."""
    from prefect.utilities.timeout import timeout as prefect_timeout

    job = make_job()
    name = harness.name(job)

    def with_timeout(call):  # type: ignore[no-untyped-def]
        with prefect_timeout(seconds=2.0):
            return call()

    run = BackgroundRun(harness.backend, job, wrap=with_timeout)
    operator.wait_for(name)
    operator.submit(name)
    operator.running(name)
    error = run.wait_error(timeout=30)
    assert isinstance(error, TimeoutError)
    assert not operator.exists(name)
    assert harness.reports[0].outcome == "cancelled"


def test_app_deleted_by_someone_else_fails_the_job(harness: Harness, operator: Operator) -> None:
    job = make_job()
    name = harness.name(job)
    run = harness.start(job)
    operator.wait_for(name)
    operator.submit(name)
    run.wait_for_line(": SUBMITTED")
    operator.objects.delete_namespaced_custom_object(
        "sparkoperator.k8s.io", "v1beta2", operator.namespace, "sparkapplications", name
    )
    error = run.wait_error()
    assert isinstance(error, SparkApplicationFailed)
    assert error.state == "DELETED"


def test_forced_watch_disconnect_is_survived(k8s_cluster: K8sCluster, namespace: str, operator: Operator) -> None:
    """Every connection of the backend goes through a TCP proxy; cutting them all while the app
    runs makes the watcher reconnect from its resourceVersion and still see COMPLETED."""
    proxy = TcpProxy(k8s_cluster.server.removeprefix("https://"))
    cfg = k8s_cluster.configuration()
    cfg.host = f"https://{proxy.address}"
    try:
        with client.ApiClient(cfg) as api:
            h = Harness(api, namespace, watch_timeout_seconds=30)
            job = make_job()
            name = h.name(job)
            run = h.start(job)
            operator.wait_for(name)
            operator.submit(name)
            operator.running(name)
            run.wait_for_line(": RUNNING")
            assert proxy.cut() >= 1
            before = proxy.accepted
            operator.succeeding(name)
            operator.completed(name)
            assert run.wait(timeout=30).state == "COMPLETED"
            assert proxy.accepted > before  # it reconnected
            report = h.reports[0]
            assert report.watch_reconnects >= 1
            assert report.watch_relists == 0  # resumed from the kept resourceVersion
            assert [c.state for c in report.timeline][-2:] == ["SUCCEEDING", "COMPLETED"]
    finally:
        proxy.close()


def test_watcher_relists_after_410_gone(admin_api: client.ApiClient, namespace: str, operator: Operator) -> None:
    """A watch from a resourceVersion the API server no longer has (here "1") gets a real
    410 Gone (Expired); the watcher re-lists and goes on from the list's version."""
    apps = SparkApplications(admin_api, namespace)
    h = Harness(admin_api, namespace)
    job = make_job()
    name = h.name(job)
    apps.create(h.backend.render(job, h.run_info))
    watcher = AppWatcher(apps, name, "1", watch_timeout_s=30).start()
    try:
        first = watcher.events.get(timeout=10)
        assert (first.type, first.obj["metadata"]["name"]) == ("LISTED", name)
        assert watcher.relists == 1
        operator.submit(name)
        second = watcher.events.get(timeout=10)
        assert second.type == "MODIFIED"
        assert second.obj["status"]["applicationState"]["state"] == "SUBMITTED"
    finally:
        watcher.stop()


def test_conflicting_spec_under_the_same_name_is_a_clear_error(harness: Harness, operator: Operator) -> None:
    job = make_job()
    name = harness.name(job)
    other = make_job(args=("--root", "s3a://other-lake"))
    SparkApplications(operator.objects.api_client, operator.namespace).create(
        harness.backend.render(other, harness.run_info)
    )
    lines: list[str] = []
    with pytest.raises(SparkApplicationConflict) as conflict:
        harness.backend.run(job, log=lines.append)
    err = conflict.value
    assert isinstance(err, ConfigError)  # not retried by the Prefect task
    assert err.name == name
    assert err.fields == ["spec.arguments"]
    assert err.existing_hash and err.existing_hash != err.wanted_hash
    assert err.existing_hash in str(err) and err.wanted_hash in str(err)
    # The other app is left alone.
    assert operator.get(name)["spec"]["arguments"][1] == "s3a://other-lake"


def test_same_spec_failed_app_is_replaced(harness: Harness, operator: Operator) -> None:
    job = make_job()
    name = harness.name(job)
    SparkApplications(operator.objects.api_client, operator.namespace).create(
        harness.backend.render(job, harness.run_info)
    )
    operator.submit(name)
    operator.failing(name)
    old_uid = operator.failed(name)["metadata"]["uid"]
    run = harness.start(job)
    new = operator.wait_for(name, until=lambda a: a["metadata"]["uid"] != old_uid)
    assert "status" not in new or not new["status"].get("applicationState", {}).get("state")
    operator.submit(name)
    operator.running(name)
    operator.succeeding(name)
    operator.completed(name)
    assert run.wait().state == "COMPLETED"
    assert any("ended FAILED" in line for line in run.lines)


_WORKER = """
import sys
from kubernetes import config
from lakehouse.backends.kubernetes import KubernetesBackend
from lakehouse.jobs import SparkJob
from lakehouse.k8s.runinfo import RunInfo
from lakehouse.settings import KubernetesSettings, Settings

kubeconfig, namespace, flow_run_id, job_json = sys.argv[1:]
backend = KubernetesBackend(
    Settings(kubernetes=KubernetesSettings(namespace=namespace)),
    api_client=config.new_client_from_config(config_file=kubeconfig),
    run_info=lambda: RunInfo(flow_run_id=flow_run_id, attempt=1),
    on_report=lambda report: None,
)
backend.run(SparkJob.model_validate_json(job_json), log=lambda line: print(line, flush=True))
"""


def test_restarted_worker_reattaches_without_a_second_app(
    k8s_cluster: K8sCluster, harness: Harness, operator: Operator
) -> None:
    """A worker process is SIGKILLed while its app runs (no cleanup can happen); the restarted
    worker, with the same flow run and attempt, re-attaches to that app instead of creating
    another, and follows it to the end."""
    job = make_job()
    flow_run_id = harness.run_info.flow_run_id
    name = harness.name(job)
    # The Kubernetes client writes the kubeconfig's embedded certificates and key to temporary
    # files and removes them at exit, which a SIGKILL skips: the worker gets a temporary directory
    # of its own, removed here.
    worker_tmp = Path(tempfile.mkdtemp(prefix="lakehouse-killed-worker-"))
    worker = subprocess.Popen(
        [
            sys.executable,
            "-c",
            _WORKER,
            str(k8s_cluster.kubeconfig_path),
            operator.namespace,
            flow_run_id,
            job.model_dump_json(),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": REPO, "TMPDIR": str(worker_tmp)},
    )
    try:
        app = operator.wait_for(name, timeout=60)
        operator.submit(name)
        operator.running(name)
        assert worker.stdout is not None
        for line in worker.stdout:  # bounded by the test timeout
            if ": RUNNING" in line:
                break
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait(10)
        shutil.rmtree(worker_tmp, ignore_errors=True)
    assert operator.get(name)["metadata"]["uid"] == app["metadata"]["uid"]  # still running
    run = harness.start(job)
    run.wait_for_line("re-attaching")
    items, _ = SparkApplications(operator.objects.api_client, operator.namespace).list(
        label_selector=f"{FLOW_RUN_LABEL}={flow_run_id}"
    )
    assert [i["metadata"]["uid"] for i in items] == [app["metadata"]["uid"]]
    operator.succeeding(name)
    operator.completed(name)
    assert run.wait().state == "COMPLETED"
    assert harness.reports[0].reattached


def test_new_attempt_gets_a_new_app(harness: Harness, operator: Operator) -> None:
    job = make_job()
    first = harness.name(job)
    harness.run_info = type(harness.run_info)(flow_run_id=harness.run_info.flow_run_id, attempt=2)
    second = harness.name(job)
    assert first != second
    run = harness.start(job)
    operator.wait_for(second)
    assert not operator.exists(first)
    operator.submit(second)
    operator.succeeding(second)
    operator.completed(second)
    assert run.wait().state == "COMPLETED"
    assert operator.get(second)["metadata"]["labels"]["lakehouse.io/attempt"] == "2"


def test_streaming_job_is_refused_by_run(harness: Harness) -> None:
    with pytest.raises(ConfigError, match="ensure_running"):
        harness.backend.run(make_job(streaming=True), log=lambda _: None)
