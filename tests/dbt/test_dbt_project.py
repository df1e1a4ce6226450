"""The dbt project and its environment without Spark: settings -> DBT_LAKEHOUSE_* variables,
the command line, typed errors, and the project parsing under the real dbt-core + dbt-spark."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import yaml

from lakehouse import dbt as lhdbt
from lakehouse.dbt import DbtSettings
from lakehouse.errors import ConfigError
from lakehouse.pipeline import small_lakehouse
from lakehouse.settings import REPO_ROOT, Settings, StorageSettings

pytestmark = pytest.mark.dbt

PROJECT = REPO_ROOT / "dbt"


def _settings(root: str) -> Settings:
    return Settings(storage=StorageSettings(root=root))


def test_local_target_environment(tmp_path: Path) -> None:
    root = tmp_path / "lake"
    (root / "warehouse" / "silver" / "orders" / "_delta_log").mkdir(parents=True)
    (root / "warehouse" / "gold" / "not_delta").mkdir(parents=True)
    env = lhdbt.dbt_env(_settings(str(root)), DbtSettings(target="local", spark_conf={"spark.x": "1"}))
    assert env["DBT_LAKEHOUSE_TARGET"] == "local"
    assert env["DBT_LAKEHOUSE_WAREHOUSE"] == f"{root}/warehouse"
    assert env["DBT_LAKEHOUSE_CATALOG_DIR"] == f"{root}/metastore/warehouse"
    assert json.loads(env["DBT_LAKEHOUSE_DELTA_TABLES"]) == ["silver/orders"]
    conf = json.loads(env["DBT_LAKEHOUSE_SPARK_CONF"])
    assert conf["spark.hadoop.javax.jdo.option.ConnectionURL"] == (
        f"jdbc:derby:;databaseName={root}/metastore/metastore_db;create=true"
    )
    assert f"-Dderby.system.home={root}/metastore" in conf["spark.driver.extraJavaOptions"]
    # Hive's per-session resources directory (never removed) is kept beside the metastore, not in /tmp
    assert conf["spark.hadoop.hive.downloaded.resources.dir"] == f"{root}/metastore/resources"
    assert conf["spark.sql.extensions"] == "io.delta.sql.DeltaSparkSessionExtension"
    assert conf["spark.driver.bindAddress"] == "127.0.0.1"
    assert all(Path(j).is_file() for j in conf["spark.jars"].split(","))
    assert conf["spark.x"] == "1"  # the dbt spark_conf setting wins


def test_the_target_follows_the_backend_and_the_spark_mode(tmp_path: Path) -> None:
    """warm (the default mode) -> the warm Spark over Spark Connect; submit -> in-process;
    kubernetes -> the cluster's server. The warm target needs no local metastore (the catalog is
    the server's), and gets its endpoint only while a flow holds it (dbt_environment)."""
    root = tmp_path / "lake"
    assert DbtSettings().resolved_target(_settings(str(root))) == "warm"
    submit = Settings(storage=StorageSettings(root=str(root)), spark={"mode": "submit"})
    assert DbtSettings().resolved_target(submit) == "local"
    on_k8s = Settings(backend="kubernetes", storage=StorageSettings(root=str(root)))
    assert DbtSettings().resolved_target(on_k8s) == "cluster"
    env = lhdbt.dbt_env(_settings(str(root)), DbtSettings())
    assert env["DBT_LAKEHOUSE_TARGET"] == "warm"
    assert env["DBT_LAKEHOUSE_CATALOG_DIR"] == f"{root}/metastore/warehouse"
    assert "DBT_LAKEHOUSE_SPARK_CONF" not in env and "DBT_LAKEHOUSE_SPARK_REMOTE" not in env
    assert lhdbt.artifacts_dir(_settings(str(root)), DbtSettings()) == root / "dbt"
    abfs = lhdbt.dbt_env(_settings("abfss://lake@account.dfs.core.windows.net/prod"), DbtSettings())
    assert abfs["DBT_LAKEHOUSE_TARGET"] == "warm" and "DBT_LAKEHOUSE_CATALOG_DIR" not in abfs
    assert lhdbt.main(["env"]) == 1  # the endpoint is a flow's, not for export lines


