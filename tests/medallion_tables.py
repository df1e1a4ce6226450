"""The checks of a medallion run's Delta tables that every end-to-end test makes, locally and
on the cluster: each figure comes from the generator's manifest or from tests/expected.py
(plain Python over the landing files), never from the code under test."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

from lakehouse.datagen import Manifest
from tests import expected

SOURCES = ("orders", "users", "events")
KEYS = {"orders": "order_id", "users": "user_id", "events": "event_id"}


def table_path(root: Path | str, layer: str, name: str) -> str:
    """Where a table of the lakehouse at ``root`` (a local path or an s3a:// URI) lives."""
    return "/".join([str(root).rstrip("/"), "warehouse", layer, name])


def delta_versions(root: Path | str, fs: Any = None) -> dict[str, int]:
    """``<layer>.<table>``: latest committed Delta version of every table under ``root``, from
    the names of its log's commit files (``fs``, an fsspec file system, for an s3a:// root)."""
    out = {}
    if fs is None:
        for log in sorted(Path(root, "warehouse").glob("*/*/_delta_log")):
            commits = [int(p.stem) for p in log.glob("*.json") if p.stem.isdigit()]
            out[f"{log.parent.parent.name}.{log.parent.name}"] = max(commits)
        return out
    base = str(root).removeprefix("s3a://").rstrip("/") + "/warehouse"
    for log in sorted(fs.glob(f"{base}/*/*/_delta_log")):
        commits = [
            int(Path(p).stem) for p in fs.ls(log, refresh=True) if p.endswith(".json") and Path(p).stem.isdigit()
        ]
        layer, name = log.split("/")[-3:-1]
        out[f"{layer}.{name}"] = max(commits)
    return out


def table(spark: Any, root: Path | str, layer: str, name: str, version: int | None = None) -> Any:
    reader = spark.read.format("delta")
    if version is not None:
        reader = reader.option("versionAsOf", version)
    return reader.load(table_path(root, layer, name))


def check_tables(
    spark: Any,
    root: Path | str,
    manifest: Manifest,
    summary: list[dict[str, Any]],
    dates: list[dt.date],
    landing: Path | None = None,
) -> None:
    """Bronze, silver, quarantine and gold of ``root`` equal the independent figures computed
    from the landing files (``landing``, default ``root/landing``: a local copy when ``root``
    is an object store); ``summary`` is the flow's result (one row per table)."""
    from delta.tables import DeltaTable

    landing = landing if landing is not None else Path(root) / "landing"
    by_table = {f"{r['layer']}.{r['table']}": r for r in summary}
    for s in SOURCES:
        lines = manifest.total(s, "lines")
        assert table(spark, root, "bronze", s).count() == lines == by_table[f"bronze.{s}"]["rows_written"]
        silver = table(spark, root, "silver", s)
        exp = expected.latest_rows(landing, s, dates)
        assert silver.count() == len(exp) == manifest.total(s, "new_keys")
        assert silver.select(KEYS[s]).distinct().count() == len(exp)
        q: dict[str, int] = {}
        if DeltaTable.isDeltaTable(spark, table_path(root, "quarantine", s)):  # made at the first rejected row
            quarantine = table(spark, root, "quarantine", s)
            q = {r[0]: r[1] for r in quarantine.groupBy(quarantine.failed_rules[0]).count().collect()}
        assert q == expected.rejected(landing, s, dates)
        assert sum(q.values()) == manifest.total(s, "null_keys") + manifest.total(s, "malformed")
        assert by_table[f"silver.{s}"]["rows_read"] == lines
    # silver holds the latest version of each order (status updates applied)
    orders = {r.order_id: (r.status, r.amount) for r in table(spark, root, "silver", "orders").collect()}
    exp_orders = expected.latest_rows(landing, "orders", dates)
    assert orders == {
        k: (v["status"], Decimal(str(v["amount"])).quantize(Decimal("0.01"))) for k, v in exp_orders.items()
    }
    hourly = {
        (r.hour, r.event_type): (r.event_count, r.total_amount)
        for r in table(spark, root, "gold", "hourly_stats").collect()
    }
    assert hourly == expected.hourly_stats(expected.latest_rows(landing, "events", dates))
    revenue = {
        r.date_day: (r.total_orders, r.unique_customers, r.total_revenue, r.avg_order_value)
        for r in table(spark, root, "gold", "daily_revenue").collect()
    }
    assert revenue == expected.daily_revenue(exp_orders)
    by_country = table(spark, root, "gold", "daily_revenue_by_country").groupBy("date_day").sum("total_orders")
    assert {r[0]: r[1] for r in by_country.collect()} == {d: v[0] for d, v in revenue.items()}
