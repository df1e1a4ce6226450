"""Typed exceptions. Messages say what was expected and, where there is a choice, the valid values."""

from __future__ import annotations

from typing import Any

CONTRACT_VIOLATION_EXIT = 65
"""Exit code of a Spark job stopped by a data-contract ``fail`` rule (EX_DATAERR)."""


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


def is_contract_violation(exc: BaseException) -> bool:
    """True for a Spark job stopped by a data-contract ``fail`` rule (retrying cannot help)."""
    return isinstance(exc, SparkJobError) and exc.exit_code == CONTRACT_VIOLATION_EXIT


def is_retryable(exc: BaseException) -> bool:
    """False for failures a retry would only repeat: an invalid setting or spec, a data-contract
    ``fail``, or an error marked ``permanent`` (e.g. a driver image name that cannot be parsed)."""
    if isinstance(exc, ConfigError) or is_contract_violation(exc):
        return False
    return getattr(exc, "permanent", False) is not True
