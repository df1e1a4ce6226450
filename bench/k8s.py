"""Benchmark: the Kubernetes backend on the real single-node cluster of scripts/cluster.sh.

One medallion job (bronze, silver and gold in one driver, lakehouse.pipeline.medallion_jobs) over
a small generated landing set (2 days: 400 events, 80 orders a day, 60 users), on a fresh lake
root on the cluster's data PVC for every run, run two ways in ABAB order, BENCH_RUNS times each
(default 3, after BENCH_WARMUP unmeasured pairs, default 1); medians count:

A. SparkApplication: ``KubernetesBackend.run()`` as the Prefect worker runs it (the worker's
   ServiceAccount token, the settings of ``scripts/cluster.sh env``), the real operator
   submitting it;
B. spark-submit: the same job as plain ``spark-submit --master k8s://https://127.0.0.1:<port>
   --deploy-mode cluster`` from the host (pyspark's own spark-submit, the cluster admin's client
   certificate), built from the SparkApplication that A renders, option by option as operator
   v2.5.2 builds its own spark-submit (same image, conf, resources, env, volumes, service
   account, labels), with ``spark.kubernetes.submission.waitAppCompletion=true``. What the
   operator's mutating webhook adds to the pods (pod and container securityContext, the /tmp
   emptyDir) goes into driver and executor pod templates, as Pod Security "restricted" of the
   job namespace requires.

Figures (all from one clock, this machine's; timestamps of the Kubernetes API have 1 s
resolution, the backend's own are microseconds):

* submit -> RUNNING (A): from the create call (``AppReport.started_at``, taken just before the
  backend makes its API client and sends the create) to the backend seeing RUNNING (the report's
  timeline entry, written when the watch event is taken off the watcher's queue, in the same
  call that logs the state change);
* COMPLETED -> run() returned (A; goal < 1 s): from the backend seeing COMPLETED (that timeline
  entry) to ``run()`` returning (log drain, report hook and all). Also, coarser: from the
  operator's ``status.terminationTime`` (set when it first saw the driver pod terminated, the
  SUCCEEDING write, truncated to the second) and from the driver container's ``finishedAt``
  (for B too: to spark-submit exiting);
* wall time A / B (goal <= 1.05): ``run()`` call to return, spark-submit start to exit.

Two more parts measure what runs around the jobs on the cluster (bench/k8s_native.py): the
streaming job's ingest rate as a SparkApplication vs the same job with the local backend over the
same Kafka backlog (``streaming_ingest`` in k8s.json), and a flow-run pod's start to its first
SparkApplication, through the cluster's Prefect server and worker (``flow_run_pod_start``).
A fourth, ``jit``, runs A on the JVM's tiered JIT and on C1 only (``kubernetes.jit``), ABAB, and
compares wall and the pods' CPU (``jit`` in k8s.json). ``--parts`` picks what to measure
(default: all four); figures of the parts not measured stay as they are in the results file.

The bench starts its own cluster (``scripts/cluster.sh down`` then ``up`` in
.lakehouse/bench-cluster, network namespace lakehouse-bench, a free API port) and always runs
``down`` at the end. It needs root, as the cluster does, and refuses to start while another
cluster of scripts/cluster.sh runs on the machine (the clusters would share its kubepods
cgroups and its cores). Results: bench/results/k8s.json.

    sudo .venv/bin/python bench/k8s.py              # or: make bench-k8s
    sudo .venv/bin/python bench/k8s.py --parts streaming,flow-run
    sudo .venv/bin/python bench/k8s.py --parts jit
    sudo BENCH_RUNS=5 .venv/bin/python bench/k8s.py
    .venv/bin/python bench/k8s.py --show-command    # the spark-submit of B; no cluster
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402
from kubernetes import client, config  # noqa: E402

from bench.k8s_native import k8s_time  # noqa: E402
from lakehouse import jars, versions  # noqa: E402
from lakehouse.backends.kubernetes import KubernetesBackend  # noqa: E402
from lakehouse.datagen import GenConfig, generate  # noqa: E402
from lakehouse.jobs import SparkJob  # noqa: E402
from lakehouse.k8s.client import SparkApplications  # noqa: E402
from lakehouse.k8s.report import AppReport  # noqa: E402
from lakehouse.k8s.runinfo import RunInfo  # noqa: E402
from lakehouse.pipeline import LAYERS, medallion_jobs  # noqa: E402
from lakehouse.settings import Settings  # noqa: E402
from tests.fixtures.cluster import free_port, read_env  # noqa: E402

SCRIPT = ROOT / "scripts" / "cluster.sh"
CLUSTER_DIR = ROOT / ".lakehouse" / "bench-cluster"
NETNS = "lakehouse-bench"
LOG_DIR = ROOT / ".lakehouse" / "bench-k8s"
"""spark-submit output of every B run (kept: the cluster dir goes with ``down``)."""
UP_TIMEOUT_S = 3600  # a cold machine builds every piece first (cached by version afterwards)
DOWN_TIMEOUT_S = 300
CLEAN_TIMEOUT_S = 180

START = dt.date(2026, 1, 1)
DAYS = 2
END = START + dt.timedelta(days=DAYS - 1)
DATAGEN = {"events_per_day": 400, "orders_per_day": 80, "users_initial": 60}
POD_UID = 185
"""The Spark pods run as uid/gid 185 (kubernetes.run_as_user): they own their lake root."""

GOAL_COMPLETED_TO_RETURN_S = 1.0
GOAL_WALL_RATIO = 1.05

DRIVER_CONTAINER = "spark-kubernetes-driver"
EXECUTOR_CONTAINER = "spark-kubernetes-executor"
"""The container names the operator's pod templates use (pkg/common/spark.go, 2.5.2)."""
LOCAL_DIR_PREFIX = "spark-local-dir-"
"""Volumes Spark uses as its local dirs: the operator passes them as conf, not to the webhook."""
BENCH_LABEL = "lakehouse.io/bench"

