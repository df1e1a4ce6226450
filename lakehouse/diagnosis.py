"""What a failed Spark job's log says to fix: the settings behind an object store or a Kafka
cluster that refused the job.

A driver that cannot reach its storage or its broker dies with a Java stack trace whose cause
sits somewhere in the middle of the output, often above the last lines a failure message keeps.
Both backends feed every driver line to a :class:`Diagnoser`; the first line that matches a
known cause becomes part of the job's error, naming the setting to check, and says whether a
retry could help (refused credentials and a missing bucket fail the same way every time).

Plain text rules, no Spark: the lines are the driver's standard output (locally) or its pod log.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from lakehouse.settings import Settings


@dataclass(frozen=True)
class Cause:
    """A known cause: what to fix, and whether retrying the job can help."""

    message: str
    permanent: bool


def _bucket(line: str) -> str:
    m = re.search(r"s3a://([^/\s`':]+)", line)
    return m.group(1) if m else "?"


def _s3_keys(line: str, settings: Settings) -> Cause:
    return Cause(
        f"the object store refused the key pair for s3a://{_bucket(line)} (HTTP 403): check "
        "LAKEHOUSE_DEPLOY__OBJECT_STORE_ACCESS_KEY_ID and "
        "LAKEHOUSE_DEPLOY__OBJECT_STORE_SECRET_ACCESS_KEY",
        permanent=True,
    )


def _s3_bucket(line: str, settings: Settings) -> Cause:
    return Cause(
        f"the bucket {_bucket(line)!r} does not exist at the object store "
        f"({settings.deploy.object_store_endpoint or 'AWS'}): create it, or check "
        f"LAKEHOUSE_STORAGE__ROOT ({settings.storage.root})",
        permanent=True,
    )


def _s3_unreachable(line: str, settings: Settings) -> Cause:
    return Cause(
        f"the object store at {settings.deploy.object_store_endpoint or 'AWS'} did not answer: "
        "check LAKEHOUSE_DEPLOY__OBJECT_STORE_ENDPOINT",
        permanent=False,
    )


def _kafka_login(line: str, settings: Settings) -> Cause:
    k = settings.kafka
    return Cause(
        f"Kafka at {k.bootstrap_servers} refused the SASL credentials of user "
        f"{k.sasl_username!r} ({k.sasl_mechanism}): check LAKEHOUSE_KAFKA__SASL_USERNAME and "
        "LAKEHOUSE_KAFKA__SASL_PASSWORD",
        permanent=True,
    )


def _kafka_tls(line: str, settings: Settings) -> Cause:
    return Cause(
        f"the TLS certificate of Kafka at {settings.kafka.bootstrap_servers} is not trusted: "
        "check LAKEHOUSE_KAFKA__SSL_CA_LOCATION",
        permanent=True,
    )


RULES: tuple[tuple[re.Pattern[str], Callable[[str, Settings], Cause]], ...] = (
    (re.compile(r"AccessDeniedException: s3a://|InvalidAccessKeyId|SignatureDoesNotMatch"), _s3_keys),
    (re.compile(r"UnknownStoreException|NoSuchBucket"), _s3_bucket),
    (re.compile(r"s3a://\S*.*SdkClientException: Unable to execute HTTP request"), _s3_unreachable),
    (re.compile(r"SaslAuthenticationException"), _kafka_login),
    (re.compile(r"SSLHandshakeException|PKIX path building failed"), _kafka_tls),
)
"""Pattern of a driver line -> its cause; the first match of a job wins."""


class Diagnoser:
    """Reads a job's driver lines; :attr:`cause` is the first known cause seen, if any."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.cause: Cause | None = None

    def feed(self, line: str) -> None:
        """Look at one driver line (cheap once a cause was found: nothing more is matched)."""
        if self.cause is not None or "Exception" not in line:
            return
        for pattern, cause in RULES:
            if pattern.search(line):
                self.cause = cause(line, self.settings)
                return

    def explain(self, message: str) -> str:
        """``message`` with the cause appended when one was seen."""
        return f"{message}: {self.cause.message}" if self.cause is not None else message
