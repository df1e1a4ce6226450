"""Delta writes: idempotent appends, MERGE upserts, time travel, restore, replaceWhere."""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from pathlib import Path

import pytest
from delta.tables import DeltaTable
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from spark_jobs import storage

pytestmark = pytest.mark.spark
USERS = "user_id string, email string, updated_at timestamp"


def test_txn_append_is_idempotent(spark: SparkSession, tmp_path: Path) -> None:
    path = str(tmp_path / "t")
    df = spark.createDataFrame([(1,), (2,)], "id int")
    for _ in range(3):
        storage.append(df, path, txn_app_id="batch-a", txn_version=0)
    assert spark.read.format("delta").load(path).count() == 2
    assert DeltaTable.forPath(spark, path).history().count() == 1
    storage.append(df, path, txn_app_id="batch-b", txn_version=0)
    assert spark.read.format("delta").load(path).count() == 4


def test_merge_updates_time_travel_and_restore(spark: SparkSession, tmp_path: Path) -> None:
    path = str(tmp_path / "users")
    t1, t2 = dt.datetime(2026, 1, 1), dt.datetime(2026, 1, 2)
    v0 = spark.createDataFrame([("u1", "old@x", t1), ("u2", "two@x", t1)], USERS)
    storage.merge_latest(spark, v0, path, key="user_id", order_by="updated_at")
    updates = spark.createDataFrame([("u1", "new@x", t2), ("u2", "stale@x", t1), ("u3", "three@x", t2)], USERS)
    storage.merge_latest(spark, updates, path, key="user_id", order_by="updated_at")
    latest = spark.read.format("delta").load(path)
    assertDataFrameEqual(
        latest, spark.createDataFrame([("u1", "new@x", t2), ("u2", "two@x", t1), ("u3", "three@x", t2)], USERS)
    )
    commit = storage.last_commit(spark, path)
    assert commit["operation"] == "MERGE"
    assert (commit["metrics"]["numTargetRowsUpdated"], commit["metrics"]["numTargetRowsInserted"]) == ("1", "1")
    # time travel returns the pre-merge row
    before = spark.read.format("delta").option("versionAsOf", 0).load(path).where("user_id = 'u1'")
    assert [r.email for r in before.collect()] == ["old@x"]
    # the same merge again changes nothing (Delta commits nothing for it: no batches to record)
    storage.merge_latest(spark, updates, path, key="user_id", order_by="updated_at")
    assert storage.last_commit(spark, path)["version"] == commit["version"]
    assertDataFrameEqual(spark.read.format("delta").load(path), latest)
    # restore brings the pre-merge row back
    DeltaTable.forPath(spark, path).restoreToVersion(0)
    assertDataFrameEqual(spark.read.format("delta").load(path), v0)


ICT_DEFAULT = "spark.databricks.delta.properties.defaults.enableInCommitTimestamps"


def _three_commits_with_storage_times_that_say_nothing(spark: SparkSession, path: str) -> dict[int, float]:
    """Append three batches, then set every commit file's modification time to one hour ago, as a
    copied table or a coarse object-store clock leaves them. The commits' own times (seconds),
    read from the log."""
    for b in range(3):
        spark.createDataFrame([(b * 10 + i,) for i in range(10)], "id int").write.format("delta").mode("append").save(
            path
        )
        time.sleep(0.3)
    commits, stale = {}, time.time() - 3600
    for log in sorted(Path(path, "_delta_log").glob("*.json")):
        info = next(json.loads(x)["commitInfo"] for x in log.read_text().splitlines() if "commitInfo" in x)
        commits[int(log.stem)] = info.get("inCommitTimestamp", info["timestamp"]) / 1000
        os.utime(log, (stale, stale))
    return commits


