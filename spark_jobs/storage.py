"""All reads and writes of the batch jobs: landing files and Delta tables.

Kept in one small module so transforms stay pure and every write path is visible in one place.
Paths may be local or any Hadoop filesystem URI (s3a:// on clusters).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F


@dataclass(frozen=True)
class LandingFile:
    """A landing file: its full path, base name and size in bytes."""

    path: str
    name: str
    size: int


LANDING_SUFFIXES = (".json", ".json.gz")
"""Landing files bronze reads (JSON lines; gzip-compressed ones are decompressed by Spark)."""


def list_landing(
    spark: SparkSession, directory: str, suffixes: tuple[str, ...] = LANDING_SUFFIXES
) -> tuple[list[LandingFile], list[str]]:
    """The files of ``directory`` bronze reads, and the names of the other visible files in it
    (reported, so a file of another format is never skipped unnoticed)."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    path = jvm.org.apache.hadoop.fs.Path(directory)
    fs = path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())
    if not fs.exists(path):
        return [], []
    out, other = [], []
    for status in fs.listStatus(path):
        name = status.getPath().getName()
        if not status.isFile() or name.startswith((".", "_")):
            continue
        if name.endswith(suffixes):
            out.append(LandingFile(status.getPath().toString(), name, int(status.getLen())))
        else:
            other.append(name)
    return sorted(out, key=lambda f: f.name), sorted(other)


def read_lines(spark: SparkSession, files: Sequence[LandingFile]) -> DataFrame:
    """Read landing files as lines: ``value``, ``_source_file`` (base name, as the lister names
    it) and ``_landing_date`` (from the ``date=YYYY-MM-DD`` directory the file sits in).

    Spark reports ``file_name`` percent-encoded (a space as ``%20``, non-ASCII as UTF-8 bytes);
    it is decoded here, a literal ``+`` kept, so bronze's record of ingested files matches the
    listing and such a file is not ingested again on every run."""
    name = F.url_decode(F.replace(F.col("_metadata.file_name"), F.lit("+"), F.lit("%2B")))
    return spark.read.text([f.path for f in files]).select(
        "value",
        name.alias("_source_file"),
        F.to_date(F.regexp_extract(F.col("_metadata.file_path"), r"date=(\d{4}-\d{2}-\d{2})/", 1)).alias(
            "_landing_date"
        ),
    )


def is_delta(spark: SparkSession, path: str) -> bool:
    """True when ``path`` holds a Delta table."""
    return bool(DeltaTable.isDeltaTable(spark, path))


def read_delta(spark: SparkSession, path: str, where: str | None = None) -> DataFrame:
    """Read a Delta table, optionally filtered (partition filters prune files)."""
    df = spark.read.format("delta").load(path)
    return df.where(where) if where else df


def sql_in(column: str, values: Iterable[Any]) -> str:
    """Render ``column IN ('v1', 'v2')``; an empty set renders a predicate that is false."""
    vals = sorted({str(v) for v in values})
    if not vals:
        return "false"
    quoted = ", ".join("'" + v.replace("'", "''") + "'" for v in vals)
    return f"{column} IN ({quoted})"


def append(
    df: DataFrame,
    path: str,
    *,
    partition_by: Sequence[str] = (),
    txn_app_id: str | None = None,
    txn_version: int | None = None,
    merge_schema: bool = False,
    properties: dict[str, str] | None = None,
) -> None:
    """Append to a Delta table (created on first write).

    With ``txn_app_id``/``txn_version`` the write is an idempotent Delta write: Delta skips it
    when that application already committed this version or a later one. ``merge_schema`` lets
    new columns in ``df`` extend the table's schema. ``properties`` (``delta.*`` table
    properties) are set when this write creates the table; an existing table keeps its own.
    """
    writer = df.write.format("delta").mode("append")
    for key, value in (properties or {}).items():
        writer = writer.option(key, value)
    if merge_schema:
        writer = writer.option("mergeSchema", "true")
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    if txn_app_id is not None:
        writer = writer.option("txnAppId", txn_app_id).option("txnVersion", str(txn_version or 0))
    for attempt in range(_CREATE_RACE_RETRIES + 1):
        try:
            writer.save(path)
            return
        except Exception as exc:
            # Two writers creating the same table (e.g. quality/metrics, appended to by every
            # source of a layer at once and by the stream): the loser's first commit finds the
            # protocol or metadata set by the winner. The table exists now; appending again is
            # a plain blind append (and still idempotent with a txnAppId).
            if attempt == _CREATE_RACE_RETRIES or not any(c in str(exc) for c in _CREATE_RACE_ERRORS):
                raise


