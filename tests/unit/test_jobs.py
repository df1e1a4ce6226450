"""SparkJob validation and its spark-submit rendering."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from lakehouse import jars
from lakehouse.backends.local import LocalBackend
from lakehouse.errors import ConfigError
from lakehouse.jobs import Resources, SparkJob
from lakehouse.pipeline import layer_job, ordered_layers
from lakehouse.settings import REPO_ROOT, Settings


@pytest.mark.parametrize("name", ["Bronze", "-x", "a_b", "x" * 41, ""])
def test_bad_job_names_are_refused_with_the_rule(name: str) -> None:
    with pytest.raises(ValidationError, match="DNS-1123"):
        SparkJob(name=name, entrypoint="spark_jobs.bronze")


def test_entrypoint_must_be_a_spark_jobs_module() -> None:
    with pytest.raises(ValidationError, match="module under spark_jobs"):
        SparkJob(name="x", entrypoint="os.system")
    with pytest.raises(ValidationError, match="memory must look like"):
        Resources(driver_memory="lots")


def test_missing_entrypoint_file_is_a_clear_error() -> None:
    job = SparkJob(name="x", entrypoint="spark_jobs.nope")
    with pytest.raises(ConfigError, match=r"spark_jobs\.nope"):
        job.main_path(REPO_ROOT)


def test_layer_order_and_unknown_layers() -> None:
    assert ordered_layers(["gold", "bronze"]) == ["bronze", "gold"]
    with pytest.raises(ConfigError, match="valid layers: bronze, silver, gold"):
        ordered_layers(["platinum"])


def test_spark_submit_rendering(tmp_path: Path) -> None:
    settings = Settings(storage={"root": str(tmp_path)}, spark={"conf": {"spark.x": "1"}, "driver_memory": "3g"})
    job = layer_job(
        "silver", settings, start=dt.date(2026, 1, 1), end=dt.date(2026, 1, 2), run_id="r1", full_refresh=True
    )
    job = job.model_copy(update={"conf": {"spark.sql.shuffle.partitions": "7"}})
    cmd = LocalBackend(settings).command(job)
    assert cmd[0] == str(jars.spark_home() / "bin" / "spark-submit")
    assert cmd[cmd.index("--driver-memory") + 1] == "3g"
    assert cmd[cmd.index("--name") + 1] == "medallion-silver"
    confs = {c.split("=", 1)[0]: c.split("=", 1)[1] for c in cmd[1:] if "=" in c and cmd[cmd.index(c) - 1] == "--conf"}
    assert confs["spark.sql.shuffle.partitions"] == "7"  # the job wins over the preset
    assert confs["spark.x"] == "1"
    assert confs["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"
    assert confs["spark.sql.adaptive.skewJoin.enabled"] == "true"
    assert confs["spark.serializer"] == "org.apache.spark.serializer.KryoSerializer"
    assert set(cmd[cmd.index("--jars") + 1].split(",")) == {str(p) for p in jars.resolved_jars()}
    main = cmd.index(str(REPO_ROOT / "spark_jobs" / "silver.py"))
    assert cmd[main + 1 :] == [
        "--root",
        str(tmp_path),
        "--start",
        "2026-01-01",
        "--end",
        "2026-01-02",
        "--run-id",
        "r1",
        "--parallelism",
        "3",
        "--interpret-below-mb",
        "16",
        "--sources",
        "orders,users,events",
        "--full-refresh",
    ]


def test_s3a_storage_adds_the_s3a_jars_and_conf_and_keys_only_in_the_environment() -> None:
    from pydantic import SecretStr

    from lakehouse import versions
    from lakehouse.settings import DeploySettings

    # hadoop-aws must be the Hadoop of the wheel
    assert (jars.spark_home() / "jars" / f"hadoop-client-api-{versions.HADOOP_VERSION}.jar").is_file()
    assert (jars.jars_dir(jars.S3) / f"hadoop-aws-{versions.HADOOP_VERSION}.jar").is_file()
    secret = "sk-" + "7f3a9c"  # a fake key; it must not reach the command line
    settings = Settings(
        storage={"root": "s3a://lake/root"},
        deploy=DeploySettings(
            object_store_endpoint="http://127.0.0.1:8333",
            object_store_region="eu-west-1",
            object_store_access_key_id=SecretStr("AKID"),
            object_store_secret_access_key=SecretStr(secret),
        ),
    )
    job = layer_job("bronze", settings, start=dt.date(2026, 1, 1), end=dt.date(2026, 1, 1), run_id="r")
    backend = LocalBackend(settings)
    cmd = backend.command(job)
    assert set(cmd[cmd.index("--jars") + 1].split(",")) == {
        str(p) for p in jars.resolved_jars() + jars.resolved_jars(jars.S3)
    }
    confs = dict(c.split("=", 1) for c in cmd if c.startswith("spark.hadoop.fs.s3a."))
    assert confs["spark.hadoop.fs.s3a.endpoint"] == "http://127.0.0.1:8333"
    assert confs["spark.hadoop.fs.s3a.endpoint.region"] == "eu-west-1"
    assert confs["spark.hadoop.fs.s3a.path.style.access"] == "true"  # an endpoint: path style
    assert confs["spark.hadoop.fs.s3a.aws.credentials.provider"].endswith("EnvironmentVariableCredentialsProvider")
    assert secret not in " ".join(cmd) and "AKID" not in " ".join(cmd)
    env = backend.environment(job)
    assert env["AWS_ACCESS_KEY_ID"] == "AKID" and env["AWS_SECRET_ACCESS_KEY"] == secret
    # a local root: neither the S3A jars nor its conf
    local = LocalBackend(Settings()).command(job)
    assert set(local[local.index("--jars") + 1].split(",")) == {str(p) for p in jars.resolved_jars()}
    assert not [c for c in local if c.startswith("spark.hadoop.fs.s3a.")]


def test_start_after_end_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="after end_date"):
        layer_job("bronze", Settings(), start=dt.date(2026, 1, 2), end=dt.date(2026, 1, 1), run_id="r")


def test_one_fused_job_by_default_or_one_job_per_layer(tmp_path: Path) -> None:
    from lakehouse.pipeline import medallion_jobs

    kw = dict(start=dt.date(2026, 1, 1), end=dt.date(2026, 1, 1), run_id="r")
    fused = medallion_jobs(["gold", "bronze"], Settings(storage={"root": str(tmp_path)}), **kw)
    assert [(j.name, j.entrypoint) for j in fused] == [("medallion", "spark_jobs.medallion")]
    assert fused[0].args[-2:] == ("--layers", "bronze,gold")
    split = medallion_jobs(["gold", "bronze"], Settings(pipeline={"job_per_layer": True}), **kw)
    assert [j.entrypoint for j in split] == ["spark_jobs.bronze", "spark_jobs.gold"]


def test_tables_choose_layers_sources_and_gold_tables(tmp_path: Path) -> None:
    from lakehouse.pipeline import LAYERS, medallion_jobs, plan_tables

    plan = plan_tables(["gold.daily_revenue", "silver/users", "bronze/orders"], LAYERS, None)
    assert (plan.layers, plan.sources, plan.gold_tables) == (list(LAYERS), ("orders", "users"), ("daily_revenue",))
    only_gold = plan_tables(["gold/hourly_stats"], LAYERS, None)
    assert (only_gold.layers, only_gold.sources, only_gold.gold_tables) == (["gold"], None, ("hourly_stats",))
    with pytest.raises(ConfigError, match=r"written with silver/users"):
        plan_tables(["silver/users_history"], LAYERS, None)
    with pytest.raises(ConfigError, match="either tables or sources"):
        plan_tables(["silver/users"], LAYERS, ["users"])
    with pytest.raises(ConfigError, match="none of the tables"):
        plan_tables(["gold/daily_revenue"], ["bronze"], None)
    kw = dict(start=dt.date(2026, 1, 1), end=dt.date(2026, 1, 1), run_id="r")
    (job,) = medallion_jobs(LAYERS, Settings(storage={"root": str(tmp_path)}), tables=["gold/daily_revenue"], **kw)
    args = list(job.args)
    assert args[args.index("--layers") + 1] == "gold"
    assert args[args.index("--gold-tables") + 1] == "daily_revenue"


def test_gold_table_names_match_the_gold_job() -> None:
    from lakehouse.pipeline import GOLD_TABLES
    from spark_jobs.gold import TABLES

    assert tuple(t.name for t in TABLES) == GOLD_TABLES


@pytest.mark.parametrize(("cores", "parts"), [(1, "4"), (2, "4"), (3, "6"), (16, "32")])
def test_preset_sizes_shuffle_and_delta_snapshot_partitions_to_the_cores(cores: int, parts: str) -> None:
    from spark_jobs.conf import tuning_preset

    preset = tuning_preset(cores)
    assert preset["spark.sql.shuffle.partitions"] == parts
    # Delta's fixed default (50 tasks per snapshot rebuild) is what the preset replaces
    assert preset["spark.databricks.delta.snapshotPartitions"] == parts


def test_in_process_run_needs_a_live_spark_session() -> None:
    code = (
        "import sys\n"
        "from lakehouse.backends.local import LocalBackend\n"
        "from lakehouse.errors import SparkJobError\n"
        "from lakehouse.jobs import SparkJob\n"
        "from lakehouse.settings import Settings\n"
        "try:\n"
        "    LocalBackend(Settings()).run_in_process(SparkJob(name='d', entrypoint='spark_jobs.diagnostics'),"
        " log=print)\n"
        "except SparkJobError as exc:\n"
        "    print(type(exc).__name__, exc, 'pyspark' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, check=True)
    assert "SparkJobError" in out.stdout and "no SparkSession runs here" in out.stdout
    assert out.stdout.strip().endswith("False")  # nothing was imported to find out


def test_warm_mode_runs_batch_jobs_warm_and_leaves_the_rest_to_spark_submit(monkeypatch: pytest.MonkeyPatch) -> None:
    from lakehouse.backends import get_backend
    from lakehouse.backends.local import LocalBackend
    from lakehouse.backends.warm import WarmBackend, eligible

    monkeypatch.delenv("LAKEHOUSE_SPARK__MODE", raising=False)
    assert isinstance(get_backend(Settings()), WarmBackend)  # warm is the default for local runs
    assert type(get_backend(Settings(spark={"mode": "submit"}))) is LocalBackend
    assert eligible(SparkJob(name="medallion", entrypoint="spark_jobs.medallion"))
    assert not eligible(SparkJob(name="stream", entrypoint="spark_jobs.streaming"))
    assert not eligible(SparkJob(name="x", entrypoint="spark_jobs.bronze", secret_env=("KAFKA_PASSWORD",)))
    assert not eligible(SparkJob(name="x", entrypoint="spark_jobs.bronze", conf={"spark.x": "1"}))


def test_a_warm_server_is_never_reused_with_other_object_store_keys(tmp_path: Path) -> None:
    """The server holds the keys it was started with: other keys get another server, and its
    socket's name carries nothing computed from the keys alone."""
    import hashlib

    from lakehouse.backends.warm import WarmServer

    def server(key_id: str, secret: str) -> WarmServer:
        deploy = {"object_store_access_key_id": key_id, "object_store_secret_access_key": secret}
        settings = Settings(storage={"root": "s3a://lake/x"}, deploy=deploy, spark={"warm_dir": str(tmp_path)})
        return WarmServer(LocalBackend(settings))

    a, a_again, b = server("id-a", "secret-a"), server("id-a", "secret-a"), server("id-a", "secret-b")
    assert a.socket == a_again.socket != b.socket
    assert a.socket.parent == tmp_path
    assert oct((tmp_path / "fingerprint.key").stat().st_mode & 0o777) == "0o600"
    for secret in ("secret-a", '{"AWS_ACCESS_KEY_ID": "id-a", "AWS_SECRET_ACCESS_KEY": "secret-a"}'):
        assert hashlib.sha256(secret.encode()).hexdigest()[:12] not in a.socket.name
    # off the object store nothing is fingerprinted and no key file is needed
    local = WarmServer(LocalBackend(Settings(spark={"warm_dir": str(tmp_path / "other")})))
    assert not (tmp_path / "other" / "fingerprint.key").exists() and local.socket.parent == tmp_path / "other"