SPARK_APP = "sparkapplication"
SPARK_SUBMIT = "spark-submit"


# ------------------------------------------------------------------------------------ cluster


@dataclass
class Cluster:
    """The bench's running cluster: what ``scripts/cluster.sh env`` exports, and admin access."""

    env: dict[str, str]
    api: client.ApiClient
    """Admin client (cleanup between runs, status reads): not what the backend uses."""

    @property
    def admin_kubeconfig(self) -> Path:
        return Path(self.env["LAKEHOUSE_CLUSTER_ADMIN_KUBECONFIG"])

    @property
    def data_dir(self) -> Path:
        """The host directory behind the PVC ``lake`` (mounted in the pods, see the settings)."""
        return Path(self.env["LAKEHOUSE_CLUSTER_DATA_DIR"])


def _other_kubelets() -> list[str]:
    """kubelets of other clusters of scripts/cluster.sh on this machine (pid and root dir)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if not argv or Path(argv[0]).name != "kubelet":
            continue
        root_dir = next((a.split("=", 1)[1] for a in argv if a.startswith("--root-dir=")), "?")
        if not root_dir.startswith(str(CLUSTER_DIR) + "/"):
            found.append(f"pid {pid} (--root-dir={root_dir})")
    return found


def _script(command: str, env: dict[str, str], timeout: float, *, detached: bool = False) -> int:
    """``scripts/cluster.sh <command>``, its output passed through; the exit code. ``detached``:
    in a session of its own, so a Ctrl-C at the terminal does not reach it."""
    try:
        return subprocess.run(
            [str(SCRIPT), command], env=env, timeout=timeout, check=False, start_new_session=detached
        ).returncode
    except subprocess.TimeoutExpired:
        print(f"scripts/cluster.sh {command} did not finish within {timeout:.0f}s", file=sys.stderr)
        return 124


def _log_tails() -> str:
    out = ""
    for log in sorted((CLUSTER_DIR / "logs").glob("*.log")):
        tail = log.read_text(errors="replace").splitlines()[-15:]
        out += f"\n--- {log.name}\n" + "\n".join(tail)
    return out


@contextlib.contextmanager
def bench_cluster() -> Iterator[Cluster]:
    """``down`` (what an interrupted earlier bench left), ``up``, the cluster, then always ``down``
    (also on Ctrl-C and SIGTERM)."""
    if os.geteuid() != 0:
        raise SystemExit(
            "the bench starts a real cluster, which needs root (network and mount namespaces, cgroups): run it as root"
        )
    others = _other_kubelets()
    if others:
        raise SystemExit(
            "another cluster of scripts/cluster.sh runs on this machine (kubelet "
            + ", ".join(others)
            + "); the clusters would share the kubepods cgroups "
            "and the cores: stop it first (scripts/cluster.sh down with its "
            "LAKEHOUSE_CLUSTER_DIR and LAKEHOUSE_CLUSTER_NETNS)"
        )
    script_env = {
        **os.environ,
        "LAKEHOUSE_CLUSTER_DIR": str(CLUSTER_DIR),
        "LAKEHOUSE_CLUSTER_NETNS": NETNS,
        "LAKEHOUSE_CLUSTER_API_PORT": str(free_port()),
    }

    def _interrupted(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, _interrupted)
    api: client.ApiClient | None = None
    try:
        _script("down", script_env, DOWN_TIMEOUT_S)
        t0 = time.monotonic()
        if _script("up", script_env, UP_TIMEOUT_S) != 0:
            raise SystemExit(f"scripts/cluster.sh up failed{_log_tails()}")
        print(f"cluster up in {time.monotonic() - t0:.0f}s", flush=True)
        env = read_env(CLUSTER_DIR / "env")
        api = config.new_client_from_config(  # type: ignore[no-untyped-call]
            str(env["LAKEHOUSE_CLUSTER_ADMIN_KUBECONFIG"]), client_configuration=client.Configuration()
        )
        yield Cluster(env, api)
    finally:
        if api is not None:
            api.close()  # type: ignore[no-untyped-call]
        # down runs to its end: Ctrl-C and SIGTERM wait until it is done
        previous_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("stopping the cluster (scripts/cluster.sh down) ...", flush=True)
        rc = _script("down", script_env, DOWN_TIMEOUT_S, detached=True)
        signal.signal(signal.SIGINT, previous_int)
        signal.signal(signal.SIGTERM, previous)
        if rc != 0:
            print(
                f"WARNING: scripts/cluster.sh down exited {rc}: run it again with "
                f"LAKEHOUSE_CLUSTER_DIR={CLUSTER_DIR} LAKEHOUSE_CLUSTER_NETNS={NETNS}",
                file=sys.stderr,
            )


def _wait_namespace_empty(cluster: Cluster, namespace: str) -> None:
    """Wait until the job namespace has no pod left (the next run starts on an idle node)."""
    core = client.CoreV1Api(cluster.api)
    deadline = time.monotonic() + CLEAN_TIMEOUT_S
    while pods := core.list_namespaced_pod(namespace).items:
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"pods still in {namespace} after {CLEAN_TIMEOUT_S}s: "
                + ", ".join(str(getattr(p.metadata, "name", "?")) for p in pods)
            )
        time.sleep(1)


# ------------------------------------------------------------------------------------ workload


def _chown_for_pods(path: Path) -> None:
    for p in [path, *path.rglob("*")]:
        os.chown(p, POD_UID, POD_UID)


def _settings(cluster: Cluster, pod_root: str) -> Settings:
    """The settings of one run: the cluster's env (as ``source <cluster dir>/env``), its lake
    root, and the medallion job as one job (not one per layer)."""
    os.environ.update(cluster.env)
    os.environ["LAKEHOUSE_STORAGE__ROOT"] = pod_root
    os.environ["LAKEHOUSE_PIPELINE__JOB_PER_LAYER"] = "false"
    return Settings()


def _mount_path(settings: Settings) -> str:
    volumes = settings.kubernetes.volumes
    if len(volumes) != 1:
        raise SystemExit(f"expected the one data PVC of the cluster env, got {volumes}")
    return volumes[0].mount_path.rstrip("/")


@dataclass
class Workload:
    """One run's job on its own fresh lake root (host path and the same in the pods)."""

    label: str
    host_root: Path
    settings: Settings
    job: SparkJob
    run: RunInfo
    landing_lines: int