_CREATE_RACE_ERRORS = ("DELTA_PROTOCOL_CHANGED", "DELTA_METADATA_CHANGED")
_CREATE_RACE_RETRIES = 2


def replace_where(df: DataFrame, path: str, predicate: str, *, partition_by: Sequence[str] = ()) -> None:
    """Atomically replace the rows matching ``predicate`` with ``df`` (never the whole table)."""
    writer = df.write.format("delta").mode("overwrite").option("replaceWhere", predicate)
    if partition_by:
        writer = writer.partitionBy(*partition_by)
    writer.save(path)


def delete_where(spark: SparkSession, path: str, predicate: str) -> None:
    """Delete the rows matching ``predicate`` when the table exists."""
    if is_delta(spark, path):
        DeltaTable.forPath(spark, path).delete(predicate)


DELETION_VECTORS_CONF = "spark.lakehouse.deletionVectors"
"""Spark conf switch (default ``true``) for :func:`merge_target_properties`: ``false`` creates the
upsert targets without deletion vectors, for readers older than Delta 2.3 (set it through
``LAKEHOUSE_SPARK__CONF``)."""


def merge_target_properties(spark: SparkSession) -> dict[str, str]:
    """Table properties of the tables that MERGE upserts into (silver), set when they are created.

    Deletion vectors: an updated row is marked deleted in a small side file and its new version
    written with the inserts, instead of the whole Parquet file that held it being rewritten. A
    day's status updates of silver orders touch rows in every earlier day's files, which a MERGE
    without them rewrites whole each day (silver orders' share of a new day: 29 s with, 36 s
    without, bench/results/deletion_vectors.json).
    Readers apply them transparently (Delta 2.3+); OPTIMIZE Z-ORDER and ``REORG TABLE ... APPLY
    (PURGE)`` rewrite the files without the rows they mark."""
    enabled = str(spark.conf.get(DELETION_VECTORS_CONF, "true")).strip().lower() != "false"
    return {"delta.enableDeletionVectors": "true" if enabled else "false"}


def merge_latest(
    spark: SparkSession,
    updates: DataFrame,
    path: str,
    *,
    key: str,
    order_by: str,
    partition_by: str | None = None,
    evolve_schema: bool = False,
) -> None:
    """Upsert ``updates`` (one row per key) into the table at ``path`` (SCD type 1).

    A matched row is replaced only by a strictly newer one (``order_by``), so a rerun changes
    nothing. When the table is partitioned, the merge condition names the partitions present in
    the updates so Delta prunes the rest (the partition value of a key never changes: it derives
    from its creation/event time). With no updates at all the table still gets a commit
    (created empty, or a metadata-only commit), so :func:`commit_metadata` is recorded.
    """
    if not is_delta(spark, path):
        append(
            updates,
            path,
            partition_by=[partition_by] if partition_by else [],
            properties=merge_target_properties(spark),
        )
        return
    if evolve_schema:
        known = set(spark.read.format("delta").load(path).columns)
        new = [f for f in updates.schema.fields if f.name not in known]
        if new:
            cols = ", ".join(f"`{f.name}` {f.dataType.simpleString()}" for f in new)
            # Not a data commit: it must not mark any batch as applied.
            meta = spark.conf.get(_USER_METADATA, None)
            spark.conf.unset(_USER_METADATA)
            try:
                spark.sql(f"ALTER TABLE delta.`{path}` ADD COLUMNS ({cols})")
            finally:
                if meta:
                    spark.conf.set(_USER_METADATA, meta)
    cond = f"t.{key} = s.{key}"
    # One pass over the updates either way: their partitions (none means no rows), else emptiness.
    if partition_by:
        parts = [r[0] for r in updates.select(partition_by).distinct().collect()]
        cond += " AND " + sql_in(f"t.{partition_by}", parts)
        empty = not parts
    else:
        empty = updates.isEmpty()
    if empty:
        mark_applied(spark, path)
        return
    _recorded(
        spark,
        path,
        DeltaTable.forPath(spark, path)
        .alias("t")
        .merge(updates.alias("s"), cond)
        .whenMatchedUpdateAll(condition=f"s.{order_by} > t.{order_by} OR t.{order_by} IS NULL")
        .whenNotMatchedInsertAll()
        .execute(),
    )


