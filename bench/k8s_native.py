"""The cluster-native figures of bench/k8s.py: the stream's ingest rate and a flow-run pod's start.

Both run on the bench's own cluster of ``scripts/cluster.sh`` (bench/k8s.py starts it), which
also runs a real Kafka broker and a real ``prefect server`` on the node, and the Prefect worker
Deployment of k8s/overlays/local.

Streaming ingest (``--parts streaming``). ``BENCH_STREAM_MESSAGES`` events (default 1,000,000,
``BENCH_STREAM_PARTITIONS`` partitions, default 3) are produced once to a topic of the cluster's
broker; then the streaming job (``lakehouse.streaming.streaming_job``, availableNow trigger,
``BENCH_STREAM_MAX_OFFSETS`` records per micro-batch at most, default 250,000) catches up over
that same backlog from a fresh checkpoint and fresh tables, two ways in ABAB order,
``BENCH_STREAM_RUNS`` times each (default 2):

A. SparkApplication: ``KubernetesBackend.run()`` with the worker's identity, the driver and one
   executor pod reading the broker through the Service the worker's settings name
   (kafka/lakehouse-kafka-bootstrap:9092, the node's pod listener);
B. local: ``LocalBackend.run()``, ``spark-submit`` of the same job on the host (one JVM,
   ``local[*]``), reading the same broker through the cluster's forwarder on 127.0.0.1.

Rates come from each run's own checkpoint (as bench/streaming.py computes them): records / (end
of the last committed micro-batch - start of the first); JVM and pod start-up are not inside.
Ratio = median rate of A / median rate of B.

Flow-run pod start (``--parts flow-run``). ``medallion/daily`` is deployed with ``prefect deploy``
and run ``BENCH_FLOW_RUNS`` times (default 3, after one unmeasured warm-up run) with
``prefect deployment run``, each over one fresh day of landing files: the worker starts a Job,
its pod runs the flow, which submits the SparkApplications. Per run, on this machine's clock: the
pod's creation and its flow container's start (Kubernetes, 1 s resolution), the flow run's
Pending and Running states (Prefect, microseconds), the first SparkApplication's ``submitted`` log
line (the backend in the pod, microseconds, read back from the Prefect API) and its
creationTimestamp (1 s).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kubernetes import client  # noqa: E402

from bench.streaming import checkpoint_rates  # noqa: E402
from lakehouse.backends.kubernetes import KubernetesBackend  # noqa: E402
from lakehouse.backends.local import LocalBackend  # noqa: E402
from lakehouse.datagen import GenConfig, generate  # noqa: E402
from lakehouse.jobs import Resources, SparkJob  # noqa: E402
from lakehouse.k8s.client import SparkApplications  # noqa: E402
from lakehouse.k8s.naming import app_name, label_value  # noqa: E402
from lakehouse.k8s.render import FLOW_RUN_LABEL  # noqa: E402
from lakehouse.k8s.runinfo import RunInfo  # noqa: E402
from lakehouse.kafka import ensure_topic, produce_events  # noqa: E402
from lakehouse.settings import KafkaSettings, Settings, SparkSettings, StorageSettings, StreamingSettings  # noqa: E402
from lakehouse.streaming import bronze_checkpoint_dir, read_checkpoint, streaming_job  # noqa: E402

STREAM_MESSAGES = int(os.environ.get("BENCH_STREAM_MESSAGES", "1000000"))
STREAM_PARTITIONS = int(os.environ.get("BENCH_STREAM_PARTITIONS", "3"))
STREAM_MAX_OFFSETS = int(os.environ.get("BENCH_STREAM_MAX_OFFSETS", "250000"))
STREAM_RUNS = int(os.environ.get("BENCH_STREAM_RUNS", "2"))
STREAM_TOPIC = "bench-k8s-ingest"
STREAM_EXECUTOR = Resources(executor_cores=2, executor_memory="2g")
"""The cluster side's one executor: two task slots, as the local side's local[*] on 2 cores."""
LOCAL_DRIVER_MEMORY = "2g"
POD_BOOTSTRAP = "lakehouse-kafka-bootstrap.kafka.svc:9092"
"""The bootstrap of k8s/worker's settings: the Service in front of the node's pod listener."""

FLOW_RUNS = int(os.environ.get("BENCH_FLOW_RUNS", "3"))
FLOW_WARMUP = 1
FLOW_DAY = dt.date(2026, 1, 1)
FLOW_DATAGEN = {"events_per_day": 400, "orders_per_day": 80, "users_initial": 60}
FLOW_TIMEOUT_S = 1500
FIRST_APP_TIMEOUT_S = 600
FLOW_CONTAINER = "prefect-job"
"""The flow container of deployments/kubernetes-job-template.json (the reaper is a sidecar)."""
POD_UID = 185


def method(part: str) -> str:
    """The paragraphs of this module's docstring that describe ``part`` (streaming, flow-run)."""
    heads = {"streaming": "Streaming ingest (", "flow-run": "Flow-run pod start ("}
    text = __doc__ or ""
    start = text.index(heads[part])
    ends = [i for i in (text.find(h, start + 1) for h in heads.values()) if i > start]
    return " ".join(text[start : min(ends, default=len(text))].split())


