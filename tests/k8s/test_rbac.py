"""k8s/ (the kustomize base) applied to the real API server with RBAC on: requests made as the
Prefect worker's ServiceAccount prove the allowed verbs work and everything else is refused;
the backend itself runs a job end to end with nothing but those permissions."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from lakehouse.errors import is_contract_violation
from lakehouse.k8s.client import SparkApplications
from lakehouse.k8s.errors import (
    SparkApplicationFailed,
    SparkApplicationTimeout,
    SparkDriverStartFailed,
)
from lakehouse.k8s.render import GROUP, PLURAL, VERSION, render_spec
from tests.fixtures.k8s import K8sCluster
from tests.k8s.conftest import Harness, make_job
from tests.k8s.support import FakeKubelet, Operator, apply, load_kustomization

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
JOBS_NS = "spark-jobs"
WORKER = ("prefect-worker", "prefect")

WORKER_RULES = {
    (GROUP, "sparkapplications"): {"create", "get", "list", "watch", "delete"},
    ("", "pods"): {"get", "list", "watch"},
    ("", "pods/log"): {"get"},
}


@pytest.fixture(scope="module")
def applied(k8s_cluster: K8sCluster) -> list[dict[str, Any]]:
    objects = load_kustomization(ROOT / "k8s")
    with k8s_cluster.api_client() as api:
        apply(api, objects)
    return objects


@pytest.fixture
def worker_api(k8s_cluster: K8sCluster, applied: list[dict[str, Any]]) -> Iterator[client.ApiClient]:
    with k8s_cluster.service_account_client(*WORKER, create=False) as api:
        yield api


def _status(exc: client.ApiException) -> int:
    return int(exc.status or 0)


def test_kustomization_has_exactly_the_issue_s_objects(applied: list[dict[str, Any]]) -> None:
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for obj in applied:
        by_kind.setdefault(obj["kind"], []).append(obj)
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "lakehouse"
    namespaces = {o["metadata"]["name"]: o["metadata"]["labels"] for o in by_kind["Namespace"]}
    assert set(namespaces) == {JOBS_NS, "prefect"}
    for labels in namespaces.values():
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    roles = {o["metadata"]["name"]: o for o in by_kind["Role"]}
    worker_rules = {
        (g, r): set(rule["verbs"])
        for rule in roles["lakehouse-spark-submitter"]["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
    }
    assert worker_rules == WORKER_RULES
    assert {(o["metadata"]["namespace"], o["metadata"]["name"]) for o in by_kind["ServiceAccount"]} == {
        ("prefect", "prefect-worker"),
        (JOBS_NS, "spark-driver"),
    }


def _rules(api: client.ApiClient) -> set[tuple[str, str, str]]:
    review = client.AuthorizationV1Api(api).create_self_subject_rules_review(
        client.V1SelfSubjectRulesReview(spec=client.V1SelfSubjectRulesReviewSpec(namespace=JOBS_NS))
    )
    return {
        (group, resource, verb)
        for rule in review.status.resource_rules
        for group in rule.api_groups or [""]
        for resource in rule.resources or []
        for verb in rule.verbs
    }


def test_rules_review_of_the_worker_is_exactly_the_granted_verbs(
    worker_api: client.ApiClient, k8s_cluster: K8sCluster
) -> None:
    """The worker's rules in spark-jobs, minus what any authenticated ServiceAccount gets
    (measured with one that has no binding), are exactly the issue's list."""
    with k8s_cluster.service_account_client("nobody", "prefect") as nobody:
        baseline = _rules(nobody)
    own = _rules(worker_api) - baseline
    assert own == {(g, r, v) for (g, r), verbs in WORKER_RULES.items() for v in verbs}


