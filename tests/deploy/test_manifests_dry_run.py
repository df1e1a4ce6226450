"""Every manifest of k8s/ (base and overlays, built by the real kustomize), spark-operator/ and
the Kubernetes work pool's job template passes server-side dry-run (dryRun=All,
fieldValidation=Strict, admission including Pod Security "restricted") on the real kube-apiserver.

The Strimzi example (k8s/examples/strimzi-kafka.yaml) is the one exception: the Strimzi CRDs are
not available offline, so the API server cannot know its kinds; it is checked for shape here.
"""

from __future__ import annotations

import copy
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from pydantic import SecretStr

from lakehouse.blocks import base_job_template
from lakehouse.jobs import SparkJob
from lakehouse.k8s.render import render_application
from lakehouse.settings import DeploySettings, KafkaSettings, KubernetesSettings, Settings
from tests.deploy.conftest import REPO
from tests.fixtures.k8s import K8sCluster
from tests.k8s.support import apply, dynamic_client, load_kustomization

pytestmark = [pytest.mark.e2e, pytest.mark.k8s, pytest.mark.timeout(600)]

KUSTOMIZATIONS = [
    "k8s",
    "k8s/base",
    "k8s/overlays/dev",
    "k8s/overlays/prod",
    "k8s/overlays/local",
    "spark-operator/dbt",
]
SECRET = "kafka-pw-" + uuid.uuid4().hex


def _build(kustomize: Path, path: str) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [str(kustomize), "build", str(REPO / path)], capture_output=True, text=True, check=False, timeout=120
    )
    assert proc.returncode == 0, f"kustomize build {path}: {proc.stderr}"
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def _dry_run(api: client.ApiClient, obj: dict[str, Any]) -> dict[str, Any]:
    dyn = dynamic_client(api)
    res = dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
    ns = obj["metadata"].get("namespace") if res.namespaced else None
    try:
        # server-side apply, dry run: what `kubectl apply --server-side --dry-run=server` does,
        # for objects that exist (the base namespaces) and those that do not alike
        out = dyn.server_side_apply(
            res,
            body=obj,
            namespace=ns,
            field_manager="lakehouse-tests",
            force_conflicts=True,
            dry_run="All",
            query_params=[("fieldValidation", "Strict")],
        )
    except client.ApiException as exc:
        raise AssertionError(f"{obj['kind']} {ns}/{obj['metadata'].get('name')}: {exc.status} {exc.body}") from None
    result: dict[str, Any] = out.to_dict()
    return result


@pytest.fixture(scope="module")
def admin(k8s_cluster: K8sCluster) -> Any:
    with k8s_cluster.api_client() as api:
        # the namespaces must exist for namespaced dry-runs: apply the base for real (idempotent)
        apply(api, load_kustomization(REPO / "k8s"))
        yield api


