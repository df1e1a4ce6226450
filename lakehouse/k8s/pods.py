"""What the driver pod says about the driver: started yet, why not, and its exit code.

The operator's application state does not tell these apart: a driver pod that cannot pull its
image or lacks a Secret stays phase Pending, which operator v2.5.2 maps to SUBMITTED for as long
as it lasts (util.GetDriverState / DriverStateToApplicationState); and its errorMessage carries
the exit code only as text. The pod (``status.containerStatuses`` of the driver container, its
``PodScheduled`` condition) has them first-hand. Functions here take ``kubernetes`` client
``V1Pod`` objects, as ``CoreV1Api.read_namespaced_pod`` returns them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

STARTING_REASONS = frozenset({"", "ContainerCreating", "PodInitializing"})
"""Waiting reasons of a container that is on its way (anything else means it is stuck)."""

PERMANENT_REASONS = frozenset({"InvalidImageName", "ErrImageNeverPull"})
"""Waiting reasons that waiting cannot cure: the image reference does not parse, or the pull
policy is Never and the node lacks the image. ErrImagePull / ImagePullBackOff (a registry down,
a tag not pushed yet) and CreateContainerConfigError (a Secret or ConfigMap created later) can."""


@dataclass(frozen=True)
class StartProblem:
    """Why the driver container is not starting."""

    reason: str
    """The kubelet's waiting reason, or ``Unschedulable``."""
    message: str | None
    """The message that came with it (e.g. 'secret "s3" not found')."""
    permanent: bool
    """Waiting longer cannot help (``PERMANENT_REASONS``)."""


def container_status(pod: Any, container: str) -> Any | None:
    """The ``V1ContainerStatus`` of ``container`` in ``pod``, or None."""
    status = getattr(pod, "status", None)
    for cs in getattr(status, "container_statuses", None) or []:
        if cs.name == container:
            return cs
    return None


def started(pod: Any, container: str) -> bool:
    """True once ``container`` runs or ran (its log can be read)."""
    cs = container_status(pod, container)
    if cs is None:
        return False
    state, last = cs.state, cs.last_state
    return bool(
        (state is not None and (state.running is not None or state.terminated is not None))
        or (last is not None and last.terminated is not None)
    )


def exit_code(pod: Any, container: str) -> int | None:
    """``state.terminated.exitCode`` of ``container``, or None while it has not terminated."""
    cs = container_status(pod, container)
    terminated = getattr(getattr(cs, "state", None), "terminated", None)
    return None if terminated is None else int(terminated.exit_code)


def start_problem(pod: Any, container: str) -> StartProblem | None:
    """Why ``container`` of ``pod`` does not start, or None (it runs, ran, or is on its way).

    A container waiting with any reason but those of a normal start (``STARTING_REASONS``):
    ErrImagePull, ImagePullBackOff, InvalidImageName, ErrImageNeverPull,
    CreateContainerConfigError (e.g. a missing Secret of envSecretKeyRefs),
    CreateContainerError...; or a pod the scheduler cannot place (``Unschedulable``).
    """
    cs = container_status(pod, container)
    waiting = getattr(getattr(cs, "state", None), "waiting", None)
    if waiting is not None and (waiting.reason or "") not in STARTING_REASONS:
        reason = str(waiting.reason)
        return StartProblem(reason, waiting.message or None, reason in PERMANENT_REASONS)
    if cs is None:
        status = getattr(pod, "status", None)
        for cond in getattr(status, "conditions", None) or []:
            if cond.type == "PodScheduled" and cond.status == "False" and cond.reason == "Unschedulable":
                return StartProblem("Unschedulable", cond.message or None, False)
    return None


def failure(pod: Any) -> str | None:
    """The pod-level reason of a Failed pod without a container exit (e.g. ``OutOfcpu``,
    ``Evicted``) with its message, or None."""
    status = getattr(pod, "status", None)
    if status is None or status.phase != "Failed" or not status.reason:
        return None
    return f"{status.reason}: {status.message}" if status.message else str(status.reason)
