"""The test cluster itself: a real kube-apiserver + etcd with the Spark operator CRDs."""

from __future__ import annotations

import copy
import uuid
from typing import Any

import pytest
from kubernetes import client, config

from lakehouse import versions
from tests.fixtures.k8s import (
    SPARK_OPERATOR_API_VERSION,
    SPARK_OPERATOR_GROUP,
    K8sCluster,
    k8s_api_error,
)

pytestmark = pytest.mark.k8s

NAMESPACE = "k8s-fixture-test"
PLURAL = "sparkapplications"


def _spark_app(name: str) -> dict[str, Any]:
    """The smallest SparkApplication the operator's v1beta2 schema accepts."""
    return {
        "apiVersion": f"{SPARK_OPERATOR_GROUP}/{SPARK_OPERATOR_API_VERSION}",
        "kind": "SparkApplication",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "type": "Python",
            "mode": "cluster",
            "sparkVersion": versions.SPARK_VERSION,
            "image": f"spark:{versions.SPARK_VERSION}",
            "mainApplicationFile": "local:///opt/spark/examples/src/main/python/pi.py",
            "driver": {"cores": 1, "memory": "512m", "serviceAccount": "spark"},
            "executor": {"instances": 1, "cores": 1, "memory": "512m"},
        },
    }


@pytest.fixture(scope="module")
def namespace(k8s_cluster: K8sCluster) -> str:
    k8s_cluster.create_namespace(NAMESPACE)
    return NAMESPACE


def test_apiserver_is_ready_and_reports_the_pinned_version(k8s_cluster: K8sCluster) -> None:
    assert k8s_cluster.server.startswith("https://127.0.0.1:")
    assert k8s_cluster.raw_get("/readyz") == "ok"
    verbose = k8s_cluster.raw_get("/readyz?verbose")
    assert "[+]etcd ok" in verbose
    assert "[+]poststarthook/crd-informer-synced ok" in verbose
    with k8s_cluster.api_client() as api:
        info = client.VersionApi(api).get_code()
    assert info.git_version == f"v{versions.KUBERNETES_VERSION}"


def test_admin_kubeconfig_is_cluster_admin(k8s_cluster: K8sCluster) -> None:
    api = config.new_client_from_config(config_file=str(k8s_cluster.kubeconfig_path))
    with api:
        review = client.AuthenticationV1Api(api).create_self_subject_review(client.V1SelfSubjectReview())
        assert review.status.user_info.username == "lakehouse-admin"
        assert "system:masters" in review.status.user_info.groups
        names = {ns.metadata.name for ns in client.CoreV1Api(api).list_namespace().items}
    assert {"default", "kube-system"} <= names


def test_spark_operator_crds_are_served(k8s_cluster: K8sCluster) -> None:
    with k8s_cluster.api_client() as api:
        resources = client.CustomObjectsApi(api).get_api_resources(SPARK_OPERATOR_GROUP, SPARK_OPERATOR_API_VERSION)
        crd = client.ApiextensionsV1Api(api).read_custom_resource_definition(f"{PLURAL}.{SPARK_OPERATOR_GROUP}")
    by_name = {r.name: r for r in resources.resources}
    assert by_name[PLURAL].kind == "SparkApplication"
    assert by_name[PLURAL].namespaced
    assert "scheduledsparkapplications" in by_name
    assert f"{PLURAL}/status" in by_name
    conditions = {c.type: c.status for c in crd.status.conditions}
    assert conditions.get("Established") == "True"
    assert [v.name for v in crd.spec.versions if v.served] == [SPARK_OPERATOR_API_VERSION]


def test_minimal_spark_application_dry_run_then_created(k8s_cluster: K8sCluster, namespace: str) -> None:
    name = f"pi-{uuid.uuid4().hex[:8]}"
    body = _spark_app(name)
    with k8s_cluster.api_client() as api:
        objects = client.CustomObjectsApi(api)
        args = (SPARK_OPERATOR_GROUP, SPARK_OPERATOR_API_VERSION, namespace, PLURAL)

        dry = objects.create_namespaced_custom_object(*args, copy.deepcopy(body), dry_run="All")
        assert dry["metadata"]["name"] == name
        assert dry["spec"]["sparkVersion"] == versions.SPARK_VERSION
        with pytest.raises(client.ApiException) as not_stored:
            objects.get_namespaced_custom_object(*args, name)
        assert not_stored.value.status == 404

        created = objects.create_namespaced_custom_object(*args, copy.deepcopy(body))
        assert created["metadata"]["uid"]
        got = objects.get_namespaced_custom_object(*args, name)
        assert got["spec"]["mainApplicationFile"] == body["spec"]["mainApplicationFile"]
        assert got["spec"]["driver"]["serviceAccount"] == "spark"
        objects.delete_namespaced_custom_object(*args, name)


