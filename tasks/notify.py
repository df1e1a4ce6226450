"""The notification path: Prefect events for automations, plus a message where no automation sends one.

Every alert (a failed flow, an SLA breach) is a Prefect event: Prefect's own state events for
runs, ``lakehouse.sla.*`` for freshness. For a run of a deployment, the automations made by
``lakehouse blocks`` (``lakehouse-flow-run-failed``, ``lakehouse-sla-alerts``) turn those events
into one message through the notification block, server-side: a run whose process or pod was
killed is still reported. A run without a deployment (the ``lakehouse`` command, a script) has
no long-lived server to react to it, so its own hooks send the message through the block named by
``LAKEHOUSE_NOTIFICATIONS__BLOCK`` (``<block-type-slug>/<name>``, e.g. a webhook).
"""

from __future__ import annotations

from typing import Any

from prefect.blocks.core import Block
from prefect.events import emit_event
from prefect.logging import get_logger

from lakehouse.settings import get_settings

logger = get_logger("lakehouse.notify")


def in_deployment() -> bool:
    """True inside a run of a deployment: its alerts are the automations' to send."""
    from prefect.runtime import deployment

    return deployment.id is not None


def notify(
    event: str, subject: str, body: str, *, resource: str, payload: dict[str, Any], message: bool = True
) -> bool:
    """Emit ``event`` about ``resource`` (its payload carries ``subject`` and ``body`` for the
    automations) and, with ``message``, send them through the configured notification block;
    return True when a block was notified."""
    emit_event(
        event=event, resource={"prefect.resource.id": resource}, payload={**payload, "subject": subject, "body": body}
    )
    if not message:
        return False
    slug = get_settings().notifications.block
    if not slug:
        logger.warning("%s: %s (no notification block configured)", subject, body)
        return False
    block: Any = Block.load(slug)
    block.notify(body=body, subject=subject)
    return True


def notify_flow_failure(flow: Any, flow_run: Any, state: Any) -> None:
    """Flow hook (``on_failure`` / ``on_crashed``): one ``lakehouse.flow.failed`` event and one
    message per failed or crashed run that has no deployment.

    A run of a deployment sends nothing here: the automation ``lakehouse-flow-run-failed``
    reports it from Prefect's own state event, also when the process died and no hook ran. A
    subflow (e.g. ``dbt-build`` as the medallion flow's gold step) sends nothing either: the
    parent run fails with it and reports once. Never raises: a broken notification channel is
    logged, it does not mask the run's own error.
    """
    if getattr(flow_run, "parent_task_run_id", None):
        return  # a subflow: its parent flow fails with it and sends the one message
    if getattr(flow_run, "deployment_id", None):
        return  # the automation made by `lakehouse blocks` sends it
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