def test_the_loader_of_tests_k8s_builds_what_kustomize_builds(kustomize_bin: Path) -> None:
    key = lambda o: (o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"])  # noqa: E731
    built = sorted(_build(kustomize_bin, "k8s"), key=key)
    assert built == sorted(load_kustomization(REPO / "k8s"), key=key)
    assert built == sorted(_build(kustomize_bin, "k8s/base"), key=key)


@pytest.mark.parametrize("path", KUSTOMIZATIONS)
def test_kustomization_passes_server_side_dry_run(path: str, kustomize_bin: Path, admin: Any) -> None:
    objects = _build(kustomize_bin, path)
    assert objects
    for obj in objects:
        stored = _dry_run(admin, obj)
        assert stored["metadata"]["name"] == obj["metadata"]["name"]
        assert obj["kind"] != "Secret", "no Secret manifests: credentials are created by hand"


def test_overlays_add_the_worker_and_its_settings(kustomize_bin: Path) -> None:
    for env, replicas in (("dev", 1), ("prod", 2)):
        objects = {(o["kind"], o["metadata"]["name"]): o for o in _build(kustomize_bin, f"k8s/overlays/{env}")}
        worker = objects[("Deployment", "prefect-worker")]
        assert worker["spec"]["replicas"] == replicas
        container = worker["spec"]["template"]["spec"]["containers"][0]
        assert container["image"].startswith("lakehouse-prefect:")
        assert "--pool" in container["args"] and "lakehouse-kubernetes" in container["args"]
        settings = objects[("ConfigMap", "lakehouse-settings")]["data"]
        assert settings["LAKEHOUSE_BACKEND"] == "kubernetes"
        assert settings["LAKEHOUSE_STORAGE__ROOT"] == f"s3a://lakehouse-{env}"
        # only references to the credentials Secret, never values
        refs = [
            e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"] if "secretKeyRef" in e.get("valueFrom", {})
        ]
        assert refs == ["lakehouse-credentials"]
        # the observer watches the flow runs' namespace, the worker's own, not the cluster
        observer = {e["name"]: e for e in container["env"]}["PREFECT_INTEGRATIONS_KUBERNETES_OBSERVER_NAMESPACES"]
        assert observer["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
        assert "lakehouse-credentials" in settings["LAKEHOUSE_KUBERNETES__ENV_SECRET_REFS"]


def _settings() -> Settings:
    return Settings(
        kubernetes=KubernetesSettings(
            env_secret_refs={"AWS_ACCESS_KEY_ID": "lakehouse-credentials:object-store-access-key-id"}
        ),
        kafka=KafkaSettings(sasl_password=SecretStr(SECRET)),
        deploy=DeploySettings(
            object_store_access_key_id=SecretStr(SECRET + "-id"),
            object_store_secret_access_key=SecretStr(SECRET + "-key"),
            webhook_url=SecretStr("http://127.0.0.1:9/" + SECRET),
        ),
    )


def _flow_run_job(settings: Settings) -> dict[str, Any]:
    """The Job the Kubernetes worker would create for a flow run, from the pool's template."""
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.objects import FlowRun
    from prefect.utilities.asyncutils import run_coro_as_sync
    from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

    template = base_job_template("kubernetes", settings)
    # the template has no block or variable placeholders: the client is never called
    offline = PrefectClient(api="http://127.0.0.1:9/api")
    config = run_coro_as_sync(KubernetesWorkerJobConfiguration.from_template_and_values(template, {}, client=offline))
    assert config is not None
    flow_run = FlowRun(id=uuid.uuid4(), name="tidy-otter", flow_id=uuid.uuid4())
    config.prepare_for_flow_run(flow_run)
    manifest: dict[str, Any] = copy.deepcopy(config.job_manifest)
    return manifest


def test_kubernetes_work_pool_job_passes_dry_run_with_pod_security(admin: Any) -> None:
    settings = _settings()
    job = _flow_run_job(settings)
    text = yaml.safe_dump(job)
    assert SECRET not in text, "a secret value reached the Job manifest"
    assert job["metadata"]["namespace"] == "prefect"
    pod = job["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "prefect-worker"
    container = pod["containers"][0]
    assert container["image"] == settings.deploy.prefect_image
    assert container["resources"] == {
        "requests": {"cpu": "500m", "memory": "1Gi"},
        "limits": {"cpu": "2", "memory": "2Gi"},
    }
    env = {e["name"]: e for e in container["env"]}
    assert env["LAKEHOUSE_KAFKA__SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "lakehouse-credentials"
    assert env["PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK"]["value"] == "local-file-system/lakehouse-results"
    assert env["LAKEHOUSE_NOTIFICATIONS__BLOCK"]["value"] == "custom-webhook/lakehouse-alerts"
    pod_name = {"fieldRef": {"fieldPath": "metadata.name"}}
    assert env["LAKEHOUSE_KUBERNETES__SUBMITTER_POD"]["valueFrom"] == pod_name
    # the reaper: a native sidecar from the same image, knowing the same pod name
    [reaper] = pod["initContainers"]
    assert reaper["restartPolicy"] == "Always" and reaper["image"] == container["image"]
    assert reaper["args"] == ["python", "-m", "lakehouse.k8s.reaper"]
    assert {e["name"]: e.get("valueFrom") for e in reaper["env"]} == {"LAKEHOUSE_KUBERNETES__SUBMITTER_POD": pod_name}
    assert reaper["envFrom"] == container["envFrom"]
    job["metadata"]["name"] = job["metadata"].pop("generateName") + "dry-run"
    _dry_run(admin, job)
    # Pod Security "restricted" is enforced on pods: the Job's pod as the Job controller makes it
    pod_obj = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "flow-run-pod",
            "namespace": "prefect",
            "labels": job["spec"]["template"].get("metadata", {}).get("labels", {}),
        },
        "spec": pod,
    }
    _dry_run(admin, pod_obj)


def test_spark_applications_pass_dry_run(admin: Any) -> None:
    settings = _settings()
    job = SparkJob(
        name="medallion-bronze", entrypoint="spark_jobs.bronze", args=("--root", "s3a://lake", "--start", "2026-01-01")
    )
    app = render_application(job, settings, name="medallion-bronze-dry-run")
    assert SECRET not in yaml.safe_dump(app)
    _dry_run(admin, app)


def test_strimzi_example_shape() -> None:
    docs = [d for d in yaml.safe_load_all((REPO / "k8s/examples/strimzi-kafka.yaml").read_text()) if d]
    kinds = {d["kind"]: d for d in docs}
    assert set(kinds) == {"KafkaNodePool", "Kafka", "KafkaTopic"}
    assert {d["apiVersion"] for d in docs} == {"kafka.strimzi.io/v1beta2"}
    kafka = kinds["Kafka"]
    assert kafka["metadata"]["annotations"] == {"strimzi.io/node-pools": "enabled", "strimzi.io/kraft": "enabled"}
    assert kinds["KafkaNodePool"]["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
    assert set(kinds["KafkaNodePool"]["spec"]["roles"]) == {"controller", "broker"}
    topic = kinds["KafkaTopic"]
    assert topic["metadata"]["name"] == Settings().kafka.topic
    assert topic["spec"]["partitions"] == Settings().streaming.topic_partitions
    assert topic["spec"]["config"]["retention.ms"] == Settings().streaming.topic_retention_ms
