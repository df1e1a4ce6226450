"""for_each_table: the tables of a layer side by side, each in a session of its own."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from spark_jobs import storage
from spark_jobs.session import for_each_table

pytestmark = pytest.mark.spark
NAMES = ["a", "b", "c"]


def test_concurrent_tables_commit_their_own_metadata(spark: SparkSession, tmp_path: Path) -> None:
    # Every item sets its commit metadata, then waits until all three have: with one shared SQL
    # conf the last one set would land in every table's commit.
    all_set = threading.Barrier(len(NAMES), timeout=60)
    threads: dict[str, str] = {}

    def write(session: SparkSession, name: str) -> int:
        threads[name] = threading.current_thread().name
        path = str(tmp_path / name)
        with storage.commit_metadata(session, [f"batch-{name}"], run_id=f"run-{name}"):
            all_set.wait()
            storage.append(session.createDataFrame([(name,)] * (NAMES.index(name) + 1), "v string"), path)
        return session.read.format("delta").load(path).count()

    counts = for_each_table(spark, NAMES, write, parallelism=3)

    assert counts == [1, 2, 3]  # in the order of the items, not of completion
    assert len(set(threads.values())) == 3
    for name in NAMES:
        assert storage.applied_state(spark, str(tmp_path / name))[0] == {f"batch-{name}"}
    # the caller's session conf was never touched
    assert spark.conf.get("spark.databricks.delta.commitInfo.userMetadata", None) is None


def test_a_failing_table_is_raised_after_the_others_finish(spark: SparkSession, tmp_path: Path) -> None:
    def write(session: SparkSession, name: str) -> None:
        if name == "b":
            raise ValueError("table b is broken")
        storage.append(session.createDataFrame([(name,)], "v string"), str(tmp_path / name))

    with pytest.raises(ValueError, match="table b is broken"):
        for_each_table(spark, NAMES, write, parallelism=3)
    assert [r.v for r in spark.read.format("delta").load(str(tmp_path / "a")).collect()] == ["a"]
    assert [r.v for r in spark.read.format("delta").load(str(tmp_path / "c")).collect()] == ["c"]
    assert not (tmp_path / "b").exists()


def test_parallelism_one_runs_in_order_in_the_callers_session(spark: SparkSession) -> None:
    seen: list[tuple[str, bool, str]] = []
    for_each_table(spark, NAMES, lambda s, n: seen.append((n, s is spark, threading.current_thread().name)), 1)
    assert seen == [(n, True, threading.current_thread().name) for n in NAMES]


def test_tables_created_at_the_same_time_by_concurrent_appends(spark: SparkSession, tmp_path: Path) -> None:
    """Every source of a layer appends to quality/metrics: the first run creates it from three
    threads at once; every append must land, once."""
    path = str(tmp_path / "metrics")
    ready = threading.Barrier(len(NAMES), timeout=60)

    def write(session: SparkSession, name: str) -> None:
        df = session.createDataFrame([(name,)], "v string")
        ready.wait()
        storage.append(df, path, txn_app_id=f"app-{name}", txn_version=0)

    for_each_table(spark, NAMES, write, parallelism=3)
    assert sorted(r.v for r in spark.read.format("delta").load(path).collect()) == NAMES
    for_each_table(spark, NAMES, write, parallelism=3)  # idempotent: nothing more
    assert spark.read.format("delta").load(path).count() == 3
