"""A real single-node Apache Kafka broker (KRaft, combined broker + controller) for tests.

The broker is Kafka's own ``kafka.Kafka`` run from the jars that ``scripts/kafka.sh install``
caches under ``$LAKEHOUSE_CACHE_DIR/kafka/<KAFKA_VERSION>/libs``. Configuration and storage
formatting are done by ``scripts/kafka.sh prepare`` (one definition of the broker settings for
``make kafka-up`` and for tests); this class then starts the JVM itself, in its own process group,
so that it owns it and can always stop it::

    with KafkaBroker() as broker:          # free loopback ports, data in a temporary dir
        conf = {"bootstrap.servers": broker.bootstrap_servers}

Missing jars raise :class:`KafkaNotInstalledError` (run ``scripts/kafka.sh install``): tests that
need Kafka fail loudly instead of skipping.

Plain stdlib + confluent_kafka; nothing here imports pyspark or prefect.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]  # public, not re-exported
    AdminClient,
    NewTopic,
)

from lakehouse.errors import LakehouseError, SetupError
from lakehouse.testing.processes import free_ports, port_answers, stop_group, tail

REPO_ROOT = Path(__file__).resolve().parents[2]
KAFKA_SCRIPT = REPO_ROOT / "scripts" / "kafka.sh"

TEST_JVM_PERFORMANCE_OPTS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
"""C1 only and the serial collector: about a second faster to start on two cores, less memory
and CPU next to Spark, and plenty for test traffic. ``scripts/kafka.sh up`` keeps G1 and C2."""

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_STARTED = "Kafka Server started"
_PORT_IN_USE = "Address already in use"


class KafkaBrokerError(LakehouseError):
    """The test broker could not be prepared, started or reached."""


class KafkaNotInstalledError(KafkaBrokerError, SetupError):
    """The Kafka jars are not in the cache: run ``scripts/kafka.sh install``."""


class KafkaBroker:
    """One single-node KRaft broker on 127.0.0.1, started and stopped by this object.

    Args:
        port: Client (PLAINTEXT) port; 0 picks a free one.
        controller_port: KRaft controller port; 0 picks a free one.
        data_dir: Where configuration, KRaft logs and ``broker.log`` go. ``None`` makes a
            temporary directory, removed again by :meth:`stop` unless ``keep_data`` is set.
        startup_timeout: Seconds :meth:`start` waits for the broker to answer metadata requests.
        stop_timeout: Seconds :meth:`stop` waits after SIGTERM before it kills the process group.
        keep_data: Keep a temporary data dir after :meth:`stop` (to read its ``broker.log``).
        script: Path of ``scripts/kafka.sh`` (default: the one in this repository).
        jvm_performance_opts: JIT and GC options of the JVM (default: ``KAFKA_JVM_PERFORMANCE_OPTS``
            from the environment, else :data:`TEST_JVM_PERFORMANCE_OPTS`).
        sasl_ssl: Also open a SASL_SSL listener on a free loopback port (:attr:`sasl_ssl_servers`)
            with this keystore; SCRAM users are added with :meth:`add_scram_user`, PLAIN users
            are listed in it. The PLAINTEXT listener stays (for set-up, and between brokers).

    The JVM also gets ``KAFKA_HEAP_OPTS`` (default ``-Xms128m -Xmx512m``) and ``KAFKA_JVM_OPTS``
    from the environment. Where ``setpriv`` exists, the JVM also gets SIGTERM if the thread that
    started it dies, so a killed test run leaves no broker behind.
    """

    def __init__(
        self,
        port: int = 0,
        *,
        controller_port: int = 0,
        data_dir: str | os.PathLike[str] | None = None,
        startup_timeout: float = 90.0,
        stop_timeout: float = 20.0,
        keep_data: bool = False,
        script: str | os.PathLike[str] | None = None,
        jvm_performance_opts: str | None = None,
        sasl_ssl: SaslSslListener | None = None,
    ) -> None:
        self.sasl_ssl = sasl_ssl
        self._sasl_ssl_port = 0
        self._want_port = port
        self._want_controller_port = controller_port
        self._data_dir_arg = Path(data_dir) if data_dir is not None else None
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.keep_data = keep_data
        self.script = Path(script) if script is not None else KAFKA_SCRIPT
        self.jvm_performance_opts = (
            jvm_performance_opts
            if jvm_performance_opts is not None
            else os.environ.get("KAFKA_JVM_PERFORMANCE_OPTS", TEST_JVM_PERFORMANCE_OPTS)
        )
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._data_dir: Path | None = None
        self._owns_data_dir = False
        self._port = 0
        self._controller_port = 0
        self.startup_seconds: float | None = None
        """Wall time of the last :meth:`start` (prepare + JVM start-up + first metadata answer)."""

    # -- properties ---------------------------------------------------------------------------

    @property
    def bootstrap_servers(self) -> str:
        """``127.0.0.1:<port>`` of the running broker."""
        if self._proc is None:
            raise KafkaBrokerError("the Kafka broker is not started")
        return f"127.0.0.1:{self._port}"

    @property
    def sasl_ssl_servers(self) -> str:
        """``127.0.0.1:<port>`` of the SASL_SSL listener."""
        if self._proc is None or self.sasl_ssl is None:
            raise KafkaBrokerError("the Kafka broker runs no SASL_SSL listener")
        return f"127.0.0.1:{self._sasl_ssl_port}"

    @property
    def port(self) -> int:
        return self._port

    @property
    def controller_port(self) -> int:
        return self._controller_port

    @property
    def data_dir(self) -> Path:
        if self._data_dir is None:
            raise KafkaBrokerError("the Kafka broker has no data dir before start()")
        return self._data_dir

    @property
    def log_path(self) -> Path:
        """The broker's own log (its standard output and error)."""
        return self.data_dir / "broker.log"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> KafkaBroker:
        """Prepare the data dir, start the JVM and wait until it answers; returns ``self``."""
        if self._proc is not None:
            raise KafkaBrokerError(f"the Kafka broker already runs at {self.bootstrap_servers}")
        if not self.script.is_file():
            raise KafkaBrokerError(f"{self.script} not found: cannot prepare the Kafka broker")
        if self._data_dir_arg is not None:
            self._data_dir_arg.mkdir(parents=True, exist_ok=True)
            self._data_dir = self._data_dir_arg.resolve()
            self._owns_data_dir = False
        else:
            self._data_dir = Path(tempfile.mkdtemp(prefix="lakehouse-kafka-"))
            self._owns_data_dir = True
        began = time.monotonic()
        # Ports picked here may be taken by someone else before the JVM binds them: retry then.
        picks_ports = self._want_port == 0 or self._want_controller_port == 0
        attempts = 3 if picks_ports else 1
        try:
            for attempt in range(1, attempts + 1):
                try:
                    self._start_once()
                    break
                except KafkaBrokerError as e:
                    if attempt == attempts or _PORT_IN_USE not in str(e):
                        raise
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def _start_once(self) -> None:
        free = free_ports(3)
        self._sasl_ssl_port = free[2]
        self._port = self._want_port or free[0]
        self._controller_port = self._want_controller_port or free[1]
        if self._controller_port == self._port:
            self._controller_port = free[1] if free[1] != self._port else free[0]
        d = self.data_dir
        argv = self._prepare(d)
        if shutil.which("setpriv"):
            argv = ["setpriv", "--pdeathsig", "SIGTERM", "--", *argv]
        self._log = open(d / "broker.log", "wb")  # noqa: SIM115 - kept open while the JVM runs
        self._proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=d,
            start_new_session=True,
        )
        atexit.register(self.stop)
        try:
            self._wait_ready(time.monotonic() + self.startup_timeout)
        except BaseException:
            self._stop_process()
            raise

    def _prepare(self, d: Path) -> list[str]:
        cmd = [
            "bash",
            str(self.script),
            "prepare",
            "--quiet",
            "--port",
            str(self._port),
            "--controller-port",
            str(self._controller_port),
            "--data-dir",
            str(d),
        ]
        if self.sasl_ssl is not None:
            extra = d / "sasl-ssl.properties"
            extra.write_text(self.sasl_ssl.properties())
            extra.chmod(0o600)
            cmd += ["--sasl-ssl", f"127.0.0.1:{self._sasl_ssl_port}", "--extra-config", str(extra)]
        env = {**os.environ, "KAFKA_JVM_PERFORMANCE_OPTS": self.jvm_performance_opts}
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False, env=env)
        except subprocess.TimeoutExpired as e:
            raise KafkaBrokerError(f"`{' '.join(cmd)}` did not finish within 120 s") from e
        if done.returncode != 0:
            message = _ANSI.sub("", done.stderr).strip().removeprefix("error:").strip()
            message = message or f"exit code {done.returncode}"
            if "kafka.sh install" in message:
                raise KafkaNotInstalledError(message)
            raise KafkaBrokerError(f"preparing the Kafka broker failed: {message}")
        argv = [line for line in done.stdout.splitlines() if line]
        if not argv or argv[0] != "java":
            raise KafkaBrokerError(f"unexpected output of {self.script} prepare: {done.stdout!r}")
        return argv

    def _wait_ready(self, deadline: float) -> None:
        # First the process' own word and the open port (cheap, silent), then a real metadata
        # round trip through the client library, which is what the tests need.
        while True:
            self._check_alive()
            if self._log_contains(_STARTED) and port_answers(self._port):
                break
            if time.monotonic() > deadline:
                raise self._failure(f"did not start within {self.startup_timeout:.0f} s")
            time.sleep(0.1)
        admin = self.admin()
        while True:
            self._check_alive()
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._failure(f"did not answer metadata requests within {self.startup_timeout:.0f} s")
            try:
                md = admin.list_topics(timeout=min(5.0, max(remaining, 0.5)))
            except KafkaException:
                continue
            if md.brokers:
                return

    def _check_alive(self) -> None:
        assert self._proc is not None
        if self._proc.poll() is not None:
            raise self._failure(f"exited with code {self._proc.returncode} during start-up")

    def _log_contains(self, text: str) -> bool:
        try:
            return text in self.log_path.read_text(errors="replace")
        except OSError:
            return False

    def log_tail(self, lines: int = 40) -> list[str]:
        """The last ``lines`` lines of ``broker.log``."""
        try:
            return tail(self.log_path, lines)
        except KafkaBrokerError:  # no data dir yet
            return []

    def _failure(self, what: str) -> KafkaBrokerError:
        tail = "\n".join(f"    {line}" for line in self.log_tail())
        return KafkaBrokerError(
            f"the Kafka broker on 127.0.0.1:{self._port} {what} (log: {self.log_path})"
            + (f"\n  last log lines:\n{tail}" if tail else "")
        )

    def stop(self) -> None:
        """Stop the broker (SIGTERM, then SIGKILL of its process group after ``stop_timeout``).

        Idempotent. Removes a temporary data dir unless ``keep_data`` is set.
        """
        atexit.unregister(self.stop)
        self._stop_process()
        if self._owns_data_dir and self._data_dir is not None and not self.keep_data:
            shutil.rmtree(self._data_dir, ignore_errors=True)
            self._data_dir = None
            self._owns_data_dir = False

    def _stop_process(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_group(proc, self.stop_timeout)  # the JVM leads its own process group
        if self._log is not None:
            self._log.close()
            self._log = None

    def __enter__(self) -> KafkaBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- conveniences for tests ---------------------------------------------------------------

    def client_config(self, **overrides: Any) -> dict[str, Any]:
        """A confluent_kafka configuration dict for this broker, with ``overrides`` applied."""
        return {"bootstrap.servers": self.bootstrap_servers, **overrides}

    def admin(self, **overrides: Any) -> AdminClient:
        """An AdminClient for this broker (quick reconnects, for start-up and tests)."""
        conf = {"reconnect.backoff.ms": 100, "reconnect.backoff.max.ms": 1000, **overrides}
        return AdminClient(self.client_config(**conf))

    def add_scram_user(
        self, name: str, password: str, mechanism: str = "SCRAM-SHA-512", *, timeout: float = 30.0
    ) -> None:
        """Create (or reset) the SCRAM credentials of ``name`` through the PLAINTEXT listener."""
        from confluent_kafka.admin import (  # type: ignore[attr-defined]
            ScramCredentialInfo,
            ScramMechanism,
            UserScramCredentialUpsertion,
        )

        kind = {"SCRAM-SHA-256": ScramMechanism.SCRAM_SHA_256, "SCRAM-SHA-512": ScramMechanism.SCRAM_SHA_512}[mechanism]
        admin = self.admin()  # must outlive the futures
        upsert = UserScramCredentialUpsertion(name, ScramCredentialInfo(kind, 4096), password.encode())
        for future in admin.alter_user_scram_credentials([upsert], request_timeout=timeout).values():
            future.result(timeout=timeout)

    def create_topic(
        self,
        name: str,
        partitions: int = 3,
        *,
        config: dict[str, str] | None = None,
        timeout: float = 30.0,
    ) -> None:
        """Create ``name`` (replication factor 1); wait until every partition has a leader."""
        admin = self.admin()  # must outlive the futures below
        topic = NewTopic(name, num_partitions=partitions, replication_factor=1, config=config or {})
        futures = admin.create_topics([topic], operation_timeout=timeout, request_timeout=timeout)
        futures[name].result(timeout=timeout)
        deadline = time.monotonic() + timeout
        while True:
            md = admin.list_topics(topic=name, timeout=max(deadline - time.monotonic(), 0.5))
            t = md.topics.get(name)
            if (
                t is not None
                and t.error is None
                and len(t.partitions) == partitions
                and all(p.leader >= 0 for p in t.partitions.values())
            ):
                return
            if time.monotonic() > deadline:
                raise KafkaBrokerError(f"topic {name!r} not ready within {timeout:.0f} s")
            time.sleep(0.1)

    def delete_topic(self, name: str, *, timeout: float = 30.0) -> None:
        """Delete ``name`` and wait for the broker to confirm."""
        admin = self.admin()  # must outlive the future: destroying it fails pending requests
        futures = admin.delete_topics([name], operation_timeout=timeout, request_timeout=timeout)
        futures[name].result(timeout=timeout)


@dataclass(frozen=True)
class SaslSslListener:
    """A SASL_SSL listener of the test broker: TLS with ``keystore`` (PKCS#12), SCRAM-SHA-256/512
    (users added at run time) and PLAIN with the ``plain_users`` given here."""

    keystore: Path
    keystore_password: str
    plain_users: Mapping[str, str] = field(default_factory=dict)

    def properties(self) -> str:
        """The server.properties lines of the listener (``listener.name.sasl_ssl.*``)."""
        if any(c in text for item in self.plain_users.items() for text in item for c in '"\\ '):
            raise KafkaBrokerError(
                "PLAIN user names and passwords of the test broker must not hold quotes, backslashes or spaces"
            )
        plain = " ".join(f'user_{u}="{p}"' for u, p in sorted(self.plain_users.items()))
        prefix = "listener.name.sasl_ssl."
        scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        lines = [
            "sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256,PLAIN",
            f"{prefix}ssl.keystore.type=PKCS12",
            f"{prefix}ssl.keystore.location={self.keystore}",
            f"{prefix}ssl.keystore.password={self.keystore_password}",
            f"{prefix}ssl.key.password={self.keystore_password}",
            f"{prefix}scram-sha-512.sasl.jaas.config={scram}",
            f"{prefix}scram-sha-256.sasl.jaas.config={scram}",
            f"{prefix}plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required {plain};",
        ]
        return "\n".join(lines) + "\n"


@contextlib.contextmanager
def running_broker(**kwargs: Any) -> Iterator[KafkaBroker]:
    """``with running_broker() as b:`` starts a :class:`KafkaBroker` and always stops it."""
    broker = KafkaBroker(**kwargs)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
