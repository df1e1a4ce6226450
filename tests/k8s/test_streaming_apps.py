"""KubernetesBackend.ensure_running / stop: the one long-running app of a streaming job, on the
real API server (status written as the operator writes it)."""

from __future__ import annotations

import pytest

from lakehouse.errors import ConfigError
from lakehouse.jobs import SparkJob
from lakehouse.k8s.render import SPEC_HASH
from tests.k8s.conftest import Harness, make_job
from tests.k8s.support import Operator

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(120)]


def stream_job(**kw: object) -> SparkJob:
    return make_job(name="events-stream", streaming=True, **kw)  # type: ignore[arg-type]


def test_ensure_running_lifecycle(harness: Harness, operator: Operator) -> None:
    backend = harness.backend
    job = stream_job()
    name = "events-stream"
    lines: list[str] = []

    assert backend.ensure_running(job, log=lines.append) == "created"
    app = operator.get(name)
    assert app["spec"]["restartPolicy"]["type"] == "Always"
    assert app["metadata"]["labels"]["lakehouse.io/kind"] == "streaming"
    uid = app["metadata"]["uid"]

    # Running, rerun by the operator on its own: left alone.
    operator.submit(name)
    operator.running(name)
    assert backend.ensure_running(job, log=lines.append) == "unchanged"
    operator.failing(name)
    operator.pending_rerun(name)
    assert backend.ensure_running(job, log=lines.append) == "unchanged"
    operator.submit(name)
    assert operator.get(name)["metadata"]["uid"] == uid

    # Ended FAILED: relaunched as a new app with a fresh status.
    operator.failing(name)
    operator.failed(name)
    assert backend.ensure_running(job, log=lines.append) == "relaunched"
    relaunched = operator.get(name)
    assert relaunched["metadata"]["uid"] != uid
    assert not (relaunched.get("status") or {}).get("applicationState", {}).get("state")

    # Spec changed (new arguments): replaced; the new app carries the new hash.
    changed = stream_job(args=("--root", "s3a://lake", "--trigger", "30 seconds"))
    old_hash = relaunched["metadata"]["annotations"][SPEC_HASH]
    assert backend.ensure_running(changed, log=lines.append) == "updated"
    updated = operator.get(name)
    assert updated["metadata"]["uid"] != relaunched["metadata"]["uid"]
    assert updated["metadata"]["annotations"][SPEC_HASH] != old_hash
    assert updated["spec"]["arguments"][-1] == "30 seconds"
    assert any("its spec changed: spec.arguments" in line for line in lines)
    assert backend.ensure_running(changed) == "unchanged"

    # COMPLETED also means the stream is not running any more.
    operator.submit(name)
    operator.succeeding(name)
    operator.completed(name)
    assert backend.ensure_running(changed) == "relaunched"

    assert backend.get_app(changed) is not None
    assert backend.stop(changed) is True
    assert not operator.exists(name)
    assert backend.stop(changed) is False
    assert backend.get_app(changed) is None


def test_same_app_whatever_the_flow_run(harness: Harness, operator: Operator) -> None:
    job = stream_job()
    assert harness.backend.ensure_running(job) == "created"
    harness.run_info = type(harness.run_info)(flow_run_id="another-flow-run", attempt=3)
    assert harness.backend.ensure_running(job) == "unchanged"
    items = operator.objects.list_namespaced_custom_object(
        "sparkoperator.k8s.io", "v1beta2", operator.namespace, "sparkapplications"
    )["items"]
    assert [i["metadata"]["name"] for i in items] == ["events-stream"]


def test_ensure_running_refuses_batch_jobs(harness: Harness) -> None:
    with pytest.raises(ConfigError, match="not a streaming job"):
        harness.backend.ensure_running(make_job())
