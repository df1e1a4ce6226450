"""Publish an ``AppReport`` as a Prefect artifact (Prefect imported only when called)."""

from __future__ import annotations

import logging
import re

from lakehouse.k8s.report import AppReport

_log = logging.getLogger(__name__)


def artifact_key(report: AppReport) -> str:
    """One artifact key per app: ``spark-app-<name>`` (lowercase, digits, dashes)."""
    return re.sub(r"[^a-z0-9-]", "-", f"spark-app-{report.name}".lower())


def publish_prefect_artifact(report: AppReport) -> None:
    """Create the app's Markdown artifact when running inside a Prefect flow or task run.

    Outside a run (CLI, scripts, tests without Prefect) it does nothing.
    """
    from prefect.artifacts import create_markdown_artifact
    from prefect.context import FlowRunContext, TaskRunContext

    if FlowRunContext.get() is None and TaskRunContext.get() is None:
        return
    create_markdown_artifact(
        markdown=report.markdown(),
        key=artifact_key(report),
        description=f"SparkApplication {report.namespace}/{report.name} ({report.outcome})",
    )