def say(msg: str) -> None:
    print(f"[bench-k8s] {msg}", flush=True)


def _r(x: float | None, digits: int = 3) -> float | None:
    return None if x is None else round(x, digits)


def _median(values: list[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return _r(statistics.median(got)) if got else None


def _stats(values: list[float | None]) -> dict[str, Any]:
    got = [v for v in values if v is not None]
    return {
        "median": _median(values),
        "min": _r(min(got, default=None)),
        "max": _r(max(got, default=None)),
        "samples": values,
    }


def k8s_time(value: Any) -> float | None:
    """Epoch seconds of a Kubernetes timestamp (RFC 3339 string or datetime; 1 s resolution)."""
    if not value:
        return None
    if isinstance(value, dt.datetime):
        return value.timestamp()
    return dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


def _chown_tree(path: Path) -> None:
    for p in [path, *path.rglob("*")]:
        os.chown(p, POD_UID, POD_UID)


# ------------------------------------------------------------------------------------ streaming


def _stream_settings(root: str, servers: str) -> Settings:
    """The stream's settings over ``root`` and ``servers``; the rest (the cluster's image, PVC
    and identity) from the environment, as ``source <cluster dir>/env`` gives it."""
    return Settings(
        storage=StorageSettings(root=root),
        kafka=KafkaSettings(bootstrap_servers=servers, topic=STREAM_TOPIC),
        spark=SparkSettings(driver_memory=LOCAL_DRIVER_MEMORY),
        streaming=StreamingSettings(max_offsets_per_trigger=STREAM_MAX_OFFSETS, topic_partitions=STREAM_PARTITIONS),
    )


def _one_stream(
    side: str, label: str, data_dir: Path, pod_mount: str, host_bootstrap: str, admin: client.ApiClient
) -> dict[str, Any]:
    """One catch-up over the whole backlog on a fresh root; its rates from the checkpoint."""
    host_root = data_dir / "bench" / label
    shutil.rmtree(host_root, ignore_errors=True)
    host_root.mkdir(parents=True)
    host = _stream_settings(str(host_root), host_bootstrap)
    lines: list[str] = []
    started = time.monotonic()
    if side == "sparkapplication":
        _chown_tree(host_root.parent)
        settings = _stream_settings(f"{pod_mount}/bench/{label}", POD_BOOTSTRAP)
        job: SparkJob = streaming_job(settings, trigger="available-now").model_copy(
            update={"resources": STREAM_EXECUTOR}
        )
        run = RunInfo(flow_run_id=f"bench-{uuid.uuid4()}", flow_run_name="bench-k8s", task_run_name=label)
        result = KubernetesBackend(settings, run_info=lambda: run).run(job, log=lines.append)
        apps = SparkApplications(admin, settings.kubernetes.namespace)
        name = app_name(job.name, run)
        apps.delete(name)
        apps.wait_deleted(name, 180)
    else:
        job = streaming_job(host, trigger="available-now")
        result = LocalBackend(host).run(job, log=lines.append)
    wall = time.monotonic() - started
    progress = read_checkpoint(bronze_checkpoint_dir(host), STREAM_TOPIC, keep=10_000)
    rates = checkpoint_rates(progress)
    bronze = next(m for m in result.metrics if m["layer"] == "bronze")
    if not rates["records"] == STREAM_MESSAGES == bronze["rows_written"]:
        raise RuntimeError(
            f"{label}: {rates['records']} records in the checkpoint, {bronze['rows_written']} "
            f"rows in bronze, {STREAM_MESSAGES} produced"
        )
    return {
        "side": side,
        "label": label,
        "micro_batches": len(progress.batches),
        **rates,
        "rows_in_bronze": bronze["rows_written"],
        "job_wall_s_incl_startup_and_gold": _r(wall, 1),
    }


def streaming_ingest(env: dict[str, str], admin: client.ApiClient, pod_mount: str) -> dict[str, Any]:
    """Produce the backlog once, then A and B in ABAB order (see the module docstring)."""
    host_bootstrap = env["LAKEHOUSE_CLUSTER_KAFKA_BOOTSTRAP"]
    data_dir = Path(env["LAKEHOUSE_CLUSTER_DATA_DIR"])
    ensure_topic(host_bootstrap, STREAM_TOPIC, partitions=STREAM_PARTITIONS, retention_ms=-1)
    say(f"producing {STREAM_MESSAGES:,} events to {STREAM_TOPIC} ({STREAM_PARTITIONS} partitions)")
    sent = produce_events(
        host_bootstrap, STREAM_TOPIC, count=STREAM_MESSAGES, seed=1, id_prefix="ingest", on_progress=lambda s: None
    )
    runs: list[dict[str, Any]] = []
    for i in range(STREAM_RUNS):
        for side in ("sparkapplication", "local"):
            label = f"stream-r{i + 1}-{'a' if side == 'sparkapplication' else 'b'}"
            say(f"stream run {i + 1}/{STREAM_RUNS} {side} ...")
            one = _one_stream(side, label, data_dir, pod_mount, host_bootstrap, admin)
            say(
                f"    {one['ingest_rate_msgs_per_s']:,} msg/s over {one['micro_batches']} micro-batches, "
                f"wall {one['job_wall_s_incl_startup_and_gold']} s"
            )
            runs.append(one)
            shutil.rmtree(data_dir / "bench" / label, ignore_errors=True)
    a = [r for r in runs if r["side"] == "sparkapplication"]
    b = [r for r in runs if r["side"] == "local"]
    rate_a = _median([r["ingest_rate_msgs_per_s"] for r in a])
    rate_b = _median([r["ingest_rate_msgs_per_s"] for r in b])
    sus_a = _median([r["sustained_rate_msgs_per_s"] for r in a])
    sus_b = _median([r["sustained_rate_msgs_per_s"] for r in b])
    return {
        "workload": {
            "messages": STREAM_MESSAGES,
            "partitions": STREAM_PARTITIONS,
            "message_bytes_avg": round(sent.bytes / sent.sent, 1),
            "producer_rate_msgs_per_s": round(sent.rate),
            "trigger": "availableNow",
            "max_offsets_per_trigger": STREAM_MAX_OFFSETS,
            "sparkapplication": {
                "driver_cores": STREAM_EXECUTOR.driver_cores,
                "executor_instances": 1,
                "executor_cores": STREAM_EXECUTOR.executor_cores,
                "executor_memory": STREAM_EXECUTOR.executor_memory,
                "bootstrap": POD_BOOTSTRAP + " (the node's pod listener)",
            },
            "local": {
                "master": "local[*]",
                "driver_memory": LOCAL_DRIVER_MEMORY,
                "bootstrap": "the cluster's forwarder on 127.0.0.1 (socat to the node)",
            },
        },
        "order": [r["side"] for r in runs],
        "runs": runs,
        "notes": STREAM_NOTES,
        "results": {
            "ingest_rate_msgs_per_s": {
                "sparkapplication": rate_a,
                "local": rate_b,
                "ratio": _r(rate_a / rate_b) if rate_a and rate_b else None,
                "pair_ratios": [
                    _r(x["ingest_rate_msgs_per_s"] / y["ingest_rate_msgs_per_s"]) for x, y in zip(a, b, strict=True)
                ],
            },
            "sustained_rate_msgs_per_s": {
                "sparkapplication": sus_a,
                "local": sus_b,
                "ratio": _r(sus_a / sus_b) if sus_a and sus_b else None,
            },
        },
    }


STREAM_NOTES = [
    "Same job, same backlog, same Spark conf and contract; fresh checkpoint and tables each run. A: a "
    "driver pod and one executor pod (2 task slots), B: one local[*] JVM (2 task slots, the driver's "
    "threads). Both share the machine's 2 cores with the cluster's control plane, kubelet, containerd, "
    "the broker, the Prefect server and worker.",
    "The first micro-batch is where the two differ most (about 19 s vs 13 s for 250k records): on the "
    "cluster it also carries the JIT warm-up of a second JVM (the executor) and the first task "
    "shipping; sustained_rate_msgs_per_s leaves it out.",
    "Each micro-batch pays a fixed cost of about 2.5-3 s here (the 4-record last batch shows it); on "
    "an idle machine with larger batches the local job reaches about 120k msg/s (bench/streaming.py).",
    "B reads the broker through the cluster's socat forwarder on 127.0.0.1, A directly on the node's "
    "pod listener: the forwarder's copy is on B's side.",
]


# ------------------------------------------------------------------------------------ flow-run pod


def _first_app(admin: client.ApiClient, namespace: str, flow_run_id: str) -> dict[str, Any] | None:
    apps, _ = SparkApplications(admin, namespace).list(label_selector=f"{FLOW_RUN_LABEL}={label_value(flow_run_id)}")
    return min(apps, key=lambda a: a["metadata"]["creationTimestamp"]) if apps else None


def _wait(what: str, probe: Callable[[], Any], timeout: float, every: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    while not (got := probe()):
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)
    return got


def _one_flow_run(prefect: Any, cluster: Any, admin: client.ApiClient, namespace: str) -> dict[str, Any]:
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    from tests.cluster.conftest import flow_run_pods

    lake = cluster.data_dir / "lake"
    if lake.exists():
        subprocess.run(["rm", "-rf", str(lake)], check=True)
    generate(lake / "landing", GenConfig(start=FLOW_DAY, days=1, **FLOW_DATAGEN))
    _chown_tree(lake)
    flow_run_id = prefect.run("medallion/daily", start_date=str(FLOW_DAY), end_date=str(FLOW_DAY), dbt_marts=False)
    app = _wait(
        f"the first SparkApplication of flow run {flow_run_id}",
        lambda: _first_app(admin, namespace, flow_run_id),
        FIRST_APP_TIMEOUT_S,
    )
    pods = flow_run_pods(cluster, flow_run_id)
    final = prefect.wait_final(flow_run_id, FLOW_TIMEOUT_S)
    if final.state.type.value != "COMPLETED":
        raise RuntimeError(f"flow run {flow_run_id} ended {final.state.type.value}: {final.state.message}")
    with prefect.client() as c:
        states = c.read_flow_run_states(uuid.UUID(flow_run_id))
        logs = c.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[uuid.UUID(flow_run_id)])))
    first_of: dict[str, float] = {}
    for s in sorted(states, key=lambda s: s.timestamp):
        first_of.setdefault(s.type.value, s.timestamp.timestamp())
    name = app["metadata"]["name"]
    submitted = min(
        (log.timestamp.timestamp() for log in logs if log.message == f"SparkApplication {namespace}/{name} submitted"),
        default=None,
    )
    pod = min(pods, key=lambda p: p["metadata"]["creationTimestamp"])
    created = k8s_time(pod["metadata"]["creationTimestamp"])
    container_started = next(
        (
            k8s_time(
                (c.get("state") or {}).get("running", {}).get("startedAt")
                or (c.get("state") or {}).get("terminated", {}).get("startedAt")
            )
            for c in pod["status"].get("containerStatuses", [])
            if c["name"] == FLOW_CONTAINER
        ),
        None,
    )
    app_created = k8s_time(app["metadata"]["creationTimestamp"])

    def span(a: float | None, b: float | None) -> float | None:
        return _r(b - a) if a is not None and b is not None else None

    return {
        "flow_run_id": flow_run_id,
        "pod": pod["metadata"]["name"],
        "first_app": name,
        "pod_start_to_first_app_s": span(container_started, submitted),
        "pod_created_to_first_app_s": span(created, submitted),
        "pod_created_to_container_started_s": span(created, container_started),
        "container_started_to_running_s": span(container_started, first_of.get("RUNNING")),
        "running_to_first_app_s": span(first_of.get("RUNNING"), submitted),
        "scheduled_to_pending_s": span(first_of.get("SCHEDULED"), first_of.get("PENDING")),
        "pending_to_pod_created_s": span(first_of.get("PENDING"), created),
        "submitted_to_app_created_s": span(submitted, app_created),
        "flow_run_s": span(first_of.get("RUNNING"), first_of.get("COMPLETED")),
    }


