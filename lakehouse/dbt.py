"""dbt on Spark + Delta: settings, and the environment the dbt project (``dbt/``) runs in.

The project's ``profiles.yml`` holds no path: every value comes from ``DBT_LAKEHOUSE_*``
variables that :func:`dbt_environment` derives from the lakehouse settings for the time of a dbt
invocation. Three targets:

``local``
    dbt-spark's ``session`` method: dbt starts Spark inside the calling process (the Prefect
    flow run) with Delta Lake, the pinned jars, the tuning preset, and a Hive catalog whose
    embedded Derby metastore lives under ``<storage.root>/metastore`` (``metastore_dir``).
    Derby admits one process at a time: only dbt opens it (the medallion's spark-submit jobs use
    paths, not the catalog), so one dbt run at a time per lakehouse root; and that Spark lives
    as long as the process, so a process runs dbt for one root (see ``spark_session_scope``).
``warm``
    the same ``session`` method as a Spark Connect client of the warm local Spark
    (:mod:`lakehouse.backends.warm`, the default with ``spark.mode=warm``): the SQL runs in the
    driver the medallion jobs already warmed, so dbt starts no JVM of its own. The endpoint is
    loopback only, with a token handed out over the server's private socket; the catalog is that
    driver's in-memory one, filled from the storage at the start of every dbt invocation
    (``on-run-start``), so nothing is lost when the server stops; one dbt client at a time uses
    it (a second one waits).
``cluster``
    the same ``session`` method as a Spark Connect client (``spark.remote``) of the Spark
    Connect server that ``spark-operator/dbt/`` runs as a SparkApplication; the catalog lives in
    that server.

Plain Python: nothing here imports pyspark up front (the warm target hands dbt-spark a Spark
Connect builder and releases its session, while dbt runs, when dbt-spark has imported it
anyway). ``python -m lakehouse.dbt env`` prints the variables as ``export`` lines for running the
dbt CLI by hand (local and cluster targets).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import threading
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from lakehouse import cds, jars, objectstore
from lakehouse.backends.local import CONNECT_CLIENT_ENV, jit_options, live_spark_session
from lakehouse.errors import ConfigError, LakehouseError
from lakehouse.pipeline import small_lakehouse
from lakehouse.settings import REPO_ROOT, Settings, get_settings
from spark_jobs.conf import INTERPRETED_CONF, default_conf

log = logging.getLogger(__name__)

ENV_PREFIX = "DBT_LAKEHOUSE_"
"""Prefix of the variables profiles.yml and dbt_project.yml read (derived, not settings)."""

SILVER_TABLES = ("orders", "users", "events")
"""The silver tables the dbt sources name (models/staging/__sources.yml)."""


class DbtError(LakehouseError):
    """A dbt invocation failed: a model, test or freshness check errored or failed.

    Attributes:
        command: The dbt command line (without the project/profile flags).
        failures: ``"<resource type> <name>: <status>: <message>"`` per failed node.
    """

    def __init__(self, command: Sequence[str], message: str, failures: Sequence[str] = ()) -> None:
        self.command = list(command)
        self.failures = list(failures)
        super().__init__(f"dbt {' '.join(command)} {message}")


class DbtSettings(BaseSettings):
    """How the gold marts are built with dbt (environment prefix ``LAKEHOUSE_DBT__``)."""

    model_config = SettingsConfigDict(env_prefix="LAKEHOUSE_DBT__", extra="ignore")

    project_dir: Path = Field(default=REPO_ROOT / "dbt", description="The dbt project (dbt_project.yml, profiles.yml).")
    profiles_dir: Path | None = Field(
        default=None, description="Directory holding profiles.yml. Default: the project directory."
    )
    target: Literal["local", "warm", "cluster"] | None = Field(
        default=None,
        description="Profile target: `local` (embedded Spark in the flow process, Derby "
        "metastore), `warm` (the warm local Spark over Spark Connect) or `cluster` (Spark Connect "
        "server on Kubernetes). Default: `cluster` with the kubernetes backend, `warm` with "
        "spark.mode=warm, else `local`.",
    )
    threads: int = Field(
        default=4,
        ge=1,
        description="dbt threads: nodes (models, tests) whose dependencies are done run this many "
        "at a time. Most of a small node's time is round trips, not Spark work: on 2 cores 4 threads "
        "took the demo's dbt build from 36 s to 31 s (bench/results/demo.json).",
    )
    metastore_dir: str | None = Field(
        default=None,
        description="Local directory of the embedded Derby metastore (target local). Default: "
        "<storage.root>/metastore; required when the root is not a local path.",
    )
    artifacts_dir: str | None = Field(
        default=None,
        description="Where dbt writes target/ (manifest, run results) and logs/. Default: "
        "<storage.root>/dbt for a local root, else <project_dir>.",
    )
    spark_master: str | None = Field(
        default=None, description="Spark master of the local target. Default: spark.master."
    )
    driver_memory: str | None = Field(
        default=None, description="Driver memory of the local target. Default: spark.driver_memory."
    )
    spark_conf: dict[str, str] = Field(
        default_factory=dict,
        description="Extra Spark conf of the local target, as JSON (wins over everything else).",
    )
    spark_remote: str | None = Field(
        default=None,
        description="Spark Connect URL of the cluster target, e.g. sc://lakehouse-spark-connect.spark-jobs.svc:15002.",
    )
    freshness_warn_hours: int = Field(
        default=26, ge=1, description="Source freshness: warn when silver's newest load is older."
    )
    freshness_error_hours: int = Field(
        default=50, ge=1, description="Source freshness: fail when silver's newest load is older."
    )
    unit_tests: bool = Field(
        default=False,
        description="Run the dbt unit tests (the models' logic on fixed inputs) in the pipeline's dbt "
        "builds. Off by default, as dbt recommends for production builds: their inputs are fixed, so "
        "new data cannot change their outcome. Development and CI run them: `make test` does "
        "(tests/dbt), and the dbt-build flow's `unit_tests` parameter turns them on for one run.",
    )

    def resolved_profiles_dir(self) -> Path:
        """Directory holding profiles.yml."""
        return self.profiles_dir or self.project_dir

    def resolved_target(self, settings: Settings) -> Literal["local", "warm", "cluster"]:
        """The profile target: as set, else the one matching the Spark backend and mode."""
        if self.target is not None:
            return self.target
        if settings.backend == "kubernetes":
            return "cluster"
        return "warm" if settings.spark.mode == "warm" else "local"


def preload(settings: Settings, dbt: DbtSettings) -> threading.Thread:
    """Import dbt and prefect-dbt (and the Spark Connect client, for the warm and cluster
    targets) in a background thread, started while the Spark jobs run: a flow whose gold step
    builds the marts would otherwise import them after those jobs, about 1.7 s on 2 cores,
    with the flow waiting. ``join`` the thread before importing them; a failure here is left to
    that import, which raises it where it belongs."""
    remote = dbt.resolved_target(settings) != "local"

    def load() -> None:
        with contextlib.suppress(Exception):
            import prefect_dbt  # noqa: F401  (dbt's CLI and adapters come with it)

            if remote:
                import pyspark.sql.connect.session  # noqa: F401

    thread = threading.Thread(target=load, name="dbt-preload", daemon=True)
    thread.start()
    return thread


@lru_cache(maxsize=1)
def get_dbt_settings() -> DbtSettings:
    """Return the process-wide dbt settings (read once from the environment)."""
    return DbtSettings()


def is_local_path(uri: str) -> bool:
    """True for a plain path or a ``file:`` URI (not s3a://, abfss://, ...)."""
    return "://" not in uri or uri.startswith("file://")


def _local(uri: str) -> Path:
    return Path(uri.removeprefix("file://")) if uri.startswith("file://") else Path(uri)


def metastore_dir(settings: Settings, dbt: DbtSettings) -> Path:
    """Directory of the embedded Derby metastore of the local target.

    Raises:
        ConfigError: The storage root is remote and no local ``metastore_dir`` is set.
    """
    if dbt.metastore_dir:
        return Path(dbt.metastore_dir)
    if not is_local_path(settings.storage.root):
        raise ConfigError(
            f"the storage root {settings.storage.root!r} is not a local path, so the embedded "
            "metastore cannot live under it: set LAKEHOUSE_DBT__METASTORE_DIR to a local "
            "directory, or use the cluster target (LAKEHOUSE_DBT__TARGET=cluster)."
        )
    return _local(settings.storage.root) / "metastore"


def storage_is_here(settings: Settings, dbt: DbtSettings) -> bool:
    """True when this process itself reads the storage root: the local or warm target on a local
    root. With the cluster target the SQL runs in the Spark Connect server, which mounts the
    storage; the calling process (a flow-run pod) need not see it."""
    return dbt.resolved_target(settings) != "cluster" and is_local_path(settings.storage.root)


def storage_is_listed(settings: Settings, dbt: DbtSettings) -> bool:
    """True when this process lists the tables itself before dbt runs: the local or warm target
    on a local root or on an ``s3a://`` one (through s3fs with the object store settings)."""
    return dbt.resolved_target(settings) != "cluster" and (
        is_local_path(settings.storage.root) or objectstore.uses_s3(settings)
    )


def _table_logs(settings: Settings) -> list[tuple[str, str]]:
    """``(layer, table)`` of every directory ``<warehouse>/<layer>/<table>/_delta_log``."""
    if is_local_path(settings.storage.root):
        warehouse = _local(settings.storage.warehouse)
        return [(e.parent.parent.name, e.parent.name) for e in warehouse.glob("*/*/_delta_log") if e.is_dir()]
    import s3fs

    options = objectstore.fsspec_options(settings)
    # bounded like the jobs' S3A conf: a wrong endpoint fails in seconds, not after minutes
    options.setdefault("config_kwargs", {}).update(
        connect_timeout=5, read_timeout=20, retries={"max_attempts": 2, "mode": "standard"}
    )
    # a fresh instance: fsspec's shared one keeps its listings, which miss the tables the jobs
    # (other processes) wrote since
    fs = s3fs.S3FileSystem(skip_instance_cache=True, **options)
    base = settings.storage.warehouse.removeprefix("s3a://").rstrip("/")
    try:
        found = fs.glob(f"{base}/*/*/_delta_log")
    except FileNotFoundError:  # no warehouse yet (a missing bucket is refused as below)
        return []
    except Exception as e:
        raise ConfigError(
            f"cannot list the tables under {settings.storage.warehouse} ({type(e).__name__}: "
            f"{e}): check LAKEHOUSE_STORAGE__ROOT and the object store settings "
            "(LAKEHOUSE_DEPLOY__OBJECT_STORE_ENDPOINT, _REGION, _ACCESS_KEY_ID, "
            "_SECRET_ACCESS_KEY)"
        ) from e
    return [(path.split("/")[-3], path.split("/")[-2]) for path in found]


def artifacts_dir(settings: Settings, dbt: DbtSettings) -> Path:
    """Where dbt writes its target/ and logs/ directories for this lakehouse."""
    if dbt.artifacts_dir:
        return Path(dbt.artifacts_dir)
    if storage_is_here(settings, dbt):
        return _local(settings.storage.root) / "dbt"
    return dbt.project_dir


def local_spark_conf(settings: Settings, dbt: DbtSettings) -> dict[str, str]:
    """The Spark conf of the local target's in-process session.

    The Delta conf and tuning preset of every Spark job, the pinned jars, the drivers' class-data
    archive (:mod:`lakehouse.cds`), loopback only, no UI, and the Hive catalog: Derby metastore
    and a warehouse directory for the schemas' own (empty) directories under
    :func:`metastore_dir` (tables have explicit locations).
    """
    meta = metastore_dir(settings, dbt)
    log4j = dbt.project_dir / "log4j2.properties"
    java_opts = [
        f"-Dderby.system.home={meta}",
        f"-Dlakehouse.log.level={settings.spark.log_level}",
        # the same class-data archive as the spark-submit drivers: the JVM is the same
        *cds.java_options(settings),
        *jit_options(settings),
        *settings.spark.java_options,
    ]
    if log4j.exists():
        java_opts.append(f"-Dlog4j2.configurationFile=file:{log4j}")
    conf = {
        **default_conf(settings.spark.cores),
        "spark.master": dbt.spark_master or settings.spark.master,
        "spark.app.name": "lakehouse-dbt",
        "spark.driver.memory": dbt.driver_memory or settings.spark.driver_memory,
        "spark.jars": ",".join(str(p) for p in jars.job_jars(settings.storage.root)),
        "spark.driver.host": "127.0.0.1",
        "spark.driver.bindAddress": "127.0.0.1",
        "spark.ui.enabled": "false",
        "spark.sql.warehouse.dir": str(meta / "warehouse"),
        "spark.hadoop.javax.jdo.option.ConnectionURL": (
            f"jdbc:derby:;databaseName={meta / 'metastore_db'};create=true"
        ),
        # Hive's session makes <tmp>/<session id>_resources and never removes it (Spark does not
        # close that session): one more empty directory in /tmp per flow run, kept here instead
        "spark.hadoop.hive.downloaded.resources.dir": str(meta / "resources"),
        "spark.driver.extraJavaOptions": " ".join(java_opts),
        # s3a://: the connector's endpoint, region, bounded retries (the keys: see dbt_environment)
        **objectstore.job_conf(settings),
        **(INTERPRETED_CONF if small_lakehouse(settings) else {}),
        **settings.spark.conf,
        **dbt.spark_conf,
    }
    return conf


def dbt_env(settings: Settings, dbt: DbtSettings) -> dict[str, str]:
    """The ``DBT_LAKEHOUSE_*`` variables profiles.yml and dbt_project.yml read.

    Raises:
        ConfigError: The cluster target has no ``spark_remote``, or the local target cannot
            place its metastore.
    """
    target = dbt.resolved_target(settings)
    if target == "local":
        metastore_dir(settings, dbt)  # a remote root without a local metastore: refused first
    env = {
        f"{ENV_PREFIX}TARGET": target,
        f"{ENV_PREFIX}THREADS": str(dbt.threads),
        f"{ENV_PREFIX}WAREHOUSE": settings.storage.warehouse.rstrip("/"),
    }
    # listed where this process sees the storage; the cluster target's server finds them itself
    tables = delta_tables(settings) if storage_is_listed(settings, dbt) else None
    if tables is not None:
        env[f"{ENV_PREFIX}DELTA_TABLES"] = json.dumps(tables)
    if target == "local":
        env[f"{ENV_PREFIX}SPARK_CONF"] = json.dumps(local_spark_conf(settings, dbt), sort_keys=True)
        env[f"{ENV_PREFIX}CATALOG_DIR"] = str(metastore_dir(settings, dbt) / "warehouse")
    elif target == "warm":
        # DBT_LAKEHOUSE_SPARK_REMOTE comes with the server's endpoint (dbt_environment)
        if small_lakehouse(settings):  # the Spark Connect session's own SQL conf
            env[f"{ENV_PREFIX}SESSION_CONF"] = json.dumps(INTERPRETED_CONF, sort_keys=True)
        if is_local_path(settings.storage.root):  # the schemas' own (empty) directories
            env[f"{ENV_PREFIX}CATALOG_DIR"] = str(_local(settings.storage.root) / "metastore" / "warehouse")
    else:
        if not dbt.spark_remote:
            raise ConfigError(
                "the dbt target 'cluster' needs the Spark Connect server's URL: set "
                "LAKEHOUSE_DBT__SPARK_REMOTE (e.g. sc://lakehouse-spark-connect.spark-jobs.svc:15002)."
            )
        env[f"{ENV_PREFIX}SPARK_REMOTE"] = dbt.spark_remote
    return env


def dbt_vars(dbt: DbtSettings, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The project vars of a run: freshness thresholds from the settings, then ``extra``."""
    if dbt.freshness_error_hours < dbt.freshness_warn_hours:
        raise ConfigError(
            f"freshness_error_hours ({dbt.freshness_error_hours}) must not be below "
            f"freshness_warn_hours ({dbt.freshness_warn_hours})."
        )
    return {
        "freshness_warn_hours": dbt.freshness_warn_hours,
        "freshness_error_hours": dbt.freshness_error_hours,
        **dict(extra or {}),
    }


def delta_tables(settings: Settings) -> list[str] | None:
    """``<layer>/<table>`` of every Delta table under the warehouse of a local or ``s3a://`` root
    (None for another remote root: not listed). The catalog macro drops marts whose table is
    gone from it."""
    if not (is_local_path(settings.storage.root) or objectstore.uses_s3(settings)):
        return None
    return sorted(f"{layer}/{name}" for layer, name in _table_logs(settings))


def missing_silver_tables(settings: Settings, dbt: DbtSettings | None = None) -> list[str]:
    """Silver tables the dbt sources need that do not exist yet (checked where this process
    lists the storage, see ``storage_is_listed``; elsewhere [])."""
    if not storage_is_listed(settings, dbt or get_dbt_settings()):
        return []
    present = {name for layer, name in _table_logs(settings) if layer == "silver"}
    return [name for name in SILVER_TABLES if name not in present]


def command_args(
    command: Sequence[str],
    settings: Settings,
    dbt: DbtSettings,
    project_vars: Mapping[str, Any] | None = None,
) -> list[str]:
    """The full argument list of a dbt invocation: the command, then the project, profile,
    target and artifact locations, then the vars (as JSON)."""
    out = artifacts_dir(settings, dbt)
    args = [
        *command,
        "--project-dir",
        str(dbt.project_dir),
        "--profiles-dir",
        str(dbt.resolved_profiles_dir()),
        "--target-path",
        str(out / "target"),
        "--log-path",
        str(out / "logs"),
    ]
    if command and command[0] not in ("deps", "clean", "debug"):
        args += ["--vars", json.dumps(dbt_vars(dbt, project_vars), sort_keys=True)]
    return args


# -- the in-process Spark session of the local target ---------------------------------------------
#
# dbt-spark's session method calls SparkSession.builder...getOrCreate() for every statement: the
# first one starts Spark (a JVM) in this process and later ones reuse it, so its static conf -
# above all the Hive catalog's Derby metastore - is fixed for the life of the process: Hive keeps
# process-wide state, and a session restarted with another metastore still reads the first one.
# So a process serves dbt for one lakehouse root: asking for another one is a ConfigError, not a
# silently wrong catalog. Each Prefect flow run is a process of its own; tests use one root per
# process for dbt. A session this module did not see dbt start (someone else's, e.g. a notebook)
# is used as it is, with a warning: its catalog is that session's.

METASTORE_URL = "spark.hadoop.javax.jdo.option.ConnectionURL"
_opened: dict[str, str] = {}
"""``metastore``: the metastore URL this process's Spark was started with by dbt."""


@contextmanager
def spark_session_scope(conf: Mapping[str, str] | None) -> Iterator[None]:
    """Around dbt invocations of the local target with Spark conf ``conf``.

    Raises:
        ConfigError: dbt already started Spark in this process for another metastore (another
            lakehouse root).
    """
    if conf is None:
        yield
        return
    wanted = conf.get(METASTORE_URL, "")
    opened = _opened.get("metastore")
    if opened is not None and opened != wanted:
        raise ConfigError(
            f"this process's embedded Spark was started by dbt with the metastore {opened!r}; "
            f"it cannot switch to {wanted!r} (another lakehouse root). Run dbt for that root in "
            "a process of its own (each Prefect flow run is one), or use the cluster target."
        )
    before = live_spark_session()
    if before is not None and opened is None:
        log.warning(
            "dbt reuses a SparkSession started elsewhere in this process; its catalog "
            "and conf are that session's, not the lakehouse dbt profile's"
        )
    try:
        yield
    finally:
        if opened is None and before is None and live_spark_session() is not None:
            _opened["metastore"] = wanted


@contextmanager
def dbt_environment(settings: Settings | None = None, dbt: DbtSettings | None = None) -> Iterator[dict[str, str]]:
    """Set the ``DBT_LAKEHOUSE_*`` variables for the duration of dbt invocations (restored
    afterwards) and manage the local target's in-process Spark session, or the warm target's
    endpoint; yields the variables."""
    settings = settings or get_settings()
    dbt = dbt or get_dbt_settings()
    env = dbt_env(settings, dbt)
    if env[f"{ENV_PREFIX}TARGET"] == "warm":
        from lakehouse.backends.warm import spark_connect

        with spark_connect(settings, log.info) as (remote, token), _restored_env(CONNECT_CLIENT_ENV):
            env[f"{ENV_PREFIX}SPARK_REMOTE"] = remote
            # read by pyspark's Connect client; never in the profile or the URL (dbt logs those)
            os.environ["SPARK_CONNECT_AUTHENTICATE_TOKEN"] = token
            try:
                with _dbt_process_env(settings, env), _connect_builder_for_dbt():
                    yield env
            finally:
                # release dbt's session; pyspark also marked the process as a Connect client
                # (SPARK_CONNECT_MODE_ENABLED), which _restored_env takes back: a Spark started
                # here later (or a driver launched from here) is a classic one again
                _stop_connect_session()
        return
    with _dbt_process_env(settings, env):
        yield env


CATALOG_IN_STEP_ENV = f"{ENV_PREFIX}CATALOG_IN_STEP"


@contextmanager
def catalog_in_step() -> Iterator[None]:
    """dbt invocations inside skip the on-run-start hook that brings the catalog in step with the
    storage (``register_lakehouse_tables``): for a build right after another invocation ran it
    (``dbt source freshness``), in the same environment, over the same tables."""
    with _process_env({CATALOG_IN_STEP_ENV: "1"}):
        yield


@contextmanager
def _process_env(values: Mapping[str, str]) -> Iterator[None]:
    """``values`` in ``os.environ`` for the block, the previous values restored afterwards."""
    with _restored_env(values):
        os.environ.update(values)
        yield


@contextmanager
def _restored_env(keys: Iterable[str]) -> Iterator[None]:
    """``os.environ``'s values of ``keys`` as they were before the block, whatever it set."""
    saved = {k: os.environ.get(k) for k in keys}
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class _ConnectBuilder:
    """What dbt-spark's session method needs of ``SparkSession.builder``, always building a Spark
    Connect session (Hive support is the server's business: asking for it changes nothing)."""

    def __init__(self) -> None:
        from pyspark.sql.connect.session import SparkSession as ConnectSession

        self._builder = ConnectSession.builder

    def enableHiveSupport(self) -> _ConnectBuilder:
        return self

    def config(self, key: str, value: Any) -> _ConnectBuilder:
        self._builder = self._builder.config(key, value)
        return self

    def getOrCreate(self) -> Any:
        for key, value in json.loads(os.environ.get(f"{ENV_PREFIX}SESSION_CONF", "{}")).items():
            self._builder = self._builder.config(key, value)
        return self._builder.getOrCreate()


class _ConnectSessionClass:
    """Stands in for ``pyspark.sql.SparkSession`` in dbt-spark's session module."""

    @property
    def builder(self) -> _ConnectBuilder:
        return _ConnectBuilder()


@contextmanager
def _connect_builder_for_dbt() -> Iterator[None]:
    """dbt-spark's session method builds its session with pyspark's classic builder, which
    refuses to make a Spark Connect session in a process that already runs a classic Spark
    (``SESSION_ALREADY_EXIST``: a notebook, a test process, a flow that ran the local target).
    For the block its module gets a builder that always makes the Connect session of
    ``spark.remote``, the warm server's."""
    import dbt.adapters.spark.session as dbt_spark_session  # imports pyspark, as dbt-spark does

    before = getattr(dbt_spark_session, "SparkSession")  # noqa: B009 (not an export of it)
    setattr(dbt_spark_session, "SparkSession", _ConnectSessionClass())  # noqa: B010
    try:
        yield
    finally:
        setattr(dbt_spark_session, "SparkSession", before)  # noqa: B010


def _stop_connect_session() -> None:
    """Release this process's Spark Connect session (dbt's): its server-side state goes, and the
    next dbt invocation connects afresh (to whichever endpoint it is given)."""
    if "pyspark.sql.connect.session" not in sys.modules:
        return
    from pyspark.sql.connect.session import SparkSession as ConnectSession

    for session in (ConnectSession.getActiveSession(), ConnectSession._get_default_session()):
        if session is not None:
            session.stop()  # idempotent: the second is a no-op when both are the same


@contextmanager
def _dbt_process_env(settings: Settings, env: dict[str, str]) -> Iterator[None]:
    """The process environment of dbt invocations: ``env``, loopback, the local target's keys;
    and the local target's in-process Spark session scope."""
    # the in-process Spark binds to loopback only (it would otherwise pick the host's address)
    process_env = {**env, "SPARK_LOCAL_IP": os.environ.get("SPARK_LOCAL_IP", "127.0.0.1")}
    if env[f"{ENV_PREFIX}TARGET"] == "local":
        # s3a:// with a key pair: S3A's credentials provider reads it from the environment the
        # in-process JVM starts with (never from the conf, which dbt logs)
        process_env.update(objectstore.credential_env(settings))
    local = env[f"{ENV_PREFIX}TARGET"] == "local"
    conf = json.loads(env[f"{ENV_PREFIX}SPARK_CONF"]) if local else None
    if not local:
        # dbt-spark's session asks for Hive support on every connection; over Spark Connect that
        # static setting belongs to the server and pyspark warns each time
        warnings.filterwarnings(
            "ignore", message=r"Failed to set spark\.sql\.catalogImplementation", category=UserWarning
        )
    with _process_env(process_env), spark_session_scope(conf):
        yield


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: ``env`` prints the dbt environment as ``export`` lines (for the dbt CLI by hand)."""
    import shlex

    parser = argparse.ArgumentParser(prog="python -m lakehouse.dbt")
    parser.add_argument("command", choices=["env"])
    parser.parse_args(argv)
    try:
        settings, dbt = get_settings(), get_dbt_settings()
        if dbt.resolved_target(settings) == "warm":
            raise ConfigError(
                "the warm target's endpoint exists only while a lakehouse flow holds it; for the "
                "dbt CLI by hand use the local target: LAKEHOUSE_DBT__TARGET=local"
            )
        env = dbt_env(settings, dbt)
    except LakehouseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for key, value in sorted(env.items()):
        print(f"export {key}={shlex.quote(value)}")
    print(f"export DBT_PROJECT_DIR={shlex.quote(str(dbt.project_dir))}")
    print(f"export DBT_PROFILES_DIR={shlex.quote(str(dbt.resolved_profiles_dir()))}")
    print(f"export DBT_TARGET_PATH={shlex.quote(str(artifacts_dir(settings, dbt) / 'target'))}")
    print(f"export DBT_LOG_PATH={shlex.quote(str(artifacts_dir(settings, dbt) / 'logs'))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
