"""Rendered SparkApplications against the real API server and the operator's real CRD:
accepted (server-side dry-run and create), malformed ones refused with readable causes, pods
built from them admitted by Pod Security "restricted"; the medallion flow's jobs render with no
job code change; the operator's Helm values pin the tested version."""

from __future__ import annotations

import copy
import datetime as dt
import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from lakehouse import versions
from lakehouse.backends import get_backend
from lakehouse.backends.kubernetes import KubernetesBackend
from lakehouse.jobs import DynamicAllocation, Resources, SparkJob
from lakehouse.k8s.client import SparkApplications
from lakehouse.k8s.errors import SparkApplicationInvalid
from lakehouse.k8s.naming import MAX_APP_NAME, app_name, is_app_name, streaming_app_name
from lakehouse.k8s.render import (
    ATTEMPT_LABEL,
    FLOW_RUN_LABEL,
    JOB_LABEL,
    SPEC_HASH,
    SUBMITTER_POD_LABEL,
    TASK_RUN_LABEL,
    render_application,
    spec_hash,
)
from lakehouse.k8s.runinfo import RunInfo
from lakehouse.pipeline import LAYERS, layer_job, medallion_jobs
from lakehouse.settings import KubernetesSettings, Settings
from spark_jobs.conf import default_conf
from tests.k8s.conftest import make_settings

pytestmark = pytest.mark.k8s

ROOT = Path(__file__).resolve().parents[2]
RUN = RunInfo(
    flow_run_id="0b9a6c5e-7c1e-4f0e-9a57-3f5d2b7c9e11",
    attempt=1,
    task_run_id="5d0c3c9a-1f55-4a5e-8d2b-0c1f2a3b4c5d",
    flow_run_name="brave-otter",
    task_run_name="medallion-bronze",
)


def all_jobs(settings: Settings) -> list[SparkJob]:
    start = dt.date(2026, 1, 1)
    jobs = [layer_job(layer, settings, start=start, end=start, run_id="r1") for layer in LAYERS]
    jobs += [
        SparkJob(
            name="dyn-alloc",
            entrypoint="spark_jobs.gold",
            args=("--x",),
            conf={"spark.sql.shuffle.partitions": "7"},
            jars=("local:///opt/extra/x.jar",),
            java_options=("-XX:+UseParallelGC",),
            resources=Resources(
                driver_cores=2,
                driver_memory="4g",
                executor_cores=2,
                executor_memory="8g",
                dynamic_allocation=DynamicAllocation(min_executors=1, max_executors=6),
            ),
        ),
        SparkJob(name="events-stream", entrypoint="spark_jobs.bronze", streaming=True),
        SparkJob(name="9starts-with-a-digit", entrypoint="spark_jobs.bronze"),
    ]
    return jobs


def full_settings(namespace: str) -> Settings:
    return make_settings(
        namespace,
        image="example.invalid/lakehouse-spark:1.2.3",
        image_pull_secrets=["pull-secret"],
        hadoop_conf={"fs.s3a.endpoint": "http://minio.storage:9000"},
        spark_conf={"spark.eventLog.enabled": "false"},
        env_secret_refs={
            "AWS_ACCESS_KEY_ID": "s3-credentials:access-key",
            "AWS_SECRET_ACCESS_KEY": "s3-credentials:secret-key",
        },
        volumes=[{"name": "lake-data", "claim_name": "lake-data", "mount_path": "/data"}],
        spark_ui_url="https://spark-ui.example.invalid/{namespace}/{app}/",
    )


# --------------------------------------------------------------------------- pure rendering


def test_names_are_deterministic_dns_labels() -> None:
    a = app_name("medallion-bronze", RUN)
    assert a == app_name("medallion-bronze", RUN)
    assert a.startswith("medallion-bronze-") and is_app_name(a)
    assert a != app_name("medallion-bronze", RunInfo(flow_run_id=RUN.flow_run_id, attempt=2))
    assert a != app_name("medallion-silver", RUN)
    long = "x" * 40
    assert len(app_name(long, RUN)) <= MAX_APP_NAME <= 63 - len("-ui-svc")
    assert app_name("9lives", RUN).startswith("j-9lives-")
    assert streaming_app_name("events-stream") == "events-stream"
    names = {app_name("medallion-bronze", RunInfo(flow_run_id=str(uuid.uuid4()))) for _ in range(200)}
    assert len(names) == 200