def flow_run_start(
    cluster_dir: Path, env: dict[str, str], script_env: dict[str, str], admin: client.ApiClient
) -> dict[str, Any]:
    """medallion/daily through the cluster's Prefect server and worker; the pod-start figures."""
    from tests.cluster.conftest import ClusterPrefect
    from tests.fixtures.cluster import RealCluster

    cluster = RealCluster(cluster_dir, env, script_env)
    prefect = ClusterPrefect(cluster)
    prefect.deploy("daily", "medallion/daily")
    namespace = "spark-jobs"
    runs: list[dict[str, Any]] = []
    warmup: list[dict[str, Any]] = []
    for i in range(FLOW_WARMUP + FLOW_RUNS):
        is_warmup = i < FLOW_WARMUP
        say(f"flow run {'warm-up' if is_warmup else f'{i + 1 - FLOW_WARMUP}/{FLOW_RUNS}'} (medallion/daily) ...")
        one = _one_flow_run(prefect, cluster, admin, namespace)
        say(
            f"    pod start -> first SparkApplication {one['pod_start_to_first_app_s']} s, "
            f"pod created -> first app {one['pod_created_to_first_app_s']} s"
        )
        (warmup if is_warmup else runs).append(one)
    keys = [k for k in runs[0] if k.endswith("_s")]
    return {
        "workload": {
            "deployment": "medallion/daily",
            "days": 1,
            "datagen": FLOW_DATAGEN,
            "dbt_marts": False,
            "flow_container": FLOW_CONTAINER,
        },
        "runs": runs,
        "warmup_runs": warmup,
        "results": {k: _stats([r[k] for r in runs]) for k in keys},
        "notes": {
            "pod_start_to_first_app_s": "The flow container's startedAt (kubelet, 1 s resolution, truncated: "
            "reads up to 1 s high) to the backend's 'SparkApplication ... submitted' "
            "log line in the pod (microseconds): Python and Prefect start, the flow "
            "engine, the flow's steps before its first job, rendering and the create "
            "call.",
            "pod_created_to_first_app_s": "The Job's pod creationTimestamp to the same log line: adds scheduling, "
            "the sandbox, the reaper sidecar's start and the flow container's.",
            "container_started_to_running_s": "Container start to the flow run's Running state (Prefect): the "
            "interpreter, imports and the engine up to the flow's first line.",
            "running_to_first_app_s": "The flow run's Running state to the first submitted line (both "
            "microseconds): the flow's own work before its first SparkApplication.",
            "scheduled_to_pending_s": "prefect deployment run to the worker taking the run (its poll interval).",
            "pending_to_pod_created_s": "The Pending state (microseconds) to the pod's creationTimestamp, which is "
            "truncated to the second: it reads up to 1 s low, hence values below 0.",
            "submitted_to_app_created_s": "The submitted log line to the app's creationTimestamp (truncated to the "
            "second, so up to 1 s low): a check that the two clocks agree.",
            "flow_run_s": "Running to Completed: the whole medallion run (bronze, silver, gold apps).",
        },
    }
