"""A small lakehouse runs its queries interpreted: the size rule, and that every session of the
run (also the table sessions of for_each_table) gets the conf, and only for the run."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from spark_jobs.conf import INTERPRETED_CONF
from spark_jobs.session import MIB, for_each_table, run_conf, run_scope

pytestmark = pytest.mark.spark


def _lake(tmp_path: Path) -> tuple[str, list[str]]:
    """A root with 3,000 bytes of landing input and 5,000 bytes of table files."""
    landing = tmp_path / "landing" / "events" / "date=2026-01-01"
    landing.mkdir(parents=True)
    (landing / "a.json").write_bytes(b"x" * 1000)
    (landing / "b.json").write_bytes(b"y" * 2000)
    (landing / "notes.txt").write_bytes(b"z" * 10_000)  # not landing input: bronze never reads it
    table = tmp_path / "warehouse" / "silver" / "events" / "_delta_log"
    table.mkdir(parents=True)
    (table / "00000000000000000000.json").write_bytes(b"{" * 4000)
    (table.parent / "part-0.parquet").write_bytes(b"p" * 1000)
    return str(tmp_path), [str(landing)]


def _plan(session: SparkSession) -> str:
    return str(session.range(10).selectExpr("id * 2 AS x")._jdf.queryExecution().executedPlan().toString())


def test_below_the_limit_the_run_is_interpreted_above_it_not(spark: SparkSession, tmp_path: Path) -> None:
    root, dirs = _lake(tmp_path)
    # 8,000 bytes counted: 3,000 landing + 5,000 table files (the .txt is not input)
    assert run_conf(spark, root, 8001 / MIB, dirs) == INTERPRETED_CONF
    assert run_conf(spark, root, 8000 / MIB, dirs) == {}
    assert run_conf(spark, root, 5001 / MIB) == INTERPRETED_CONF  # tables only (show-tables)
    assert run_conf(spark, root, 5000 / MIB) == {}
    assert run_conf(spark, root, 0, dirs) == {}  # 0: never
    assert run_conf(spark, str(tmp_path / "nothing-here"), 1) == INTERPRETED_CONF  # an empty lakehouse


def test_every_session_of_the_run_is_interpreted_and_only_during_it(spark: SparkSession) -> None:
    assert "*(" in _plan(spark)  # whole-stage code generation: the default

    def conf_and_plan(session: SparkSession, _item: int) -> tuple[str, str, str]:
        return (
            session.conf.get("spark.sql.codegen.wholeStage"),
            session.conf.get("spark.sql.codegen.factoryMode"),
            _plan(session),
        )

    with run_scope(spark, INTERPRETED_CONF):
        assert "*(" not in _plan(spark)
        tables = for_each_table(spark, [1, 2], conf_and_plan, parallelism=2)
    for whole_stage, factory, plan in tables:
        assert (whole_stage, factory) == ("false", "NO_CODEGEN")
        assert "*(" not in plan and "Project" in plan

    # after the run: the session as it was, and new table sessions are back to the defaults
    assert spark.conf.get("spark.sql.codegen.wholeStage") == "true"
    assert "*(" in _plan(spark)
    (after,) = for_each_table(spark, [1, 2], conf_and_plan, parallelism=2)[:1]
    assert after[0] == "true" and "*(" in after[2]