def test_rendering_follows_the_spark_job_spec() -> None:
    settings = full_settings("spark-jobs")
    job = all_jobs(settings)[3]  # dyn-alloc
    app = render_application(job, settings, name="dyn-alloc-x", run=RUN)
    spec = app["spec"]
    k = settings.kubernetes
    assert spec["type"] == "Python" and spec["mode"] == "cluster"
    assert spec["sparkVersion"] == versions.SPARK_VERSION
    assert spec["image"] == k.image and spec["imagePullSecrets"] == ["pull-secret"]
    assert spec["mainApplicationFile"] == "local:///opt/lakehouse/spark_jobs/gold.py"
    assert spec["arguments"] == ["--x"]
    pvc = "persistentVolumeClaim.lake-data"
    expected_conf = {
        **default_conf(2 * 6),
        "spark.eventLog.enabled": "false",
        "spark.sql.shuffle.partitions": "7",
        **{
            f"spark.kubernetes.{role}.volumes.{pvc}.{key}": value
            for role in ("driver", "executor")
            for key, value in (("mount.path", "/data"), ("mount.readOnly", "false"), ("options.claimName", "lake-data"))
        },
    }
    assert spec["sparkConf"] == expected_conf
    assert spec["hadoopConf"] == {"fs.s3a.endpoint": "http://minio.storage:9000"}
    assert spec["deps"] == {"jars": ["local:///opt/extra/x.jar"]}
    assert spec["dynamicAllocation"] == {
        "enabled": True,
        "initialExecutors": 1,
        "minExecutors": 1,
        "maxExecutors": 6,
        "shuffleTrackingEnabled": True,
    }
    # cores are Spark's task slots; the pods request the (small, default) coreRequest
    assert (spec["driver"]["cores"], spec["driver"]["memory"]) == (2, "4g")
    assert (spec["executor"]["cores"], spec["executor"]["memory"]) == (2, "8g")
    for role in ("driver", "executor"):
        assert (spec[role]["coreRequest"], spec[role]["memoryOverhead"]) == ("500m", "512m")
    assert "instances" not in spec["executor"]
    assert spec["restartPolicy"] == {"type": "Never"}
    assert spec["timeToLiveSeconds"] == 3600
    assert spec["driver"]["serviceAccount"] == "spark-driver"
    assert spec["driver"]["javaOptions"] == (
        "-Dlog4j2.configurationFile=file:/opt/lakehouse/spark_jobs/log4j2.properties "
        "-Dlakehouse.log.level=WARN -XX:+UseParallelGC"
    )
    assert spec["executor"]["javaOptions"] == "-XX:+UseParallelGC"
    for role in ("driver", "executor"):
        pod = spec[role]
        assert pod["podSecurityContext"]["runAsNonRoot"] is True
        assert pod["podSecurityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        sc = pod["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert {m["mountPath"] for m in pod["volumeMounts"]} == {"/tmp", "/var/data/spark-local-dir-1"}
        assert pod["envSecretKeyRefs"] == {
            "AWS_ACCESS_KEY_ID": {"name": "s3-credentials", "key": "access-key"},
            "AWS_SECRET_ACCESS_KEY": {"name": "s3-credentials", "key": "secret-key"},
        }
        assert pod["envVars"]["PYTHONPATH"] == "/opt/lakehouse"
    assert {v["name"]: v for v in spec["volumes"]} == {
        "spark-local-dir-1": {"name": "spark-local-dir-1", "emptyDir": {"sizeLimit": "20Gi"}},
        "tmp": {"name": "tmp", "emptyDir": {"sizeLimit": "2Gi"}},
    }
    meta = app["metadata"]
    assert meta["labels"][FLOW_RUN_LABEL] == RUN.flow_run_id
    assert meta["labels"][TASK_RUN_LABEL] == RUN.task_run_id
    assert meta["labels"][ATTEMPT_LABEL] == "1"
    assert meta["labels"][JOB_LABEL] == "dyn-alloc"
    assert meta["annotations"]["prefect.io/flow-run-name"] == "brave-otter"
    assert meta["annotations"][SPEC_HASH] == spec_hash(spec)


def test_streaming_job_renders_restart_policy_always() -> None:
    settings = make_settings("spark-jobs")
    job = SparkJob(name="events-stream", entrypoint="spark_jobs.bronze", streaming=True)
    spec = render_application(job, settings, name="events-stream", run=RUN)["spec"]
    assert spec["restartPolicy"] == {
        "type": "Always",
        "onFailureRetryInterval": 10,
        "onSubmissionFailureRetryInterval": 10,
    }
    assert "timeToLiveSeconds" not in spec
    assert spec["executor"]["instances"] == 1
    assert "javaOptions" not in spec["executor"]  # no job options: the image's JVM defaults
    tuned = job.model_copy(update={"java_options": ("-XX:+UseParallelGC",)})
    spec = render_application(tuned, settings, name="events-stream", run=RUN)["spec"]
    assert spec["driver"]["javaOptions"].split()[-1] == "-XX:+UseParallelGC"
    assert spec["driver"]["javaOptions"].split()[0].startswith("-Dlog4j2.configurationFile=")
    assert spec["executor"]["javaOptions"] == "-XX:+UseParallelGC"


def test_kubernetes_jit_c1_reaches_driver_and_executor_before_the_jobs_own_options() -> None:
    job = SparkJob(name="medallion", entrypoint="spark_jobs.medallion", java_options=("-XX:TieredStopAtLevel=4",))
    tiered = render_application(job, make_settings("spark-jobs"), name="m", run=RUN)["spec"]
    assert "TieredStopAtLevel=1" not in tiered["driver"]["javaOptions"]
    assert tiered["executor"]["javaOptions"] == "-XX:TieredStopAtLevel=4"
    c1 = render_application(job, make_settings("spark-jobs", jit="c1"), name="m", run=RUN)["spec"]
    c1_only = ["-XX:TieredStopAtLevel=1", "-XX:ReservedCodeCacheSize=240m"]
    # the JVM takes the last of a repeated flag: the job's own option still wins
    assert c1["driver"]["javaOptions"].split()[2:] == [*c1_only, "-XX:TieredStopAtLevel=4"]
    assert c1["executor"]["javaOptions"].split() == [*c1_only, "-XX:TieredStopAtLevel=4"]
    plain = render_application(
        job.model_copy(update={"java_options": ()}), make_settings("spark-jobs", jit="c1"), name="m", run=RUN
    )["spec"]
    assert plain["executor"]["javaOptions"].split() == c1_only
    # a different JIT is a different app: a resubmission under the same name is not "the same"
    assert spec_hash(c1) != spec_hash(tiered)


def test_batch_apps_from_a_flow_run_pod_carry_its_name_for_the_reaper() -> None:
    pod = "nimble-otter-8zlf2-h6pmp"
    settings = make_settings("spark-jobs", submitter_pod=pod)
    batch = render_application(
        SparkJob(name="medallion", entrypoint="spark_jobs.medallion"), settings, name="medallion-1", run=RUN
    )
    assert batch["metadata"]["labels"][SUBMITTER_POD_LABEL] == pod
    stream = SparkJob(name="events-stream", entrypoint="spark_jobs.bronze", streaming=True)
    # the stream outlives its flow run by design: never the reaper's
    assert SUBMITTER_POD_LABEL not in render_application(stream, settings, name="s", run=RUN)["metadata"]["labels"]
    # outside a pod (a laptop, the tests' host process) there is no such label
    plain = render_application(
        SparkJob(name="medallion", entrypoint="spark_jobs.medallion"),
        make_settings("spark-jobs"),
        name="medallion-1",
        run=RUN,
    )
    assert SUBMITTER_POD_LABEL not in plain["metadata"]["labels"]
    assert batch["metadata"]["annotations"][SPEC_HASH] == plain["metadata"]["annotations"][SPEC_HASH]


def test_spec_hash_ignores_the_run_identity() -> None:
    settings = make_settings("spark-jobs")
    job = all_jobs(settings)[0]
    a = render_application(job, settings, name="n", run=RUN)
    b = render_application(job, settings, name="n", run=RunInfo(flow_run_id="other", attempt=3))
    assert a["metadata"]["annotations"][SPEC_HASH] == b["metadata"]["annotations"][SPEC_HASH]
    other = job.model_copy(update={"args": (*job.args, "--full-refresh")})
    c = render_application(other, settings, name="n", run=RUN)
    assert c["metadata"]["annotations"][SPEC_HASH] != a["metadata"]["annotations"][SPEC_HASH]


# --------------------------------------------------------------------------- real API server


def test_every_rendered_manifest_passes_dry_run_and_create(admin_api: client.ApiClient, namespace: str) -> None:
    settings = full_settings(namespace)
    backend = KubernetesBackend(settings, api_client=admin_api, run_info=lambda: RUN)
    apps = SparkApplications(admin_api, namespace)
    for job in all_jobs(settings):
        manifest = backend.render(job)
        dry = backend.dry_run(job)
        assert dry["metadata"]["name"] == manifest["metadata"]["name"]
        assert dry["spec"] == manifest["spec"]  # nothing pruned by the CRD's schema
        assert apps.get(manifest["metadata"]["name"]) is None  # a dry run stores nothing
        created = apps.create(copy.deepcopy(manifest))
        assert created["metadata"]["uid"]
        assert created["spec"] == manifest["spec"]
        assert created["metadata"]["labels"] == manifest["metadata"]["labels"]


@pytest.mark.parametrize("job_per_layer", [False, True])
def test_medallion_flow_jobs_render_for_kubernetes_with_no_job_change(
    admin_api: client.ApiClient,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
    job_per_layer: bool,
) -> None:
    """Item 3: the flow builds its jobs with lakehouse.pipeline.medallion_jobs whatever the
    backend; with backend=kubernetes, get_backend returns the Kubernetes backend and those very
    jobs (one per layer or one for all) render to SparkApplications the API server accepts."""
    monkeypatch.setenv("LAKEHOUSE_BACKEND", "kubernetes")
    monkeypatch.setenv("LAKEHOUSE_KUBERNETES__NAMESPACE", namespace)
    monkeypatch.setenv("LAKEHOUSE_STORAGE__ROOT", "s3a://lake")
    monkeypatch.setenv("LAKEHOUSE_PIPELINE__JOB_PER_LAYER", str(job_per_layer).lower())
    settings = Settings()
    backend = get_backend(settings)
    assert isinstance(backend, KubernetesBackend)
    assert get_backend(Settings(backend="local")).name == "local"
    start = dt.date(2026, 1, 1)
    jobs = medallion_jobs(list(LAYERS), settings, start=start, end=start + dt.timedelta(days=2), run_id=RUN.flow_run_id)
    assert len(jobs) == (3 if job_per_layer else 1)
    backend._api = admin_api
    for job in jobs:
        assert (ROOT / job.main_file).is_file()  # the same entrypoint file runs locally
        manifest = backend.render(job, RUN)
        assert manifest["spec"]["arguments"] == list(job.args)
        assert manifest["spec"]["mainApplicationFile"] == f"local:///opt/lakehouse/{job.main_file}"
        dry = backend.dry_run(job, RUN)
        assert dry["spec"]["arguments"][:2] == ["--root", "s3a://lake"]


def test_a_sasl_stream_reads_its_password_from_a_secret_ref_never_inline(
    admin_api: client.ApiClient, namespace: str
) -> None:
    """Kafka SASL_SSL on the cluster: the driver and the executors get the password as a
    secretKeyRef to the credentials Secret; the SparkApplication the API server stores holds
    the user name and the CA path, and nowhere the password."""
    from pydantic import SecretStr

    from lakehouse.settings import DeploySettings, KafkaSettings
    from lakehouse.streaming import streaming_job

    password = "pw-" + uuid.uuid4().hex
    base = make_settings(namespace)
    settings = base.model_copy(
        update={
            "kafka": KafkaSettings(
                bootstrap_servers="kafka:9093",
                security_protocol="SASL_SSL",
                sasl_username="ingest",
                sasl_password=SecretStr(password),
                ssl_ca_location="/etc/kafka-ca/ca.pem",
            ),
            "deploy": DeploySettings(credentials_secret="team-credentials"),
        }
    )
    job = streaming_job(settings, continuous=True)
    backend = KubernetesBackend(settings, api_client=admin_api, run_info=lambda: RUN)
    stored = SparkApplications(admin_api, namespace).create(copy.deepcopy(backend.render(job)))
    ref = {"name": "team-credentials", "key": "kafka-sasl-password"}
    for role in ("driver", "executor"):
        assert stored["spec"][role]["envSecretKeyRefs"]["LAKEHOUSE_KAFKA__SASL_PASSWORD"] == ref
    args = stored["spec"]["arguments"]
    assert args[args.index("--kafka-sasl-username") + 1] == "ingest"
    assert args[args.index("--kafka-ssl-ca-location") + 1] == "/etc/kafka-ca/ca.pem"
    assert password not in json.dumps(stored)
    # a setting that maps the credential elsewhere wins over the default Secret
    mapped = settings.model_copy(
        update={
            "kubernetes": settings.kubernetes.model_copy(
                update={"env_secret_refs": {"LAKEHOUSE_KAFKA__SASL_PASSWORD": "kafka-users:ingest"}}
            )
        }
    )
    spec = render_application(job, mapped, name="s", run=RUN)["spec"]
    assert spec["driver"]["envSecretKeyRefs"]["LAKEHOUSE_KAFKA__SASL_PASSWORD"] == {
        "name": "kafka-users",
        "key": "ingest",
    }
    # a PLAINTEXT stream reads no credential
    plain = streaming_job(base, continuous=True)
    assert plain.secret_env == ()
    assert "envSecretKeyRefs" not in render_application(plain, base, name="s", run=RUN)["spec"]["driver"]


def test_a_job_on_s3_reads_the_key_pair_from_secret_refs_never_inline(
    admin_api: client.ApiClient, namespace: str
) -> None:
    """s3a:// storage with a key pair: the driver and the executors get AWS_ACCESS_KEY_ID /
    AWS_SECRET_ACCESS_KEY as secretKeyRefs to the credentials Secret (S3A's environment
    provider reads them there), the S3A conf names the endpoint, and no key value is stored."""
    from pydantic import SecretStr

    from lakehouse.settings import DeploySettings, StorageSettings

    key_id, secret = "AKIA" + uuid.uuid4().hex[:16].upper(), "sk-" + uuid.uuid4().hex
    base = make_settings(namespace)
    settings = base.model_copy(
        update={
            "storage": StorageSettings(root="s3a://lake/prod"),
            "deploy": DeploySettings(
                credentials_secret="team-credentials",
                object_store_endpoint="http://s3.storage.svc:8333",
                object_store_access_key_id=SecretStr(key_id),
                object_store_secret_access_key=SecretStr(secret),
            ),
        }
    )
    job = layer_job("bronze", settings, start=dt.date(2026, 1, 1), end=dt.date(2026, 1, 1), run_id="r1")
    backend = KubernetesBackend(settings, api_client=admin_api, run_info=lambda: RUN)
    stored = SparkApplications(admin_api, namespace).create(copy.deepcopy(backend.render(job)))
    for role in ("driver", "executor"):
        refs = stored["spec"][role]["envSecretKeyRefs"]
        assert refs["AWS_ACCESS_KEY_ID"] == {"name": "team-credentials", "key": "object-store-access-key-id"}
        assert refs["AWS_SECRET_ACCESS_KEY"] == {"name": "team-credentials", "key": "object-store-secret-access-key"}
    conf = stored["spec"]["sparkConf"]
    assert conf["spark.hadoop.fs.s3a.endpoint"] == "http://s3.storage.svc:8333"
    assert conf["spark.hadoop.fs.s3a.aws.credentials.provider"].endswith("EnvironmentVariableCredentialsProvider")
    text = json.dumps(stored)
    assert key_id not in text and secret not in text
    # without a key pair (e.g. the pods' own cloud identity) no Secret is referenced
    keyless = settings.model_copy(update={"deploy": DeploySettings(credentials_secret="team-credentials")})
    assert "envSecretKeyRefs" not in render_application(job, keyless, name="s", run=RUN)["spec"]["driver"]
    # a flow-run pod has the pair only as AWS_* (from the same Secret): the jobs get the refs too
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ACCESS_KEY_ID", key_id)
        mp.setenv("AWS_SECRET_ACCESS_KEY", secret)
        spec = render_application(job, keyless, name="s", run=RUN)["spec"]
    assert set(spec["driver"]["envSecretKeyRefs"]) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert key_id not in json.dumps(spec) and secret not in json.dumps(spec)


def test_malformed_spec_is_refused_with_the_servers_causes(admin_api: client.ApiClient, namespace: str) -> None:
    settings = make_settings(namespace)
    manifest = render_application(all_jobs(settings)[0], settings, name="bad-one", run=RUN)
    manifest["spec"]["type"] = "Rust"
    manifest["spec"]["restartPolicy"] = {"type": "Sometimes"}
    del manifest["spec"]["sparkVersion"]
    with pytest.raises(SparkApplicationInvalid) as refused:
        SparkApplications(admin_api, namespace).create(manifest, dry_run=True)
    err = refused.value
    fields = {f for f, _ in err.causes}
    assert {"spec.type", "spec.sparkVersion", "spec.restartPolicy.type"} <= fields
    text = str(err)
    assert "refused SparkApplication 'bad-one' (422 Invalid)" in text
    assert 'spec.type: Unsupported value: "Rust"' in text
    assert "spec.sparkVersion: Required value" in text


def test_invalid_settings_reach_the_user_as_a_typed_error(admin_api: client.ApiClient, namespace: str) -> None:
    settings = make_settings(namespace, image_pull_policy="Never", tmp_size_limit="two gigs")
    backend = KubernetesBackend(settings, api_client=admin_api, run_info=lambda: RUN)
    with pytest.raises(SparkApplicationInvalid) as refused:
        backend.dry_run(all_jobs(settings)[0])
    assert any("sizeLimit" in f for f, _ in refused.value.causes)


def _pod_as_the_webhook_builds_it(spec: dict[str, Any], role: str, name: str) -> dict[str, Any]:
    """The pod the operator's mutating webhook produces from a SparkApplication: pod and
    container securityContext, the spec's volumes and the role's volumeMounts."""
    pod = spec[role]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "serviceAccountName": "spark-driver",
            "automountServiceAccountToken": False,
            "securityContext": pod["podSecurityContext"],
            "volumes": spec["volumes"],
            "containers": [
                {
                    "name": f"spark-kubernetes-{role}",
                    "image": spec["image"],
                    "securityContext": pod["securityContext"],
                    "volumeMounts": pod["volumeMounts"],
                }
            ],
        },
    }


