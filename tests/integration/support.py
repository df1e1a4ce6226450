"""Helpers of the integration tests: the settings' Spark conf as a job's session sees it."""

from __future__ import annotations

OVERRIDES = {
    "spark.sql.shuffle.partitions": "7",  # the preset sizes it to the cores (at least 4)
    "spark.databricks.delta.properties.defaults.enableInCommitTimestamps": "false",  # preset: true
}
"""Settings' Spark conf for keys the preset (spark_jobs/conf.py) also sets."""


def shown_conf(lines: list[str]) -> dict[str, str]:
    """What ``spark_jobs.diagnostics --show-conf`` printed: key -> value."""
    prefix = "diagnostics: conf "
    return dict(line.removeprefix(prefix).split("=", 1) for line in lines if line.startswith(prefix))


def show_conf_args(*keys: str) -> tuple[str, ...]:
    return tuple(arg for key in keys for arg in ("--show-conf", key))
