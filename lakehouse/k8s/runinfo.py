"""Who submits a SparkApplication: the Prefect flow run, task run and attempt.

``RunInfo`` is plain data; ``prefect_run_info`` reads it from ``prefect.runtime`` (imported when
called, not when this module is imported). Outside a Prefect run it returns an ad-hoc identity
with a fresh id, so two ad-hoc runs never share an app name.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass


@dataclass(frozen=True)
class RunInfo:
    """Identity of one submission.

    Attributes:
        flow_run_id: Prefect flow run id (or an ad-hoc id outside Prefect).
        attempt: Attempt of the task run (Prefect's run_count, from 1).
        task_run_id: Prefect task run id, if any.
        flow_run_name: Prefect flow run name, if any.
        task_run_name: Prefect task run name, if any.
    """

    flow_run_id: str
    attempt: int = 1
    task_run_id: str | None = None
    flow_run_name: str | None = None
    task_run_name: str | None = None

    @classmethod
    def adhoc(cls) -> RunInfo:
        """A unique identity for a submission outside Prefect."""
        return cls(flow_run_id=f"adhoc-{uuid.uuid4()}")


def prefect_run_info() -> RunInfo:
    """The current Prefect flow run / task run identity, or ``RunInfo.adhoc()`` outside one."""
    try:
        from prefect.runtime import flow_run, task_run
    except ImportError:  # pragma: no cover - prefect is a dependency of the project
        return RunInfo.adhoc()
    flow_run_id = flow_run.get_id()
    if not flow_run_id:
        return RunInfo.adhoc()
    task_run_id = task_run.get_id()
    attempt = int(task_run.get_run_count() or 1) if task_run_id else 1
    return RunInfo(
        flow_run_id=str(flow_run_id),
        attempt=max(1, attempt),
        task_run_id=str(task_run_id) if task_run_id else None,
        flow_run_name=flow_run.get_name(),
        task_run_name=task_run.get_name() if task_run_id else None,
    )