def test_pods_of_a_rendered_app_meet_pod_security_restricted(admin_api: client.ApiClient, namespace: str) -> None:
    """The namespace enforces "restricted" (the real PodSecurity admission of the apiserver):
    driver and executor pods built from the rendered spec are admitted; the same pod without
    the rendered securityContext is refused."""
    settings = full_settings(namespace)
    spec = render_application(all_jobs(settings)[0], settings, name="psa", run=RUN)["spec"]
    core = client.CoreV1Api(admin_api)
    for role in ("driver", "executor"):
        pod = _pod_as_the_webhook_builds_it(spec, role, f"psa-{role}")
        core.create_namespaced_pod(namespace, pod, dry_run="All")
    bare = _pod_as_the_webhook_builds_it(spec, "driver", "psa-bare")
    del bare["spec"]["securityContext"]
    del bare["spec"]["containers"][0]["securityContext"]
    with pytest.raises(client.ApiException) as refused:
        core.create_namespaced_pod(namespace, bare, dry_run="All")
    assert refused.value.status == 403
    message = json.loads(refused.value.body)["message"]
    assert 'violates PodSecurity "restricted:latest"' in message
    assert "allowPrivilegeEscalation != false" in message


def test_pvc_volumes_are_admitted_by_pod_security_restricted_and_host_paths_are_not(
    admin_api: client.ApiClient, namespace: str
) -> None:
    """Why kubernetes.volumes takes PVCs: a driver pod with the rendered spec plus the PVC that
    Spark mounts from the rendered conf is admitted by "restricted"; a hostPath is refused."""
    settings = full_settings(namespace)
    spec = render_application(all_jobs(settings)[0], settings, name="pvc", run=RUN)["spec"]
    (volume,) = settings.kubernetes.volumes
    prefix = f"spark.kubernetes.driver.volumes.persistentVolumeClaim.{volume.name}"
    conf = spec["sparkConf"]
    core = client.CoreV1Api(admin_api)

    def pod(name: str, source: dict[str, Any]) -> dict[str, Any]:
        body = _pod_as_the_webhook_builds_it(spec, "driver", name)
        body["spec"]["volumes"] = [*spec["volumes"], {"name": volume.name, **source}]
        body["spec"]["containers"][0]["volumeMounts"] = [
            *spec["driver"]["volumeMounts"],
            {
                "name": volume.name,
                "mountPath": conf[f"{prefix}.mount.path"],
                "readOnly": conf[f"{prefix}.mount.readOnly"] == "true",
            },
        ]
        return body

    claim = {"persistentVolumeClaim": {"claimName": conf[f"{prefix}.options.claimName"]}}
    core.create_namespaced_pod(namespace, pod("pvc-driver", claim), dry_run="All")
    with pytest.raises(client.ApiException) as refused:
        core.create_namespaced_pod(namespace, pod("host-driver", {"hostPath": {"path": "/srv"}}), dry_run="All")
    assert refused.value.status == 403
    assert 'uses restricted volume type "hostPath"' in json.loads(refused.value.body)["message"]


