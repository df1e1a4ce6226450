"""Render a SparkJob into a SparkApplication (sparkoperator.k8s.io/v1beta2) manifest.

The SparkJob is the single description of a job; this module is its Kubernetes rendering, as
``LocalBackend.command`` is its spark-submit rendering. Spark conf comes from the same preset
(``spark_jobs.conf.default_conf``); the pods get a securityContext that meets Pod Security
"restricted" (non-root, no privilege escalation, all capabilities dropped, seccomp
RuntimeDefault) and emptyDirs for /tmp and Spark's local dir; credentials appear only as
references to Secrets (envSecretKeyRefs). The spec's SHA-256 goes into an annotation so a later
submission under the same name can tell "same app" from "different app".

Pod sizing: ``cores`` are Spark's task slots (spark.driver.cores / spark.executor.cores); what
the pods request is ``coreRequest`` (spark.kubernetes.{driver,executor}.request.cores) and
``memory`` + ``memoryOverhead``, from the job's resources or else the ``kubernetes.*`` settings
(small by default: one driver and one executor fit a 2-CPU node next to the operator).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import yaml

from lakehouse import objectstore
from lakehouse.errors import ConfigError
from lakehouse.jobs import C1_ONLY, SparkJob
from lakehouse.k8s.naming import label_value
from lakehouse.k8s.runinfo import RunInfo
from lakehouse.settings import Settings, credentials
from spark_jobs.conf import default_conf

GROUP = "sparkoperator.k8s.io"
VERSION = "v1beta2"
PLURAL = "sparkapplications"
KIND = "SparkApplication"
API_VERSION = f"{GROUP}/{VERSION}"

SPEC_HASH = "lakehouse.io/spec-hash"
"""Annotation: sha256 of the rendered spec."""
JOB_LABEL = "lakehouse.io/job"
KIND_LABEL = "lakehouse.io/kind"
ATTEMPT_LABEL = "lakehouse.io/attempt"
FLOW_RUN_LABEL = "prefect.io/flow-run-id"
TASK_RUN_LABEL = "prefect.io/task-run-id"
SUBMITTER_POD_LABEL = "lakehouse.io/submitter-pod"
"""On batch apps submitted from a flow-run pod: that pod's name (kubernetes.submitter_pod)."""
MANAGED_BY = {"app.kubernetes.io/managed-by": "lakehouse", "app.kubernetes.io/part-of": "lakehouse"}

LOCAL_DIR_VOLUME = "spark-local-dir-1"
"""Volumes named spark-local-dir-* become Spark's local (shuffle/spill) dirs."""
LOCAL_DIR_PATH = "/var/data/spark-local-dir-1"
TMP_VOLUME = "tmp"


def spec_hash(spec: dict[str, Any]) -> str:
    """``sha256:<hex>`` of the canonical JSON of ``spec``."""
    canonical = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def _security(settings: Settings) -> tuple[dict[str, Any], dict[str, Any]]:
    k = settings.kubernetes
    seccomp = {"type": "RuntimeDefault"}
    pod = {
        "runAsNonRoot": True,
        "runAsUser": k.run_as_user,
        "runAsGroup": k.run_as_user,
        "fsGroup": k.fs_group,
        "seccompProfile": seccomp,
    }
    container = {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "runAsUser": k.run_as_user,
        "runAsGroup": k.run_as_user,
        "seccompProfile": dict(seccomp),
    }
    return pod, container


def secret_refs(job: SparkJob, settings: Settings) -> dict[str, str]:
    """``ENV: 'secret:key'`` of the driver and executors: ``kubernetes.env_secret_refs``, plus
    each credential the job reads (``secret_env``, and the object store's keys on s3a://
    storage with a key pair set) from its key in ``deploy.credentials_secret``
    unless the setting maps it elsewhere. Only references: a value never reaches a manifest.

    Raises:
        ConfigError: The job reads an environment variable that is no known credential.
    """
    refs = dict(settings.kubernetes.env_secret_refs)
    keys = {c.env: c.k8s_key for c in credentials(settings)}
    # the object store's key pair on s3a:// storage, as the local backend gives it
    for env in (*job.secret_env, *objectstore.secret_env(settings)):
        if env not in keys:
            raise ConfigError(f"job {job.name} reads {env}, which is no known credential ({', '.join(sorted(keys))})")
        refs.setdefault(env, f"{settings.deploy.credentials_secret}:{keys[env]}")
    return refs