def _workload(cluster: Cluster, label: str) -> Workload:
    """Generate the landing set on a fresh lake root of the data PVC; the medallion job over it."""
    probe = _settings(cluster, "/")
    host_root = cluster.data_dir / "bench" / label
    shutil.rmtree(host_root, ignore_errors=True)
    host_root.mkdir(parents=True)
    manifest = generate(host_root / "landing", GenConfig(start=START, days=DAYS, **DATAGEN))
    _chown_for_pods(host_root)
    os.chown(host_root.parent, POD_UID, POD_UID)
    settings = _settings(cluster, f"{_mount_path(probe)}/bench/{label}")
    (job,) = medallion_jobs(list(LAYERS), settings, start=START, end=END, run_id=f"bench-{label}")
    run = RunInfo(flow_run_id=f"bench-{uuid.uuid4()}", flow_run_name="bench-k8s", task_run_name=label)
    lines = sum(manifest.total(s, "lines") for s in ("orders", "users", "events"))
    return Workload(label, host_root, settings, job, run, lines)


def _delta_tables(root: Path) -> dict[str, int]:
    """Latest committed Delta version of every table under ``root`` (from its log files)."""
    out = {}
    for log in sorted((root / "warehouse").glob("*/*/_delta_log")):
        commits = [int(p.stem) for p in log.glob("*.json") if p.stem.isdigit()]
        out[f"{log.parent.parent.name}.{log.parent.name}"] = max(commits, default=-1)
    return out


def _driver_exit(cluster: Cluster, namespace: str, pod: str) -> tuple[int | None, float | None]:
    """Exit code and ``finishedAt`` of the driver container of ``pod``."""
    try:
        obj = client.CoreV1Api(cluster.api).read_namespaced_pod(pod, namespace)
    except client.ApiException as exc:
        if exc.status == 404:
            return None, None
        raise
    for status in (obj.status.container_statuses if obj.status else None) or []:
        if status.name == DRIVER_CONTAINER and status.state and status.state.terminated:
            term = status.state.terminated
            return int(term.exit_code), k8s_time(term.finished_at)
    return None, None


def _r(x: float | None, digits: int = 3) -> float | None:
    return None if x is None else round(x, digits)


# ------------------------------------------------------------------------------------ A: SparkApplication


def run_sparkapplication(cluster: Cluster, w: Workload) -> dict[str, Any]:
    """A: the job through ``KubernetesBackend.run()``; its figures (see the module docstring)."""
    reports: list[AppReport] = []
    lines: list[tuple[float, str]] = []
    backend = KubernetesBackend(w.settings, run_info=lambda: w.run, on_report=reports.append)
    namespace = w.settings.kubernetes.namespace
    p0 = time.perf_counter()
    try:
        backend.run(w.job, log=lambda line: lines.append((time.time(), line)))
    except BaseException:
        print("\n".join(line for _, line in lines[-30:]), file=sys.stderr)
        raise
    p1 = time.perf_counter()
    returned = time.time()
    (report,) = reports
    apps = SparkApplications(cluster.api, namespace)
    app = apps.get(report.name) or {}
    status = app.get("status") or {}
    started = report.started_at.timestamp()
    seen = {c.state: c.at.timestamp() for c in reversed(report.timeline)}  # first sighting wins
    submitted = next((t for t, line in lines if line == f"SparkApplication {namespace}/{report.name} submitted"), None)
    pod = (status.get("driverInfo") or {}).get("podName")
    exit_code, finished = _driver_exit(cluster, namespace, pod) if pod else (None, None)
    terminated = k8s_time(status.get("terminationTime"))
    result = {
        "side": SPARK_APP,
        "label": w.label,
        "app": report.name,
        "state": report.state,
        "wall_s": _r(p1 - p0),
        "create_call_s": _r(submitted - started if submitted else None),
        "submit_to_running_s": _r(seen["RUNNING"] - started if "RUNNING" in seen else None),
        "completed_to_return_s": _r(returned - seen["COMPLETED"] if "COMPLETED" in seen else None),
        "termination_time_to_return_s": _r(returned - terminated if terminated else None),
        "driver_exit_to_return_s": _r(returned - finished if finished else None),
        "driver_exit_code": exit_code,
        "timeline_s": [[c.state, _r(c.at.timestamp() - started)] for c in report.timeline],
        "execution_attempts": report.execution_attempts,
        "watch_reconnects": report.watch_reconnects,
        "log_lines": len(lines),
        "tables": _delta_tables(w.host_root),
    }
    if report.state != "COMPLETED" or exit_code != 0:
        raise RuntimeError(f"run {w.label}: app {report.name} ended {report.state}, driver exit {exit_code}")
    apps.delete(report.name)
    apps.wait_deleted(report.name, CLEAN_TIMEOUT_S)
    _wait_namespace_empty(cluster, namespace)
    return result


# ------------------------------------------------------------------------------------ B: spark-submit


