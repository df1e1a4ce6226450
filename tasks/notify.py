"""The notification path: a Prefect event for automations, plus a notification block if set.

Every alert (a failed flow, an SLA breach) becomes a Prefect event (``lakehouse.*``) that
automations can act on, and, when ``LAKEHOUSE_NOTIFICATIONS__BLOCK`` names a notification block
(``<block-type-slug>/<name>``, e.g. a webhook), a message through that block.
"""

from __future__ import annotations

from typing import Any

from prefect.blocks.core import Block
from prefect.events import emit_event
from prefect.logging import get_logger

from lakehouse.settings import get_settings

logger = get_logger("lakehouse.notify")


def notify(event: str, subject: str, body: str, *, resource: str, payload: dict[str, Any]) -> bool:
    """Emit ``event`` about ``resource`` and send ``subject``/``body`` through the configured
    notification block; return True when a block was notified."""
    emit_event(event=event, resource={"prefect.resource.id": resource}, payload=payload)
    slug = get_settings().notifications.block
    if not slug:
        logger.warning("%s: %s (no notification block configured)", subject, body)
        return False
    block: Any = Block.load(slug)
    block.notify(body=body, subject=subject)
    return True


def notify_flow_failure(flow: Any, flow_run: Any, state: Any) -> None:
    """Flow hook (``on_failure`` / ``on_crashed``): one ``lakehouse.flow.failed`` event and one
    message per failed or crashed run.

    A subflow (e.g. ``dbt-build`` as the medallion flow's gold step) sends nothing: the parent
    run fails with it and reports once. Never raises: a broken notification channel is logged, it
    does not mask the run's own error.
    """
    if getattr(flow_run, "parent_task_run_id", None):
        return  # a subflow: its parent flow fails with it and sends the one message
    kind = "crashed" if state.is_crashed() else "failed"
    name = getattr(flow_run, "name", None) or "?"
    subject = f"Flow run {flow.name}/{name} {kind}"
    body = (
        f"{flow.name} run {name} ({flow_run.id}) {kind}: {state.message or state.name}. "
        f"Parameters: {dict(flow_run.parameters or {})}"
    )
    try:
        notify(
            "lakehouse.flow.failed",
            subject,
            body,
            resource=f"prefect.flow-run.{flow_run.id}",
            payload={"flow": flow.name, "flow_run": name, "state": state.name},
        )
    except Exception:  # a hook must not hide the failure it reports
        logger.exception("could not send the notification for %s", subject)


ALERT_HOOKS: dict[str, Any] = {"on_failure": [notify_flow_failure], "on_crashed": [notify_flow_failure]}
"""``@flow(..., **ALERT_HOOKS)``: every deployed flow reports its own failure or crash once."""