def test_a_new_warm_server_warms_up_the_way_the_real_runs_will_go(tmp_path: Path) -> None:
    """Its warm-up runs interpreted while the real lakehouse is small (as its runs will), with
    code generation once it is not (its sample data alone is always small)."""
    import json

    from lakehouse.backends.warm import WarmServer

    def warm_up_limits(settings: Settings) -> set[str]:
        plan = json.loads(WarmServer(LocalBackend(settings))._warm_up_plan().read_text())
        return {r["args"][r["args"].index("--interpret-below-mb") + 1] for r in plan["runs"]}

    root = tmp_path / "lake"
    (root / "warehouse" / "silver" / "events").mkdir(parents=True)
    (root / "warehouse" / "silver" / "events" / "part-0.parquet").write_bytes(b"p" * 3000)
    spark = {"warm_dir": str(tmp_path / "sockets"), "interpret_below_mb": 4000 / 2**20}
    assert warm_up_limits(Settings(storage={"root": str(root)}, spark=spark)) == {f"{4000 / 2**20:g}"}
    (root / "warehouse" / "silver" / "events" / "part-1.parquet").write_bytes(b"p" * 1000)  # now 4,000 bytes
    assert warm_up_limits(Settings(storage={"root": str(root)}, spark=spark)) == {"0"}