@dataclass(frozen=True)
class SubmitAccess:
    """How the host's spark-submit reaches the API server: the admin kubeconfig's server and
    client certificate (Spark's ``spark.kubernetes.authenticate.submission.*``)."""

    master: str
    ca_cert: str
    client_cert: str
    client_key: str

    @classmethod
    def from_kubeconfig(cls, path: Path) -> SubmitAccess:
        kc = yaml.safe_load(path.read_text())
        ctx_name = kc.get("current-context")
        ctx = next(c["context"] for c in kc["contexts"] if c["name"] == ctx_name)
        cluster = next(c["cluster"] for c in kc["clusters"] if c["name"] == ctx["cluster"])
        user = next(u["user"] for u in kc["users"] if u["name"] == ctx["user"])
        return cls(
            master=f"k8s://{cluster['server']}",
            ca_cert=cluster["certificate-authority"],
            client_cert=user["client-certificate"],
            client_key=user["client-key"],
        )

    def conf(self) -> dict[str, str]:
        base = "spark.kubernetes.authenticate.submission"
        return {
            f"{base}.caCertFile": self.ca_cert,
            f"{base}.clientCertFile": self.client_cert,
            f"{base}.clientKeyFile": self.client_key,
        }


def _pod_template(spec: dict[str, Any], role: str, container: str) -> dict[str, Any]:
    """What the operator's webhook adds to a ``role`` pod (sparkpod_defaulter.go, 2.5.2): the
    pod and container securityContext, and the spec's volumes other than Spark's local dirs."""
    side = spec[role]
    mounts = [m for m in side.get("volumeMounts", []) if not m["name"].startswith(LOCAL_DIR_PREFIX)]
    names = {m["name"] for m in mounts}
    c: dict[str, Any] = {"name": container}
    if side.get("securityContext"):
        c["securityContext"] = side["securityContext"]
    if mounts:
        c["volumeMounts"] = mounts
    pod: dict[str, Any] = {"containers": [c]}
    if side.get("podSecurityContext"):
        pod["securityContext"] = side["podSecurityContext"]
    volumes = [v for v in spec.get("volumes", []) if v["name"] in names]
    if volumes:
        pod["volumes"] = volumes
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {}, "spec": pod}


def _local_dir_conf(spec: dict[str, Any], role: str) -> dict[str, str]:
    """Spark's local-dir emptyDirs as conf, as the operator passes them (driverVolumeMountsOption)."""
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    conf = {}
    for m in spec[role].get("volumeMounts", []):
        v = volumes.get(m["name"])
        if not m["name"].startswith(LOCAL_DIR_PREFIX) or v is None or "emptyDir" not in v:
            continue
        base = f"spark.kubernetes.{role}.volumes.emptyDir.{m['name']}"
        conf[f"{base}.mount.path"] = m["mountPath"]
        if m.get("subPath"):
            conf[f"{base}.mount.subPath"] = m["subPath"]
        if m.get("readOnly"):
            conf[f"{base}.mount.readOnly"] = "true"
        if v["emptyDir"].get("sizeLimit"):
            conf[f"{base}.options.sizeLimit"] = str(v["emptyDir"]["sizeLimit"])
        if v["emptyDir"].get("medium"):
            conf[f"{base}.options.medium"] = str(v["emptyDir"]["medium"])
    return conf


def spark_submit_command(
    manifest: dict[str, Any], spark_submit: Path, access: SubmitAccess, template_dir: Path
) -> list[str]:
    """The plain spark-submit of a rendered SparkApplication, in the order the operator builds
    its own (submission.go, buildSparkSubmitArgs; a later --conf of a key wins), but waiting for
    the app, from the host, and with pod templates for what the webhook would add."""
    meta, spec = manifest["metadata"], manifest["spec"]
    name, driver, executor = meta["name"], spec["driver"], spec["executor"]
    labels = {**meta.get("labels", {}), BENCH_LABEL: SPARK_SUBMIT}
    image = spec["image"]
    conf: list[tuple[str, Any]] = [
        ("spark.kubernetes.namespace", meta["namespace"]),
        ("spark.kubernetes.container.image", image),
    ]
    if spec.get("imagePullPolicy"):
        conf.append(("spark.kubernetes.container.image.pullPolicy", spec["imagePullPolicy"]))
    if spec.get("imagePullSecrets"):
        conf.append(("spark.kubernetes.container.image.pullSecrets", ",".join(spec["imagePullSecrets"])))
    if spec.get("pythonVersion"):
        conf.append(("spark.kubernetes.pyspark.pythonVersion", spec["pythonVersion"]))
    conf.append(("spark.kubernetes.submission.waitAppCompletion", "true"))  # the operator: false
    conf += [(k, v) for k, v in spec.get("sparkConf", {}).items() if k != "spark.kubernetes.driver.pod.name"]
    conf += [(f"spark.hadoop.{k}", v) for k, v in spec.get("hadoopConf", {}).items()]
    templates = {"driver": (driver, DRIVER_CONTAINER), "executor": (executor, EXECUTOR_CONTAINER)}
    for role, (side, container) in templates.items():
        path = template_dir / f"{role}-pod-template.yaml"
        path.write_text(yaml.safe_dump(_pod_template(spec, role, container), sort_keys=False))
        conf += [
            (f"spark.kubernetes.{role}.podTemplateFile", path),
            (f"spark.kubernetes.{role}.podTemplateContainerName", container),
        ]
        if role == "driver":
            conf.append(("spark.kubernetes.driver.pod.name", f"{name}-driver"))
        conf += [(f"spark.kubernetes.{role}.label.{k}", v) for k, v in labels.items()]
        if role == "executor" and "instances" in side:
            conf.append(("spark.executor.instances", side["instances"]))
        conf.append((f"spark.kubernetes.{role}.container.image", side.get("image") or image))
        for key, spark_key in (
            ("cores", f"spark.{role}.cores"),
            ("coreRequest", f"spark.kubernetes.{role}.request.cores"),
            ("coreLimit", f"spark.kubernetes.{role}.limit.cores"),
            ("memory", f"spark.{role}.memory"),
            ("memoryOverhead", f"spark.{role}.memoryOverhead"),
        ):
            if side.get(key) is not None:
                conf.append((spark_key, side[key]))
        if role == "driver" and side.get("serviceAccount"):
            conf.append(("spark.kubernetes.authenticate.driver.serviceAccountName", side["serviceAccount"]))
        if side.get("javaOptions"):
            conf.append((f"spark.{role}.extraJavaOptions", side["javaOptions"]))
        conf += [
            (f"spark.kubernetes.{role}.secretKeyRef.{env}", f"{ref['name']}:{ref['key']}")
            for env, ref in side.get("envSecretKeyRefs", {}).items()
        ]
        env_prefix = "spark.kubernetes.driverEnv" if role == "driver" else "spark.executorEnv"
        conf += [(f"{env_prefix}.{k}", v) for k, v in side.get("envVars", {}).items()]
        conf += list(_local_dir_conf(spec, role).items())
    da = spec.get("dynamicAllocation") or {}
    if da.get("enabled"):
        conf.append(("spark.dynamicAllocation.enabled", "true"))
        for key in ("initialExecutors", "minExecutors", "maxExecutors"):
            if da.get(key) is not None:
                conf.append((f"spark.dynamicAllocation.{key}", da[key]))
        conf.append(
            ("spark.dynamicAllocation.shuffleTracking.enabled", str(da.get("shuffleTrackingEnabled", True)).lower())
        )
    conf += list(access.conf().items())
    cmd = [str(spark_submit), "--master", access.master, "--deploy-mode", spec.get("mode", "cluster"), "--name", name]
    if (spec.get("deps") or {}).get("jars"):
        cmd += ["--jars", ",".join(spec["deps"]["jars"])]
    for key, value in conf:
        cmd += ["--conf", f"{key}={value}"]
    return [*cmd, spec["mainApplicationFile"], *spec.get("arguments", [])]