def test_worker_allowed_verbs_work(
    worker_api: client.ApiClient,
    k8s_cluster: K8sCluster,
    kubelet: FakeKubelet,
    admin_api: client.ApiClient,
) -> None:
    h = Harness(worker_api, JOBS_NS)
    job = make_job(name="rbac-allowed")
    manifest = h.backend.render(job, h.run_info)
    name = manifest["metadata"]["name"]
    objects = client.CustomObjectsApi(worker_api)
    args = (GROUP, VERSION, JOBS_NS, PLURAL)
    objects.create_namespaced_custom_object(*args, manifest)  # create
    assert objects.get_namespaced_custom_object(*args, name)["metadata"]["name"] == name  # get
    listed = objects.list_namespaced_custom_object(*args)  # list
    assert name in {i["metadata"]["name"] for i in listed["items"]}
    resp = objects.list_namespaced_custom_object(  # watch
        *args,
        watch=True,
        timeout_seconds=1,
        resource_version=listed["metadata"]["resourceVersion"],
        _preload_content=False,
    )
    resp.read()
    resp.release_conn()
    assert resp.status == 200

    spec = render_spec(job, h.settings)["driver"]
    pod = "rbac-driver"
    kubelet.start_pod(JOBS_NS, pod, pod_security=spec["podSecurityContext"], security=spec["securityContext"])
    kubelet.write(JOBS_NS, pod, "hello from the driver")
    core = client.CoreV1Api(worker_api)
    assert core.read_namespaced_pod(pod, JOBS_NS).metadata.name == pod  # pods get
    assert pod in {p.metadata.name for p in core.list_namespaced_pod(JOBS_NS).items}  # list
    watch = core.list_namespaced_pod(JOBS_NS, watch=True, timeout_seconds=1, _preload_content=False)  # watch
    watch.read()
    assert watch.status == 200
    assert core.read_namespaced_pod_log(pod, JOBS_NS, timestamps=False) == "hello from the driver\n"  # pods/log get
    objects.delete_namespaced_custom_object(*args, name)  # delete
    assert SparkApplications(admin_api, JOBS_NS).get(name) is None
    kubelet.finish(JOBS_NS, pod)


def test_worker_forbidden_verbs_are_refused(worker_api: client.ApiClient, admin_api: client.ApiClient) -> None:
    h = Harness(admin_api, JOBS_NS)
    job = make_job(name="rbac-forbidden")
    manifest = h.backend.render(job, h.run_info)
    name = manifest["metadata"]["name"]
    app = SparkApplications(admin_api, JOBS_NS).create(manifest)
    objects = client.CustomObjectsApi(worker_api)
    core = client.CoreV1Api(worker_api)
    args = (GROUP, VERSION, JOBS_NS, PLURAL)
    user = f"system:serviceaccount:{WORKER[1]}:{WORKER[0]}"
    attempts = {
        "secrets get": lambda: core.read_namespaced_secret("anything", JOBS_NS),
        "secrets list": lambda: core.list_namespaced_secret(JOBS_NS),
        "sparkapplications/status update": lambda: objects.replace_namespaced_custom_object_status(
            *args, name, {**app, "status": {"applicationState": {"state": "COMPLETED"}}}
        ),
        "pods create": lambda: core.create_namespaced_pod(
            JOBS_NS,
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "nope"},
                "spec": {"containers": [{"name": "c", "image": "x"}]},
            },
        ),
        "pods delete": lambda: core.delete_namespaced_pod("anything", JOBS_NS),
        "sparkapplications update": lambda: objects.replace_namespaced_custom_object(*args, name, app),
        "sparkapplications patch": lambda: objects.patch_namespaced_custom_object(
            *args, name, {"metadata": {"labels": {"x": "y"}}}
        ),
        "sparkapplications in another namespace": lambda: objects.list_namespaced_custom_object(
            GROUP, VERSION, "default", PLURAL
        ),
    }
    for what, call in attempts.items():
        with pytest.raises(client.ApiException) as refused:
            call()
        assert _status(refused.value) == 403, what
        message = json.loads(refused.value.body)["message"]
        assert f'"{user}" cannot' in message, (what, message)


def test_spark_driver_service_account_can_run_executors_but_not_read_secrets(
    k8s_cluster: K8sCluster, applied: list[dict[str, Any]]
) -> None:
    with k8s_cluster.service_account_client("spark-driver", JOBS_NS, create=False) as api:
        authz = client.AuthorizationV1Api(api)

        def allowed(verb: str, resource: str) -> bool:
            review = authz.create_self_subject_access_review(
                client.V1SelfSubjectAccessReview(
                    spec=client.V1SelfSubjectAccessReviewSpec(
                        resource_attributes=client.V1ResourceAttributes(namespace=JOBS_NS, verb=verb, resource=resource)
                    )
                )
            )
            return bool(review.status.allowed)

        for resource in ("pods", "services", "configmaps", "persistentvolumeclaims"):
            for verb in ("create", "get", "list", "watch", "delete", "deletecollection", "patch"):
                assert allowed(verb, resource), (verb, resource)
        assert not allowed("get", "secrets")
        assert not allowed("create", "sparkapplications")