def test_time_travel_by_timestamp_uses_the_commits_own_time(spark: SparkSession, tmp_path: Path) -> None:
    """Tables get in-commit timestamps (spark_jobs/conf.py DELTA_CONF): a timestamp between two
    commits reads, restores and lists the earlier one whatever times the storage keeps for the log
    files. The control, a table made with them off, resolves from the files' times and fails."""
    assert spark.conf.get(ICT_DEFAULT) == "true"
    path = str(tmp_path / "ict")
    commits = _three_commits_with_storage_times_that_say_nothing(spark, path)
    detail = spark.sql(f"DESCRIBE DETAIL delta.`{path}`").first()
    assert detail is not None and detail["properties"].get("delta.enableInCommitTimestamps") == "true"
    as_of = dt.datetime.fromtimestamp((commits[1] + commits[2]) / 2, dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    then = spark.read.format("delta").option("timestampAsOf", as_of).load(path)
    assert sorted(r.id for r in then.collect()) == list(range(20))
    history = DeltaTable.forPath(spark, path).history().select("version", F.unix_millis("timestamp").alias("ms"))
    assert {r.version: r.ms / 1000 for r in history.collect()} == commits
    DeltaTable.forPath(spark, path).restoreToTimestamp(as_of)
    assert sorted(r.id for r in spark.read.format("delta").load(path).collect()) == list(range(20))

    control = str(tmp_path / "control")
    spark.conf.set(ICT_DEFAULT, "false")
    try:
        commits = _three_commits_with_storage_times_that_say_nothing(spark, control)
    finally:
        spark.conf.set(ICT_DEFAULT, "true")
    as_of = dt.datetime.fromtimestamp((commits[1] + commits[2]) / 2, dt.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    with pytest.raises(Exception, match="after the latest"):
        spark.read.format("delta").option("timestampAsOf", as_of).load(control).collect()


def test_replace_where_rewrites_only_the_named_dates(spark: SparkSession, tmp_path: Path) -> None:
    path = str(tmp_path / "daily")
    schema = "date_day date, n long"
    d1, d2, d3 = (dt.date(2026, 1, i) for i in (1, 2, 3))
    storage.append(spark.createDataFrame([(d1, 1), (d2, 2), (d3, 3)], schema), path)
    storage.replace_where(spark.createDataFrame([(d2, 20)], schema), path, storage.sql_in("date_day", [d2]))
    assertDataFrameEqual(
        spark.read.format("delta").load(path), spark.createDataFrame([(d1, 1), (d2, 20), (d3, 3)], schema)
    )
    assert DeltaTable.forPath(spark, path).history(1).first()["operation"] == "WRITE"
    with pytest.raises(Exception, match=r"(?i)replaceWhere|does not conform|DELTA_REPLACE_WHERE"):
        storage.replace_where(spark.createDataFrame([(d3, 30)], schema), path, storage.sql_in("date_day", [d2]))


def test_sql_in_quotes_and_handles_empty() -> None:
    assert storage.sql_in("c", ["b", "a'x", "b"]) == "c IN ('a''x', 'b')"
    assert storage.sql_in("c", []) == "false"


def test_commit_metadata_records_applied_batches_even_for_empty_merges(spark: SparkSession, tmp_path: Path) -> None:
    path = str(tmp_path / "t")
    t1 = dt.datetime(2026, 1, 1)
    with storage.commit_metadata(spark, ["b1"], run_id="r1"):
        storage.merge_latest(
            spark, spark.createDataFrame([("u1", "a@x", t1)], USERS), path, key="user_id", order_by="updated_at"
        )
    empty = spark.createDataFrame([], USERS)
    with storage.commit_metadata(spark, ["b2", "b3"]):
        storage.merge_latest(spark, empty, path, key="user_id", order_by="updated_at")
    # a batch whose rows are all stale changes no row, and is still recorded as applied
    stale = spark.createDataFrame([("u1", "old@x", t1 - dt.timedelta(days=1))], USERS)
    with storage.commit_metadata(spark, ["b4"]):
        storage.merge_latest(spark, stale, path, key="user_id", order_by="updated_at")
    assert storage.last_commit(spark, path)["metrics"].get("numTargetRowsUpdated", "0") == "0"
    storage.append(spark.createDataFrame([("u9", "z@x", t1)], USERS), path)  # outside: records nothing
    assert storage.applied_state(spark, path)[0] == {"b1", "b2", "b3", "b4"}
    assert [r.email for r in spark.read.format("delta").load(path).where("user_id = 'u1'").collect()] == ["a@x"]
    assert spark.conf.get("spark.databricks.delta.commitInfo.userMetadata", None) in (None, "")
    assert storage.applied_state(spark, str(tmp_path / "missing"))[0] == set()


def test_a_merge_updating_one_row_rewrites_no_file(spark: SparkSession, tmp_path: Path) -> None:
    """Upsert targets get deletion vectors: an update marks the old row deleted and writes the new
    version beside the inserts, leaving the file that held it (and its other rows) in place."""
    path = str(tmp_path / "orders")
    t1, t2 = dt.datetime(2026, 1, 1), dt.datetime(2026, 1, 2)
    rows = [(f"u{i:04d}", f"{i}@x", t1) for i in range(1000)]
    first = spark.createDataFrame(rows, USERS).coalesce(1)
    storage.merge_latest(spark, first, path, key="user_id", order_by="updated_at")
    files_before = set(spark.read.format("delta").load(path).inputFiles())
    assert len(files_before) == 1
    detail = spark.sql(f"DESCRIBE DETAIL delta.`{path}`").first()
    assert detail is not None and detail["properties"].get("delta.enableDeletionVectors") == "true"

    update = spark.createDataFrame([("u0007", "new@x", t2), ("u2000", "ins@x", t2)], USERS)
    storage.merge_latest(spark, update, path, key="user_id", order_by="updated_at")
    m = storage.last_commit(spark, path)["metrics"]
    assert (m["numTargetRowsUpdated"], m["numTargetRowsInserted"], m["numTargetFilesRemoved"]) == ("1", "1", "0")
    assert m["numTargetDeletionVectorsAdded"] == "1"
    assert files_before < set(spark.read.format("delta").load(path).inputFiles())
    expected = [r for r in rows if r[0] != "u0007"] + [("u0007", "new@x", t2), ("u2000", "ins@x", t2)]
    assertDataFrameEqual(spark.read.format("delta").load(path), spark.createDataFrame(expected, USERS))


def test_deletion_vectors_can_be_turned_off_for_old_readers(spark: SparkSession, tmp_path: Path) -> None:
    path = str(tmp_path / "plain")
    t1 = dt.datetime(2026, 1, 1)
    spark.conf.set(storage.DELETION_VECTORS_CONF, "false")
    try:
        storage.merge_latest(
            spark, spark.createDataFrame([("u1", "a@x", t1)], USERS), path, key="user_id", order_by="updated_at"
        )
    finally:
        spark.conf.unset(storage.DELETION_VECTORS_CONF)
    detail = spark.sql(f"DESCRIBE DETAIL delta.`{path}`").first()
    assert detail is not None and detail["properties"].get("delta.enableDeletionVectors") == "false"
    update = spark.createDataFrame([("u1", "b@x", t1 + dt.timedelta(days=1))], USERS)
    storage.merge_latest(spark, update, path, key="user_id", order_by="updated_at")
    m = storage.last_commit(spark, path)["metrics"]
    assert (m["numTargetRowsUpdated"], m["numTargetFilesRemoved"], m["numTargetDeletionVectorsAdded"]) == (
        "1",
        "1",
        "0",
    )


def test_log_version_is_the_latest_commit_past_a_checkpoint(spark: SparkSession, tmp_path: Path) -> None:
    """The version read from the log's listing is the one Delta's history reports, also once a
    checkpoint (written at version 10) sits beside the commit files."""
    path = str(tmp_path / "t")
    assert storage.log_version(spark, path) is None
    for i in range(12):
        storage.append(spark.createDataFrame([(i,)], "id int"), path)
    assert any(p.name.endswith(".checkpoint.parquet") for p in (tmp_path / "t" / "_delta_log").iterdir())
    latest = DeltaTable.forPath(spark, path).history(1).first()
    assert latest is not None and storage.log_version(spark, path) == latest["version"] == 11


def test_last_commit_and_applied_state_from_the_log_files_equal_deltas_history(
    spark: SparkSession, tmp_path: Path
) -> None:
    """last_commit and applied_state read the commit files themselves: after appends, MERGEs (one
    that changes nothing), a metadata-only commit and an OPTIMIZE, what they return equals what
    Delta's own history says."""
    path = str(tmp_path / "t")
    t1 = dt.datetime(2026, 1, 1)

    def from_history() -> tuple[dict[str, object], storage.AppliedState]:
        rows = DeltaTable.forPath(spark, path).history().collect()
        latest = max(rows, key=lambda r: r["version"])
        batches: set[str] = set()
        metadata = {}
        for r in rows:
            if r["userMetadata"]:
                metadata[r["version"]] = json.loads(r["userMetadata"])
                batches.update(metadata[r["version"]].get("batches", []))
        last = {
            "version": latest["version"],
            "operation": latest["operation"],
            "metrics": dict(latest["operationMetrics"] or {}),
        }
        return last, storage.AppliedState(batches, latest["version"], metadata.get(latest["version"], {}))

    steps = [
        lambda: storage.append(spark.createDataFrame([("u1", "a@x", t1)], USERS), path),
        lambda: storage.append(spark.createDataFrame([("u2", "c@x", t1)], USERS), path),
        lambda: storage.merge_latest(
            spark,
            spark.createDataFrame([("u1", "b@x", t1 + dt.timedelta(days=1))], USERS),
            path,
            key="user_id",
            order_by="updated_at",
        ),
        lambda: storage.merge_latest(
            spark, spark.createDataFrame([("u1", "old@x", t1)], USERS), path, key="user_id", order_by="updated_at"
        ),
        lambda: storage.mark_applied(spark, path),
        lambda: spark.sql(f"OPTIMIZE delta.`{path}`").collect(),
    ]
    for i, step in enumerate(steps):
        with storage.commit_metadata(spark, [f"b{i}"], run_id=f"r{i}"):
            step()
        expected_last, expected_state = from_history()
        assert storage.last_commit(spark, path) == expected_last, i
        assert storage.applied_state(spark, path) == expected_state, i
    assert storage.last_commit(spark, path)["operation"] == "OPTIMIZE"
    assert storage.applied_state(spark, path).batches == {"b0", "b1", "b2", "b3", "b4", "b5"}