def _submit_env(admin_kubeconfig: Path) -> dict[str, str]:
    """The host spark-submit's environment: pyspark's Spark, and the admin kubeconfig as the one
    fabric8 reads on its own (so it picks up no other identity than the conf's)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPARK_", "PYSPARK_"))}
    env["SPARK_HOME"] = str(jars.spark_home())
    env["KUBECONFIG"] = str(admin_kubeconfig)
    return env


def run_spark_submit(cluster: Cluster, w: Workload, access: SubmitAccess) -> dict[str, Any]:
    """B: the same job by plain spark-submit from the host; its figures."""
    backend = KubernetesBackend(w.settings, run_info=lambda: w.run)
    manifest = backend.render(w.job, w.run)
    name, namespace = manifest["metadata"]["name"], manifest["metadata"]["namespace"]
    pod = f"{name}-driver"
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log_path = LOG_DIR / f"{w.label}-spark-submit.log"
    timeout = (w.job.timeout_seconds or w.settings.spark.job_timeout_seconds) + 120
    core = client.CoreV1Api(cluster.api)
    with tempfile.TemporaryDirectory(prefix="bench-k8s-") as tmp, log_path.open("w") as out:
        cmd = spark_submit_command(manifest, jars.spark_home() / "bin" / "spark-submit", access, Path(tmp))
        out.write(shlex.join(cmd) + "\n\n")
        out.flush()
        env = _submit_env(cluster.admin_kubeconfig)
        p0 = time.perf_counter()
        try:
            proc = subprocess.run(
                cmd, env=env, cwd=tmp, stdout=out, stderr=subprocess.STDOUT, timeout=timeout, check=False
            )
        except BaseException:
            with contextlib.suppress(client.ApiException):
                core.delete_namespaced_pod(pod, namespace, grace_period_seconds=0)
            raise
        p1 = time.perf_counter()
        returned = time.time()
    exit_code, finished = _driver_exit(cluster, namespace, pod)
    result = {
        "side": SPARK_SUBMIT,
        "label": w.label,
        "driver_pod": pod,
        "wall_s": _r(p1 - p0),
        "spark_submit_exit_code": proc.returncode,
        "driver_exit_code": exit_code,
        "driver_exit_to_return_s": _r(returned - finished if finished else None),
        "tables": _delta_tables(w.host_root),
        "log": str(log_path.relative_to(ROOT)),
    }
    if proc.returncode != 0 or exit_code != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(
            f"run {w.label}: spark-submit exited {proc.returncode}, driver exit {exit_code} (log {log_path}):\n{tail}"
        )
    core.delete_namespaced_pod(pod, namespace)  # its ConfigMaps and Service go with it (owner)
    _wait_namespace_empty(cluster, namespace)
    return result


# ------------------------------------------------------------------------------------ report


def machine(cluster: Cluster | None = None) -> dict[str, Any]:
    """Cores, memory, CPU model, load, and the versions; the live cluster's when given."""
    import importlib.metadata as md

    import psutil

    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    found: dict[str, Any] = {
        "kubernetes": versions.KUBERNETES_VERSION,
        "etcd": versions.ETCD_VERSION,
        "spark-operator": versions.SPARK_OPERATOR_VERSION,
        "spark": versions.SPARK_VERSION,
        "pyspark (host spark-submit)": md.version("pyspark"),
        "coredns": versions.COREDNS_VERSION,
        "kubernetes (python client)": md.version("kubernetes"),
    }
    if cluster is not None:
        with contextlib.suppress(client.ApiException, OSError):
            found["kube-apiserver (live)"] = client.VersionApi(cluster.api).get_code().git_version
        with contextlib.suppress(client.ApiException, OSError, AttributeError, IndexError):
            deploy = client.AppsV1Api(cluster.api).read_namespaced_deployment(
                "spark-operator-controller", "spark-operator"
            )
            pod_spec = deploy.spec.template.spec if deploy.spec else None
            found["spark-operator image (live)"] = pod_spec.containers[0].image if pod_spec else None
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            found["containerd"] = subprocess.run(
                ["containerd", "--version"], capture_output=True, text=True, timeout=10, check=False
            ).stdout.strip()
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu_model": model,
        "os": platform.platform(),
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "note": "one machine for everything: etcd, the control plane, kubelet, containerd, CoreDNS, "
        "the operator (controller + webhook), the driver and executor pods, the backend and "
        "the host's spark-submit share its cores (load averages: other work too)",
        "versions": found,
    }


