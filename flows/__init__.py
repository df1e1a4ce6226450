"""Prefect flows: thin wiring of tasks."""

from lakehouse.prefect_env import apply as _apply_prefect_defaults

_apply_prefect_defaults()