def test_malformed_spark_application_is_refused_with_a_readable_message(
    k8s_cluster: K8sCluster, namespace: str
) -> None:
    body = _spark_app(f"bad-{uuid.uuid4().hex[:8]}")
    body["spec"]["type"] = "Rust"
    del body["spec"]["sparkVersion"]
    with k8s_cluster.api_client() as api, pytest.raises(client.ApiException) as refused:
        client.CustomObjectsApi(api).create_namespaced_custom_object(
            SPARK_OPERATOR_GROUP,
            SPARK_OPERATOR_API_VERSION,
            namespace,
            PLURAL,
            body,
            dry_run="All",
        )
    assert refused.value.status == 422
    status = k8s_api_error(refused.value)
    assert status["reason"] == "Invalid"
    message = status["message"]
    assert 'spec.type: Unsupported value: "Rust"' in message
    assert "spec.sparkVersion: Required value" in message
    causes = {c["field"] for c in status["details"]["causes"]}
    assert {"spec.type", "spec.sparkVersion"} <= causes


def test_service_account_token_is_authenticated_but_not_authorized(k8s_cluster: K8sCluster, namespace: str) -> None:
    with k8s_cluster.service_account_client("no-rbac", namespace) as api:
        review = client.AuthenticationV1Api(api).create_self_subject_review(client.V1SelfSubjectReview())
        assert review.status.user_info.username == f"system:serviceaccount:{namespace}:no-rbac"
        assert "system:serviceaccounts" in review.status.user_info.groups

        with pytest.raises(client.ApiException) as forbidden:
            client.CoreV1Api(api).list_namespaced_secret(namespace)
    assert forbidden.value.status == 403
    message = k8s_api_error(forbidden.value)["message"]
    assert f'"system:serviceaccount:{namespace}:no-rbac" cannot list resource "secrets"' in message


def test_rbac_grant_lets_the_service_account_in(k8s_cluster: K8sCluster, namespace: str) -> None:
    sa = "spark-submitter"
    k8s_cluster.create_service_account(sa, namespace)
    with k8s_cluster.api_client() as admin:
        rbac = client.RbacAuthorizationV1Api(admin)
        rbac.create_namespaced_role(
            namespace,
            client.V1Role(
                metadata=client.V1ObjectMeta(name="sparkapps"),
                rules=[
                    client.V1PolicyRule(
                        api_groups=[SPARK_OPERATOR_GROUP],
                        resources=[PLURAL],
                        verbs=["create", "get", "list"],
                    )
                ],
            ),
        )
        rbac.create_namespaced_role_binding(
            namespace,
            client.V1RoleBinding(
                metadata=client.V1ObjectMeta(name="sparkapps"),
                role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="Role", name="sparkapps"),
                subjects=[client.RbacV1Subject(kind="ServiceAccount", name=sa, namespace=namespace)],
            ),
        )
    with k8s_cluster.service_account_client(sa, namespace, create=False) as api:
        objects = client.CustomObjectsApi(api)
        listed = objects.list_namespaced_custom_object(
            SPARK_OPERATOR_GROUP, SPARK_OPERATOR_API_VERSION, namespace, PLURAL
        )
        assert listed["kind"] == "SparkApplicationList"
        with pytest.raises(client.ApiException) as forbidden:
            client.CoreV1Api(api).list_namespaced_secret(namespace)
    assert forbidden.value.status == 403


def test_service_account_kubeconfig_file(k8s_cluster: K8sCluster, namespace: str) -> None:
    path = k8s_cluster.service_account_kubeconfig("from-file", namespace)
    api = config.new_client_from_config(config_file=str(path))
    with api:
        review = client.AuthenticationV1Api(api).create_self_subject_review(client.V1SelfSubjectReview())
    assert review.status is not None and review.status.user_info is not None
    assert review.status.user_info.username == f"system:serviceaccount:{namespace}:from-file"