def test_remote_root_needs_a_local_metastore_or_the_cluster_target() -> None:
    s3 = _settings("s3a://bucket/lake")
    with pytest.raises(ConfigError, match="LAKEHOUSE_DBT__METASTORE_DIR"):
        lhdbt.dbt_env(s3, DbtSettings(target="local"))  # refused before anything reaches the store
    abfs = _settings("abfss://lake@account.dfs.core.windows.net/prod")
    env = lhdbt.dbt_env(abfs, DbtSettings(target="local", metastore_dir="/var/lib/metastore"))
    assert env["DBT_LAKEHOUSE_WAREHOUSE"] == "abfss://lake@account.dfs.core.windows.net/prod/warehouse"
    assert "DBT_LAKEHOUSE_DELTA_TABLES" not in env  # only local and s3a:// roots are listed
    with pytest.raises(ConfigError, match="LAKEHOUSE_DBT__SPARK_REMOTE"):
        lhdbt.dbt_env(s3, DbtSettings(target="cluster"))
    remote = "sc://lakehouse-spark-connect.spark-jobs.svc:15002"
    env = lhdbt.dbt_env(s3, DbtSettings(target="cluster", spark_remote=remote))
    assert env["DBT_LAKEHOUSE_SPARK_REMOTE"] == remote
    assert "DBT_LAKEHOUSE_SPARK_CONF" not in env
    # the kubernetes backend defaults to the cluster target
    on_k8s = Settings(backend="kubernetes", storage=StorageSettings(root="s3a://bucket/lake"))
    env = lhdbt.dbt_env(on_k8s, DbtSettings(spark_remote=remote))
    assert env["DBT_LAKEHOUSE_TARGET"] == "cluster"


def test_an_unreachable_object_store_is_named_when_the_tables_are_listed() -> None:
    """The local target lists an s3a:// root itself; an endpoint that does not answer (a closed
    loopback port) fails within seconds with an error naming the settings to check."""
    from pydantic import SecretStr

    from lakehouse.settings import DeploySettings
    from lakehouse.testing.processes import free_ports

    settings = _settings("s3a://bucket/lake").model_copy(
        update={
            "deploy": DeploySettings(
                object_store_endpoint=f"http://127.0.0.1:{free_ports(1)[0]}",
                object_store_access_key_id=SecretStr("AKIDTEST"),
                object_store_secret_access_key=SecretStr("not-a-real-secret"),
            )
        }
    )
    began = time.monotonic()
    with pytest.raises(ConfigError, match="LAKEHOUSE_DEPLOY__OBJECT_STORE_ENDPOINT") as refused:
        lhdbt.dbt_env(settings, DbtSettings(target="local", metastore_dir="/var/lib/metastore"))
    assert time.monotonic() - began < 60
    assert "s3a://bucket/lake/warehouse" in str(refused.value)
    # the cause is the closed port, not some other failure on the way
    assert "EndpointConnectionError" in str(refused.value) or "ConnectionRefused" in str(refused.value), str(
        refused.value
    )
    assert "not-a-real-secret" not in str(refused.value)


def test_cluster_target_does_not_look_at_the_storage_from_the_calling_process(tmp_path: Path) -> None:
    """A flow-run pod does not mount the lake (/data/lake of the Spark pods): the server checks
    the sources, the client neither lists tables nor writes its artifacts there."""
    root = tmp_path / "lake"  # nothing here: as the pod sees a PVC path of the Spark pods
    remote = "sc://lakehouse-spark-connect.spark-jobs.svc:15002"
    settings, cluster = _settings(str(root)), DbtSettings(target="cluster", spark_remote=remote)
    env = lhdbt.dbt_env(settings, cluster)
    assert "DBT_LAKEHOUSE_DELTA_TABLES" not in env
    assert env["DBT_LAKEHOUSE_WAREHOUSE"] == f"{root}/warehouse"
    assert lhdbt.missing_silver_tables(settings, cluster) == []
    assert lhdbt.artifacts_dir(settings, cluster) == cluster.project_dir
    # the local target still checks its own view of the storage
    assert lhdbt.missing_silver_tables(settings, DbtSettings()) == ["orders", "users", "events"]
    assert lhdbt.artifacts_dir(settings, DbtSettings()) == root / "dbt"


def test_command_line_and_vars(tmp_path: Path) -> None:
    settings = _settings(str(tmp_path))
    args = lhdbt.command_args(
        ["build", "--select", "fct_daily_revenue"],
        settings,
        DbtSettings(freshness_warn_hours=2, freshness_error_hours=3),
        {"enable_failing_test": True},
    )
    assert args[:3] == ["build", "--select", "fct_daily_revenue"]
    assert args[args.index("--project-dir") + 1] == str(PROJECT)
    assert args[args.index("--target-path") + 1] == str(tmp_path / "dbt" / "target")
    assert json.loads(args[args.index("--vars") + 1]) == {
        "freshness_warn_hours": 2,
        "freshness_error_hours": 3,
        "enable_failing_test": True,
    }
    with pytest.raises(ConfigError, match="must not be below"):
        lhdbt.dbt_vars(DbtSettings(freshness_warn_hours=5, freshness_error_hours=4))


