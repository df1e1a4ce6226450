"""The lakehouse on an S3-compatible object store: the medallion flow, a rerun, maintenance, time
travel and restore on s3a:// tables, with the same assertions as on disk.

The store is a real SeaweedFS S3 gateway on loopback with authentication on (tests/fixtures/s3.py).
The landing files are uploaded to the bucket; the flow runs its real Spark jobs (on a warm local
Spark of its own: the keys are part of a server's identity) with the S3A connector (the ``s3``
jar set) and the key pair from the settings, which reach the driver in its environment only.
The tables are read back with the in-process session and compared with the figures of the
generator's manifest and tests/expected.py, computed from a local copy of the
same landing files. dbt then builds the gold marts over the bucket's silver, in a process of its
own as a flow run is.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession

from lakehouse.datagen import GenConfig, Manifest, generate
from lakehouse.settings import REPO_ROOT, get_settings
from lakehouse.testing.s3_server import S3Server
from tests import marts
from tests.fixtures.s3 import new_bucket
from tests.medallion_tables import SOURCES, check_tables, delta_versions, table, table_path

pytestmark = [
    pytest.mark.s3,
    pytest.mark.spark,
    pytest.mark.e2e,
    pytest.mark.timeout(1500),
    pytest.mark.usefixtures("prefect_harness"),
]

START = dt.date(2026, 1, 1)
DATES = [START + dt.timedelta(days=i) for i in range(3)]
CFG = dict(events_per_day=600, orders_per_day=120, users_initial=60)


@pytest.fixture(scope="module")
def s3_lake(
    s3_server: S3Server, spark: SparkSession, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """A fresh bucket with three generated landing days; the settings of a lakehouse rooted in
    it (as the environment of every flow run of the module); the in-process session can read it."""
    bucket = new_bucket(s3_server, spark, "lake")
    local = tmp_path_factory.mktemp("s3-landing") / "landing"
    manifest = generate(local, GenConfig(start=START, days=len(DATES), **CFG))
    import s3fs

    fs = s3fs.S3FileSystem(**s3_server.storage_options())
    root = f"s3a://{bucket}/lake"
    fs.put(str(local) + "/", f"{bucket}/lake/landing/", recursive=True)
    env = {
        "LAKEHOUSE_STORAGE__ROOT": root,
        "LAKEHOUSE_DEPLOY__OBJECT_STORE_ENDPOINT": s3_server.endpoint,
        "LAKEHOUSE_DEPLOY__OBJECT_STORE_REGION": s3_server.region,
        "LAKEHOUSE_DEPLOY__OBJECT_STORE_ACCESS_KEY_ID": s3_server.access_key,
        "LAKEHOUSE_DEPLOY__OBJECT_STORE_SECRET_ACCESS_KEY": s3_server.secret_key,
    }
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        get_settings.cache_clear()
        yield {"root": root, "landing": local, "manifest": manifest, "fs": fs, "bucket": bucket, "server": s3_server}
    get_settings.cache_clear()


@pytest.fixture(scope="module")
def runs(s3_lake: dict[str, Any]) -> dict[str, Any]:
    """The flow over the three days, then again: summaries and table versions after each."""
    from flows.medallion import medallion

    out: dict[str, Any] = {}
    for run in ("first", "second"):
        summary = medallion(start_date=DATES[0], end_date=DATES[-1], dbt_marts=False)
        out[run] = {"summary": summary, "versions": delta_versions(s3_lake["root"], s3_lake["fs"])}
    return out


def test_medallion_on_s3_matches_the_manifest_and_independent_figures(
    spark: SparkSession, s3_lake: dict[str, Any], runs: dict[str, Any]
) -> None:
    manifest: Manifest = s3_lake["manifest"]
    check_tables(spark, s3_lake["root"], manifest, runs["first"]["summary"], DATES, landing=s3_lake["landing"])
    # everything is in the bucket: every table of the run has its Delta log there
    tables = set(runs["first"]["versions"])
    assert {f"{layer}.{s}" for layer in ("bronze", "silver") for s in SOURCES} <= tables
    assert {"gold.hourly_stats", "gold.daily_revenue", "silver.users_history"} <= tables


def test_a_rerun_on_s3_commits_nothing(runs: dict[str, Any]) -> None:
    assert runs["second"]["versions"] == runs["first"]["versions"]
    assert all(r.get("rows_written", 0) == 0 for r in runs["second"]["summary"]), runs["second"]["summary"]


def test_maintenance_time_travel_and_restore_on_s3(
    spark: SparkSession,
    s3_lake: dict[str, Any],
    runs: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """OPTIMIZE + guarded VACUUM, a timestampAsOf read and a restore, on the bucket's tables."""
    from flows.maintenance import maintenance, restore_table
    from lakehouse.cli import main
    from lakehouse.errors import ConfigError

    root, fs = s3_lake["root"], s3_lake["fs"]
    before = sorted(tuple(r) for r in table(spark, root, "silver", "events").collect())
    with pytest.raises(ConfigError, match="refusing VACUUM with a retention of 0 hours"):
        maintenance(tables=["silver/events"], vacuum_retention_hours=0)
    metrics = maintenance(tables=["silver/events"])
    assert {m.get("operation") for m in metrics} >= {"OPTIMIZE", "HISTORY"}
    assert sorted(tuple(r) for r in table(spark, root, "silver", "events").collect()) == before

    # two appends to a table of the bucket, then a read as of a time between them
    path = table_path(root, "gold", "time_travel_probe")
    schema = "id int"
    for b in range(3):
        spark.createDataFrame([(b * 10 + i,) for i in range(10)], schema).write.format("delta").mode("append").save(
            path
        )
        time.sleep(1.5)
    log = path.removeprefix("s3a://") + "/_delta_log"
    commits = {}
    for name in sorted(p for p in fs.ls(log) if p.endswith(".json")):
        info = next(
            json.loads(line)["commitInfo"] for line in fs.cat(name).decode().splitlines() if "commitInfo" in line
        )
        commits[int(Path(name).stem)] = info["timestamp"] / 1000
    assert sorted(commits) == [0, 1, 2]
    as_of = dt.datetime.fromtimestamp((commits[1] + commits[2]) / 2, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    capsys.readouterr()
    assert main(["show-tables", "--table", "gold/time_travel_probe", "--as-of", as_of]) == 0
    out = capsys.readouterr().out
    assert f"as of {as_of}: version 1 has 20 rows, version 2 has 30 rows" in out, out
    restore_table(table="gold/time_travel_probe", timestamp=as_of)
    assert sorted(r.id for r in spark.read.format("delta").load(path).collect()) == list(range(20))


def test_dbt_marts_over_the_s3_tables(
    spark: SparkSession,
    s3_lake: dict[str, Any],
    runs: dict[str, Any],
    tmp_path: Path,
) -> None:
    """The dbt-build flow with the local target, in a process of its own (as a flow run is): its
    in-process Spark lists and reads the bucket's silver with the key pair from the settings,
    keeps its catalog on local disk, and writes the marts into the bucket, where they equal the
    figures recomputed from the landing files. The key pair appears in none of its output."""
    from prefect.settings import PREFECT_API_URL

    server: S3Server = s3_lake["server"]
    env = {
        **os.environ,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        # the in-process target (tests/dbt runs the default, warm one)
        "LAKEHOUSE_DBT__TARGET": "local",
        "LAKEHOUSE_DBT__METASTORE_DIR": str(tmp_path / "metastore"),
        "LAKEHOUSE_DBT__ARTIFACTS_DIR": str(tmp_path / "dbt"),
        "LAKEHOUSE_DBT__SPARK_MASTER": "local[2]",
        "LAKEHOUSE_DBT__DRIVER_MEMORY": "1g",
        "LAKEHOUSE_DBT__SPARK_CONF": json.dumps(
            {"spark.sql.shuffle.partitions": "2", "spark.default.parallelism": "2"}
        ),
    }
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        env.pop(name, None)  # the keys come from the settings, not from this process
    proc = subprocess.run(
        [sys.executable, "-c", "from flows.dbt_build import dbt_build; dbt_build()"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    leaked = server.secret_key in output or server.access_key in output
    assert not leaked, "a key of the object store is in the dbt flow's output"

    root = s3_lake["root"]
    snap = marts.snapshot(spark, s3_lake["landing"], DATES, lambda name: f"delta.`{table_path(root, 'gold', name)}`")
    assert sorted(snap["got"]["daily"]) == DATES
    assert snap["got"] == snap["want"]
    # the catalog stayed on local disk; nothing of dbt's was written into the repository
    assert (tmp_path / "metastore" / "metastore_db").is_dir()
    assert (tmp_path / "dbt" / "target" / "run_results.json").is_file()
    assert not (REPO_ROOT / "s3a:").exists()  # no URI taken for a local path (Prefect results)
