"""Benchmark: how fast a finished SparkApplication ends the job on the Kubernetes backend.

Latency from the operator's COMPLETED status write (PUT .../sparkapplications/<app>/status, the
moment just before the request is sent) to

* ``run``: ``KubernetesBackend.run()`` returning, and
* ``prefect``: the Prefect task ``run_spark_job`` returning inside a flow (Prefect's test harness
  server; includes the app's artifact, result persistence and the task's state changes),

over N apps each (default 50), on a real kube-apiserver + etcd on loopback (the same one the
k8s tests use), the operator's status transitions played from a thread. The goal is < 1 s
(an incumbent polling every 10 s averages ~5 s). Results: bench/results/k8s.json with the
machine description and the versions used.

    .venv/bin/python bench/k8s.py                 # both modes, 50 apps each
    .venv/bin/python bench/k8s.py --apps 20 --mode run
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kubernetes import client  # noqa: E402

from lakehouse import versions  # noqa: E402
from lakehouse.backends.kubernetes import KubernetesBackend  # noqa: E402
from lakehouse.jobs import SparkJob  # noqa: E402
from lakehouse.k8s.runinfo import RunInfo  # noqa: E402
from lakehouse.settings import KubernetesSettings, Settings  # noqa: E402
from tests.fixtures.k8s import K8sCluster, start_cluster  # noqa: E402
from tests.k8s.support import Operator  # noqa: E402

NAMESPACE = "bench"
GOAL_S = 1.0


def job(i: int) -> SparkJob:
    return SparkJob(name=f"bench-{i:03d}", entrypoint="spark_jobs.bronze",
                    args=("--root", "s3a://bench", "--n", str(i)), timeout_seconds=120)


class Driver(threading.Thread):
    """Plays the operator for every new app of the namespace; records when COMPLETED is sent."""

    def __init__(self, api: client.ApiClient) -> None:
        super().__init__(name="bench-operator", daemon=True)
        self.op = Operator(api, NAMESPACE)
        self.sent: dict[str, float] = {}
        """job name -> perf_counter() just before the COMPLETED status PUT."""
        self.errors: list[BaseException] = []
        self.stop = threading.Event()
        self._seen: set[str] = set()

    def run(self) -> None:
        objects = self.op.objects
        while not self.stop.is_set():
            try:
                items = objects.list_namespaced_custom_object(
                    "sparkoperator.k8s.io", "v1beta2", NAMESPACE, "sparkapplications")["items"]
                for app in items:
                    name = app["metadata"]["name"]
                    if name in self._seen:
                        continue
                    self._seen.add(name)
                    self.op.submit(name)
                    self.op.running(name)
                    self.op.succeeding(name)
                    time.sleep(0.05)  # let the backend settle into waiting, as in real life
                    self.sent[app["metadata"]["labels"]["lakehouse.io/job"]] = time.perf_counter()
                    self.op.completed(name)
            except BaseException as exc:
                self.errors.append(exc)
                return
            self.stop.wait(0.005)


def summary(samples: list[float]) -> dict[str, Any]:
    ordered = sorted(samples)

    def rank(p: float) -> float:
        return ordered[max(0, math.ceil(p * len(ordered)) - 1)]

    return {
        "n": len(samples),
        "median_s": round(statistics.median(samples), 4),
        "p90_s": round(rank(0.90), 4),
        "p99_s": round(rank(0.99), 4),
        "mean_s": round(statistics.fmean(samples), 4),
        "min_s": round(ordered[0], 4),
        "max_s": round(ordered[-1], 4),
        "goal_s": GOAL_S,
        "goal_met": rank(0.99) < GOAL_S and statistics.median(samples) < GOAL_S,
        "samples_s": [round(s, 4) for s in samples],
    }


def bench_run(cluster: K8sCluster, apps: int, warmup: int) -> dict[str, Any]:
    with cluster.api_client() as api:
        driver = Driver(api)
        driver.start()
        settings = Settings(kubernetes=KubernetesSettings(namespace=NAMESPACE))
        latencies = []
        for i in range(warmup + apps):
            run = RunInfo(flow_run_id=str(uuid.uuid4()))
            backend = KubernetesBackend(settings, api_client=api, run_info=lambda r=run: r,
                                        on_report=lambda _: None)
            the_job = job(i)
            backend.run(the_job, log=lambda _: None)
            returned = time.perf_counter()
            if i >= warmup:
                latencies.append(returned - driver.sent[the_job.name])
        driver.stop.set()
        driver.join(5)
        if driver.errors:
            raise driver.errors[0]
    return summary(latencies)


def bench_prefect(cluster: K8sCluster, apps: int, warmup: int) -> dict[str, Any]:
    os.environ.update({
        "LAKEHOUSE_BACKEND": "kubernetes",
        "LAKEHOUSE_KUBERNETES__NAMESPACE": NAMESPACE,
        "KUBECONFIG": str(cluster.kubeconfig_path),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_LEVEL": "WARNING",
    })
    from prefect import flow
    from prefect.testing.utilities import prefect_test_harness

    from lakehouse.settings import get_settings
    from tasks.spark import run_spark_job

    get_settings.cache_clear()
    returned: dict[str, float] = {}

    @flow(name="bench-k8s")
    def bench_flow(first: int, count: int) -> None:
        for i in range(first, first + count):
            the_job = job(i)
            run_spark_job(the_job)
            returned[the_job.name] = time.perf_counter()

    with prefect_test_harness(server_startup_timeout=180), cluster.api_client() as api:
        driver = Driver(api)
        driver.start()
        bench_flow(1000, warmup + apps)
        driver.stop.set()
        driver.join(5)
        if driver.errors:
            raise driver.errors[0]
    names = [job(1000 + i).name for i in range(warmup, warmup + apps)]
    return summary([returned[n] - driver.sent[n] for n in names])


def machine() -> dict[str, Any]:
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
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "cpu_model": model,
        "os": platform.platform(),
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "note": "2 cores shared with other work on this machine (load average above); "
                "apiserver, etcd, backend and the simulated operator all on this machine, "
                "talking over loopback",
    } | {"versions": {
        "kube-apiserver": versions.KUBERNETES_VERSION,
        "etcd": versions.ETCD_VERSION,
        "spark-operator (CRD)": versions.SPARK_OPERATOR_VERSION,
        "spark": versions.SPARK_VERSION,
        "kubernetes (python client)": md.version("kubernetes"),
        "prefect": md.version("prefect"),
        "prefect-kubernetes": md.version("prefect-kubernetes"),
    }}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--apps", type=int, default=50, help="measured apps per mode (default 50)")
    p.add_argument("--warmup", type=int, default=3, help="unmeasured apps first (default 3)")
    p.add_argument("--mode", choices=("run", "prefect", "both"), default="both")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "k8s.json")
    args = p.parse_args(argv)
    result: dict[str, Any] = {
        "benchmark": "k8s: COMPLETED status write -> job finished",
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "method": __doc__.split("\n\n")[1].strip().replace("\n", " ") if __doc__ else "",
        "results": {},
    }
    with start_cluster() as cluster:
        cluster.create_namespace(NAMESPACE)
        if args.mode in ("run", "both"):
            result["results"]["run"] = bench_run(cluster, args.apps, args.warmup)
            print("run():", {k: v for k, v in result["results"]["run"].items()
                             if k != "samples_s"}, flush=True)
        if args.mode in ("prefect", "both"):
            result["results"]["prefect_task"] = bench_prefect(cluster, args.apps, args.warmup)
            print("prefect task:", {k: v for k, v in result["results"]["prefect_task"].items()
                                    if k != "samples_s"}, flush=True)
    result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
