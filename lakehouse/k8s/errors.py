"""Typed errors of the Kubernetes backend (all are LakehouseError subclasses)."""

from __future__ import annotations

from typing import Any

from lakehouse.errors import ConfigError, LakehouseError, SparkJobError, SparkJobTimeout


class KubernetesApiError(LakehouseError):
    """A Kubernetes API call failed in a way the backend does not handle itself.

    Attributes:
        status: HTTP status code (0 when the server could not be reached).
        reason: The Status reason (e.g. ``Forbidden``), or the HTTP reason.
        message: The server's message.
    """

    def __init__(self, action: str, status: int, reason: str, message: str) -> None:
        self.status = status
        self.reason = reason
        self.message = message
        super().__init__(f"{action} failed: {status} {reason}: {message}")


class KubernetesAccessError(KubernetesApiError):
    """The credentials are not allowed to do what the backend needs (401/403)."""


class SparkApplicationInvalid(ConfigError):
    """The API server refused a SparkApplication (schema validation, admission).

    Attributes:
        name: The SparkApplication name.
        causes: ``(field, message)`` pairs from the server's Status details.
        status: The server's Status object.
    """

    def __init__(self, name: str, status: dict[str, Any]) -> None:
        self.name = name
        self.status = status
        details = status.get("details") or {}
        self.causes: list[tuple[str, str]] = [
            (str(c.get("field", "")), str(c.get("message", ""))) for c in details.get("causes") or []
        ]
        lines = "\n".join(f"  - {f or '(object)'}: {m}" for f, m in self.causes)
        super().__init__(
            f"the API server refused SparkApplication {name!r} "
            f"({status.get('code', '?')} {status.get('reason', '')}): {status.get('message', '')}"
            + (f"\n{lines}" if lines else "")
        )


class SparkApplicationConflict(ConfigError):
    """A SparkApplication with the deterministic name exists with a different spec.

    Attributes:
        name: The SparkApplication name.
        existing_hash: Spec hash annotation of the existing app (None if it has none).
        wanted_hash: Spec hash of the app this job renders to.
        fields: Top-level spec fields that differ.
    """

    def __init__(
        self,
        namespace: str,
        name: str,
        existing_hash: str | None,
        wanted_hash: str,
        fields: list[str],
        origin: str,
    ) -> None:
        self.name = name
        self.existing_hash = existing_hash
        self.wanted_hash = wanted_hash
        self.fields = fields
        super().__init__(
            f"SparkApplication {namespace}/{name} already exists with a different spec: existing "
            f"spec hash {existing_hash or '(none: not created by lakehouse)'}, this job's spec "
            f"hash {wanted_hash}; differing fields: {', '.join(fields) or '(defaults only)'}. "
            f"The name is derived from {origin}, so the same attempt was submitted with another "
            "spec. Delete that app or run a new attempt (a new attempt gets a new name)."
        )


class SparkApplicationFailed(SparkJobError):
    """The SparkApplication ended unsuccessfully (FAILED, SUBMISSION_FAILED, stuck UNKNOWN...).

    Attributes:
        app: SparkApplication name.
        namespace: Its namespace.
        error_message: ``status.applicationState.errorMessage`` as the operator wrote it.
        exit_code: The driver container's exit code (from the driver pod, else from the
            operator's errorMessage), None when the driver never ran or it is unknown; 65 is a
            data-contract ``fail`` (``lakehouse.errors.is_contract_violation``).
    """

    def __init__(
        self,
        job: str,
        message: str,
        *,
        app: str,
        namespace: str,
        error_message: str | None,
        state: str,
        attempts: int,
        log_tail: list[str] | None = None,
        exit_code: int | None = None,
        metrics: list[dict[str, Any]] | None = None,
    ) -> None:
        self.app = app
        self.namespace = namespace
        self.error_message = error_message
        detail = f": {error_message}" if error_message else ""
        super().__init__(
            job,
            f"{message} (SparkApplication {namespace}/{app}){detail}",
            exit_code=exit_code,
            state=state,
            log_tail=log_tail,
            attempts=attempts,
            metrics=metrics,
        )


class SparkDriverStartFailed(SparkApplicationFailed):
    """The driver pod could not start (image not pullable, missing Secret, unschedulable...);
    the backend deleted the app.

    Attributes:
        pod: The driver pod.
        reason: The kubelet's waiting reason (``ErrImagePull``, ``ImagePullBackOff``,
            ``InvalidImageName``, ``CreateContainerConfigError``...) or ``Unschedulable``.
        pod_message: The message that came with it.
        permanent: True when waiting longer cannot help (``InvalidImageName``,
            ``ErrImageNeverPull``): failed at once and not retried by the Prefect task.
    """

    def __init__(
        self,
        job: str,
        *,
        app: str,
        namespace: str,
        pod: str,
        reason: str,
        pod_message: str | None,
        waited_s: float,
        permanent: bool,
        error_message: str | None,
        state: str,
        attempts: int,
        log_tail: list[str] | None = None,
    ) -> None:
        self.pod = pod
        self.reason = reason
        self.pod_message = pod_message
        self.permanent = permanent
        how = (
            "which cannot resolve itself"
            if permanent
            else f"for {waited_s:.0f}s (kubernetes.driver_start_timeout_seconds)"
        )
        super().__init__(
            job,
            f"could not start its driver: pod {namespace}/{pod} is {reason}"
            + (f" ({pod_message})" if pod_message else "")
            + f", {how}; the app was deleted",
            app=app,
            namespace=namespace,
            error_message=error_message,
            state=state,
            attempts=attempts,
            log_tail=log_tail,
        )


class SparkApplicationTimeout(SparkJobTimeout):
    """The SparkApplication ran past the job's timeout and was deleted.

    Attributes:
        app: SparkApplication name.
        namespace: Its namespace.
    """

    def __init__(
        self,
        job: str,
        message: str,
        *,
        app: str,
        namespace: str,
        state: str,
        attempts: int,
        log_tail: list[str] | None = None,
    ) -> None:
        self.app = app
        self.namespace = namespace
        self.error_message: str | None = None
        super().__init__(
            job,
            f"{message} (SparkApplication {namespace}/{app})",
            state=state,
            log_tail=log_tail,
            attempts=attempts,
        )
