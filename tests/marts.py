"""The gold marts as read back after a dbt build, next to the same figures recomputed from the
landing files in plain Python (tests/expected.py). Shared by the dbt tests on disk and on S3.

``relation`` names the SQL relation of a mart: its catalog table by default, or e.g. a
``delta.`<path>``` of a bucket's table when the reading session has no catalog of the build.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from tests import expected

Relation = Callable[[str], str]


def catalog(name: str) -> str:
    """The mart's table in the catalog dbt registered it in."""
    return f"gold.{name}"


def daily_revenue(spark: Any, relation: Relation = catalog) -> dict[dt.date, tuple[int, int, Decimal, Decimal]]:
    rows = spark.sql(
        "select date_day, total_orders, unique_customers, total_revenue, "
        f"avg_order_value from {relation('fct_daily_revenue')}"
    ).collect()
    return {r.date_day: (r.total_orders, r.unique_customers, r.total_revenue, r.avg_order_value) for r in rows}


def hourly_events(spark: Any, relation: Relation = catalog) -> dict[tuple[dt.datetime, str], tuple[int, Decimal]]:
    rows = spark.sql(
        "select date_format(event_hour, 'yyyy-MM-dd HH:mm:ss') as hour, event_type, "
        f"event_count, total_amount from {relation('fct_hourly_events')}"
    ).collect()
    return {(dt.datetime.fromisoformat(r.hour), r.event_type): (r.event_count, r.total_amount) for r in rows}


def dim_users(spark: Any, relation: Relation = catalog) -> dict[str, tuple[str, str, int, Decimal]]:
    rows = spark.sql(
        f"select user_id, email, country, total_orders, lifetime_revenue from {relation('dim_users')}"
    ).collect()
    return {r.user_id: (r.email, r.country, r.total_orders, r.lifetime_revenue) for r in rows}


def by_country(spark: Any, relation: Relation = catalog) -> dict[tuple[dt.date, str], tuple[int, Decimal]]:
    rows = spark.sql(
        f"select date_day, country, total_orders, total_revenue from {relation('fct_daily_revenue_by_country')}"
    ).collect()
    return {(r.date_day, r.country): (r.total_orders, r.total_revenue) for r in rows}


def snapshot(spark: Any, landing: Path, dates: list[dt.date], relation: Relation = catalog) -> dict[str, Any]:
    """``got``: the four marts as read; ``want``: the same figures from the landing files."""
    return {
        "got": {
            "daily": daily_revenue(spark, relation),
            "hourly": hourly_events(spark, relation),
            "users": dim_users(spark, relation),
            "by_country": by_country(spark, relation),
        },
        "want": {
            "daily": expected.daily_revenue(expected.latest_rows(landing, "orders", dates)),
            "hourly": expected.hourly_stats(expected.latest_rows(landing, "events", dates)),
            "users": expected.dim_users(landing, dates),
            "by_country": expected.revenue_by_country_at_order_time(landing, dates),
        },
    }
