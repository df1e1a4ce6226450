"""Kafka over SASL_SSL, on a real broker: produce -> stream -> bronze through an authenticated
TLS listener, and each wrong setting stopping soon with an error that names it.

The broker (the same KRaft broker as the other Kafka tests) gets a second listener, SASL_SSL,
with a CA and a server certificate made at test time (lakehouse/testing/tls.py) and SCRAM users
added through the admin API. Every client of the project goes through it: the admin
(ensure_topic), the producer, the monitor (end offsets) and the Spark Kafka source of the real
streaming job (spark-submit); the password reaches the job through its environment only, and
the test scans the job's command line, its log, the tables and every error text for it.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError
from pyspark.sql import SparkSession

from lakehouse.backends.local import LocalBackend
from lakehouse.kafka import KafkaClientError, end_offsets, ensure_topic, produce_events
from lakehouse.settings import KafkaSettings, Settings
from lakehouse.streaming import read_stream_status, streaming_job
from lakehouse.testing.kafka_broker import KafkaBroker, SaslSslListener
from lakehouse.testing.tls import TlsFiles, make_tls
from tests.kafka.streaming_support import read_table, settings_for

pytestmark = [pytest.mark.kafka, pytest.mark.timeout(600)]

USER = "lakehouse-ingest"
PLAIN_USER = "lakehouse-plain"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def password() -> str:
    return "pw-" + secrets.token_urlsafe(18)


@pytest.fixture(scope="module")
def secure_broker(tls: TlsFiles, password: str) -> Iterator[KafkaBroker]:
    """A broker with a SASL_SSL listener: SCRAM-SHA-512 user USER, PLAIN user PLAIN_USER."""
    broker = KafkaBroker(sasl_ssl=SaslSslListener(tls.keystore, tls.keystore_password, {PLAIN_USER: password}))
    broker.start()
    try:
        broker.add_scram_user(USER, password, "SCRAM-SHA-512")
        yield broker
    finally:
        broker.stop()


def _secure(broker: KafkaBroker, tls: TlsFiles, password: str, **update: Any) -> KafkaSettings:
    settings = KafkaSettings(
        bootstrap_servers=broker.sasl_ssl_servers,
        topic="secure-events",
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username=USER,
        sasl_password=SecretStr(password),
        ssl_ca_location=str(tls.ca_pem),
    )
    return settings.model_copy(update=update)


@pytest.mark.spark
def test_produce_stream_and_monitor_through_sasl_ssl(
    spark: SparkSession,
    secure_broker: KafkaBroker,
    tls: TlsFiles,
    password: str,
    lake_root: Path,
) -> None:
    kafka = _secure(secure_broker, tls, password, topic="secure-events")
    assert ensure_topic(kafka, kafka.topic, partitions=3, retention_ms=-1) == "created"
    sent = produce_events(kafka, kafka.topic, count=400, malformed_share=0.05, seed=5, id_prefix="sec", record=True)
    assert sent.messages is not None
    valid = sorted(m.key for m in sent.messages if m.valid)
    bad = sorted(m.key for m in sent.messages if not m.valid)
    assert len(valid) + len(bad) == 400 and len(bad) == 20
    # the broker holds them: read back through the PLAINTEXT listener, independently
    assert sum(end_offsets(secure_broker.bootstrap_servers, kafka.topic).values()) == 400

    base = settings_for(lake_root, kafka.bootstrap_servers, kafka.topic)
    settings = Settings(storage=base.storage, streaming=base.streaming, kafka=kafka)
    job = streaming_job(settings, trigger="available-now")
    backend = LocalBackend(settings)
    command = " ".join(backend.command(job))
    assert "--kafka-security-protocol SASL_SSL" in command and f"--kafka-sasl-username {USER}" in command
    assert password not in command, "the SASL password is on the job's command line"
    lines: list[str] = []
    result = LocalBackend(settings).run(job, log=lines.append)
    metrics = {m["layer"]: m for m in result.metrics}
    assert metrics["bronze"]["rows_read"] == 400
    assert sorted(r[0] for r in read_table(spark, settings, "bronze", "_kafka_key")) == valid
    assert sorted(r[0] for r in read_table(spark, settings, "dead_letter", "_kafka_key")) == bad

    # the monitor reads the end offsets through the secure listener: all caught up
    status = read_stream_status(settings)
    assert status.total_lag == 0 and status.healthy, status.problems

    # the password is nowhere: the job's log, its metrics, the tables
    assert not [line for line in lines if password in line]
    assert password not in repr(result.metrics)
    for table in ("bronze", "dead_letter"):
        assert password not in repr(read_table(spark, settings, table))


def test_plain_mechanism_and_every_client_share_the_settings(
    secure_broker: KafkaBroker,
    tls: TlsFiles,
    password: str,
) -> None:
    kafka = _secure(
        secure_broker, tls, password, sasl_mechanism="PLAIN", sasl_username=PLAIN_USER, topic="secure-plain"
    )
    assert ensure_topic(kafka, kafka.topic, partitions=2, retention_ms=-1) == "created"
    produce_events(kafka, kafka.topic, count=50, seed=1)
    assert sum(end_offsets(kafka, kafka.topic).values()) == 50


@pytest.mark.parametrize(
    ("case", "update", "names"),
    [
        (
            "wrong password",
            {"sasl_password": SecretStr("not-the-password")},
            ["refused the SASL credentials", f"user '{USER}'", "LAKEHOUSE_KAFKA__SASL_PASSWORD"],
        ),
        (
            "unknown user",
            {"sasl_username": "nobody"},
            ["refused the SASL credentials", "LAKEHOUSE_KAFKA__SASL_USERNAME"],
        ),
        (
            "untrusted certificate",
            {"ssl_ca_location": "OTHER_CA"},
            ["is not trusted by", "LAKEHOUSE_KAFKA__SSL_CA_LOCATION"],
        ),
        (
            "no TLS, no SASL",
            {"security_protocol": "PLAINTEXT", "ssl_ca_location": None},
            ["LAKEHOUSE_KAFKA__SECURITY_PROTOCOL"],
        ),
    ],
)
def test_a_wrong_setting_stops_soon_naming_it(
    secure_broker: KafkaBroker,
    tls: TlsFiles,
    password: str,
    tmp_path: Path,
    case: str,
    update: dict[str, Any],
    names: list[str],
) -> None:
    if update.get("ssl_ca_location") == "OTHER_CA":  # a real CA, just not the broker's
        update = {"ssl_ca_location": str(make_tls(tmp_path / "other", ca_name="other-ca").ca_pem)}
    kafka = _secure(secure_broker, tls, password, **update)
    started = time.monotonic()
    with pytest.raises(KafkaClientError) as caught:
        ensure_topic(kafka, "never-created", partitions=1, retention_ms=-1, timeout=8)
    took = time.monotonic() - started
    message = str(caught.value)
    assert took < 30, (case, took)
    assert all(n in message for n in names), (case, message)
    assert password not in message and "not-the-password" not in message
    # nothing was created on the way
    assert "never-created" not in secure_broker.admin().list_topics(timeout=10).topics


def test_sasl_settings_need_their_credentials() -> None:
    with pytest.raises(ValidationError, match="LAKEHOUSE_KAFKA__SASL_USERNAME"):
        KafkaSettings(security_protocol="SASL_SSL", sasl_password=SecretStr("x"))
    with pytest.raises(ValidationError, match="LAKEHOUSE_KAFKA__SASL_PASSWORD"):
        KafkaSettings(security_protocol="SASL_SSL", sasl_username="u")
    with pytest.raises(ValidationError, match="LAKEHOUSE_KAFKA__SECURITY_PROTOCOL"):
        KafkaSettings(ssl_ca_location="/ca.pem")


@pytest.mark.spark
@pytest.mark.parametrize("case", ["wrong password", "untrusted certificate"])
def test_the_stream_with_a_wrong_setting_fails_naming_it(
    secure_broker: KafkaBroker,
    tls: TlsFiles,
    password: str,
    lake_root: Path,
    tmp_path: Path,
    case: str,
) -> None:
    """The Spark Kafka source itself (not only the admin before it): refused credentials, or a
    broker certificate that the configured CA did not sign, end the job soon; the error names
    the setting (read from the driver's exception), and a retry is not attempted (it would be
    refused the same way)."""
    from lakehouse.errors import SparkJobError, is_retryable

    kafka = _secure(secure_broker, tls, password, topic="secure-events")
    ensure_topic(kafka, kafka.topic, partitions=3, retention_ms=-1)
    if case == "wrong password":
        wrong = kafka.model_copy(update={"sasl_password": SecretStr("not-the-password")})
        expected = ["refused the SASL credentials", "LAKEHOUSE_KAFKA__SASL_PASSWORD"]
    else:  # a real CA, just not the broker's
        other = make_tls(tmp_path / "other", ca_name="other-ca").ca_pem
        wrong = kafka.model_copy(update={"ssl_ca_location": str(other)})
        expected = ["is not trusted", "LAKEHOUSE_KAFKA__SSL_CA_LOCATION"]
    base = settings_for(lake_root, wrong.bootstrap_servers, wrong.topic)
    settings = Settings(storage=base.storage, streaming=base.streaming, kafka=wrong)
    lines: list[str] = []
    started = time.monotonic()
    with pytest.raises(SparkJobError) as caught:
        LocalBackend(settings).run(streaming_job(settings, trigger="available-now"), log=lines.append)
    assert time.monotonic() - started < 180
    message = str(caught.value)
    assert all(e in message for e in expected), message
    assert not is_retryable(caught.value)
    assert not [line for line in lines if "not-the-password" in line or password in line]