def test_backend_runs_a_job_with_only_the_worker_s_permissions(
    worker_api: client.ApiClient, admin_api: client.ApiClient, kubelet: FakeKubelet
) -> None:
    """Submit, watch, stream the driver log, and (on timeout) delete and confirm the 404:
    everything the backend does works as the worker ServiceAccount."""
    operator = Operator(admin_api, JOBS_NS)
    h = Harness(worker_api, JOBS_NS)
    job = make_job(name="rbac-e2e")
    name = h.name(job)
    pod = f"{name}-driver"
    spec = render_spec(job, h.settings)["driver"]
    run = h.start(job)
    operator.wait_for(name)
    operator.submit(name)
    kubelet.start_pod(JOBS_NS, pod, pod_security=spec["podSecurityContext"], security=spec["securityContext"])
    operator.running(name)
    kubelet.write(JOBS_NS, pod, "driver says hi")
    run.wait_for_line("driver says hi")
    kubelet.finish(JOBS_NS, pod)
    operator.succeeding(name)
    operator.completed(name)
    assert run.wait().state == "COMPLETED"

    h2 = Harness(worker_api, JOBS_NS)
    slow = make_job(name="rbac-timeout", timeout_seconds=1.0)
    run2 = h2.start(slow)
    operator.wait_for(h2.name(slow))
    started = time.monotonic()
    assert isinstance(run2.wait_error(), SparkApplicationTimeout)
    assert time.monotonic() - started < 15
    assert not operator.exists(h2.name(slow))


def test_backend_reads_the_driver_pod_with_only_the_worker_s_permissions(
    worker_api: client.ApiClient, admin_api: client.ApiClient, kubelet: FakeKubelet
) -> None:
    """The driver pod's exit code (a contract fail: 65) and a driver that cannot start (the
    pod's waiting reason) are read as the worker: get on pods is enough, nothing more."""
    operator = Operator(admin_api, JOBS_NS)
    core = client.CoreV1Api(admin_api)
    h = Harness(worker_api, JOBS_NS)
    job = make_job(name="rbac-exit-code")
    name = h.name(job)
    pod = f"{name}-driver"
    spec = render_spec(job, h.settings)["driver"]
    security = {"pod_security": spec["podSecurityContext"], "security": spec["securityContext"]}
    run = h.start(job)
    operator.wait_for(name)
    operator.submit(name)
    kubelet.start_pod(JOBS_NS, pod, **security)
    operator.running(name)
    kubelet.finish(JOBS_NS, pod, exit_code=65)
    # What the operator writes when the kubelet had not yet reported the container's exit:
    # only the pod has the code.
    operator._update(
        name,
        lambda app, st: st.update(
            applicationState={"state": "FAILING", "errorMessage": "driver container status missing"}
        ),
    )
    operator.failed(name)
    error = run.wait_error()
    assert isinstance(error, SparkApplicationFailed)
    assert error.exit_code == 65 and is_contract_violation(error)
    assert not any("could not read driver pod" in line for line in run.lines)

    h2 = Harness(worker_api, JOBS_NS, driver_start_timeout_seconds=1.0)
    stuck = make_job(name="rbac-no-start")
    run2 = h2.start(stuck)
    name2 = h2.name(stuck)
    operator.wait_for(name2)
    operator.submit(name2)
    kubelet.start_waiting_pod(JOBS_NS, f"{name2}-driver", "ErrImagePull", "pull access denied", **security)
    error2 = run2.wait_error()
    assert isinstance(error2, SparkDriverStartFailed) and error2.reason == "ErrImagePull"
    assert not operator.exists(name2)
    core.delete_namespaced_pod(f"{name2}-driver", JOBS_NS, grace_period_seconds=0)
