"""The Spark operator v2 application states (``status.applicationState.state``).

Success and failure of a job come from these states only, never from a pod phase. With
``restartPolicy: Never`` (batch) the operator moves SUCCEEDING -> COMPLETED, FAILING -> FAILED and
SUBMISSION_FAILED -> FAILED; with ``Always`` (streaming) those go to PENDING_RERUN instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
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
    NEW,
    SUBMITTED,
    RUNNING,
    SUCCEEDING,
    FAILING,
    PENDING_RERUN,
    INVALIDATING,
    UNKNOWN,
    SUSPENDING,
    SUSPENDED,
    RESUMING,
    COMPLETED,
    FAILED,
    SUBMISSION_FAILED,
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


@dataclass(frozen=True)
class WebUI:
    """The Spark UI as the operator reports it (``status.driverInfo``)."""

    service: str | None
    """webUIServiceName: the UI Service (ClusterIP) the operator made for the driver."""
    port: int | None
    """webUIPort: that Service's port."""
    cluster_address: str | None
    """webUIAddress: ``<ClusterIP>:<port>``, reachable from inside the cluster only."""
    ingress: str | None
    """webUIIngressAddress: the UI Ingress URL, when the operator makes Ingresses."""


def web_ui(obj: dict[str, Any]) -> WebUI:
    """The driver's web UI fields of ``status.driverInfo`` (all None before the app runs)."""
    info = (obj.get("status") or {}).get("driverInfo") or {}
    port = info.get("webUIPort")
    return WebUI(
        service=str(info["webUIServiceName"]) if info.get("webUIServiceName") else None,
        port=int(port) if port else None,
        cluster_address=str(info["webUIAddress"]) if info.get("webUIAddress") else None,
        ingress=str(info["webUIIngressAddress"]) if info.get("webUIIngressAddress") else None,
    )


_DRIVER_EXIT = re.compile(r"driver container failed with ExitCode: (-?\d+), Reason: ")
"""The errorMessage operator v2.5.2 writes when the driver container ended non-zero
(controller.go, updateDriverState: "driver container failed with ExitCode: %d, Reason: %s")."""


def exit_code_from_error_message(message: str | None) -> int | None:
    """The driver's exit code in an errorMessage of the operator, or None when there is none."""
    found = _DRIVER_EXIT.search(message or "")
    return int(found.group(1)) if found else None