def _stats(samples: list[float | None], goal: float | None = None, below: bool = True) -> dict[str, Any]:
    values = [s for s in samples if s is not None]
    med = statistics.median(values) if values else None
    out: dict[str, Any] = {
        "median_s": _r(med),
        "min_s": _r(min(values, default=None)),
        "max_s": _r(max(values, default=None)),
        "samples_s": samples,
    }
    if goal is not None:
        out["goal_s"] = goal
        out["goal_met"] = med is not None and (med < goal if below else med <= goal)
    return out


NOTES = {
    "submit_to_running_s": "A: create call (AppReport.started_at, just before it) to the backend seeing "
    "RUNNING (the report's timeline entry, taken when the watch event is handled). "
    "Includes the operator's pickup and its spark-submit JVM in the operator pod, "
    "the driver pod's scheduling and container start.",
    "completed_to_return_s": "A: the backend seeing COMPLETED (timeline entry, same clock) to run() "
    "returning: watch stop, the rest of the driver log, the report hook. Goal < 1 s.",
    "termination_time_to_return_s": "A: status.terminationTime to run() returning. The operator sets it when it "
    "first sees the driver pod terminated (with SUCCEEDING), so this also holds "
    "its SUCCEEDING -> COMPLETED step; 1 s resolution (truncated: reads up to 1 s "
    "high).",
    "driver_exit_to_return_s": "The driver container's finishedAt (1 s resolution, truncated) to run() "
    "returning (A) or spark-submit exiting (B): what the caller waits after the "
    "job itself is done.",
    "wall_s": "A: run() call to return; B: spark-submit start to exit (waitAppCompletion=true). Same job, "
    "image, conf, resources, volumes; a fresh lake root each run; ratio = median A / median B, "
    "goal <= 1.05.",
    "create_call_s": "A: AppReport.started_at to the backend logging 'submitted': its API client (the worker's "
    "kubeconfig) and the SparkApplication create request.",
    "warmup_runs": "The first BENCH_WARMUP pairs, not in any figure: the first pods on the fresh node read the "
    "image from disk, the first JVMs start cold.",
}


def _print_summary(results: dict[str, Any]) -> None:
    for key in ("submit_to_running_s", "completed_to_return_s", "termination_time_to_return_s"):
        r = results[key]
        goal = f" (goal < {r['goal_s']} s: {'met' if r['goal_met'] else 'NOT met'})" if "goal_s" in r else ""
        print(f"{key:32} median {r['median_s']} s{goal}")
    w = results["wall_s"]
    print(f"{'wall SparkApplication':32} median {w[SPARK_APP]['median_s']} s")
    print(f"{'wall spark-submit':32} median {w[SPARK_SUBMIT]['median_s']} s")
    print(f"{'ratio':32} {w['ratio']} (goal <= {w['goal']}: {'met' if w['goal_met'] else 'NOT met'})")


def show_command() -> int:
    """Print B's spark-submit for the medallion job under the current settings (no cluster)."""
    settings = Settings()
    (job,) = medallion_jobs(list(LAYERS), settings, start=START, end=END, run_id="bench-show")
    run = RunInfo(flow_run_id="bench-show")
    manifest = KubernetesBackend(settings, run_info=lambda: run).render(job, run)
    access = SubmitAccess("k8s://https://127.0.0.1:<port>", "<ca.crt>", "<admin.crt>", "<admin.key>")
    with tempfile.TemporaryDirectory(prefix="bench-k8s-") as tmp:
        cmd = spark_submit_command(manifest, jars.spark_home() / "bin" / "spark-submit", access, Path(tmp))
        lines, i = [shlex.quote(cmd[0])], 1
        while i < len(cmd):
            pair = cmd[i].startswith("--") and i + 1 < len(cmd) and not cmd[i + 1].startswith("--")
            lines.append(shlex.join(cmd[i : i + 2] if pair else cmd[i : i + 1]))
            i += 2 if pair else 1
        print(" \\\n  ".join(lines))
        for template in sorted(Path(tmp).glob("*.yaml")):
            print(f"\n# {template.name}\n{template.read_text()}", end="")
    return 0


PARTS = ("batch", "streaming", "flow-run", "jit")
"""batch: SparkApplication vs spark-submit (above); streaming and flow-run: bench/k8s_native.py;
jit: the same SparkApplication on the JVM's tiered JIT vs C1 only (``kubernetes.jit``)."""

JIT_METHOD = (
    "The medallion SparkApplication of the batch part (A, same workload on a fresh lake root each "
    "run), with kubernetes.jit=tiered (the JVM's default JIT) and kubernetes.jit=c1 (C1 only, "
    "what scripts/cluster.sh sets for the test cluster), in ABAB order after unmeasured warm-up "
    "pairs. Wall: run() call to return. Pods' CPU: the growth of cpuacct.usage of the node's "
    "kubepods cgroup (cgroup v1, hierarchical: it keeps what ended pods used) from before the "
    "create call to after the app and its pods are deleted; it includes the operator's, CoreDNS' "
    "and the worker's pods, which idle through both sides."
)