def test_a_driver_never_inherits_a_spark_connect_client_mark(monkeypatch: pytest.MonkeyPatch) -> None:
    """pyspark marks a whole process as a Spark Connect client once it made a Connect session
    (dbt's warm target does, in the flow process): a driver or warm server launched from there
    afterwards must still start a classic Spark, and gets no Connect token."""
    monkeypatch.setenv("SPARK_CONNECT_MODE_ENABLED", "1")
    monkeypatch.setenv("SPARK_REMOTE", "sc://localhost:15002")
    monkeypatch.setenv("SPARK_CONNECT_AUTHENTICATE_TOKEN", "a-token")
    monkeypatch.setenv("LAKEHOUSE_UNRELATED", "kept")
    env = LocalBackend(Settings()).environment()
    assert not {"SPARK_CONNECT_MODE_ENABLED", "SPARK_REMOTE", "SPARK_CONNECT_AUTHENTICATE_TOKEN"} & set(env)
    assert env["LAKEHOUSE_UNRELATED"] == "kept"


def test_a_private_temporary_directory_reaches_the_jvm_spark_and_python(tmp_path: Path) -> None:
    job = SparkJob(name="diag", entrypoint="spark_jobs.diagnostics")
    backend = LocalBackend(Settings())
    cmd = backend.command(job, tmp_dir=tmp_path)
    confs = dict(c.split("=", 1) for c in cmd if c.startswith("spark."))
    assert f"-Djava.io.tmpdir={tmp_path}" in confs["spark.driver.extraJavaOptions"].split()
    assert "spark.local.dir" not in confs  # Spark warns in every run when that is set
    assert confs["spark.hadoop.hadoop.tmp.dir"] == str(tmp_path)  # S3A's upload buffers too
    env = backend.environment(job, tmp_dir=tmp_path)
    assert env["TMPDIR"] == env["SPARK_LOCAL_DIRS"] == str(tmp_path)
    # without one, none is set
    assert not [c for c in backend.command(job) if "java.io.tmpdir" in c or "hadoop.tmp.dir" in c]
    assert not {"TMPDIR", "SPARK_LOCAL_DIRS"} & (backend.environment(job).keys() - os.environ.keys())
    # a spark.local.dir of the user's settings wins (SPARK_LOCAL_DIRS would override it)
    spill = str(tmp_path / "spill")
    own = LocalBackend(Settings(spark={"conf": {"spark.local.dir": spill}}))
    assert f"spark.local.dir={spill}" in own.command(job, tmp_dir=tmp_path)
    assert own.environment(job, tmp_dir=tmp_path).get("SPARK_LOCAL_DIRS") == os.environ.get("SPARK_LOCAL_DIRS")