# No Spark is needed to parse: the cluster target renders without connecting (and leaves any
# in-process Spark of the local target alone).
CLUSTER = DbtSettings(target="cluster", spark_remote="sc://127.0.0.1:15002")


def test_environment_is_set_for_the_invocation_and_restored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DBT_LAKEHOUSE_WAREHOUSE", raising=False)
    with lhdbt.dbt_environment(_settings(str(tmp_path)), CLUSTER) as env:
        assert os.environ["DBT_LAKEHOUSE_WAREHOUSE"] == env["DBT_LAKEHOUSE_WAREHOUSE"]
    assert "DBT_LAKEHOUSE_WAREHOUSE" not in os.environ


def test_a_process_runs_the_local_target_for_one_metastore_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once dbt started Spark here for one root, another root is refused, not half-served."""
    monkeypatch.setattr(lhdbt, "_opened", {"metastore": "jdbc:derby:;databaseName=/elsewhere"})
    monkeypatch.delenv("DBT_LAKEHOUSE_WAREHOUSE", raising=False)
    with (
        pytest.raises(ConfigError, match="cannot switch"),
        lhdbt.dbt_environment(_settings(str(tmp_path)), DbtSettings(target="local")),
    ):
        pass
    assert "DBT_LAKEHOUSE_WAREHOUSE" not in os.environ  # restored on the way out


def test_profile_and_project_hold_no_machine_specific_path() -> None:
    for name in ("profiles.yml", "dbt_project.yml"):
        text = (PROJECT / name).read_text()
        assert str(REPO_ROOT) not in text and "/tmp/" not in text and "/home/" not in text
    profile = yaml.safe_load((PROJECT / "profiles.yml").read_text())["lakehouse"]
    assert set(profile["outputs"]) == {"local", "warm", "cluster"}
    assert all(o["type"] == "spark" and o["method"] == "session" for o in profile["outputs"].values())


def test_the_demos_reset_keeps_dbts_saved_parse_and_dbt_starts_from_it(tmp_path: Path) -> None:
    """`lakehouse demo` starts from no tables and no dbt artifacts, except dbt's saved parse of
    the project: dbt's next parse starts from it instead of parsing the whole project again."""
    from dbt.cli.main import dbtRunner

    from lakehouse.cli import DBT_PARSE_CACHE, reset_demo_root

    settings = _settings(str(tmp_path))
    # the demo's artifacts (a local root's default); the cluster target parses without Spark
    dbt = CLUSTER.model_copy(update={"artifacts_dir": str(tmp_path / "dbt")})
    events: list[str] = []

    def parse() -> None:
        events.clear()
        with lhdbt.dbt_environment(settings, dbt):
            runner = dbtRunner(callbacks=[lambda e: events.append(e.info.name)])
            res = runner.invoke(lhdbt.command_args(["parse"], settings, dbt))
        assert res.success, res.exception

    parse()
    assert "UnableToPartialParse" in events  # nothing saved yet: a full parse
    assert (tmp_path / DBT_PARSE_CACHE).is_file() and (tmp_path / "dbt" / "target" / "manifest.json").is_file()
    for part in ("landing", "warehouse", "metastore"):
        (tmp_path / part / "t").mkdir(parents=True)
        (tmp_path / part / "t" / "f").write_text("x")
    reset_demo_root(tmp_path)
    left = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert left == [DBT_PARSE_CACHE.as_posix()]
    parse()
    assert "PartialParsingEnabled" in events and "UnableToPartialParse" not in events


def test_the_project_parses_with_one_yml_per_model(tmp_path: Path) -> None:
    """dbt parse (no Spark connection): the models, their tests and unit tests are all there."""
    from dbt.cli.main import dbtRunner

    settings = _settings(str(tmp_path))
    for sql in (PROJECT / "models").rglob("*.sql"):
        assert sql.with_suffix(".yml").is_file(), f"{sql.name} has no yml of its own"
    with lhdbt.dbt_environment(settings, CLUSTER):
        res = dbtRunner().invoke(lhdbt.command_args(["parse"], settings, CLUSTER))
    assert res.success, res.exception
    manifest = res.result
    models = {n.name: n for n in manifest.nodes.values() if n.resource_type == "model"}
    assert set(models) == {
        "stg_orders",
        "stg_users",
        "stg_events",
        "fct_daily_revenue",
        "dim_users",
        "fct_hourly_events",
        "fct_daily_revenue_by_country",
    }
    revenue = models["fct_daily_revenue"].config
    assert (revenue.materialized, revenue.incremental_strategy, revenue.get("file_format"), revenue.unique_key) == (
        "incremental",
        "merge",
        "delta",
        "date_day",
    )
    assert all(models[m].config.materialized == "view" for m in ("stg_orders", "stg_users", "stg_events"))
    tests = {n.name: n for n in manifest.nodes.values() if n.resource_type == "test"}
    kinds = {t.test_metadata.name for t in tests.values() if getattr(t, "test_metadata", None)}
    assert {"unique", "not_null", "accepted_values", "relationships"} <= kinds
    assert "assert_fails_on_purpose" not in tests  # enabled only with the var
    assert {u.name for u in manifest.unit_tests.values()} >= {
        "fct_daily_revenue_counts_sums_and_rounds_half_up",
        "fct_daily_revenue_incremental_run_recomputes_only_changed_days",
    }
    sources = {s.name: s for s in manifest.sources.values()}
    assert set(sources) == {"orders", "users", "events", "users_history"}
    history = sources.pop("users_history")  # SCD2 of users: no load time of its own
    assert history.freshness is None or history.freshness.error_after.count is None, history.freshness
    for s in sources.values():
        assert s.loaded_at_field == "_ingested_at"
        assert s.freshness is not None and s.freshness.error_after.count == 50
    for sql in (PROJECT / "models").rglob("*.sql"):
        assert "select *" not in sql.read_text().lower(), f"{sql.name} selects *"


