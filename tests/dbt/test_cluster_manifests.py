"""spark-operator/dbt/ (the Spark Connect server dbt's cluster target talks to) against the real
API server and the operator's real SparkApplication CRD: every object passes a server-side
dry-run create, and the Service and NetworkPolicy select the server's driver pod."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.fixtures.k8s import K8sCluster
from tests.k8s.support import dynamic_client

pytestmark = [pytest.mark.dbt, pytest.mark.k8s]

ROOT = Path(__file__).resolve().parents[2]
DIR = ROOT / "spark-operator" / "dbt"


def _objects() -> list[dict[str, Any]]:
    """What `kubectl apply -k spark-operator/dbt/` creates (resources, the generated ConfigMap,
    namespace and labels), built by hand from kustomization.yaml."""
    kust = yaml.safe_load((DIR / "kustomization.yaml").read_text())
    assert set(kust) <= {"apiVersion", "kind", "namespace", "resources", "configMapGenerator", "labels"}, sorted(kust)
    labels = {k: v for entry in kust.get("labels", []) for k, v in entry["pairs"].items()}
    objects = [doc for resource in kust["resources"] for doc in yaml.safe_load_all((DIR / resource).read_text()) if doc]
    for gen in kust.get("configMapGenerator", []):
        assert gen["options"]["disableNameSuffixHash"] is True  # referenced by a fixed name
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": gen["name"]},
                "data": {f: (DIR / f).read_text() for f in gen["files"]},
            }
        )
    for obj in objects:
        meta = obj["metadata"]
        meta["namespace"] = kust["namespace"]
        meta.setdefault("labels", {}).update(labels)
    return objects


def test_objects_pass_a_server_side_dry_run(k8s_cluster: K8sCluster) -> None:
    objects = _objects()
    with k8s_cluster.api_client() as api:
        for ns in ("spark-jobs", "prefect"):  # as k8s/ creates them
            try:
                client.CoreV1Api(api).create_namespace({"metadata": {"name": ns}})
            except client.ApiException as exc:
                if exc.status != 409:
                    raise
        dyn = dynamic_client(api)
        for obj in objects:
            res = dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
            try:
                res.create(body=obj, namespace=obj["metadata"]["namespace"], dry_run="All")
            except client.ApiException as exc:
                pytest.fail(f"{obj['kind']} {obj['metadata']['name']} refused: {exc.body}")
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == ["ConfigMap", "NetworkPolicy", "PersistentVolumeClaim", "Service", "SparkApplication"]


def test_the_endpoint_reaches_the_server_driver_only() -> None:
    by_kind = {o["kind"]: o for o in _objects()}
    app, svc, policy = by_kind["SparkApplication"], by_kind["Service"], by_kind["NetworkPolicy"]
    name = app["metadata"]["name"]
    driver_labels = {"sparkoperator.k8s.io/app-name": name, "spark-role": "driver"}
    assert svc["spec"]["selector"] == driver_labels
    assert policy["spec"]["podSelector"]["matchLabels"] == driver_labels
    port = app["spec"]["sparkConf"]["spark.connect.grpc.binding.port"]
    assert svc["spec"]["ports"][0]["targetPort"] == int(port)
    assert "ports" not in app["spec"]["driver"]  # Spark declares it; a second one is refused
    assert app["spec"]["sparkConf"]["spark.plugins"] == ("org.apache.spark.sql.connect.SparkConnectPlugin")
    assert app["spec"]["restartPolicy"]["type"] == "Always"
    main = app["spec"]["mainApplicationFile"].removeprefix("local://")
    mount = next(m for m in app["spec"]["driver"]["volumeMounts"] if m["name"] == "connect-main")
    assert main == f"{mount['mountPath']}/connect_server.py"


def test_the_server_creates_tables_as_every_job_does() -> None:
    """The server's conf is written by hand; it carries every key of the jobs' Delta conf
    (extension, catalog, in-commit timestamps), so dbt's tables on the cluster time-travel by
    timestamp as the pipeline's do."""
    from spark_jobs.conf import DELTA_CONF

    app = next(o for o in _objects() if o["kind"] == "SparkApplication")
    conf = app["spec"]["sparkConf"]
    assert {k: conf.get(k) for k in DELTA_CONF} == DELTA_CONF
