"""Thin Prefect tasks: retries, timeouts, artifacts. Logic lives in lakehouse/ and spark_jobs/."""