# --------------------------------------------------------------------------- operator values


def test_operator_helm_values_pin_the_tested_version() -> None:
    release = yaml.safe_load((ROOT / "spark-operator" / "release.yaml").read_text())
    values = yaml.safe_load((ROOT / "spark-operator" / "values.yaml").read_text())
    assert release["version"] == release["appVersion"] == versions.SPARK_OPERATOR_VERSION
    assert values["image"]["tag"] == versions.SPARK_OPERATOR_VERSION
    assert values["webhook"]["enable"] is True
    assert values["spark"]["jobNamespaces"] == [KubernetesSettings().namespace]
    assert values["spark"]["serviceAccount"] == {"create": False, "name": KubernetesSettings().service_account}
    assert values["spark"]["rbac"] == {"create": False}
    header = (ROOT / "spark-operator" / "values.yaml").read_text().splitlines()[0]
    assert f"chart spark-operator {versions.SPARK_OPERATOR_VERSION}" in header


def test_the_backend_does_not_import_prefect_or_pyspark() -> None:
    """Prefect pieces (run identity, artifacts) are imported only when called."""
    import subprocess
    import sys

    code = (
        "import sys, lakehouse.backends.kubernetes, lakehouse.k8s.cli; "
        "print(sorted(m for m in ('prefect', 'pyspark', 'prefect_kubernetes') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"
