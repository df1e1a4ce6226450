"""Driver log streaming through the real kube-apiserver.

Approach: the preferred one of the issue. A Node object (fake-node-*) whose kubelet endpoint
(status.addresses InternalIP 127.0.0.1 + status.daemonEndpoints.kubeletEndpoint.Port) is a
small HTTPS server on 127.0.0.1 (tests/k8s/support.py FakeKubelet) serving
``/containerLogs/<namespace>/<pod>/<container>`` with ``follow`` and ``timestamps``; driver
pods are real Pod objects bound to that node (spec.nodeName) in a namespace enforcing Pod
Security "restricted". The backend calls ``GET pods/<name>/log?follow=true``; the real
kube-apiserver looks the node up and proxies the request to that server, exactly as it would to
a kubelet (the apiserver runs without --kubelet-certificate-authority, so, like a default
cluster, it does not verify the kubelet's self-signed serving certificate). No fixture flag was
changed for this.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from lakehouse.jobs import METRICS_MARKER
from lakehouse.k8s.errors import SparkApplicationFailed
from lakehouse.k8s.render import render_spec
from tests.k8s.conftest import Harness, make_job
from tests.k8s.support import FakeKubelet, Operator

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(120)]


def _pod(kubelet: FakeKubelet, h: Harness, ns: str, pod: str) -> str:
    spec = render_spec(make_job(), h.settings)["driver"]
    return kubelet.start_pod(ns, pod, pod_security=spec["podSecurityContext"], security=spec["securityContext"])


def _running_driver(harness: Harness, operator: Operator, kubelet: FakeKubelet) -> tuple[Any, str, str, str]:
    """A started run whose app is RUNNING with its driver pod up: (run, namespace, app, pod)."""
    ns = operator.namespace
    job = make_job()
    name = harness.name(job)
    pod = f"{name}-driver"
    run = harness.start(job)
    operator.wait_for(name)
    operator.submit(name)
    _pod(kubelet, harness, ns, pod)
    operator.running(name)
    return run, ns, name, pod


def _complete(operator: Operator, kubelet: FakeKubelet, ns: str, name: str, pod: str) -> None:
    """The driver exits 0 and the app completes."""
    kubelet.finish(ns, pod)
    operator.succeeding(name)
    operator.completed(name)


def test_driver_log_reaches_the_sink_with_metrics_and_follows_the_rerun_pod(
    harness: Harness, operator: Operator, kubelet: FakeKubelet
) -> None:
    ns = operator.namespace
    job = make_job()
    name = harness.name(job)
    pod = f"{name}-driver"
    run = harness.start(job)
    operator.wait_for(name)
    operator.submit(name)
    first_uid = _pod(kubelet, harness, ns, pod)
    operator.running(name)
    kubelet.write(ns, pod, "attempt 1: reading landing", "attempt 1: boom")
    run.wait_for_line("attempt 1: boom")
    kubelet.finish(ns, pod, exit_code=1)
    operator.failing(name)
    operator.pending_rerun(name)
    operator.submit(name)  # the operator reruns under the same pod name: a new pod
    second_uid = _pod(kubelet, harness, ns, pod)
    assert second_uid != first_uid
    operator.running(name)
    metrics = [
        {"layer": "bronze", "table": "orders", "rows_read": 10, "rows_written": 10, "version": 3, "duration_s": 1.5}
    ]
    kubelet.write(ns, pod, "attempt 2: reading landing", METRICS_MARKER + json.dumps(metrics), "attempt 2: done")
    run.wait_for_line("attempt 2: done")
    kubelet.finish(ns, pod, exit_code=0)
    operator.succeeding(name)
    operator.completed(name)
    result = run.wait()
    driver = [line for line in run.lines if line.startswith("attempt")]
    assert driver == ["attempt 1: reading landing", "attempt 1: boom", "attempt 2: reading landing", "attempt 2: done"]
    assert result.metrics == metrics  # the metrics line is parsed, not logged
    assert not any(METRICS_MARKER in line for line in run.lines)
    assert result.log_tail[-2:] == ["attempt 2: reading landing", "attempt 2: done"]
    assert any(
        f"/containerLogs/{ns}/{pod}/spark-kubernetes-driver?" in r and "follow=true" in r for r in kubelet.requests
    )


def test_failed_app_error_carries_the_log_tail(harness: Harness, operator: Operator, kubelet: FakeKubelet) -> None:
    run, ns, name, pod = _running_driver(harness, operator, kubelet)
    kubelet.write(
        ns,
        pod,
        "Traceback (most recent call last):",
        '  File "/opt/lakehouse/spark_jobs/bronze.py", line 1, in <module>',
        "ValueError: boom",
    )
    kubelet.finish(ns, pod, exit_code=1)
    operator.failing(name)
    operator.failed(name)
    error = run.wait_error()
    assert isinstance(error, SparkApplicationFailed)
    assert error.log_tail == [
        "Traceback (most recent call last):",
        '  File "/opt/lakehouse/spark_jobs/bronze.py", line 1, in <module>',
        "ValueError: boom",
    ]
    assert "ValueError: boom" in str(error)
    assert error.error_message == "driver container failed with ExitCode: 1, Reason: Error"


def test_dropped_log_stream_is_resumed_without_repeats_or_losses(
    harness: Harness, operator: Operator, kubelet: FakeKubelet
) -> None:
    run, ns, name, pod = _running_driver(harness, operator, kubelet)
    kubelet.write(ns, pod, *[f"line {i}" for i in range(5)])
    run.wait_for_line("line 4")
    kubelet.cut()  # the kubelet connection drops mid-stream
    kubelet.write(ns, pod, *[f"line {i}" for i in range(5, 10)])
    run.wait_for_line("line 9")
    _complete(operator, kubelet, ns, name, pod)
    run.wait()
    assert [line for line in run.lines if line.startswith("line ")] == [f"line {i}" for i in range(10)]


def test_lines_stamped_out_of_file_order_all_arrive_once_also_after_a_dropped_stream(
    harness: Harness, operator: Operator, kubelet: FakeKubelet
) -> None:
    """containerd stamps each stream's line before stdout and stderr take turns at the log file,
    so a line can follow one stamped after it: here the job's stdout metrics lines among the
    JVM's stderr lines at the end of a run. Every line reaches the sink once, in file order, the
    metrics lines are all read, and a stream dropped between them replays nothing twice."""
    run, ns, name, pod = _running_driver(harness, operator, kubelet)
    bronze = [{"layer": "bronze", "table": "orders", "rows_read": 5, "rows_written": 5, "version": 1, "duration_s": 1}]
    silver = [{"layer": "silver", "table": "orders", "rows_read": 5, "rows_written": 4, "version": 1, "duration_s": 2}]
    ms = 1_000_000
    t0 = time.time_ns()
    kubelet.write_stamped(
        ns,
        pod,
        (t0, "stderr: job ends"),
        (t0 + 2 * ms, "stderr: stopping the context"),
        (t0 + 1 * ms, METRICS_MARKER + json.dumps(bronze)),  # stamped before the line above it
        (t0 + 3 * ms, METRICS_MARKER + json.dumps(silver)),
        (t0 + 3 * ms, "stderr: same stamp, other text"),
    )
    run.wait_for_line("stderr: same stamp, other text")
    kubelet.cut()  # the reopened stream replays all of the above
    kubelet.write_stamped(
        ns,
        pod,
        (t0 + 2 * ms + ms // 2, "stdout: written late, stamped early"),
        (t0 + 3 * ms, "stderr: same stamp, other text"),  # a new line that repeats an old one
        (t0 + 5 * ms, "stderr: context stopped"),
    )
    run.wait_for_line("stderr: context stopped")
    _complete(operator, kubelet, ns, name, pod)
    result = run.wait()
    assert result.metrics == bronze + silver
    assert [line for line in run.lines if line.startswith(("stderr:", "stdout:"))] == [
        "stderr: job ends",
        "stderr: stopping the context",
        "stderr: same stamp, other text",
        "stdout: written late, stamped early",
        "stderr: same stamp, other text",
        "stderr: context stopped",
    ]


def test_log_written_before_the_follower_attached_is_not_lost(
    harness: Harness, operator: Operator, kubelet: FakeKubelet
) -> None:
    """A short driver that ended before its log was opened: the whole log is still read."""
    ns = operator.namespace
    job = make_job()
    name = harness.name(job)
    pod = f"{name}-driver"
    run = harness.start(job)
    operator.wait_for(name)
    _pod(kubelet, harness, ns, pod)
    kubelet.write(ns, pod, "quick job output")
    kubelet.finish(ns, pod)
    operator.submit(name)
    operator.running(name)
    operator.succeeding(name)
    operator.completed(name)
    run.wait()
    assert "quick job output" in run.lines
