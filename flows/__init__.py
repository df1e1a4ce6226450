"""Prefect flows: thin wiring of tasks. Prefect's defaults come from prefect.toml (repo root) or,
for the `lakehouse` command, from lakehouse/prefect_env.py."""
