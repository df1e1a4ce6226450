"""`lakehouse tables / history / sql / restore` and `medallion --sources/--tables` on real Spark + Delta.

The tables are written here with the test's own Spark (two commits of known rows), so every
expected figure comes from what the test wrote, not from the code under test. The inspect
commands run their job in the test's Spark (the CLI's in-process path, as after the demo's dbt
build); restore and medallion are real flow runs submitting their jobs to the warm local Spark.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession

pytestmark = [pytest.mark.spark, pytest.mark.e2e, pytest.mark.usefixtures("prefect_harness")]

FIRST = [("e1", "click", 3), ("e2", "view", 5), ("e3", "click", 7)]
SECOND = [("e4", "purchase", 11), ("e5", "click", 13)]


@pytest.fixture
def lake(spark: SparkSession, tmp_path: Path, use_root: Any) -> Path:
    """silver/events: FIRST at version 0, SECOND appended at version 1; gold/totals: one row."""
    root = tmp_path / "lake"
    events = str(root / "warehouse" / "silver" / "events")
    spark.createDataFrame(FIRST, "event_id string, event_type string, amount int").write.format("delta").save(events)
    spark.createDataFrame(SECOND, "event_id string, event_type string, amount int").write.format("delta").mode(
        "append"
    ).option("userMetadata", '{"run_id": "second"}').save(events)
    spark.createDataFrame([(1,)], "n int").write.format("delta").save(str(root / "warehouse" / "gold" / "totals"))
    use_root(root)
    return root


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    from lakehouse.cli import main

    capsys.readouterr()
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def _active_files(table: Path) -> int:
    return len(list(table.glob("*.parquet")))  # only appends: every data file is live


def test_tables_lists_rows_version_files_and_last_commit(lake: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _cli(capsys, "tables")
    assert code == 0, err
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith(("silver.", "gold."))}
    assert set(rows) == {"silver.events", "gold.totals"}
    events = rows["silver.events"]
    assert events[1:4] == [str(len(FIRST) + len(SECOND)), "1", str(_active_files(lake / "warehouse/silver/events"))]
    assert events[-1] == "WRITE" and rows["gold.totals"][1:3] == ["1", "0"]


def test_history_shows_each_commit_with_its_rows_and_metadata(lake: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _cli(capsys, "history", "silver/events")
    assert code == 0, err
    commits = [line for line in out.splitlines() if re.match(r"\s+\d+\s+\d{4}-", line)]
    assert [c.split()[0] for c in commits] == ["1", "0"]  # newest first
    assert f"numOutputRows={len(SECOND)}" in commits[0] and '{"run_id": "second"}' in commits[0]
    assert f"numOutputRows={len(FIRST)}" in commits[1]
    code, out, _ = _cli(capsys, "history", "silver/events", "--limit", "1")
    assert code == 0 and len([line for line in out.splitlines() if re.match(r"\s+\d+\s+\d{4}-", line)]) == 1


def test_sql_reads_the_tables_by_layer_and_name(lake: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _cli(
        capsys,
        "sql",
        "select event_type, sum(amount) as total from silver.events group by event_type order by event_type",
    )
    assert code == 0, err
    expected: dict[str, int] = {}
    for _, kind, amount in FIRST + SECOND:
        expected[kind] = expected.get(kind, 0) + amount
    lines = out.splitlines()
    header = lines.index(next(line for line in lines if line.split() == ["event_type", "total"]))
    got = {line.split()[0]: int(line.split()[1]) for line in lines[header + 2 : header + 2 + len(expected)]}
    assert got == expected
    assert f"{len(expected)} row(s)" in out
    code, out, _ = _cli(capsys, "sql", "select * from silver.events", "--limit", "2")
    assert code == 0 and "first 2 rows (--limit to see more)" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("history", "silver/nope"), "no Delta table 'silver/nope'"),
        (("history", "events"), "a table is layer/name"),
        (("sql", "  "), "the SQL query is empty"),
        (("sql", "select * from silver.nope"), "silver.nope"),
    ],
)
def test_a_bad_table_or_query_exits_non_zero_naming_it(
    lake: Path, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], message: str
) -> None:
    code, out, err = _cli(capsys, *argv)
    assert code != 0
    assert message in out + err, (out + err)[-2000:]
    if argv[0] == "history":  # a wrong table name is a configuration error, from the CLI or the driver
        assert code == 78
        if argv[1] == "silver/nope":
            assert "silver/events" in out + err  # it names the tables that exist


def test_restore_brings_a_table_back_and_records_the_run(
    spark: SparkSession, lake: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _cli(capsys, "restore", "silver/events", "--version", "0")
    assert code == 0, (out + err)[-3000:]
    assert "silver.events: restored to version 0, version 1 -> 2" in out
    rows = spark.read.format("delta").load(str(lake / "warehouse/silver/events")).collect()
    assert sorted((r.event_id, r.event_type, r.amount) for r in rows) == sorted(FIRST)
    code, out, _ = _cli(capsys, "history", "silver/events", "--limit", "1")
    assert code == 0 and re.search(r"^\s+2\s+\S+ \S+\s+RESTORE", out, re.MULTILINE), out


def test_restore_needs_a_version_or_a_timestamp(capsys: pytest.CaptureFixture[str]) -> None:
    from lakehouse.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["restore", "silver/events"])
    assert exc.value.code == 2
    assert "one of the arguments --version --timestamp is required" in capsys.readouterr().err


DAY = dt.date(2026, 2, 1)


@pytest.fixture
def one_day(tmp_path: Path, use_root: Any) -> Path:
    """A root with one small generated day (DAY) of every source, the settings pointed at it."""
    from lakehouse.datagen import GenConfig, generate

    root = tmp_path / "lake"
    generate(root / "landing", GenConfig(start=DAY, days=1, events_per_day=20, orders_per_day=5, users_initial=5))
    use_root(root)
    return root


def test_medallion_runs_only_the_sources_asked_for(one_day: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root, day = one_day, DAY
    code, out, err = _cli(
        capsys, "medallion", "--start", day.isoformat(), "--layers", "bronze", "--sources", "events", "--no-dbt-marts"
    )
    assert code == 0, (out + err)[-3000:]
    assert sorted(p.name for p in (root / "warehouse" / "bronze").iterdir()) == ["events"]
    from lakehouse.cli import main

    with pytest.raises(SystemExit) as exc:  # a usage error, before any flow run
        main(["medallion", "--start", day.isoformat(), "--sources", "clicks"])
    assert exc.value.code == 2 and "unknown source(s) ['clicks']" in capsys.readouterr().err


def test_medallion_runs_only_the_tables_asked_for(one_day: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root, day = one_day, DAY
    tables = "bronze/orders,silver/orders,gold/daily_revenue"
    code, out, err = _cli(capsys, "medallion", "--start", day.isoformat(), "--tables", tables, "--no-dbt-marts")
    assert code == 0, (out + err)[-3000:]
    written = {
        f"{layer.name}/{t.name}" for layer in (root / "warehouse").iterdir() for t in layer.iterdir() if t.is_dir()
    }
    # besides silver's side tables (quarantine, rule metrics): only the tables asked for
    assert written - {"quarantine/orders", "quality/metrics"} == set(tables.split(","))
    printed = [line.split()[0] for line in out.splitlines() if re.match(r"^(bronze|silver|gold)\.\w+ ", line)]
    assert printed == ["bronze.orders", "silver.orders", "gold.daily_revenue"]
    from lakehouse.cli import main

    with pytest.raises(SystemExit) as exc:  # a usage error, before any flow run
        main(["medallion", "--start", day.isoformat(), "--tables", "gold/nope"])
    assert exc.value.code == 2 and "unknown table(s) ['gold/nope']" in capsys.readouterr().err
