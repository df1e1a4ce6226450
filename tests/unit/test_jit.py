"""The JIT of local driver JVMs (``spark.jit``): C1 only while the lakehouse is small."""

from __future__ import annotations

from pathlib import Path

from lakehouse.backends.local import LocalBackend, jit_options
from lakehouse.backends.warm import WarmServer
from lakehouse.jobs import C1_ONLY, SparkJob
from lakehouse.settings import Settings


def _settings(jit: str, root: Path, limit_mb: float = 1.0, **spark: object) -> Settings:
    return Settings(
        spark={"jit": jit, "interpret_below_mb": limit_mb, "warm_dir": str(root / "w"), **spark},
        storage={"root": str(root / "lake")},
    )


def _grow(root: Path, size: int) -> None:
    table = root / "lake" / "warehouse" / "silver" / "orders"
    table.mkdir(parents=True, exist_ok=True)
    (table / "part-0.parquet").write_bytes(b"x" * size)


def _driver_options(settings: Settings, entrypoint: str) -> list[str]:
    cmd = LocalBackend(settings, java_options=[]).command(SparkJob(name="j", entrypoint=entrypoint))
    return next(c for c in cmd if c.startswith("spark.driver.extraJavaOptions=")).split()


def test_c1_keeps_the_default_code_cache() -> None:
    assert C1_ONLY == ("-XX:TieredStopAtLevel=1", "-XX:ReservedCodeCacheSize=240m")


def test_explicit_modes_apply_to_every_driver(tmp_path: Path) -> None:
    _grow(tmp_path, 2 * 1024 * 1024)  # a big lakehouse changes nothing here
    assert jit_options(_settings("c1", tmp_path)) == list(C1_ONLY)
    assert jit_options(_settings("c1", tmp_path), long_running=True) == list(C1_ONLY)
    assert jit_options(_settings("tiered", tmp_path)) == []


def test_auto_is_c1_while_the_lakehouse_is_small_and_never_for_the_stream(tmp_path: Path) -> None:
    small = _settings("auto", tmp_path)
    assert jit_options(small) == list(C1_ONLY)  # no table yet
    assert jit_options(small, long_running=True) == []
    assert set(C1_ONLY) <= set(_driver_options(small, "spark_jobs.medallion"))
    assert not set(C1_ONLY) & set(_driver_options(small, "spark_jobs.streaming"))
    assert jit_options(_settings("auto", tmp_path, limit_mb=0)) == []  # 0: never small
    _grow(tmp_path, 1024 * 1024 - 1)
    assert jit_options(small) == list(C1_ONLY)
    _grow(tmp_path, 1024 * 1024)  # the limit
    assert jit_options(small) == []
    assert not set(C1_ONLY) & set(_driver_options(small, "spark_jobs.medallion"))


def test_auto_counts_the_landing_files_a_first_run_will_read(tmp_path: Path) -> None:
    small = _settings("auto", tmp_path)
    day = tmp_path / "lake" / "landing" / "events" / "date=2026-01-01"
    day.mkdir(parents=True)
    (day / "part-0.json").write_bytes(b"x" * (1024 * 1024 // 2))
    assert jit_options(small) == list(C1_ONLY)
    (day / "part-1.json").write_bytes(b"x" * (1024 * 1024 // 2))  # a full rebuild of 1 MiB
    assert jit_options(small) == []


def test_a_grown_lakehouse_gets_another_warm_server(tmp_path: Path) -> None:
    settings = _settings("auto", tmp_path)
    small = WarmServer(LocalBackend(settings))
    _grow(tmp_path, 2 * 1024 * 1024)
    grown = WarmServer(LocalBackend(settings))
    assert small.socket != grown.socket  # the C1 one idles out; runs go to a tiered one
    assert set(C1_ONLY) <= set(" ".join(small.command).split())
    assert not set(C1_ONLY) & set(" ".join(grown.command).split())
