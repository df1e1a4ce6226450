"""The Spark operator v2 application states (``status.applicationState.state``).

Success and failure of a job come from these states only, never from a pod phase. With
``restartPolicy: Never`` (batch) the operator moves SUCCEEDING -> COMPLETED, FAILING -> FAILED and
SUBMISSION_FAILED -> FAILED; with ``Always`` (streaming) those go to PENDING_RERUN instead.
"""

from __future__ import annotations

from typing import Any, Literal

NEW = ""
SUBMITTED = "SUBMITTED"
RUNNING = "RUNNING"
COMPLETED = "COMPLETED"
FAILED = "FAILED"
SUBMISSION_FAILED = "SUBMISSION_FAILED"
PENDING_RERUN = "PENDING_RERUN"
INVALIDATING = "INVALIDATING"
SUCCEEDING = "SUCCEEDING"
FAILING = "FAILING"
SUSPENDING = "SUSPENDING"
SUSPENDED = "SUSPENDED"
RESUMING = "RESUMING"
UNKNOWN = "UNKNOWN"

ALL_STATES = (
    NEW, SUBMITTED, RUNNING, SUCCEEDING, FAILING, PENDING_RERUN, INVALIDATING, UNKNOWN,
    SUSPENDING, SUSPENDED, RESUMING, COMPLETED, FAILED, SUBMISSION_FAILED,
)
TERMINAL = frozenset({COMPLETED, FAILED})
"""States the operator never leaves (it only deletes the app after its TTL)."""

Outcome = Literal["succeeded", "failed"]


def outcome(state: str, restart_policy: str) -> Outcome | None:
    """What ``state`` means for the job: succeeded, failed, or None (not finished yet).

    SUBMISSION_FAILED is final only when the operator will not resubmit (restartPolicy Never).
    Every other state (including UNKNOWN, SUSPENDED and unrecognised ones) is "not yet": the
    backend bounds those with its own timeouts.
    """
    if state == COMPLETED:
        return "succeeded"
    if state == FAILED or (state == SUBMISSION_FAILED and restart_policy == "Never"):
        return "failed"
    return None


def display(state: str) -> str:
    """A printable state name ("" is shown as NEW)."""
    return state or "NEW"


def app_state(obj: dict[str, Any]) -> str:
    """``status.applicationState.state`` of a SparkApplication object ("" when not set)."""
    return str(((obj.get("status") or {}).get("applicationState") or {}).get("state") or "")


def error_message(obj: dict[str, Any]) -> str | None:
    """``status.applicationState.errorMessage``, or None."""
    msg = ((obj.get("status") or {}).get("applicationState") or {}).get("errorMessage")
    return str(msg) if msg else None


def driver_pod(obj: dict[str, Any]) -> str | None:
    """``status.driverInfo.podName``, or None."""
    name = ((obj.get("status") or {}).get("driverInfo") or {}).get("podName")
    return str(name) if name else None


def execution_attempts(obj: dict[str, Any]) -> int:
    """``status.executionAttempts`` (0 when not set)."""
    return int((obj.get("status") or {}).get("executionAttempts") or 0)


def submission_attempts(obj: dict[str, Any]) -> int:
    """``status.submissionAttempts`` (0 when not set)."""
    return int((obj.get("status") or {}).get("submissionAttempts") or 0)


def spark_ui(obj: dict[str, Any]) -> str | None:
    """The Spark UI address the operator reports (ingress URL first, else service address)."""
    info = (obj.get("status") or {}).get("driverInfo") or {}
    address = info.get("webUIIngressAddress") or info.get("webUIAddress")
    return str(address) if address else None
