"""The SparkJob spec: the single description of a Spark job.

A SparkJob names an entrypoint module under ``spark_jobs`` and carries its arguments, Spark conf,
resources and extra jars. Backends render it: the local backend into a ``spark-submit`` command
line, the Kubernetes backend into a SparkApplication. No job is described anywhere else.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from lakehouse.errors import ConfigError
from lakehouse.settings import cpu_quantity, spark_memory

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$")
_MODULE = re.compile(r"^spark_jobs(\.[a-z_][a-z0-9_]*)+$")

METRICS_MARKER = "LAKEHOUSE_METRICS "
"""Prefix of the driver stdout line carrying a job's metrics as JSON (read from the driver log
by every backend, so metrics reach Prefect the same way locally and on a cluster)."""

C1_ONLY = ("-XX:TieredStopAtLevel=1", "-XX:ReservedCodeCacheSize=240m")
"""The JVM options of the C1-only JIT (``spark.jit=c1`` locally, ``kubernetes.jit=c1`` on a
cluster). C1 alone would also shrink the code cache from 240 MiB to 48, which a warm Spark fills
(67 MiB used in the e2e tests; a full cache failed a run with "Out of space in CodeCache for
method handle intrinsic"), so the cache keeps the default size."""


class DynamicAllocation(BaseModel):
    """Spark dynamic allocation bounds (cluster only)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_executors: int = Field(default=1, ge=0, description="Lower bound of executors.")
    max_executors: int = Field(default=4, ge=1, description="Upper bound of executors.")


class Resources(BaseModel):
    """Driver and executor sizing on a cluster (local runs size their one JVM from the settings).

    Cores are Spark's (``spark.driver.cores``, ``spark.executor.cores``: task slots); what the pods
    request from Kubernetes is separate: the ``*_core_request`` and memory fields, each defaulting
    to the ``kubernetes.*`` setting of the same name when unset.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    driver_cores: int = Field(default=1, ge=1, description="Driver cores (spark.driver.cores).")
    driver_memory: str | None = Field(
        default=None, description="Driver memory (JVM heap), e.g. 2g; default kubernetes.driver_memory."
    )
    executor_cores: int = Field(default=1, ge=1, description="Cores (task slots) per executor.")
    executor_memory: str | None = Field(
        default=None, description="Memory per executor, e.g. 4g; default kubernetes.executor_memory."
    )
    executor_instances: int = Field(default=1, ge=1, description="Executors (fixed allocation).")
    dynamic_allocation: DynamicAllocation | None = Field(
        default=None, description="Enable dynamic allocation within these bounds."
    )
    driver_core_request: str | None = Field(
        default=None, description="CPU request of the driver pod, e.g. 500m; default kubernetes.driver_core_request."
    )
    executor_core_request: str | None = Field(
        default=None, description="CPU request of each executor pod; default kubernetes.executor_core_request."
    )
    driver_memory_overhead: str | None = Field(
        default=None, description="Driver memory beyond the heap; default kubernetes.driver_memory_overhead."
    )
    executor_memory_overhead: str | None = Field(
        default=None, description="Executor memory beyond the heap; default kubernetes.executor_memory_overhead."
    )

    @field_validator("driver_memory", "executor_memory", "driver_memory_overhead", "executor_memory_overhead")
    @classmethod
    def _memory(cls, v: str | None) -> str | None:
        return None if v is None else spark_memory(v)

    @field_validator("driver_core_request", "executor_core_request")
    @classmethod
    def _cpu(cls, v: str | None) -> str | None:
        return None if v is None else cpu_quantity(v)


class SparkJob(BaseModel):
    """One Spark job, described once.

    Attributes:
        name: DNS-1123 label (lowercase, digits, '-'; at most 40 chars): the Spark app name and
            the base of the SparkApplication name.
        entrypoint: Module under ``spark_jobs`` with a ``main(argv)``, e.g. ``spark_jobs.bronze``.
        args: Command-line arguments passed to ``main``.
        conf: Spark conf for this job (wins over the tuning preset).
        resources: Driver/executor sizing.
        jars: Extra jar paths/URIs beyond the project's pinned set.
        java_options: JVM options of the job's driver (and of its executors on a cluster), after
            the backend's own (logging, class-data archive), e.g. the garbage collector.
        streaming: A long-running stream (restartPolicy Always on a cluster).
        timeout_seconds: Stop the job after this long; None uses the backend default.
        secret_env: Environment variables of credentials the job reads (names from
            :func:`lakehouse.settings.credentials`, e.g. ``LAKEHOUSE_KAFKA__SASL_PASSWORD``):
            the local backend sets them from the settings in the driver's environment, the
            Kubernetes backend makes them ``secretKeyRef``s; a value is never in the spec.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    entrypoint: str
    args: tuple[str, ...] = ()
    conf: dict[str, str] = Field(default_factory=dict)
    resources: Resources = Field(default_factory=Resources)
    jars: tuple[str, ...] = ()
    java_options: tuple[str, ...] = ()
    streaming: bool = False
    timeout_seconds: float | None = Field(default=None, gt=0)
    secret_env: tuple[str, ...] = ()

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(
                f"job name {v!r} must be a DNS-1123 label of at most 40 characters "
                "(lowercase letters, digits and '-', starting and ending alphanumeric)"
            )
        return v

    @field_validator("entrypoint")
    @classmethod
    def _entrypoint(cls, v: str) -> str:
        if not _MODULE.match(v):
            raise ValueError(f"entrypoint {v!r} must be a module under spark_jobs, e.g. spark_jobs.bronze")
        return v

    @property
    def main_file(self) -> str:
        """Entrypoint path relative to the project root, e.g. ``spark_jobs/bronze.py``."""
        return self.entrypoint.replace(".", "/") + ".py"

    def main_path(self, root: Path) -> Path:
        """Absolute entrypoint path under ``root``; fails clearly when it does not exist."""
        path = root / self.main_file
        if not path.is_file():
            raise ConfigError(f"entrypoint {self.entrypoint!r} has no file at {path}")
        return path
