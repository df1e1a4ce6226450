"""`lakehouse render`: prints the manifests the backend submits; --dry-run asks the API server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from lakehouse.backends.kubernetes import KubernetesBackend
from lakehouse.cli import main
from lakehouse.jobs import SparkJob
from lakehouse.k8s.runinfo import RunInfo
from lakehouse.settings import get_settings
from tests.fixtures.k8s import K8sCluster

pytestmark = pytest.mark.k8s


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, namespace: str, k8s_cluster: K8sCluster) -> Iterator[str]:
    monkeypatch.setenv("LAKEHOUSE_KUBERNETES__NAMESPACE", namespace)
    monkeypatch.setenv("LAKEHOUSE_STORAGE__ROOT", "s3a://lake")
    monkeypatch.setenv("KUBECONFIG", str(k8s_cluster.kubeconfig_path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    get_settings.cache_clear()
    yield namespace
    get_settings.cache_clear()


def test_render_prints_what_the_backend_submits(env: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "render",
                "medallion",
                "--start",
                "2026-01-01",
                "--end",
                "2026-01-02",
                "--flow-run-id",
                "f-1",
                "--attempt",
                "2",
            ]
        )
        == 0
    )
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    from lakehouse.pipeline import medallion_jobs

    settings = get_settings()
    import datetime as dt

    jobs = medallion_jobs(
        ["bronze", "silver", "gold"], settings, start=dt.date(2026, 1, 1), end=dt.date(2026, 1, 2), run_id="f-1"
    )
    backend = KubernetesBackend(settings, run_info=lambda: RunInfo(flow_run_id="f-1", attempt=2))
    assert docs == [backend.render(job) for job in jobs]
    assert all(d["metadata"]["namespace"] == env for d in docs)


def test_render_any_spark_job_from_a_spec_file_with_dry_run(
    env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "job.yaml"
    spec.write_text(
        yaml.safe_dump({"name": "adhoc", "entrypoint": "spark_jobs.gold", "args": ["--root", "s3a://lake"]})
    )
    assert main(["render", "--spec", str(spec), "--dry-run"]) == 0
    (doc,) = yaml.safe_load_all(capsys.readouterr().out)
    assert doc["metadata"]["uid"]  # the API server's answer, not our rendering
    assert "managedFields" not in doc["metadata"]
    assert doc["spec"]["mainApplicationFile"] == "local:///opt/lakehouse/spark_jobs/gold.py"
    job = SparkJob(name="adhoc", entrypoint="spark_jobs.gold", args=("--root", "s3a://lake"))
    assert doc["spec"] == KubernetesBackend(get_settings()).render(job, RunInfo(flow_run_id="manual"))["spec"]


def test_dry_run_refusal_is_readable(
    env: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LAKEHOUSE_KUBERNETES__TMP_SIZE_LIMIT", "two gigs")
    get_settings.cache_clear()
    assert main(["render", "medallion", "--start", "2026-01-01", "--dry-run"]) == 78  # a configuration error
    err = capsys.readouterr().err
    assert err.startswith("error: the API server refused SparkApplication")
    assert "spec.volumes[1].emptyDir.sizeLimit" in err


def test_bad_spec_file_is_a_config_error(env: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "job.json"
    spec.write_text(json.dumps({"name": "x"}) + "{")
    assert main(["render", "--spec", str(spec)]) == 78
    assert "cannot read the SparkJob spec" in capsys.readouterr().err
