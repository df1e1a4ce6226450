"""A wrong object-store setting: the job stops within seconds, its error names the setting to fix,
no key appears in its output, and (shown for the refused key) once the setting is right a rerun
lands every line once: the failed run left nothing a rerun trips over.

Each case runs the real bronze job (spark-submit, S3A) against the real S3 server; the cause is
read from the driver's own exception (lakehouse.diagnosis), whatever line of the output it is on.
"""

from __future__ import annotations

import datetime as dt
import socket
import time
import uuid
from pathlib import Path

import pytest
from pydantic import SecretStr
from pyspark.sql import SparkSession

from lakehouse.backends.local import LocalBackend
from lakehouse.datagen import GenConfig, generate
from lakehouse.errors import SparkJobError, is_retryable
from lakehouse.pipeline import layer_job
from lakehouse.settings import Settings
from lakehouse.testing.s3_server import S3Server
from tests.fixtures.s3 import new_bucket, object_store
from tests.medallion_tables import table

pytestmark = [pytest.mark.s3, pytest.mark.spark, pytest.mark.timeout(600)]

DAY = dt.date(2026, 1, 1)


def _settings(s3: S3Server, root: str, **update: object) -> Settings:
    return Settings(storage={"root": root}, deploy=object_store(s3, **update))


def _closed_port() -> str:
    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.mark.parametrize(
    ("case", "names", "retryable"),
    [
        ("wrong secret key", ["refused the key pair", "LAKEHOUSE_DEPLOY__OBJECT_STORE_SECRET_ACCESS_KEY"], False),
        ("missing bucket", ["does not exist", "LAKEHOUSE_STORAGE__ROOT"], False),
        ("unreachable endpoint", ["did not answer", "LAKEHOUSE_DEPLOY__OBJECT_STORE_ENDPOINT"], True),
    ],
)
def test_a_wrong_object_store_setting_fails_soon_naming_it_then_a_rerun_recovers(
    spark: SparkSession,
    s3_server: S3Server,
    tmp_path: Path,
    case: str,
    names: list[str],
    retryable: bool,
) -> None:
    import s3fs

    bucket = new_bucket(s3_server, spark, "bad")
    manifest = generate(
        tmp_path / "landing", GenConfig(start=DAY, days=1, events_per_day=200, orders_per_day=40, users_initial=20)
    )
    s3fs.S3FileSystem(**s3_server.storage_options()).put(
        str(tmp_path / "landing") + "/", f"{bucket}/lake/landing/", recursive=True
    )
    root = f"s3a://{bucket}/lake"
    wrong_secret = "wrong-" + uuid.uuid4().hex
    bad = {
        "wrong secret key": _settings(s3_server, root, object_store_secret_access_key=SecretStr(wrong_secret)),
        "missing bucket": _settings(s3_server, f"s3a://no-such-{bucket}/lake"),
        "unreachable endpoint": _settings(s3_server, root, object_store_endpoint=_closed_port()),
    }[case]
    job = layer_job("bronze", bad, start=DAY, end=DAY, run_id="bad")
    lines: list[str] = []
    started = time.monotonic()
    with pytest.raises(SparkJobError) as caught:
        LocalBackend(bad).run(job, log=lines.append)
    took = time.monotonic() - started
    message = str(caught.value)
    assert took < 120, (case, took)
    assert all(n in message for n in names), (case, message)
    assert is_retryable(caught.value) is retryable
    for secret in (s3_server.secret_key, wrong_secret):
        assert secret not in message and not [line for line in lines if secret in line]

    if case != "wrong secret key":  # the recovery is the same for every case: shown once
        return
    # the setting fixed, the same job lands every line of the day exactly once
    good = _settings(s3_server, root)
    LocalBackend(good).run(layer_job("bronze", good, start=DAY, end=DAY, run_id="good"), log=lambda _: None)
    for source in ("orders", "users", "events"):
        assert table(spark, root, "bronze", source).count() == manifest.total(source, "lines")
