"""Execution backends: the same SparkJob runs locally (spark-submit) or as a SparkApplication."""

from __future__ import annotations

from lakehouse.backends.base import Backend, JobResult, LogSink
from lakehouse.settings import Settings

__all__ = ["Backend", "JobResult", "LogSink", "get_backend"]


def get_backend(settings: Settings) -> Backend:
    """Return the backend chosen by ``settings.backend``."""
    if settings.backend == "local":
        if settings.spark.mode == "warm":
            from lakehouse.backends.warm import WarmBackend

            return WarmBackend(settings)
        from lakehouse.backends.local import LocalBackend

        return LocalBackend(settings)
    from lakehouse.backends.kubernetes import KubernetesBackend

    return KubernetesBackend(settings)
