"""Shared fixtures. Services (Spark, Kafka, kube-apiserver) start once per session; a missing
service is a failure with a message saying how to install it, never a skip."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest_plugins = [
    "tests.fixtures.sigterm",
    "tests.fixtures.kafka",
    "tests.fixtures.s3",
    "tests.fixtures.k8s",
    "tests.fixtures.cluster",
]

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("LAKEHOUSE_SPARK__DRIVER_MEMORY", "1g")
# The medallion flow's dbt gold step is off here (it adds a dbt build to every medallion test) and
# turned on by the tests of that step (tests/dbt, and the deployment test's daily run).
os.environ.setdefault("LAKEHOUSE_PIPELINE__DBT_MARTS", "false")

# Local batch jobs run on the warm local Spark, the default (lakehouse/backends/warm.py). This
# session's servers keep their sockets in a directory of its own: `make down`, or the other
# tier's session, never stops them mid-run, and pytest_sessionfinish stops every one of them.
# Flow runs in subprocesses (the deployment tests' workers) inherit it with the environment.
WARM_DIR = tempfile.mkdtemp(prefix="lh-warm-")
os.environ["LAKEHOUSE_SPARK__WARM_DIR"] = WARM_DIR
# a server a settings variant started (a conf key, a deployment's cores) does not idle for 15 min
os.environ.setdefault("LAKEHOUSE_SPARK__WARM_IDLE_SECONDS", "300")
# The suite's drivers are short-lived and its data small: C1 alone compiles what they run for
# about a third less CPU than the default tiered JIT (bench/results/test_jit.json), which matters
# with two tiers on 2 cores. `auto` (the default) would give the stream tiered; `c1` gives it C1
# too. The in-process session of the `spark` fixture gets the same options.
os.environ.setdefault("LAKEHOUSE_SPARK__JIT", "c1")

DEMO_START = dt.date(2026, 1, 1)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Stop the warm Spark servers this session started (stop_all kills one that does not stop)."""
    from lakehouse.backends.warm import stop_all
    from lakehouse.settings import Settings

    stop_all(Settings(), timeout=30)
    shutil.rmtree(WARM_DIR, ignore_errors=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests on the real cluster run last, together: the cluster (a session fixture) then comes
    down right after them instead of idling beside the rest of the suite."""
    items.sort(key=lambda item: item.get_closest_marker("cluster") is not None)


@pytest.fixture(scope="session")
def spark() -> Iterator[object]:
    """One in-process SparkSession (local[2], Delta, the pinned jars) for the whole run."""
    from lakehouse import jars
    from lakehouse.backends.local import jit_options
    from lakehouse.settings import Settings
    from spark_jobs.session import build_session

    session = build_session(
        "lakehouse-tests",
        {
            # the S3A jars too: tests read s3a:// tables (tests/storage) in this session
            "spark.jars": ",".join(str(p) for p in jars.resolved_jars() + jars.resolved_jars(jars.S3)),
            "spark.driver.memory": "2g",
            "spark.driver.host": "127.0.0.1",
            "spark.driver.bindAddress": "127.0.0.1",
            "spark.ui.enabled": "false",
            "spark.sql.shuffle.partitions": "2",
            "spark.default.parallelism": "2",
            # the JIT of the drivers (above): this JVM runs the whole session's small queries
            "spark.driver.extraJavaOptions": " ".join(jit_options(Settings())),
        },
        master="local[2]",
    )
    yield session
    session.stop()


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One temporary Prefect server for every flow run of the test session.

    One, not one per module: Prefect's client-side services (the events worker that carries task
    run states, the log worker) are process-wide, so a second harness in the same process would
    leave them talking to the first one's server.
    """
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def lake_root(tmp_path: Path) -> Path:
    """An empty lakehouse root for one test."""
    root = tmp_path / "lake"
    root.mkdir()
    return root
