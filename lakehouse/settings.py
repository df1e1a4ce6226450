"""Project settings (pydantic-settings).

Every field reads from the environment with the ``LAKEHOUSE_`` prefix; nested models use ``__``
(e.g. ``LAKEHOUSE_SPARK__DRIVER_MEMORY=4g``). The defaults are the embedded local mode: data under
``.lakehouse/`` in the repo root, Spark in local mode through ``spark-submit``, Prefect's embedded
server. `python -m lakehouse.cli settings-doc` prints this reference as Markdown.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from lakehouse import versions


def _repo_root() -> Path:
    here = Path(__file__).resolve().parents[1]
    return here if (here / "pyproject.toml").exists() else Path.cwd()


REPO_ROOT = _repo_root()


class StorageSettings(BaseModel):
    """Where the lakehouse lives."""

    root: str = Field(
        default=str(REPO_ROOT / ".lakehouse"),
        description="Root of all data: a local path or an s3a:// URI on clusters. Landing files, "
        "Delta tables (warehouse/), checkpoints and Prefect results live below it.",
    )

    def _join(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    @property
    def landing(self) -> str:
        """Landing zone: ``<root>/landing/<source>/date=YYYY-MM-DD/*.json``."""
        return self._join("landing")

    @property
    def warehouse(self) -> str:
        """Delta tables: ``<root>/warehouse/<layer>/<table>``."""
        return self._join("warehouse")

    @property
    def checkpoints(self) -> str:
        """Streaming checkpoints: ``<root>/checkpoints/<query>``."""
        return self._join("checkpoints")

    def table(self, layer: str, name: str) -> str:
        """Path of the Delta table ``layer/name``."""
        return self._join("warehouse", layer, name)


class SparkSettings(BaseModel):
    """How Spark jobs run locally (spark-submit from the pyspark wheel)."""

    master: str = Field(default="local[*]", description="Spark master for local runs.")
    driver_memory: str = Field(default="2g", description="Driver memory for local runs (local mode: the only JVM).")
    cores: int | None = Field(
        default=None,
        description="Cores the job may use; sizes shuffle partitions (2x cores). Default: all CPUs.",
    )
    log_level: Literal["ERROR", "WARN", "INFO", "DEBUG"] = Field(
        default="WARN", description="Driver log level for Spark's own loggers."
    )
    conf: dict[str, str] = Field(
        default_factory=dict,
        description="Extra Spark conf for every job, as JSON (wins over the tuning preset).",
    )
    java_options: list[str] = Field(
        default_factory=list,
        description="Extra JVM options of every local driver (spark-submit jobs and the warm Spark), "
        'as JSON, e.g. ["-XX:+UseParallelGC"]; a job\'s own options come after them (the JIT: see '
        "LAKEHOUSE_SPARK__JIT).",
    )
    jit: Literal["auto", "c1", "tiered"] = Field(
        default="auto",
        description="The JIT of a local driver JVM (spark-submit jobs, the warm Spark, dbt's local "
        "Spark). c1: C1 only (-XX:TieredStopAtLevel=1 with the 240 MiB code cache of the default): "
        "less compile CPU for slower code, which pays on small data (measured: `make demo` 67.5 s "
        "against 85.2 s, bench/results/demo_jit.json); tiered: the JVM's default (C1, then C2 for "
        "hot code); auto: c1 while the lakehouse is small (its tables' and landing files below "
        "interpret_below_mb when the JVM starts), tiered otherwise and for the stream. A warm Spark keeps the JIT it "
        "started with: once the lakehouse has grown, the next run gets a tiered one.",
    )
    interpret_below_mb: float = Field(
        default=16.0,
        ge=0,
        description="While the lakehouse is small (its tables' files plus a run's landing input below "
        "this many MiB), Spark runs its queries interpreted, without generating and compiling Java "
        "for each new query shape, which costs more CPU than it saves on little data (measured: "
        "bench/results/demo.json, interpreted.json). Applies to the medallion jobs (on every backend: "
        "the driver counts), `show-tables` and the dbt marts on the local and warm targets; 0: always "
        "generate code.",
    )
    job_timeout_seconds: float = Field(
        default=3600.0, gt=0, description="A local job running longer than this is killed."
    )
    log_tail_lines: int = Field(default=40, ge=1, description="Driver log lines kept for the error of a failed job.")
    class_data_sharing: bool = Field(
        default=True,
        description="Start local driver JVMs from the class-data archive `make setup` builds "
        "(lakehouse/cds.py; cached per Java, Spark and jar set): seconds less per job start.",
    )
    mode: Literal["submit", "warm"] = Field(
        default="warm",
        description="How local batch jobs run: `warm` (submitted to a long-running local Spark started "
        "on first use, stopped by `make down` or when idle: lakehouse/backends/warm.py) or `submit` "
        "(one spark-submit driver per job: a process of its own for each job).",
    )
    warm_idle_seconds: float = Field(
        default=900.0, gt=0, description="The warm Spark stops itself after this long without a run."
    )
    warm_up: bool = Field(
        default=True,
        description="A new warm Spark first runs the medallion job on a little sample data in a scratch "
        "directory, so that your first run finds its code compiled; a run that starts meanwhile "
        "cancels the warm-up.",
    )
    warm_dir: str | None = Field(
        default=None,
        description="Private directory of the warm Spark servers' sockets (`make down` stops the servers "
        "found there); default: lakehouse-<uid> in the temporary directory. Keep the path short: a "
        "Unix socket path has at most about 100 characters.",
    )


class NotificationSettings(BaseModel):
    """Where alerts (failed flows, SLA breaches) go besides Prefect events."""

    block: str | None = Field(
        default=None,
        description="Prefect notification block as <block-type-slug>/<name> (e.g. a webhook): runs "
        "without a deployment send their alerts through it, and `lakehouse blocks` points the alert "
        "automations of deployed runs at it; unset: alerts are Prefect events and log warnings only.",
    )


class LineageSettings(BaseModel):
    """OpenLineage run events of the pipeline's tables and dbt models (lakehouse/lineage.py).
    The tables are Prefect assets either way."""

    transport: Literal["file", "http", "console", "none"] = Field(
        default="file",
        description="Where the events go: `file` (JSON lines, one event per line), `http` (an "
        "OpenLineage endpoint such as Marquez), `console` (the run log) or `none`.",
    )
    file: str | None = Field(
        default=None,
        description="The events file of the file transport; default: <storage.root>/lineage/openlineage.jsonl "
        "(a local root) or .lakehouse/lineage/openlineage.jsonl.",
    )
    url: str | None = Field(default=None, description="Base URL of the HTTP transport's OpenLineage endpoint.")
    endpoint: str = Field(default="api/v1/lineage", description="Path of the HTTP transport's endpoint under url.")
    api_key: SecretStr | None = Field(
        default=None, description="API key of the HTTP transport (sent as a bearer token)."
    )
    timeout_seconds: float = Field(default=5.0, gt=0, description="Timeout of one HTTP request.")
    namespace: str = Field(
        default="lakehouse",
        description="OpenLineage namespace of the jobs; the tables are named in spark://<namespace>.",
    )


class PipelineSettings(BaseModel):
    """How the medallion flow submits its work."""

    job_per_layer: bool = Field(
        default=False,
        description="Submit one Spark job per layer (separate Prefect tasks, retries and driver "
        "starts) instead of one job running every requested layer in a single driver.",
    )
    dbt_marts: bool = Field(
        default=True,
        description="Build the dbt marts (dbt/, through the dbt-build subflow) as the last part of "
        "the gold step, after the Spark gold tables. Source freshness is checked when the run "
        "covers yesterday or later, not on backfills of older dates.",
    )
    table_parallelism: int = Field(
        default=3,
        ge=1,
        description="Tables of a layer a Spark job processes side by side, each in a session of "
        "its own (3: every source, or every gold table, at once; 1: one after the other). Small "
        "batches are mostly latency, so this shortens incremental runs.",
    )


_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_CPU = re.compile(r"^(\d+(\.\d+)?|\.\d+)m?$")
_SPARK_MEMORY = re.compile(r"^\d+[kmgt]$")
RESERVED_VOLUMES = ("tmp", "spark-local-dir-")
"""Volume names the rendering uses itself (the /tmp emptyDir, Spark's local dirs: a prefix)."""
RESERVED_MOUNT_PATHS = ("/tmp", "/var/data/spark-local-dir-1")


def cpu_quantity(value: str) -> str:
    """``value`` if it is a positive Kubernetes CPU quantity (``500m``, ``0.5``, ``2``)."""
    if not _CPU.match(value) or float(value.rstrip("m")) <= 0:
        raise ValueError(f"a CPU request must look like 500m, 0.5 or 2, got {value!r}")
    return value


def spark_memory(value: str) -> str:
    """``value`` if it is a Spark memory size with a unit (``512m``, ``1g``)."""
    if not _SPARK_MEMORY.match(value):
        raise ValueError(f"memory must look like 512m or 4g, got {value!r}")
    return value


class PvcVolume(BaseModel):
    """A PersistentVolumeClaim mounted into the driver and every executor of each job."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Volume name in the pods (DNS-1123 label).")
    claim_name: str = Field(description="The PersistentVolumeClaim in the jobs namespace.")
    mount_path: str = Field(description="Absolute path the claim is mounted at.")
    read_only: bool = Field(default=False, description="Mount read-only.")
    sub_path: str | None = Field(default=None, description="Mount only this path of the volume.")

    @field_validator("name", "claim_name")
    @classmethod
    def _dns_label(cls, v: str) -> str:
        if not _DNS_LABEL.match(v):
            raise ValueError(f"{v!r} must be a DNS-1123 label (lowercase letters, digits, '-')")
        return v

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, v: str) -> str:
        if v == RESERVED_VOLUMES[0] or v.startswith(RESERVED_VOLUMES[1]):
            raise ValueError(f"volume name {v!r} is used by the backend itself (tmp, spark-local-dir-*)")
        return v

    @field_validator("mount_path")
    @classmethod
    def _mount_path(cls, v: str) -> str:
        if not v.startswith("/") or v.rstrip("/") in RESERVED_MOUNT_PATHS or v == "/":
            raise ValueError(
                f"mount_path must be an absolute path other than / and {', '.join(RESERVED_MOUNT_PATHS)}, got {v!r}"
            )
        return v


class KubernetesSettings(BaseModel):
    """The Kubernetes backend (SparkApplications through the Kubeflow Spark operator)."""

    namespace: str = Field(default="spark-jobs", description="Namespace SparkApplications run in.")
    image: str = Field(default="lakehouse-spark:latest", description="Spark image with spark_jobs/ and the jars.")
    service_account: str = Field(default="spark-driver", description="Service account of the Spark driver pods.")
    credentials_block: str | None = Field(
        default=None,
        description="Name of a prefect-kubernetes KubernetesCredentials block; else in-cluster "
        "config, else kubeconfig.",
    )
    kubeconfig_context: str | None = Field(
        default=None,
        description="kubeconfig context used when neither a credentials block nor in-cluster "
        "config applies (default: the current context).",
    )
    submitter_pod: str | None = Field(
        default=None,
        description="Name of the pod this process runs in, set by the Kubernetes work pool's job "
        "template (downward API). Batch apps are labelled with it, and the flow-run pod's reaper "
        "sidecar deletes the ones still running when the flow run's container ends in any way "
        "(python -m lakehouse.k8s.reaper).",
    )
    spark_version: str = Field(
        default=versions.SPARK_VERSION,
        description="spec.sparkVersion of every SparkApplication (must match the image).",
    )
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        default="IfNotPresent", description="Pull policy of the Spark image."
    )
    image_pull_secrets: list[str] = Field(
        default_factory=list, description="Names of image pull Secrets (references only)."
    )
    app_dir: str = Field(
        default="/opt/lakehouse",
        description="Directory inside the image holding spark_jobs/ (mainApplicationFile is "
        "local://<app_dir>/spark_jobs/<job>.py; it is also the drivers' PYTHONPATH).",
    )
    spark_conf: dict[str, str] = Field(
        default_factory=dict,
        description="Extra Spark conf for every cluster job, as JSON (wins over the tuning "
        "preset; a job's own conf wins over it).",
    )
    hadoop_conf: dict[str, str] = Field(
        default_factory=dict,
        description="spec.hadoopConf of every SparkApplication, as JSON (the S3A settings of an "
        "s3a:// root come from deploy.object_store_*). No credentials here: use env_secret_refs.",
    )
    env_secret_refs: dict[str, str] = Field(
        default_factory=dict,
        description="Environment variables of driver and executors read from Secrets, as JSON "
        "{ENV_NAME: 'secret-name:key'} (e.g. AWS_ACCESS_KEY_ID). Only references reach the "
        "manifest (envSecretKeyRefs), never values.",
    )
    time_to_live_seconds: int | None = Field(
        default=3600,
        ge=1,
        description="spec.timeToLiveSeconds of batch apps: the operator deletes a finished app "
        "this long after it terminated (None keeps it).",
    )
    run_as_user: int = Field(
        default=185, ge=1, description="UID of the Spark containers (non-root; 185 in the images)."
    )
    fs_group: int = Field(default=185, ge=1, description="fsGroup of the Spark pods.")
    local_dir_size_limit: str = Field(
        default="20Gi", description="sizeLimit of the emptyDir used as Spark's local dir."
    )
    tmp_size_limit: str = Field(default="2Gi", description="sizeLimit of the /tmp emptyDir.")
    driver_container: str = Field(
        default="spark-kubernetes-driver",
        description="Name of the driver container whose log is streamed.",
    )
    unknown_state_timeout_seconds: float = Field(
        default=300.0,
        gt=0,
        description="An app reported UNKNOWN by the operator for longer than this fails the job (and is deleted).",
    )
    watch_timeout_seconds: int = Field(
        default=60,
        ge=1,
        description="Server-side timeout of one watch request; the watch then resumes from the last resourceVersion.",
    )
    delete_timeout_seconds: float = Field(
        default=60.0,
        gt=0,
        description="How long to wait for a deleted SparkApplication to be gone (404).",
    )
    log_drain_seconds: float = Field(
        default=10.0,
        ge=0,
        description="After the app finished, how long to wait for the rest of the driver log.",
    )
    streaming_retry_interval_seconds: int = Field(
        default=10,
        ge=1,
        description="Streaming apps (restartPolicy Always): seconds between a failure and the operator's rerun.",
    )
    driver_core_request: str = Field(
        default="500m",
        description="CPU request of a driver pod (spec.driver.coreRequest, i.e. "
        "spark.kubernetes.driver.request.cores) unless the job sets one; the job's driver_cores "
        "stays spark.driver.cores. 500m: one driver and one executor leave room on a 2-CPU node.",
    )
    executor_core_request: str = Field(
        default="500m",
        description="CPU request of an executor pod (spec.executor.coreRequest, i.e. "
        "spark.kubernetes.executor.request.cores) unless the job sets one; the job's "
        "executor_cores stays spark.executor.cores (task slots).",
    )
    jit: Literal["c1", "tiered"] = Field(
        default="tiered",
        description="The JIT of the driver and executor JVMs of every SparkApplication. tiered: the "
        "JVM's default (C1, then C2 for hot code), right for real data; c1: C1 only (as "
        "LAKEHOUSE_SPARK__JIT=c1 locally): less compile CPU for slower code, which pays on small "
        "data and short jobs (the single-node test cluster of scripts/cluster.sh sets it).",
    )
    driver_memory: str = Field(
        default="1g",
        description="Driver JVM heap (spec.driver.memory) of jobs that do not set resources.driver_memory.",
    )
    executor_memory: str = Field(
        default="1g",
        description="Executor JVM heap (spec.executor.memory) of jobs that do not set resources.executor_memory.",
    )
    driver_memory_overhead: str | None = Field(
        default="512m",
        description="Driver memory beyond the heap (spec.driver.memoryOverhead: Python, off-heap) "
        "unless the job sets one; the pod requests memory + overhead. None: Spark's default "
        "(40% of the heap for Python apps, at least 384m).",
    )
    executor_memory_overhead: str | None = Field(
        default="512m",
        description="Executor memory beyond the heap (spec.executor.memoryOverhead: the Python "
        "workers) unless the job sets one. None: Spark's default.",
    )
    volumes: list[PvcVolume] = Field(
        default_factory=list,
        description="PersistentVolumeClaims mounted into the driver and every executor, as JSON "
        '[{"name": "data", "claim_name": "lake-data", "mount_path": "/data", "read_only": false}] '
        "(optional sub_path; Pod Security restricted refuses hostPath). Rendered as Spark conf "
        "spark.kubernetes.{driver,executor}.volumes.persistentVolumeClaim.<name>.*.",
    )
    spark_ui_url: str | None = Field(
        default=None,
        description="URL of a job's Spark UI for the run log and artifact, a template with "
        "{app} and {namespace} (e.g. an Ingress). Unset: the operator's UI Ingress URL if it "
        "reports one, else the kubectl port-forward command to the UI Service and "
        "http://127.0.0.1:<port>.",
    )
    driver_start_timeout_seconds: float = Field(
        default=180.0,
        gt=0,
        description="A driver container waiting this long to start (ErrImagePull, "
        "ImagePullBackOff, CreateContainerConfigError such as a missing Secret, an unschedulable "
        "pod...) fails the job with the pod's reason and deletes the app; InvalidImageName and "
        "ErrImageNeverPull fail at once (not retried).",
    )

    @field_validator("driver_core_request", "executor_core_request")
    @classmethod
    def _cpu(cls, v: str) -> str:
        return cpu_quantity(v)

    @field_validator("driver_memory", "executor_memory", "driver_memory_overhead", "executor_memory_overhead")
    @classmethod
    def _memory(cls, v: str | None) -> str | None:
        return None if v is None else spark_memory(v)

    @field_validator("spark_ui_url")
    @classmethod
    def _ui_template(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            v.format(app="app", namespace="ns")
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"spark_ui_url may use only the placeholders {{app}} and {{namespace}}, got {v!r}"
            ) from exc
        return v

    @model_validator(mode="after")
    def _distinct_volumes(self) -> KubernetesSettings:
        for attr in ("name", "mount_path"):
            values = [getattr(v, attr) for v in self.volumes]
            twice = sorted({x for x in values if values.count(x) > 1})
            if twice:
                raise ValueError(f"volumes: {attr} must be distinct, repeated: {', '.join(twice)}")
        return self

    @field_validator("env_secret_refs")
    @classmethod
    def _secret_refs(cls, refs: dict[str, str]) -> dict[str, str]:
        for env, ref in refs.items():
            name, sep, key = ref.partition(":")
            if not (sep and name and key):
                raise ValueError(f"env_secret_refs[{env!r}] must look like 'secret-name:key', got {ref!r}")
        return refs


class KafkaSettings(BaseModel):
    """Kafka for the streaming ingest, and how every client reaches it (admin, producer,
    monitor and the Spark Kafka source alike)."""

    bootstrap_servers: str = Field(default="127.0.0.1:9092", description="Kafka bootstrap servers.")
    topic: str = Field(default="events", description="Topic the events stream is read from.")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        default="PLAINTEXT",
        description="How clients talk to the brokers: PLAINTEXT, SSL (TLS), SASL_PLAINTEXT or "
        "SASL_SSL (authenticated, over TLS).",
    )
    sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = Field(
        default="SCRAM-SHA-512",
        description="SASL mechanism of the SASL_* protocols: SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN.",
    )
    sasl_username: str | None = Field(default=None, description="SASL user name (required by the SASL_* protocols).")
    sasl_password: SecretStr | None = Field(
        default=None,
        description="SASL password (required by the SASL_* protocols; never logged). Flow runs "
        "get it from the Secret block lakehouse-kafka-sasl-password (`make blocks`) or, on "
        "Kubernetes, from the Secret key kafka-sasl-password; Spark drivers as a secretKeyRef.",
    )
    ssl_ca_location: str | None = Field(
        default=None,
        description="PEM file of the CA(s) that signed the brokers' certificates (SSL and SASL_SSL); "
        "unset: the system's trust store. On Kubernetes the path must exist in the Spark pods.",
    )

    @property
    def uses_sasl(self) -> bool:
        """True for SASL_PLAINTEXT and SASL_SSL."""
        return self.security_protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        """True for SSL and SASL_SSL."""
        return self.security_protocol.endswith("SSL")

    @model_validator(mode="after")
    def _credentials(self) -> KafkaSettings:
        if self.uses_sasl and not self.sasl_username:
            raise ValueError(
                f"kafka.security_protocol {self.security_protocol} needs a user name: set "
                "LAKEHOUSE_KAFKA__SASL_USERNAME"
            )
        if self.uses_sasl and (self.sasl_password is None or not self.sasl_password.get_secret_value()):
            raise ValueError(
                f"kafka.security_protocol {self.security_protocol} needs a password: set LAKEHOUSE_KAFKA__SASL_PASSWORD"
            )
        if self.ssl_ca_location is not None and not self.uses_tls:
            raise ValueError(
                f"kafka.ssl_ca_location is set but kafka.security_protocol {self.security_protocol} "
                "uses no TLS: choose SSL or SASL_SSL (LAKEHOUSE_KAFKA__SECURITY_PROTOCOL)"
            )
        return self


class StreamingSettings(BaseModel):
    """The Kafka -> bronze Delta streaming ingest and its monitor."""

    query_name: str = Field(
        default="events_stream",
        description="Name of the stream: its checkpoint directory under storage.checkpoints "
        "(<checkpoints>/<query_name>/bronze and /gold) and the base of the Spark app name.",
    )
    bronze_table: str = Field(default="events_stream", description="Bronze Delta table (layer bronze) of valid events.")
    dead_letter_table: str = Field(
        default="events_stream_dead_letter",
        description="Dead-letter Delta table (layer quarantine): raw value, error, coordinates.",
    )
    gold_table: str = Field(
        default="events_5min",
        description="Gold Delta table (layer gold) of the windowed aggregate per event_type.",
    )
    window: str = Field(default="5 minutes", description="Tumbling window of the aggregate.")
    watermark: str = Field(
        default="10 minutes",
        description="Watermark delay on event_time: a window is appended once it is this far "
        "behind the latest event time seen; later events for it are not counted in gold (bronze "
        "keeps them, the <gold>_late table lists the windows they missed).",
    )
    starting_offsets: Literal["earliest", "latest"] = Field(
        default="earliest",
        description="Where a brand-new stream (no checkpoint yet) starts; a restart always "
        "resumes from its checkpoint.",
    )
    max_offsets_per_trigger: int | None = Field(
        default=200_000,
        ge=1,
        description="Upper bound of Kafka messages per micro-batch (spread over partitions); "
        "None reads everything available.",
    )
    min_partitions: int = Field(
        default=0,
        ge=0,
        description="Spark tasks per micro-batch at least: the Kafka source splits offset ranges "
        "so that every core gets a share (minPartitions). 0: Spark's default parallelism (the "
        "tuning preset makes it twice the cores).",
    )
    processing_time: str = Field(
        default="10 seconds",
        description="Interval of the processingTime trigger (continuous runs), e.g. '10 seconds'.",
    )
    local_trigger: Literal["available-now", "processing-time"] = Field(
        default="available-now",
        description="Trigger of local runs of the streaming flow: available-now (catch up, then "
        "stop) or processing-time for local_max_seconds.",
    )
    local_max_seconds: float = Field(
        default=300.0,
        gt=0,
        description="How long a local processing-time run lasts before the query is stopped "
        "gracefully (after its current batch).",
    )
    topic_partitions: int = Field(
        default=3, ge=1, description="Partitions of the events topic when the flow creates it."
    )
    topic_retention_ms: int = Field(
        default=7 * 24 * 3600 * 1000,
        ge=-1,
        description="retention.ms of the events topic when the flow creates it (-1: forever). "
        "Keep it longer than the longest outage the stream must recover from.",
    )
    max_lag: int = Field(
        default=100_000,
        ge=0,
        description="Monitor threshold: the monitor fails when the total lag (Kafka end offsets "
        "minus the offsets committed in the checkpoint) is above this many messages.",
    )
    max_staleness_seconds: float = Field(
        default=600.0,
        gt=0,
        description="Monitor threshold: the monitor fails when messages are waiting (lag > 0) "
        "and the last committed batch is older than this.",
    )
    spark_conf: dict[str, str] = Field(
        default_factory=lambda: {"spark.databricks.delta.snapshotPartitions": "2"},
        description="Spark conf of the streaming job, as JSON. Every exactly-once append reads "
        "the table's transactions from its snapshot; few snapshot partitions keep that cheap "
        "for the small, frequent commits of a stream.",
    )
    java_options: list[str] = Field(
        default_factory=lambda: ["-XX:+UseParallelGC"],
        description="JVM options of the streaming job's driver (and executors on a cluster), as "
        "JSON. The throughput collector: the job's heap is mostly each micro-batch's short-lived "
        "rows, which it collects with less CPU than the default G1 (measured on 2 cores: about 8% "
        "less CPU and time per micro-batch).",
    )
    rate_batches: int = Field(
        default=10,
        ge=1,
        description="Monitor: rows per second are measured over this many recent batches.",
    )


class DeploySettings(BaseModel):
    """Prefect workspace objects made by `lakehouse blocks`: blocks, work pools, automations.

    Secrets here are read from the environment once, stored only in Prefect Secret blocks and
    handed to flow runs by reference (never written into a template, manifest or log).
    """

    work_pool: str = Field(
        default="lakehouse-local",
        description="Work pool the deployments of deployments/prefect.yaml go to (stored as the "
        "Prefect variable lakehouse_work_pool): the local process pool or the Kubernetes pool.",
    )
    local_pool: str = Field(default="lakehouse-local", description="Name of the process work pool (local runs).")
    kubernetes_pool: str = Field(
        default="lakehouse-kubernetes", description="Name of the Kubernetes work pool (clusters)."
    )
    prefect_image: str = Field(
        default="lakehouse-prefect:latest",
        description="Image of the flow-run pods of the Kubernetes pool (the Dockerfile's prefect target).",
    )
    flow_namespace: str = Field(default="prefect", description="Namespace the Kubernetes pool starts flow-run Jobs in.")
    flow_service_account: str = Field(
        default="prefect-worker",
        description="ServiceAccount of the flow-run pods (k8s/base/worker-rbac.yaml: may submit "
        "SparkApplications in the jobs namespace).",
    )
    flow_cpu_request: str = Field(default="500m", description="CPU request of a flow-run pod.")
    flow_cpu_limit: str = Field(default="2", description="CPU limit of a flow-run pod.")
    flow_memory_request: str = Field(default="1Gi", description="Memory request of a flow-run pod.")
    flow_memory_limit: str = Field(default="2Gi", description="Memory limit of a flow-run pod.")
    settings_configmap: str = Field(
        default="lakehouse-settings",
        description="ConfigMap (k8s/worker) whose LAKEHOUSE_* / PREFECT_* keys flow-run pods load as environment.",
    )
    credentials_secret: str = Field(
        default="lakehouse-credentials",
        description="Kubernetes Secret flow-run pods read credentials from (keys "
        "kafka-sasl-password, object-store-access-key-id, object-store-secret-access-key; "
        "optional). Only its name reaches a manifest.",
    )
    result_storage_block: str = Field(
        default="lakehouse-results",
        description="Name of the result storage block flow runs persist results to.",
    )
    results_url: str | None = Field(
        default=None,
        description="S3-compatible result storage, e.g. s3://bucket/prefect-results (a "
        "remote-file-system block; the runtime needs s3fs). Unset: results_dir, a "
        "local-file-system block, or remote-file-system when it is a URI (an s3a:// storage root).",
    )
    object_store_endpoint: str | None = Field(
        default=None,
        description="Endpoint URL of an S3-compatible object store (SeaweedFS, MinIO, Ceph...), "
        "e.g. http://127.0.0.1:8333; unset: AWS. Used by Spark (s3a:// storage) and results.",
    )
    object_store_region: str = Field(
        default="us-east-1", description="Region of the object store (S3A's endpoint.region)."
    )
    object_store_path_style: bool | None = Field(
        default=None,
        description="Path-style requests (http://host/bucket/key), which most S3-compatible "
        "servers need; unset: on when object_store_endpoint is set, else virtual-host style.",
    )
    object_store_access_key_id: SecretStr | None = Field(
        default=None,
        description="Object-store access key id; stored as a Secret block, given to local flow "
        "runs as AWS_ACCESS_KEY_ID.",
    )
    object_store_secret_access_key: SecretStr | None = Field(
        default=None,
        description="Object-store secret key; stored as a Secret block, given to local flow runs "
        "as AWS_SECRET_ACCESS_KEY.",
    )
    kubeconfig: str | None = Field(
        default=None,
        description="kubeconfig file for the KubernetesCredentials block (with "
        "kubernetes.kubeconfig_context); unset: the block uses in-cluster config, else the "
        "default kubeconfig.",
    )
    webhook_url: SecretStr | None = Field(
        default=None,
        description="Alert webhook URL: creates the custom-webhook notification block "
        "lakehouse-alerts (JSON {subject, body}) and points the work pools' "
        "LAKEHOUSE_NOTIFICATIONS__BLOCK at it.",
    )
    missed_run_grace_seconds: int = Field(
        default=1800,
        ge=10,
        description="A scheduled run that has not started this long after it turned Late is "
        "cancelled by an automation instead of being caught up (deployments tagged no-catchup; "
        "at least 10, Prefect's floor for proactive triggers).",
    )


class Settings(BaseSettings):
    """All settings of the lakehouse project."""

    model_config = SettingsConfigDict(env_prefix="LAKEHOUSE_", env_nested_delimiter="__", extra="ignore")

    backend: Literal["local", "kubernetes"] = Field(
        default="local",
        description="Where Spark jobs run: `local` (this machine: see spark.mode) or `kubernetes` (Spark operator).",
    )
    storage: StorageSettings = Field(default_factory=StorageSettings, description="Storage layout.")
    spark: SparkSettings = Field(default_factory=SparkSettings, description="Local Spark.")
    pipeline: PipelineSettings = Field(default_factory=PipelineSettings, description="Medallion job layout.")
    notifications: NotificationSettings = Field(default_factory=NotificationSettings, description="Alert delivery.")
    kubernetes: KubernetesSettings = Field(default_factory=KubernetesSettings, description="Kubernetes backend.")
    kafka: KafkaSettings = Field(default_factory=KafkaSettings, description="Kafka.")
    streaming: StreamingSettings = Field(
        default_factory=StreamingSettings, description="Kafka streaming ingest and monitor."
    )
    lineage: LineageSettings = Field(default_factory=LineageSettings, description="OpenLineage events.")
    deploy: DeploySettings = Field(
        default_factory=DeploySettings,
        description="Prefect blocks, work pools and automations (lakehouse blocks).",
    )
    contracts_dir: str | None = Field(
        default=None,
        description="Directory of the data contracts handed to the jobs; default: the contracts/ "
        "shipped next to spark_jobs (in the repo and in the Spark image).",
    )
    results_dir: str | None = Field(
        default=None,
        description="Where Prefect persists task and flow results locally. Default: "
        "<storage.root>/prefect-results on a local root; on an object store root, .lakehouse/"
        "prefect-results of the project (results reach the bucket through the result storage "
        "block, see deploy.results_url).",
    )

    def resolved_results_dir(self) -> str:
        """Local directory for Prefect result persistence (never a URI: Prefect's local storage
        path would take ``s3a://b/x`` for the relative directory ``s3a:/b/x``)."""
        if self.results_dir and "://" not in self.results_dir:
            return self.results_dir
        if "://" not in self.storage.root or self.storage.root.startswith("file://"):
            return str(Path(self.storage.root.removeprefix("file://")) / "prefect-results")
        return str(REPO_ROOT / ".lakehouse" / "prefect-results")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process-wide settings (read once from the environment)."""
    return Settings()


@dataclass(frozen=True)
class Credential:
    """One credential: its Prefect Secret block, the environment variable processes read it
    from, its key in the Kubernetes Secret ``deploy.credentials_secret``, and its value here."""

    block: str
    env: str
    k8s_key: str
    value: SecretStr | None


def credentials(settings: Settings) -> list[Credential]:
    """Every credential the project knows, configured or not (blocks, backends and manifests
    all take them from here)."""
    d = settings.deploy
    return [
        Credential(
            "lakehouse-kafka-sasl-password",
            "LAKEHOUSE_KAFKA__SASL_PASSWORD",
            "kafka-sasl-password",
            settings.kafka.sasl_password,
        ),
        Credential(
            "lakehouse-object-store-access-key-id",
            "AWS_ACCESS_KEY_ID",
            "object-store-access-key-id",
            d.object_store_access_key_id,
        ),
        Credential(
            "lakehouse-object-store-secret-access-key",
            "AWS_SECRET_ACCESS_KEY",
            "object-store-secret-access-key",
            d.object_store_secret_access_key,
        ),
    ]