def test_a_small_lakehouse_runs_dbt_interpreted(tmp_path: Path) -> None:
    """Below spark.interpret_below_mb of table files, both in-process targets' sessions run their
    queries interpreted, as the jobs do; at or above it, or on a remote root, they do not."""
    root = tmp_path / "lake"
    table = root / "warehouse" / "silver" / "orders"
    (table / "_delta_log").mkdir(parents=True)
    (table / "_delta_log" / "00000000000000000000.json").write_bytes(b"{" * 3000)
    (table / "part-0.parquet").write_bytes(b"p" * 2000)  # 5,000 bytes in all
    (root / "landing").mkdir()
    (root / "landing" / "big.json").write_bytes(b"x" * 100_000)  # not a table: not counted

    def settings(limit_bytes: float, **spark: object) -> Settings:
        return Settings(
            storage=StorageSettings(root=str(root)), spark={"interpret_below_mb": limit_bytes / 2**20, **spark}
        )

    interpreted = {"spark.sql.codegen.wholeStage": "false", "spark.sql.codegen.factoryMode": "NO_CODEGEN"}
    assert small_lakehouse(settings(5001)) and not small_lakehouse(settings(5000))
    assert not small_lakehouse(settings(0))
    assert not small_lakehouse(
        Settings(storage=StorageSettings(root="s3a://lake/prod"), spark={"interpret_below_mb": 1e6})
    )
    # the warm target: the Spark Connect session's own conf
    warm = lhdbt.dbt_env(settings(5001), DbtSettings())
    assert json.loads(warm["DBT_LAKEHOUSE_SESSION_CONF"]) == interpreted
    assert "DBT_LAKEHOUSE_SESSION_CONF" not in lhdbt.dbt_env(settings(5000), DbtSettings())
    # the local target: its session's conf, where the user's own Spark conf still wins
    local = json.loads(lhdbt.dbt_env(settings(5001), DbtSettings(target="local"))["DBT_LAKEHOUSE_SPARK_CONF"])
    assert {k: local[k] for k in interpreted} == interpreted
    mine = settings(5001, conf={"spark.sql.codegen.wholeStage": "true"})
    local = json.loads(lhdbt.dbt_env(mine, DbtSettings(target="local"))["DBT_LAKEHOUSE_SPARK_CONF"])
    assert local["spark.sql.codegen.wholeStage"] == "true"
    big = json.loads(lhdbt.dbt_env(settings(5000), DbtSettings(target="local"))["DBT_LAKEHOUSE_SPARK_CONF"])
    assert "spark.sql.codegen.factoryMode" not in big


@pytest.mark.parametrize(("target", "connect"), [("warm", True), ("local", False)])
def test_preload_imports_dbt_in_the_background(tmp_path: Path, target: str, connect: bool) -> None:
    """A fresh interpreter: after ``preload``'s thread ends, prefect-dbt (with dbt's CLI) is
    imported, and the Spark Connect client only for a Spark Connect target."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from lakehouse.dbt import DbtSettings, preload\n"
        "from lakehouse.settings import Settings, StorageSettings\n"
        f"before = {{m for m in ('prefect_dbt', 'dbt.cli.main', 'pyspark.sql.connect.session') if m in sys.modules}}\n"
        f"t = preload(Settings(storage=StorageSettings(root={str(tmp_path)!r})), DbtSettings(target={target!r}))\n"
        "t.join(120)\n"
        "print(sorted(before), t.is_alive(), 'prefect_dbt' in sys.modules, 'dbt.cli.main' in sys.modules, "
        "'pyspark.sql.connect.session' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[]", "False", "True", "True", str(connect)]