def merge_history(spark: SparkSession, history: DataFrame, path: str, *, key: str) -> None:
    """Merge the full recomputed history of some keys (SCD type 2) into the table at ``path``.

    ``history`` holds every version of each key it names, existing ones included, with
    ``valid_from``/``valid_to``/``is_current`` recomputed. A version is matched on
    (``key``, ``valid_from``): new ones are inserted, an existing one changes only when its
    interval closed or moved (an out-of-order version arrived after it); nothing is deleted.
    Merging the same history again changes nothing. An empty ``history`` is merged too (no
    separate pass to find out): :func:`_recorded` then makes the metadata-only commit.
    """
    if not is_delta(spark, path):
        append(history, path, properties=merge_target_properties(spark))
        return
    _recorded(
        spark,
        path,
        DeltaTable.forPath(spark, path)
        .alias("t")
        .merge(history.alias("s"), f"t.{key} = s.{key} AND t.valid_from = s.valid_from")
        .whenMatchedUpdate(
            condition="NOT (t.valid_to <=> s.valid_to)", set={"valid_to": "s.valid_to", "is_current": "s.is_current"}
        )
        .whenNotMatchedInsertAll()
        .execute(),
    )


def _recorded(spark: SparkSession, path: str, merge_metrics: DataFrame) -> None:
    """Make sure a MERGE that changed no row still recorded :func:`commit_metadata`.

    On a table with deletion vectors Delta commits nothing for such a MERGE (e.g. a batch whose
    rows are all older than silver's), so its batches would stay pending forever and the
    table's last commit would be an older run's; a metadata-only commit records them."""
    row = merge_metrics.first()
    if row is None or int(row["num_affected_rows"]) != 0:
        return
    stamp = spark.conf.get(_USER_METADATA, None)
    last = DeltaTable.forPath(spark, path).history(1).select("userMetadata").first()
    if stamp and (last is None or last[0] != stamp):
        mark_applied(spark, path)


def last_commit(spark: SparkSession, path: str) -> dict[str, Any]:
    """Version, operation and operation metrics of the table's latest commit (from its commit
    file, :class:`_DeltaLogFiles`; through Delta's history on Spark Connect)."""
    if not is_delta(spark, path):
        return {"version": None, "operation": None, "metrics": {}}
    files = _log_files(spark, path)
    versions = files.versions() if files is not None else []
    info = files.commit_info(versions[-1]) if files is not None and versions else None
    if info is not None:
        metrics = info.get("operationMetrics") or {}
        return {
            "version": versions[-1],
            "operation": info.get("operation"),
            "metrics": {str(k): str(v) for k, v in metrics.items()},
        }
    row = DeltaTable.forPath(spark, path).history(1).select("version", "operation", "operationMetrics").first()
    assert row is not None
    return {
        "version": int(row["version"]),
        "operation": row["operation"],
        "metrics": dict(row["operationMetrics"] or {}),
    }


_COMMIT_FILE = re.compile(r"\d{20}\.json")


class _DeltaLogFiles:
    """A Delta table's commit files (``_delta_log/<version>.json``), read through Hadoop's file
    system in the driver: the versions present and each commit's ``commitInfo`` action.

    What ``DESCRIBE HISTORY`` returns, without a Spark query: on 2 cores such a query cost about
    0.1 s alone and 0.2 s beside a run's other tables, and a medallion run asked 16 times for the
    latest commit and 8 times for a whole history (measured in a warm run of the demo's second
    day). Needs a classic session (the JVM); see :func:`_log_files`."""

    def __init__(self, spark: SparkSession, path: str) -> None:
        jvm = spark.sparkContext._jvm
        assert jvm is not None
        self._jvm = jvm
        self._dir = jvm.org.apache.hadoop.fs.Path(f"{path.rstrip('/')}/_delta_log")
        self._fs = self._dir.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())

    def versions(self) -> list[int]:
        """The versions with a commit file, oldest first ([] when there is no log)."""
        if not self._fs.exists(self._dir):
            return []
        names = [st.getPath().getName() for st in self._fs.listStatus(self._dir)]
        return sorted(int(n[:20]) for n in names if _COMMIT_FILE.fullmatch(n))

    def commit_info(self, version: int) -> dict[str, Any] | None:
        """The ``commitInfo`` action of ``version`` (None when the commit has none)."""
        stream = self._fs.open(self._jvm.org.apache.hadoop.fs.Path(self._dir, f"{version:020d}.json"))
        try:
            text = str(self._jvm.org.apache.commons.io.IOUtils.toString(stream, "UTF-8"))
        finally:
            stream.close()
        for line in text.splitlines():
            if line.startswith('{"commitInfo"'):
                info = json.loads(line)["commitInfo"]
                return info if isinstance(info, dict) else None
        return None


