"""What `lakehouse blocks` derives from the settings, without a server: work pool templates that
carry references (never secret values) and the result storage block's kind."""

from __future__ import annotations

import json

import pytest
from pydantic import SecretStr

from lakehouse.blocks import base_job_template, flow_run_env, result_storage_slug, results_url
from lakehouse.settings import REPO_ROOT, DeploySettings, KafkaSettings, Settings, StorageSettings

pytestmark = [pytest.mark.e2e]

SECRET = "do-not-leak-0123456789"


def _settings(**deploy: object) -> Settings:
    return Settings(
        kafka=KafkaSettings(sasl_password=SecretStr(SECRET)),
        deploy=DeploySettings(object_store_secret_access_key=SecretStr(SECRET + "k"), **deploy),
    )  # type: ignore[arg-type]


def test_process_pool_gets_block_placeholders_not_values() -> None:
    t = base_job_template("process", _settings())
    assert SECRET not in json.dumps(t)
    props = t["variables"]["properties"]
    assert props["working_dir"]["default"] == str(REPO_ROOT)
    env = props["env"]["default"]
    assert env["LAKEHOUSE_KAFKA__SASL_PASSWORD"] == "{{ prefect.blocks.secret.lakehouse-kafka-sasl-password }}"
    assert env["AWS_SECRET_ACCESS_KEY"] == "{{ prefect.blocks.secret.lakehouse-object-store-secret-access-key }}"
    assert "AWS_ACCESS_KEY_ID" not in env  # not configured: no block, no placeholder
    assert env["PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK"] == "local-file-system/lakehouse-results"


def test_kubernetes_pool_takes_names_from_the_settings() -> None:
    s = _settings(
        prefect_image="lakehouse-prefect:1.2.3",
        flow_namespace="flows",
        flow_service_account="runner",
        credentials_secret="creds",
        settings_configmap="cfg",
        flow_cpu_limit="3",
    )
    t = base_job_template("kubernetes", s)
    assert SECRET not in json.dumps(t)
    props = t["variables"]["properties"]
    assert [props[k]["default"] for k in ("image", "namespace", "service_account_name", "cpu_limit")] == [
        "lakehouse-prefect:1.2.3",
        "flows",
        "runner",
        "3",
    ]
    assert not any("prefect.blocks.secret" in v for v in props["env"]["default"].values())
    pod = t["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["envFrom"] == [{"configMapRef": {"name": "cfg", "optional": True}}]
    assert {e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"] if "secretKeyRef" in e["valueFrom"]} == {
        "creds"
    }
    # the reaper sidecar reads the same settings ConfigMap
    assert [c["envFrom"] for c in pod["initContainers"]] == [container["envFrom"]]


def test_result_storage_follows_the_storage_root() -> None:
    assert result_storage_slug(Settings()) == "local-file-system/lakehouse-results"
    cluster = Settings(storage=StorageSettings(root="s3a://lake/"))
    assert results_url(cluster) == "s3://lake/prefect-results"
    assert result_storage_slug(cluster) == "remote-file-system/lakehouse-results"
    assert results_url(Settings(deploy=DeploySettings(results_url="s3://b/results"))) == "s3://b/results"
    # Prefect's local result path is always a local directory: an s3a:// root's own results
    # go through the block above, and a flow run without it writes into the project's
    # .lakehouse/, never into a relative directory named "s3a:"
    assert cluster.resolved_results_dir() == str(REPO_ROOT / ".lakehouse" / "prefect-results")
    on_disk = Settings(storage=StorageSettings(root="/srv/lake"))
    assert on_disk.resolved_results_dir() == "/srv/lake/prefect-results"
    assert (
        Settings(storage=StorageSettings(root="file:///srv/lake")).resolved_results_dir() == "/srv/lake/prefect-results"
    )
    assert Settings(results_dir="/tmp/r").resolved_results_dir() == "/tmp/r"


def test_s3_result_storage_block_gets_an_s3_filesystem() -> None:
    """The remote-file-system block of an s3:// results URL resolves to s3fs (a dependency of the
    project, so flow runs and the prefect image can write results there); the endpoint of an
    S3-compatible store reaches the client."""
    from s3fs import S3FileSystem

    from lakehouse.blocks import _result_block

    settings = Settings(
        deploy=DeploySettings(results_url="s3://b/results", object_store_endpoint="http://127.0.0.1:9000")
    )
    block = _result_block(settings)
    assert block.basepath == "s3://b/results"
    fs = block.filesystem
    assert isinstance(fs, S3FileSystem)
    assert fs.client_kwargs == {"endpoint_url": "http://127.0.0.1:9000", "region_name": "us-east-1"}
    assert fs.config_kwargs == {"s3": {"addressing_style": "path"}}  # an endpoint: path style
    assert fs.key is None and fs.secret is None  # keys come from the flow run's environment


def test_webhook_sets_the_notification_block() -> None:
    env = flow_run_env(_settings(webhook_url=SecretStr("http://127.0.0.1:9/x")), secrets=False)
    assert env["LAKEHOUSE_NOTIFICATIONS__BLOCK"] == "custom-webhook/lakehouse-alerts"
    assert "LAKEHOUSE_NOTIFICATIONS__BLOCK" not in flow_run_env(Settings(), secrets=False)
