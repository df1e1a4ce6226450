"""Class-data sharing options: which archive a local driver gets, and when none."""

from __future__ import annotations

from pathlib import Path

import pytest

from lakehouse import cds
from lakehouse.backends.local import LocalBackend
from lakehouse.jobs import C1_ONLY, SparkJob
from lakehouse.settings import Settings


def _driver_java_options(backend: LocalBackend) -> str:
    cmd = backend.command(SparkJob(name="diag", entrypoint="spark_jobs.diagnostics"))
    return next(c for c in cmd if c.startswith("spark.driver.extraJavaOptions="))


def test_a_built_archive_is_passed_to_the_driver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = tmp_path / "a.jsa"
    monkeypatch.setattr(cds, "archive_path", lambda: archive)
    assert cds.java_options(Settings()) == []  # not built yet: nothing
    archive.write_bytes(b"x")
    assert cds.java_options(Settings()) == [f"-XX:SharedArchiveFile={archive}"]
    assert f"-XX:SharedArchiveFile={archive}" in _driver_java_options(LocalBackend(Settings()))
    off = Settings(spark={"class_data_sharing": False})
    assert cds.java_options(off) == []
    assert "SharedArchiveFile" not in _driver_java_options(LocalBackend(off))
    # dbt's in-process Spark (local target) is the same JVM build and class path: same archive
    from lakehouse.dbt import DbtSettings, local_spark_conf

    dbt_conf = local_spark_conf(Settings(storage={"root": str(tmp_path)}), DbtSettings())
    assert f"-XX:SharedArchiveFile={archive}" in dbt_conf["spark.driver.extraJavaOptions"].split()
    assert "SharedArchiveFile" not in local_spark_conf(off, DbtSettings())["spark.driver.extraJavaOptions"]
    # explicit options (the archive's own training runs) replace the default
    opts = _driver_java_options(LocalBackend(Settings(), java_options=["-XX:ArchiveClassesAtExit=/x.jsa"]))
    assert "-XX:ArchiveClassesAtExit=/x.jsa" in opts and "SharedArchiveFile" not in opts


def test_the_archive_key_follows_the_class_path_inputs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SPARK_CONF_DIR", raising=False)
    base = cds.archive_key()
    assert cds.archive_key() == base  # stable
    monkeypatch.setenv("SPARK_CONF_DIR", "/elsewhere/conf")
    assert cds.archive_key() != base
    assert cds.archive_path().name.endswith(".jsa")


def test_a_jobs_java_options_follow_the_backends_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive = tmp_path / "a.jsa"
    archive.write_bytes(b"x")
    monkeypatch.setattr(cds, "archive_path", lambda: archive)
    job = SparkJob(name="diag", entrypoint="spark_jobs.diagnostics", java_options=("-XX:+UseParallelGC", "-Dx=1"))
    cmd = LocalBackend(Settings(spark={"java_options": ["-Dfrom.settings=1"], "jit": "c1"})).command(job)
    opts = next(c for c in cmd if c.startswith("spark.driver.extraJavaOptions=")).split()
    # the archive, the JIT's, then the settings' options, then the job's own
    assert opts[-6:] == [
        f"-XX:SharedArchiveFile={archive}",
        *C1_ONLY,
        "-Dfrom.settings=1",
        "-XX:+UseParallelGC",
        "-Dx=1",
    ]
    assert opts[0].startswith("spark.driver.extraJavaOptions=-Dlog4j2.configurationFile=")
