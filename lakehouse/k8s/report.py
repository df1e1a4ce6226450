"""What happened to one SparkApplication: states over time, attempts, duration, Spark UI.

The Spark UI is given as something a person can open from outside the cluster: the URL of the
``kubernetes.spark_ui_url`` template, else the operator's UI Ingress URL, else the
``kubectl port-forward`` command to the UI Service and the local URL it serves. The UI
Service's ClusterIP address (``status.driverInfo.webUIAddress``) is reachable only from inside
the cluster, so only the in-cluster address (the Service's DNS name) is kept, apart. The UI
lives as long as the driver runs.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, Field

from lakehouse.k8s import states


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class StateChange(BaseModel):
    """One entry of the timeline."""

    at: dt.datetime = Field(description="When the backend saw it (UTC).")
    state: str = Field(description="Application state (NEW for ''), or a backend event.")
    execution_attempts: int = Field(default=0, description="status.executionAttempts then.")
    error_message: str | None = Field(default=None, description="errorMessage then, if any.")


class AppReport(BaseModel):
    """The record of one SparkApplication as the backend followed it."""

    name: str = Field(description="SparkApplication name.")
    namespace: str = Field(description="Its namespace.")
    job: str = Field(description="SparkJob name.")
    outcome: str = Field(default="running", description="succeeded, failed, timeout, cancelled...")
    state: str = Field(default="NEW", description="Last application state seen.")
    reattached: bool = Field(default=False, description="An existing app was re-attached.")
    execution_attempts: int = Field(default=0, description="status.executionAttempts.")
    submission_attempts: int = Field(default=0, description="status.submissionAttempts.")
    error_message: str | None = Field(default=None, description="Last errorMessage seen.")
    spark_ui: str | None = Field(
        default=None, description="Spark UI URL to open (after spark_ui_port_forward, if set)."
    )
    spark_ui_port_forward: str | None = Field(
        default=None, description="kubectl command that makes spark_ui reachable, if needed."
    )
    spark_ui_cluster_address: str | None = Field(
        default=None,
        description="The UI from inside the cluster: the Service's DNS name and "
        "port (else the ClusterIP:port the operator reports).",
    )
    driver_pods: list[str] = Field(default_factory=list, description="Driver pods followed.")
    watch_reconnects: int = Field(default=0, description="Watch streams dropped and resumed.")
    watch_relists: int = Field(default=0, description="Re-lists after 410 Gone.")
    started_at: dt.datetime = Field(default_factory=_now, description="Submission (UTC).")
    duration_s: float = Field(default=0.0, description="Submission to end, seconds.")
    timeline: list[StateChange] = Field(default_factory=list, description="State changes.")

    def observe(self, obj: dict[str, Any], *, ui_url_template: str | None = None) -> bool:
        """Record the app's status; True when its state or attempt count changed.

        ``ui_url_template``: ``kubernetes.spark_ui_url`` ({app}, {namespace}), if set.
        """
        state = states.display(states.app_state(obj))
        attempts = states.execution_attempts(obj)
        self.submission_attempts = states.submission_attempts(obj)
        self._observe_ui(obj, ui_url_template)
        error = states.error_message(obj)
        if error:
            self.error_message = error
        pod = states.driver_pod(obj)
        if pod and pod not in self.driver_pods:
            self.driver_pods.append(pod)
        last = self.timeline[-1] if self.timeline else None
        if last is not None and last.state == state and last.execution_attempts == attempts:
            return False
        self.state, self.execution_attempts = state, attempts
        self.timeline.append(StateChange(at=_now(), state=state, execution_attempts=attempts, error_message=error))
        return True

    def _observe_ui(self, obj: dict[str, Any], template: str | None) -> None:
        ui = states.web_ui(obj)
        port = ui.port or 4040
        if ui.service:
            self.spark_ui_cluster_address = f"http://{ui.service}.{self.namespace}.svc:{port}"
        elif ui.cluster_address:
            self.spark_ui_cluster_address = ui.cluster_address
        if template:
            self.spark_ui = template.format(app=self.name, namespace=self.namespace)
        elif ui.ingress:
            self.spark_ui, self.spark_ui_port_forward = ui.ingress, None
        elif ui.service:
            self.spark_ui = f"http://127.0.0.1:{port}"
            self.spark_ui_port_forward = f"kubectl -n {self.namespace} port-forward svc/{ui.service} {port}:{port}"

    def spark_ui_text(self) -> str | None:
        """How to open the Spark UI, in one line (None until it is known)."""
        if not self.spark_ui:
            return None
        if self.spark_ui_port_forward:
            return f"`{self.spark_ui_port_forward}`, then open {self.spark_ui}"
        return self.spark_ui

    def event(self, what: str) -> None:
        """Record a backend event (e.g. DELETED by the backend) in the timeline."""
        self.timeline.append(StateChange(at=_now(), state=what, execution_attempts=self.execution_attempts))

    def markdown(self) -> str:
        """The report as Markdown (the Prefect artifact's body)."""
        rows = "\n".join(
            f"| {c.at.strftime('%H:%M:%S.%f')[:-3]} | {c.state} | {c.execution_attempts} | "
            f"{(c.error_message or '').replace('|', '/')} |"
            for c in self.timeline
        )
        ui = self.spark_ui_text() or "(not reported)"
        if self.spark_ui_cluster_address:
            ui += f" (in-cluster: {self.spark_ui_cluster_address})"
        return (
            f"### SparkApplication `{self.namespace}/{self.name}`\n\n"
            f"| | |\n|---|---|\n"
            f"| job | `{self.job}` |\n| outcome | **{self.outcome}** |\n"
            f"| final state | {self.state} |\n| execution attempts | {self.execution_attempts} |\n"
            f"| submission attempts | {self.submission_attempts} |\n"
            f"| duration | {self.duration_s:.1f} s |\n| Spark UI | {ui} |\n"
            f"| re-attached | {'yes' if self.reattached else 'no'} |\n"
            f"| driver pods | {', '.join(self.driver_pods) or '-'} |\n"
            + (f"| error | {self.error_message} |\n" if self.error_message else "")
            + "\n#### State timeline (UTC)\n\n"
            + "| at | state | attempts | error |\n|---|---|---|---|\n"
            + rows
            + "\n"
        )