def _kubepods_cpu_s() -> float:
    """CPU seconds every pod of the node has used so far (cgroup v1 cpuacct of kubepods)."""
    for path in sorted(Path("/sys/fs/cgroup").glob("*/kubepods/cpuacct.usage")):
        return int(path.read_text()) / 1e9
    raise SystemExit("no kubepods cpuacct cgroup under /sys/fs/cgroup: is the cluster's kubelet up?")


def jit_part(cluster: Cluster, runs: int, warmups: int) -> dict[str, Any]:
    """The medallion SparkApplication on each JIT, ABAB; wall and the pods' CPU."""
    measured: list[dict[str, Any]] = []
    for i in range(warmups + runs):
        is_warmup = i < warmups
        for jit in ("tiered", "c1"):
            label = f"jit-{'w' if is_warmup else 'r'}{i + 1}-{jit}"
            w = _workload(cluster, label)
            k8s = w.settings.kubernetes.model_copy(update={"jit": jit})
            w.settings = w.settings.model_copy(update={"kubernetes": k8s})
            spec = KubernetesBackend(w.settings, run_info=lambda w=w: w.run).render(w.job, w.run)["spec"]
            c1_flag = "-XX:TieredStopAtLevel=1"
            if (c1_flag in spec["driver"]["javaOptions"]) != (jit == "c1"):
                raise SystemExit(f"{jit}: the rendered driver javaOptions are {spec['driver']['javaOptions']!r}")
            print(f"{'warm-up' if is_warmup else 'run'} {i + 1} jit={jit} ...", flush=True)
            cpu0 = _kubepods_cpu_s()
            one = run_sparkapplication(cluster, w)
            one.update(jit=jit, pods_cpu_s=_r(_kubepods_cpu_s() - cpu0, 1), warmup=is_warmup)
            print(f"    wall {one['wall_s']} s, pods' CPU {one['pods_cpu_s']} s", flush=True)
            measured.append(one)
    runs_ = [r for r in measured if not r["warmup"]]
    tables = {json.dumps(sorted(r["tables"])) for r in measured}
    if len(tables) != 1 or not runs_[0]["tables"]:
        raise SystemExit(f"the runs did not all write the same tables: {sorted(tables)}")
    out: dict[str, Any] = {}
    for key in ("wall_s", "pods_cpu_s"):
        t = [r[key] for r in runs_ if r["jit"] == "tiered"]
        c = [r[key] for r in runs_ if r["jit"] == "c1"]
        out[key] = {
            "tiered": _stats(t),
            "c1": _stats(c),
            "ratio_c1_to_tiered": round(statistics.median(c) / statistics.median(t), 3),
            "pair_ratios": [round(y / x, 3) for x, y in zip(t, c, strict=True)],
        }
    wall, cpu = (out[k]["ratio_c1_to_tiered"] for k in ("wall_s", "pods_cpu_s"))
    print(f"jit c1/tiered: wall {wall}, pods' CPU {cpu}", flush=True)
    keep = ("jit", "label", "warmup", "wall_s", "pods_cpu_s", "state", "driver_exit_code", "tables")
    return {
        "method": JIT_METHOD,
        "order": [r["jit"] for r in runs_],
        "runs": [{k: r[k] for k in keep} for r in measured],
        "results": out,
    }


def batch_part(cluster: Cluster, runs: int, warmups: int) -> dict[str, Any]:
    """The medallion job, SparkApplication vs spark-submit, ABAB; the top-level keys of k8s.json."""
    access = SubmitAccess.from_kubeconfig(cluster.admin_kubeconfig)
    sides: dict[str, Callable[[Workload], dict[str, Any]]] = {
        SPARK_APP: lambda w: run_sparkapplication(cluster, w),
        SPARK_SUBMIT: lambda w: run_spark_submit(cluster, w, access),
    }
    measured: list[dict[str, Any]] = []
    warmup: list[dict[str, Any]] = []
    workload: Workload | None = None
    for i in range(warmups + runs):
        is_warmup = i < warmups
        n, of = (i + 1, warmups) if is_warmup else (i + 1 - warmups, runs)
        for side, run_side in sides.items():  # A then B: ABAB...
            label = f"{'w' if is_warmup else 'r'}{n}-{'a' if side == SPARK_APP else 'b'}"
            workload = _workload(cluster, label)
            print(f"{'warm-up' if is_warmup else 'run'} {n}/{of} {side} ...", flush=True)
            one = run_side(workload)
            one["landing_lines"] = workload.landing_lines
            (warmup if is_warmup else measured).append(one)
            print(
                f"    wall {one['wall_s']} s"
                + (
                    f", submit->RUNNING {one['submit_to_running_s']} s, COMPLETED->return "
                    f"{one['completed_to_return_s']} s"
                    if side == SPARK_APP
                    else ""
                ),
                flush=True,
            )
    assert workload is not None
    last = workload

    tables = {json.dumps(sorted(r["tables"])) for r in warmup + measured}
    if len(tables) != 1 or not measured[0]["tables"]:
        raise SystemExit(f"the runs did not all write the same tables: {sorted(tables)}")
    a = [r for r in measured if r["side"] == SPARK_APP]
    b = [r for r in measured if r["side"] == SPARK_SUBMIT]
    wall_a = _stats([r["wall_s"] for r in a])
    wall_b = _stats([r["wall_s"] for r in b])
    ratio = round(wall_a["median_s"] / wall_b["median_s"], 3)
    results: dict[str, Any] = {
        "submit_to_running_s": _stats([r["submit_to_running_s"] for r in a]),
        "completed_to_return_s": _stats([r["completed_to_return_s"] for r in a], GOAL_COMPLETED_TO_RETURN_S),
        "termination_time_to_return_s": _stats([r["termination_time_to_return_s"] for r in a]),
        "driver_exit_to_return_s": {
            SPARK_APP: _stats([r["driver_exit_to_return_s"] for r in a]),
            SPARK_SUBMIT: _stats([r["driver_exit_to_return_s"] for r in b]),
        },
        "create_call_s": _stats([r["create_call_s"] for r in a]),
        "wall_s": {
            SPARK_APP: wall_a,
            SPARK_SUBMIT: wall_b,
            "ratio": ratio,
            "pair_ratios": [round(x["wall_s"] / y["wall_s"], 3) for x, y in zip(a, b, strict=True)],
            "goal": GOAL_WALL_RATIO,
            "goal_met": ratio <= GOAL_WALL_RATIO,
        },
    }
    job = last.job
    spec = KubernetesBackend(last.settings, run_info=lambda: last.run).render(job, last.run)["spec"]
    _print_summary(results)
    return {
        "method": __doc__.split("\n\n")[1].strip().replace("\n", " ") if __doc__ else "",
        "workload": {
            "job": job.name,
            "entrypoint": job.entrypoint,
            "dates": [START.isoformat(), END.isoformat()],
            "datagen": {"days": DAYS, **DATAGEN},
            "landing_lines": measured[0]["landing_lines"],
            "tables": measured[0]["tables"],
            "driver": {k: spec["driver"].get(k) for k in ("cores", "coreRequest", "memory", "memoryOverhead")},
            "executor": {
                k: spec["executor"].get(k) for k in ("instances", "cores", "coreRequest", "memory", "memoryOverhead")
            },
        },
        "order": [r["side"] for r in measured],
        "runs": measured,
        "warmup_runs": warmup,
        "results": results,
        "notes": NOTES,
    }


