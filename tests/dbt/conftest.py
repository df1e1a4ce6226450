"""Fixtures of the dbt tests: Prefect's test harness is the session one of tests/conftest.py."""
