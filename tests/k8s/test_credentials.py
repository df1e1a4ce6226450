"""Where the backend's credentials come from: a prefect-kubernetes KubernetesCredentials block,
else in-cluster config, else kubeconfig; each one proven against the real API server."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.config import incluster_config
from prefect_kubernetes.credentials import KubernetesClusterConfig, KubernetesCredentials

from lakehouse.errors import ConfigError
from lakehouse.k8s.client import api_client_from_block, api_client_from_settings
from lakehouse.settings import KubernetesSettings
from tests.fixtures.k8s import K8sCluster

pytestmark = [pytest.mark.k8s, pytest.mark.timeout(60)]

NS = "creds-test"


def whoami(api: client.ApiClient) -> str:
    review = client.AuthenticationV1Api(api).create_self_subject_review(client.V1SelfSubjectReview())
    return str(review.status.user_info.username)


def test_credentials_block_gives_a_synchronous_client(k8s_cluster: K8sCluster) -> None:
    path = k8s_cluster.service_account_kubeconfig("from-block", NS)
    block = KubernetesCredentials(cluster_config=KubernetesClusterConfig.from_file(path, context_name="lakehouse-test"))
    with api_client_from_block(block) as api:
        assert isinstance(api, client.ApiClient)
        assert whoami(api) == f"system:serviceaccount:{NS}:from-block"


def test_in_cluster_config_comes_before_kubeconfig(
    k8s_cluster: K8sCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pod's view: KUBERNETES_SERVICE_HOST/PORT and the mounted token and CA (here files in
    a temporary directory holding a real ServiceAccount token and the cluster's CA)."""
    token = tmp_path / "token"
    token.write_text(k8s_cluster.service_account_token("in-pod", NS))
    host, port = k8s_cluster.server.removeprefix("https://").split(":")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", host)
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", port)
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(token))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(k8s_cluster.ca_path))
    monkeypatch.setenv("KUBECONFIG", str(k8s_cluster.kubeconfig_path))  # admin: must not win
    with api_client_from_settings(KubernetesSettings()) as api:
        assert whoami(api) == f"system:serviceaccount:{NS}:in-pod"


def test_kubeconfig_when_not_in_a_pod(k8s_cluster: K8sCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    path = k8s_cluster.service_account_kubeconfig("from-kubeconfig", NS)
    monkeypatch.setenv("KUBECONFIG", str(path))
    with api_client_from_settings(KubernetesSettings()) as api:
        assert whoami(api) == f"system:serviceaccount:{NS}:from-kubeconfig"
    with api_client_from_settings(KubernetesSettings(kubeconfig_context="lakehouse-test")) as api:
        assert whoami(api) == f"system:serviceaccount:{NS}:from-kubeconfig"


def test_no_credentials_is_a_clear_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="no Kubernetes credentials: set kubernetes"):
        api_client_from_settings(KubernetesSettings())