def _timed(what: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A part's figures with when it ran and the load around it (the host is shared)."""
    started_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    load = [round(x, 2) for x in os.getloadavg()]
    out = what()
    return {
        "started_at": started_at,
        "load_average_at_start": load,
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        **out,
    }


def main(argv: list[str] | None = None) -> int:
    def non_negative(value: str) -> int:
        n = int(value)
        if n < 0:
            raise argparse.ArgumentTypeError("must be >= 0")
        return n

    def parts(value: str) -> list[str]:
        got = [v.strip() for v in value.split(",") if v.strip()]
        unknown = sorted(set(got) - set(PARTS))
        if unknown or not got:
            raise argparse.ArgumentTypeError(f"unknown part(s) {unknown}; parts: {', '.join(PARTS)}")
        return got

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--parts",
        type=parts,
        default=None,
        help=f"what to measure, comma-separated (default: BENCH_PARTS or all of {','.join(PARTS)}); "
        "the other parts' figures already in --out are kept",
    )
    p.add_argument(
        "--runs",
        type=non_negative,
        default=int(os.environ.get("BENCH_RUNS", "3")),
        help="batch: measured runs of each side, ABAB (default: BENCH_RUNS or 3)",
    )
    p.add_argument(
        "--warmup",
        type=non_negative,
        default=int(os.environ.get("BENCH_WARMUP", "1")),
        help="batch: unmeasured A+B pairs first (default: BENCH_WARMUP or 1)",
    )
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "k8s.json")
    p.add_argument(
        "--show-command",
        action="store_true",
        help="print side B's spark-submit and pod templates under the current settings and exit (no cluster)",
    )
    args = p.parse_args(argv)
    if args.parts is None:
        try:
            args.parts = parts(os.environ.get("BENCH_PARTS", ",".join(PARTS)))
        except argparse.ArgumentTypeError as exc:
            p.error(f"BENCH_PARTS: {exc}")
    if args.show_command:
        return show_command()
    if args.runs < 1:
        p.error("--runs must be at least 1")
    from bench import k8s_native

    result: dict[str, Any] = json.loads(args.out.read_text()) if args.out.exists() else {}
    result["benchmark"] = "k8s: the Kubernetes backend on the real single-node cluster"
    load_before = [round(x, 2) for x in os.getloadavg()]
    with bench_cluster() as cluster:
        desc = machine(cluster)
        desc["load_average_before_cluster_up"] = load_before
        if "streaming" in args.parts:
            mount = _mount_path(_settings(cluster, "/"))
            result["streaming_ingest"] = {
                "method": k8s_native.method("streaming"),
                "machine": desc,
                **_timed(lambda: k8s_native.streaming_ingest(cluster.env, cluster.api, mount)),
            }
            print(
                f"streaming ingest rate SparkApplication / local: "
                f"{result['streaming_ingest']['results']['ingest_rate_msgs_per_s']}",
                flush=True,
            )
        if "flow-run" in args.parts:
            script_env = {**os.environ, "LAKEHOUSE_CLUSTER_DIR": str(CLUSTER_DIR), "LAKEHOUSE_CLUSTER_NETNS": NETNS}
            result["flow_run_pod_start"] = {
                "method": k8s_native.method("flow-run"),
                "machine": desc,
                **_timed(lambda: k8s_native.flow_run_start(CLUSTER_DIR, cluster.env, script_env, cluster.api)),
            }
            got = result["flow_run_pod_start"]["results"]["pod_start_to_first_app_s"]
            print(f"flow-run pod start -> first SparkApplication: median {got['median']} s", flush=True)
        if "jit" in args.parts:
            result["jit"] = {"machine": desc, **_timed(lambda: jit_part(cluster, args.runs, args.warmup))}
        if "batch" in args.parts:  # the top-level figures and machine are the batch part's
            result.update(
                started_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                machine=desc,
                **batch_part(cluster, args.runs, args.warmup),
            )
        desc["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"machine: {desc['cores']} cores, {desc['memory_gib']} GiB, load {desc['load_average_at_start']} "
        f"-> {desc['load_average_at_end']}\nwrote {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
