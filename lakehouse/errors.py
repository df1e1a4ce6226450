"""Typed exceptions. Messages say what was expected and, where there is a choice, the valid values."""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class ExitCode(IntEnum):
    """Exit codes of the ``lakehouse`` command and of the Spark drivers (the README's table).

    The drivers' own codes 65 and 78 reach the CLI as they are: the local backend reads them
    from spark-submit, the Kubernetes backend from the operator's errorMessage, both keep them in
    :attr:`SparkJobError.exit_code`, and :func:`exit_code_of` maps them back (any other failed
    job is 1; its own code is in the message).
    """

    OK = 0
    JOB_FAILED = 1
    USAGE = 2
    STREAM_UNHEALTHY = 3
    CONTRACT_VIOLATION = 65
    SETUP = 69
    CONFIG = 78

    @property
    def meaning(self) -> str:
        return EXIT_CODE_MEANINGS[self]


EXIT_CODE_MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "success",
    ExitCode.JOB_FAILED: "a Spark job, dbt or a flow failed (the message names the job, its state, exit "
    "code and last log lines)",
    ExitCode.USAGE: "wrong command-line arguments",
    ExitCode.STREAM_UNHEALTHY: "the stream lags or stalls past the thresholds (stream-status, the stream monitor)",
    ExitCode.CONTRACT_VIOLATION: "a data-contract fail rule stopped the batch; nothing of it was committed "
    "(EX_DATAERR)",
    ExitCode.SETUP: "the environment is not set up or a service is not reachable: a missing tool, "
    "unresolved jars, the Kafka broker (EX_UNAVAILABLE)",
    ExitCode.CONFIG: "an invalid setting, contract file, spec or parameter (EX_CONFIG)",
}


CONTRACT_VIOLATION_EXIT = int(ExitCode.CONTRACT_VIOLATION)
"""Exit code of a Spark job stopped by a data-contract ``fail`` rule (EX_DATAERR)."""
CONFIG_ERROR_EXIT = int(ExitCode.CONFIG)
"""Exit code of a Spark job that found its configuration invalid (a contract file, EX_CONFIG)."""


class LakehouseError(Exception):
    """Base class of every error this project raises on purpose."""


class SetupError(LakehouseError):
    """The environment is not set up (missing tool, unresolved jars, bad version)."""


class ConfigError(LakehouseError):
    """A setting, spec or argument is invalid."""


class SparkJobError(LakehouseError):
    """A Spark job ended unsuccessfully.

    Attributes:
        job: The job name.
        metrics: Metrics the job reported before it ended (e.g. the quality results that made
            a contract rule fail).
        exit_code: Process exit code (local) or None (cluster).
        state: Final backend state (e.g. ``FAILED``, ``TIMEOUT``, ``CANCELLED``).
        log_tail: The last lines of the driver log.
    """

    permanent: bool = False
    """True when a retry would fail the same way (e.g. a cause :mod:`lakehouse.diagnosis` knows)."""

    def __init__(
        self,
        job: str,
        message: str,
        *,
        exit_code: int | None = None,
        state: str = "FAILED",
        log_tail: list[str] | None = None,
        attempts: int = 1,
        metrics: list[dict[str, Any]] | None = None,
    ) -> None:
        self.job = job
        self.metrics = list(metrics or [])
        self.exit_code = exit_code
        self.state = state
        self.log_tail = list(log_tail or [])
        self.attempts = attempts
        tail = "\n".join(f"    {line}" for line in self.log_tail)
        super().__init__(
            f"Spark job {job!r} {message} (state={state}, exit_code={exit_code}, "
            f"attempts={attempts})" + (f"\n  last log lines:\n{tail}" if tail else "")
        )


class SparkJobTimeout(SparkJobError):
    """The job ran past its timeout and was stopped."""


class StreamUnhealthyError(LakehouseError):
    """The stream lags or stalls past the thresholds in the settings."""


def is_contract_violation(exc: BaseException) -> bool:
    """True for a Spark job stopped by a data-contract ``fail`` rule (retrying cannot help)."""
    return isinstance(exc, SparkJobError) and exc.exit_code == CONTRACT_VIOLATION_EXIT


def is_config_error(exc: BaseException) -> bool:
    """True for an invalid setting or spec, here or found by the Spark driver (exit 78)."""
    return isinstance(exc, ConfigError) or (isinstance(exc, SparkJobError) and exc.exit_code == CONFIG_ERROR_EXIT)


def is_retryable(exc: BaseException) -> bool:
    """False for failures a retry would only repeat: an invalid setting, spec or contract file, a
    data-contract ``fail``, or an error marked ``permanent`` (e.g. a driver image name that
    cannot be parsed)."""
    if is_config_error(exc) or is_contract_violation(exc):
        return False
    return getattr(exc, "permanent", False) is not True


def exit_code_of(exc: BaseException) -> ExitCode:
    """The documented exit code for ``exc`` (see :class:`ExitCode`)."""
    from pydantic import ValidationError

    from lakehouse.kafka import KafkaClientError, KafkaTopicError

    if is_contract_violation(exc):
        return ExitCode.CONTRACT_VIOLATION
    if is_config_error(exc) or isinstance(exc, ValidationError | KafkaTopicError):
        return ExitCode.CONFIG
    if isinstance(exc, StreamUnhealthyError):
        return ExitCode.STREAM_UNHEALTHY
    if isinstance(exc, SetupError | KafkaClientError):
        return ExitCode.SETUP
    return ExitCode.JOB_FAILED