def _pod_spec(
    job: SparkJob,
    settings: Settings,
    cores: int,
    core_request: str,
    memory: str,
    overhead: str | None,
) -> dict[str, Any]:
    k = settings.kubernetes
    pod_sc, container_sc = _security(settings)
    spec: dict[str, Any] = {
        "cores": cores,
        "coreRequest": core_request,
        "memory": memory,
        "podSecurityContext": pod_sc,
        "securityContext": container_sc,
        "volumeMounts": [
            {"name": LOCAL_DIR_VOLUME, "mountPath": LOCAL_DIR_PATH},
            {"name": TMP_VOLUME, "mountPath": "/tmp"},  # an emptyDir, not the node's /tmp
        ],
        "envVars": {
            "PYTHONPATH": k.app_dir,
            "PYTHONUNBUFFERED": "1",
            "LAKEHOUSE_SPARK_LOG_LEVEL": settings.spark.log_level,
        },
    }
    refs = secret_refs(job, settings)
    if refs:
        spec["envSecretKeyRefs"] = {
            env: {"name": ref.split(":", 1)[0], "key": ref.split(":", 1)[1]} for env, ref in sorted(refs.items())
        }
    if overhead is not None:
        spec["memoryOverhead"] = overhead
    return spec


def volume_conf(settings: Settings) -> dict[str, str]:
    """Spark conf mounting ``kubernetes.volumes`` (PVCs) into the driver and every executor.

    Why Spark conf and not ``spec.volumes`` + ``volumeMounts``: operator v2.5.2 turns only
    volumes named ``spark-local-dir-*`` into spark-submit conf (submission.go,
    driverVolumeMountsOption / util.GetLocalVolumes); every other volume of the spec reaches
    the pods only through its mutating webhook (sparkpod_defaulter.go, addVolumes), so a PVC
    there would silently be missing whenever the webhook is off, not yet ready or skips a pod.
    ``spark.kubernetes.{driver,executor}.volumes.persistentVolumeClaim.<name>.*`` is read by
    Spark itself when it builds the driver pod and, from the driver, each executor pod: no
    webhook involved. (Not both: the webhook would add a second volume of the same name.)
    """
    conf: dict[str, str] = {}
    for v in settings.kubernetes.volumes:
        for role in ("driver", "executor"):
            base = f"spark.kubernetes.{role}.volumes.persistentVolumeClaim.{v.name}"
            conf[f"{base}.mount.path"] = v.mount_path
            conf[f"{base}.mount.readOnly"] = str(v.read_only).lower()
            conf[f"{base}.options.claimName"] = v.claim_name
            if v.sub_path:
                conf[f"{base}.mount.subPath"] = v.sub_path
    return conf