def _log_files(spark: SparkSession, path: str) -> _DeltaLogFiles | None:
    """The table's log files, or None for a Spark Connect session (no JVM here: Delta's API then)."""
    try:
        spark.sparkContext  # noqa: B018 (raises on Spark Connect)
    except Exception:
        return None
    return _DeltaLogFiles(spark, path)


def log_version(spark: SparkSession, path: str) -> int | None:
    """The table's latest version: its highest commit file ``_delta_log/<version>.json`` (the
    Delta protocol's definition), from one listing of the log, None when it has no commit.
    Needs a classic session."""
    return max(_DeltaLogFiles(spark, path).versions(), default=None)


_USER_METADATA = "spark.databricks.delta.commitInfo.userMetadata"


@contextmanager
def commit_metadata(spark: SparkSession, batches: Iterable[str], **extra: Any) -> Iterator[None]:
    """Record ``batches`` (and ``extra``) in the commit info of every Delta write inside.

    Each table thereby remembers which upstream batches it has applied (see
    :func:`applied_state`), so a rerun finds nothing new and commits nothing.
    """
    payload = json.dumps({"batches": sorted(set(batches)), **extra}, sort_keys=True)
    spark.conf.set(_USER_METADATA, payload)
    try:
        yield
    finally:
        spark.conf.unset(_USER_METADATA)


def mark_applied(spark: SparkSession, path: str) -> None:
    """Make a metadata-only commit (carrying the current :func:`commit_metadata`).

    Delta writes nothing for an empty append or an empty MERGE; this records that the batches
    were applied anyway (they held no rows for this table).
    """
    stamp = spark.conf.get(_USER_METADATA, None) or "{}"
    last = str(json.loads(stamp).get("run_id", "")).replace("'", "")
    spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ('lakehouse.lastAppliedRun' = '{last}')")


class AppliedState(NamedTuple):
    """What a table's history says about its upstream batches (see :func:`applied_state`)."""

    batches: set[str]
    """Upstream batch ids recorded by :func:`commit_metadata` in any commit."""
    version: int | None
    """The table's latest version (None: no table)."""
    latest: dict[str, Any]
    """The :func:`commit_metadata` of the latest commit ({} when that commit has none, e.g. a
    RESTORE or OPTIMIZE): what the run that wrote the table's current state recorded."""


def applied_state(spark: SparkSession, path: str) -> AppliedState:
    """The upstream batch ids recorded by :func:`commit_metadata` in the table's history, its
    latest version and the latest commit's metadata, from one read of that history: a run with
    nothing to apply needs no second look at the log.

    History older than the Delta log retention is forgotten; such batches are then applied
    again, which the idempotent writes (MERGE on strictly newer rows, replaceWhere) absorb.
    """
    if not is_delta(spark, path):
        return AppliedState(set(), None, {})
    files = _log_files(spark, path)
    rows: list[tuple[int, Any]]
    if files is not None:  # the commit files themselves (:class:`_DeltaLogFiles`)
        rows = [(v, (files.commit_info(v) or {}).get("userMetadata")) for v in files.versions()]
    else:
        history = DeltaTable.forPath(spark, path).history().select("version", "userMetadata").collect()
        rows = [(int(r["version"]), r["userMetadata"]) for r in history]
    done: set[str] = set()
    decoded: dict[int, dict[str, Any]] = {}
    for version, meta in rows:
        if meta:
            try:
                found = json.loads(meta)
                done.update(found.get("batches", []))
            except (ValueError, AttributeError):
                continue
            if isinstance(found, dict):
                decoded[int(version)] = found
    latest = max((int(version) for version, _ in rows), default=None)
    return AppliedState(done, latest, decoded.get(latest, {}) if latest is not None else {})


def distinct_values(df: DataFrame, column: str) -> list[Any]:
    """Sorted distinct non-null values of ``column`` (for small sets: batch ids, dates)."""
    return sorted(r[0] for r in df.select(column).distinct().collect() if r[0] is not None)