def render_spec(job: SparkJob, settings: Settings) -> dict[str, Any]:
    """The ``spec`` of the SparkApplication of ``job`` (no identity in it: see ``spec_hash``)."""
    k = settings.kubernetes
    res = job.resources
    da = res.dynamic_allocation
    executors = da.max_executors if da else res.executor_instances
    conf = {
        **default_conf(res.executor_cores * executors),
        **volume_conf(settings),
        **objectstore.job_conf(settings),
        **k.spark_conf,
        **job.conf,
    }
    log4j = f"{k.app_dir.rstrip('/')}/spark_jobs/log4j2.properties"
    driver = _pod_spec(
        job,
        settings,
        res.driver_cores,
        res.driver_core_request or k.driver_core_request,
        res.driver_memory or k.driver_memory,
        res.driver_memory_overhead or k.driver_memory_overhead,
    )
    driver["serviceAccount"] = k.service_account
    # the JIT first: a job's own options come after it, so they win
    jvm = [*(C1_ONLY if k.jit == "c1" else ()), *job.java_options]
    driver["javaOptions"] = " ".join(
        [
            f"-Dlog4j2.configurationFile=file:{log4j}",
            f"-Dlakehouse.log.level={settings.spark.log_level}",
            *jvm,
        ]
    )
    executor = _pod_spec(
        job,
        settings,
        res.executor_cores,
        res.executor_core_request or k.executor_core_request,
        res.executor_memory or k.executor_memory,
        res.executor_memory_overhead or k.executor_memory_overhead,
    )
    if jvm:
        executor["javaOptions"] = " ".join(jvm)
    if da is None:
        executor["instances"] = res.executor_instances
    spec: dict[str, Any] = {
        "type": "Python",
        "pythonVersion": "3",
        "mode": "cluster",
        "sparkVersion": k.spark_version,
        "image": k.image,
        "imagePullPolicy": k.image_pull_policy,
        "mainApplicationFile": f"local://{k.app_dir.rstrip('/')}/{job.main_file}",
        "arguments": list(job.args),
        "sparkConf": dict(sorted(conf.items())),
        "volumes": [
            {"name": LOCAL_DIR_VOLUME, "emptyDir": {"sizeLimit": k.local_dir_size_limit}},
            {"name": TMP_VOLUME, "emptyDir": {"sizeLimit": k.tmp_size_limit}},
        ],
        "driver": driver,
        "executor": executor,
    }
    if k.image_pull_secrets:
        spec["imagePullSecrets"] = list(k.image_pull_secrets)
    if k.hadoop_conf:
        spec["hadoopConf"] = dict(sorted(k.hadoop_conf.items()))
    if job.jars:
        spec["deps"] = {"jars": list(job.jars)}
    if da is not None:
        spec["dynamicAllocation"] = {
            "enabled": True,
            "initialExecutors": da.min_executors,
            "minExecutors": da.min_executors,
            "maxExecutors": da.max_executors,
            "shuffleTrackingEnabled": True,
        }
    if job.streaming:
        # Streams run until stopped: the operator reruns them after a failure.
        interval = k.streaming_retry_interval_seconds
        spec["restartPolicy"] = {
            "type": "Always",
            "onFailureRetryInterval": interval,
            "onSubmissionFailureRetryInterval": interval,
        }
    else:
        # Prefect owns retries of batch jobs (each attempt is a new app).
        spec["restartPolicy"] = {"type": "Never"}
        if k.time_to_live_seconds is not None:
            spec["timeToLiveSeconds"] = k.time_to_live_seconds
    return spec


def render_application(job: SparkJob, settings: Settings, *, name: str, run: RunInfo | None = None) -> dict[str, Any]:
    """The SparkApplication manifest of ``job`` named ``name``, labelled with ``run``.

    Labels link the app (and, through the operator, its pods) to the Prefect flow run, task run
    and attempt; names of runs go into annotations (free text). The spec hash annotation covers
    ``spec`` only, so the same job submitted again by a restarted worker hashes the same.
    """
    spec = render_spec(job, settings)
    labels = {
        **MANAGED_BY,
        JOB_LABEL: job.name,
        KIND_LABEL: "streaming" if job.streaming else "batch",
    }
    annotations = {SPEC_HASH: spec_hash(spec), "lakehouse.io/entrypoint": job.entrypoint}
    if run is not None:
        labels[FLOW_RUN_LABEL] = label_value(run.flow_run_id)
        if not job.streaming:
            labels[ATTEMPT_LABEL] = str(run.attempt)
        if run.task_run_id:
            labels[TASK_RUN_LABEL] = label_value(run.task_run_id)
        if run.flow_run_name:
            annotations["prefect.io/flow-run-name"] = run.flow_run_name
        if run.task_run_name:
            annotations["prefect.io/task-run-name"] = run.task_run_name
    if settings.kubernetes.submitter_pod and not job.streaming:
        # the stream outlives every flow run by design: only batch apps are the pod's to reap
        labels[SUBMITTER_POD_LABEL] = label_value(settings.kubernetes.submitter_pod)
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": name,
            "namespace": settings.kubernetes.namespace,
            "labels": labels,
            "annotations": annotations,
        },
        "spec": spec,
    }


def to_yaml(manifests: list[dict[str, Any]]) -> str:
    """Manifests as a multi-document YAML string (keys in rendering order)."""
    return "".join("---\n" + yaml.safe_dump(m, sort_keys=False, default_flow_style=False) for m in manifests)


def spec_differences(wanted: dict[str, Any], existing: dict[str, Any]) -> list[str]:
    """Dotted paths (up to depth 2) where ``existing`` differs from ``wanted``.

    Keys present only in ``existing`` are ignored (server-side defaults).
    """
    diffs: list[str] = []
    for key, value in wanted.items():
        other = existing.get(key)
        if isinstance(value, dict) and isinstance(other, dict):
            diffs += [f"spec.{key}.{sub}" for sub in value if value[sub] != other.get(sub)]
        elif value != other:
            diffs.append(f"spec.{key}")
    return diffs
