"""A real S3-compatible object store for tests: SeaweedFS (``weed mini``) on loopback.

The server is SeaweedFS' own ``weed`` binary, built from its pinned Go module by
``scripts/seaweedfs.sh install`` into ``$LAKEHOUSE_CACHE_DIR/seaweedfs/<SEAWEEDFS_VERSION>/bin``.
``weed mini`` runs master, volume server, filer and S3 gateway in one process (plus its small
admin server and maintenance worker, which cannot be turned off; the admin UI and WebDAV are).
This class starts it in its own process group, so that it owns it and can always stop it::

    with S3Server() as s3:                 # free loopback ports, data in a temporary dir
        s3.create_bucket("lake")
        fs = s3fs.S3FileSystem(**s3.storage_options())

Authentication is on: the gateway knows exactly one identity, whose access key and secret are
generated at random per instance (:attr:`S3Server.access_key`, :attr:`S3Server.secret_key`);
anonymous and wrongly signed requests are refused. Every port is bound to 127.0.0.1 (or the
given ``ip``), telemetry is off, and master, volume and filer data live in a temporary directory
removed by :meth:`stop`.

A missing binary raises :class:`S3ServerNotInstalledError` (run ``scripts/seaweedfs.sh
install``): tests that need the store fail loudly instead of skipping.

Plain stdlib + botocore; nothing here imports pyspark or prefect.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import secrets
import shutil
import stat
import string
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from lakehouse.errors import LakehouseError, SetupError
from lakehouse.testing.processes import free_ports, port_answers, stop_group, tail

REPO_ROOT = Path(__file__).resolve().parents[2]
SEAWEEDFS_SCRIPT = REPO_ROOT / "scripts" / "seaweedfs.sh"

REGION = "us-east-1"
"""The region clients sign for (SeaweedFS accepts any; this is what AWS clients default to)."""

VOLUME_SIZE_LIMIT_MB = 64
"""Size at which the master stops writing to a volume and grows a new one. Volumes are sparse
files (no preallocation), so this bounds a volume, not the disk used."""

MAX_VOLUMES = 200
"""Volumes the volume server may hold: a bucket takes one (master.toml below grows one at a
time), so a session can create about this many buckets. Fixed rather than derived from the free
disk space, so runs behave alike on every machine."""

_PORT_NAMES = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
)
_PORT_IN_USE = ("address already in use", "is not available on")
_GRPC_SOCKETS = ("master", "volume", "filer", "s3", "admin")
"""weed also serves each gRPC port on /tmp/seaweedfs-<name>-grpc-<port>.sock (a fixed path)."""


class S3ServerError(LakehouseError):
    """The test S3 server could not be started or reached."""


class S3ServerNotInstalledError(S3ServerError, SetupError):
    """The ``weed`` binary is not in the cache: run ``scripts/seaweedfs.sh install``."""


def _random_key(length: int, alphabet: str) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def new_key_pair() -> tuple[str, str]:
    """A random access key and secret, shaped like AWS ones."""
    return (
        "LKH" + _random_key(17, string.ascii_uppercase + string.digits),
        _random_key(40, string.ascii_letters + string.digits),
    )


def weed_binary(script: str | os.PathLike[str] | None = None) -> Path:
    """Path of the cached ``weed`` (as ``scripts/seaweedfs.sh --print-bin`` reports it).

    Raises :class:`S3ServerNotInstalledError` when it is not built yet.
    """
    script_path = Path(script) if script is not None else SEAWEEDFS_SCRIPT
    try:
        done = subprocess.run(
            ["bash", str(script_path), "--print-bin"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        raise S3ServerError(f"`{script_path} --print-bin` failed: {e}") from e
    path = done.stdout.strip()
    if done.returncode != 0 or not path:
        raise S3ServerError(f"`{script_path} --print-bin` failed: {done.stderr.strip() or done.returncode}")
    weed = Path(path)
    if not os.access(weed, os.X_OK):
        raise S3ServerNotInstalledError(
            f"SeaweedFS weed not found at {weed}: run 'scripts/seaweedfs.sh install' (builds it "
            "from its pinned Go module; needs Go 1.26.6 or newer)."
        )
    return weed


class S3Server:
    """One SeaweedFS ``weed mini`` on 127.0.0.1 with its S3 gateway, started and stopped here.

    Args:
        port: S3 port; 0 picks a free one. The other nine ports (master, volume, filer, admin and
            their gRPC ports) are always picked free.
        data_dir: Where configuration, data and ``weed.log`` go. ``None`` makes a temporary
            directory, removed again by :meth:`stop` unless ``keep_data`` is set.
        startup_timeout: Seconds :meth:`start` waits for an authenticated ListBuckets to succeed.
        stop_timeout: Seconds :meth:`stop` waits after SIGTERM before it kills the process group
            (weed mini stops in about two seconds).
        keep_data: Keep a temporary data dir after :meth:`stop` (to read its ``weed.log``).
        weed: Path of the ``weed`` binary (default: the one ``scripts/seaweedfs.sh install``
            built for SEAWEEDFS_VERSION).
        access_key, secret_key: The identity's key pair (default: random per instance).
        ip: The address every port binds to (default loopback; the test cluster's script gives
            its node address inside the cluster's network namespace, see :func:`main`).

    The process runs with ``HOME`` set to the data dir and without ``WEED_*`` and ``SENTRY_*``
    variables, so no configuration of the machine or the caller reaches it; its configuration
    files are written to ``<data_dir>/config``. Where ``setpriv`` exists, weed also gets SIGTERM
    if the thread that started it dies, so a killed test run leaves no server behind.
    """

    def __init__(
        self,
        port: int = 0,
        *,
        data_dir: str | os.PathLike[str] | None = None,
        startup_timeout: float = 60.0,
        stop_timeout: float = 10.0,
        keep_data: bool = False,
        weed: str | os.PathLike[str] | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        ip: str = "127.0.0.1",
    ) -> None:
        self._want_port = port
        self.ip = ip
        self._data_dir_arg = Path(data_dir) if data_dir is not None else None
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.keep_data = keep_data
        self._weed_arg = Path(weed) if weed is not None else None
        fresh = new_key_pair() if access_key is None or secret_key is None else ("", "")
        self._access_key = access_key or fresh[0]
        self._secret_key = secret_key or fresh[1]
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._data_dir: Path | None = None
        self._owns_data_dir = False
        self._ports: dict[str, int] = {}
        self.argv: list[str] = []
        """The weed command line of the last start."""
        self.startup_seconds: float | None = None
        """Wall time of the last :meth:`start` (process start to first authenticated answer)."""

    # -- properties ---------------------------------------------------------------------------

    @property
    def access_key(self) -> str:
        return self._access_key

    @property
    def secret_key(self) -> str:
        return self._secret_key

    @property
    def region(self) -> str:
        return REGION

    @property
    def port(self) -> int:
        """The S3 port (0 before :meth:`start`)."""
        return self._ports.get("s3.port", 0)

    @property
    def ports(self) -> dict[str, int]:
        """Every port of the last start, by weed flag name (``s3.port``, ``filer.port.grpc``...)."""
        return dict(self._ports)

    @property
    def endpoint(self) -> str:
        """``http://<ip>:<port>`` of the running S3 gateway."""
        if self._proc is None:
            raise S3ServerError("the S3 server is not started")
        return f"http://{self.ip}:{self.port}"

    def access(self) -> S3Access:
        """How a client reaches the running gateway: endpoint, region and key pair."""
        return S3Access(self.endpoint, self._access_key, self._secret_key, self.region)

    @property
    def data_dir(self) -> Path:
        if self._data_dir is None:
            raise S3ServerError("the S3 server has no data dir before start()")
        return self._data_dir

    @property
    def log_path(self) -> Path:
        """weed's own log (its standard output and error)."""
        return self.data_dir / "weed.log"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> S3Server:
        """Write the configuration, start weed and wait until S3 answers; returns ``self``."""
        if self._proc is not None:
            raise S3ServerError(f"the S3 server already runs at {self.endpoint}")
        weed = self._weed_arg or weed_binary()
        if not os.access(weed, os.X_OK):
            raise S3ServerNotInstalledError(f"SeaweedFS weed not found at {weed}: run 'scripts/seaweedfs.sh install'.")
        if self._data_dir_arg is not None:
            self._data_dir_arg.mkdir(parents=True, exist_ok=True)
            self._data_dir = self._data_dir_arg.resolve()
            self._owns_data_dir = False
        else:
            self._data_dir = Path(tempfile.mkdtemp(prefix="lakehouse-s3-"))
            self._owns_data_dir = True
        began = time.monotonic()
        # Ports picked here may be taken by someone else before weed binds them: retry then.
        attempts = 3 if self._want_port == 0 else 1
        try:
            for attempt in range(1, attempts + 1):
                try:
                    self._start_once(weed)
                    break
                except S3ServerError as e:
                    if attempt == attempts or not any(m in str(e).lower() for m in _PORT_IN_USE):
                        raise
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began
        return self

    def command(self, weed: Path, data_dir: Path) -> list[str]:
        """Pick the ports, write the configuration under ``data_dir`` and return weed's command
        line (without starting it: :meth:`start` does, or the test cluster's script)."""
        free = free_ports(len(_PORT_NAMES))
        self._ports = dict(zip(_PORT_NAMES, free, strict=True))
        if self._want_port:
            if self._want_port in free:
                # keep the ports distinct: give the S3 port's free pick to the one that has it
                other = next(n for n, p in self._ports.items() if p == self._want_port)
                self._ports[other] = self._ports["s3.port"]
            self._ports["s3.port"] = self._want_port
        self.argv = [str(weed), *self._write_config(data_dir)]
        return self.argv

    def _start_once(self, weed: Path) -> None:
        d = self.data_dir
        argv = self.command(weed, d)
        if shutil.which("setpriv"):
            argv = ["setpriv", "--pdeathsig", "SIGTERM", "--", *argv]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("WEED_", "SENTRY_"))}
        env["HOME"] = str(d)
        if self._log is not None:
            self._log.close()
        self._log = open(d / "weed.log", "ab")  # noqa: SIM115 - kept open while weed runs
        self._proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=d,
            env=env,
            start_new_session=True,
        )
        atexit.register(self.stop)
        try:
            self._wait_ready(time.monotonic() + self.startup_timeout)
        except BaseException:
            self._stop_process()
            raise

    def _write_config(self, d: Path) -> list[str]:
        """Write the identities and TOML files under ``d``; return weed's arguments."""
        config = d / "config"
        data = d / "data"
        config.mkdir(exist_ok=True)
        data.mkdir(exist_ok=True)
        identities = config / "s3.json"
        identities.touch(mode=0o600)
        identities.chmod(0o600)
        identities.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "lakehouse-test",
                            "credentials": [{"accessKey": self._access_key, "secretKey": self._secret_key}],
                            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                        }
                    ]
                },
                indent=2,
            )
            + "\n"
        )
        # -config_dir is searched first, so these win over any ~/.seaweedfs or /etc/seaweedfs.
        (config / "master.toml").write_text(
            "# Generated by lakehouse.testing.s3_server: grow one volume at a time (default 7).\n"
            "[master.volume_growth]\ncopy_1 = 1\n"
        )
        (config / "filer.toml").write_text(
            f'# Generated by lakehouse.testing.s3_server.\n[leveldb2]\nenabled = true\ndir = "{data / "filerldb2"}"\n'
        )
        (config / "security.toml").write_text(
            "# Generated by lakehouse.testing.s3_server: no TLS or JWT between the components (loopback only).\n"
        )
        p = self._ports
        return [
            "-logtostderr=true",
            f"-config_dir={config}",
            "mini",
            f"-dir={data}",
            f"-ip={self.ip}",
            f"-ip.bind={self.ip}",
            f"-master.port={p['master.port']}",
            f"-master.port.grpc={p['master.port.grpc']}",
            "-master.telemetry=false",
            f"-master.volumeSizeLimitMB={VOLUME_SIZE_LIMIT_MB}",
            f"-volume.port={p['volume.port']}",
            f"-volume.port.grpc={p['volume.port.grpc']}",
            f"-volume.max={MAX_VOLUMES}",
            "-volume.preStopSeconds=0",
            f"-filer.port={p['filer.port']}",
            f"-filer.port.grpc={p['filer.port.grpc']}",
            f"-filer.localSocket={d / 'filer.sock'}",
            f"-s3.port={p['s3.port']}",
            f"-s3.port.grpc={p['s3.port.grpc']}",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={identities}",
            f"-s3.localSocket={d / 's3.sock'}",
            "-webdav=false",
            "-admin.ui=false",
            f"-admin.port={p['admin.port']}",
            f"-admin.port.grpc={p['admin.port.grpc']}",
            "-admin.port.legacy=0",
        ]

    def _wait_ready(self, deadline: float) -> None:
        # First the open port (cheap, silent), then a real signed round trip through botocore,
        # which is what the tests need: it proves the identities are loaded.
        while not port_answers(self.port, self.ip):
            self._check_alive()
            if time.monotonic() > deadline:
                raise self._failure(f"did not open its S3 port within {self.startup_timeout:.0f} s")
            time.sleep(0.1)
        client = self.client(connect_timeout=2, read_timeout=5, retries={"max_attempts": 1})
        last: Exception | None = None
        while True:
            self._check_alive()
            try:
                client.list_buckets()
                return
            except Exception as e:  # any failure here means "not ready yet"
                last = e
            if time.monotonic() > deadline:
                raise self._failure(
                    f"did not answer an authenticated ListBuckets within "
                    f"{self.startup_timeout:.0f} s (last error: {last})"
                )
            time.sleep(0.1)

    def _check_alive(self) -> None:
        assert self._proc is not None
        if self._proc.poll() is not None:
            raise self._failure(f"exited with code {self._proc.returncode} during start-up")

    def log_tail(self, lines: int = 40) -> list[str]:
        """The last ``lines`` lines of ``weed.log``."""
        try:
            return tail(self.log_path, lines)
        except S3ServerError:  # no data dir yet
            return []

    def _failure(self, what: str) -> S3ServerError:
        tail = "\n".join(f"    {line}" for line in self.log_tail())
        return S3ServerError(
            f"the S3 server (SeaweedFS) on {self.ip}:{self.port} {what} (log: {self.log_path})"
            + (f"\n  last log lines:\n{tail}" if tail else "")
        )

    def stop(self) -> None:
        """Stop weed (SIGTERM, then SIGKILL of its process group after ``stop_timeout``).

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
            stop_group(proc, self.stop_timeout)  # weed (or setpriv, which execs it) leads the group
            self._remove_grpc_sockets()
        if self._log is not None:
            self._log.close()
            self._log = None

    def _remove_grpc_sockets(self) -> None:
        # weed removes them on a clean stop; after a kill they would stay in /tmp.
        for name in _GRPC_SOCKETS:
            port = self._ports.get(f"{name}.port.grpc")
            path = Path(f"/tmp/seaweedfs-{name}-grpc-{port}.sock")
            with contextlib.suppress(OSError):
                if port and stat.S_ISSOCK(path.lstat().st_mode):
                    path.unlink()

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- conveniences for tests ---------------------------------------------------------------

    def client(self, **config: Any) -> Any:
        """A botocore S3 client for this server (see :meth:`S3Access.client`)."""
        return self.access().client(**config)

    def storage_options(self) -> dict[str, Any]:
        """Keyword arguments of ``s3fs.S3FileSystem`` (see :meth:`S3Access.storage_options`)."""
        return self.access().storage_options()

    def create_bucket(self, name: str, *, exist_ok: bool = False) -> None:
        """Create bucket ``name`` (``exist_ok``: an existing bucket of this identity is fine)."""
        self.access().create_bucket(name, exist_ok=exist_ok)


@dataclass(frozen=True)
class S3Access:
    """Where and as whom a client reaches an S3 gateway: a running :class:`S3Server`'s
    (:meth:`S3Server.access`) or the test cluster's, through its forwarder on the host
    (:meth:`from_keys_file`)."""

    endpoint: str
    access_key: str = field(repr=False)
    secret_key: str = field(repr=False)
    region: str = REGION

    @classmethod
    def from_keys_file(cls, endpoint: str, path: str | os.PathLike[str]) -> S3Access:
        """The identity written by ``python -m lakehouse.testing.s3_server prepare --keys``."""
        keys = json.loads(Path(path).read_text())
        return cls(endpoint, keys["access_key"], keys["secret_key"])

    def client(self, **config: Any) -> Any:
        """A botocore S3 client (path-style addressing, this identity).

        ``config`` goes to :class:`botocore.config.Config` (e.g. ``read_timeout=5``).
        """
        import botocore.config
        import botocore.session

        session = botocore.session.get_session()
        return session.create_client(
            "s3",
            region_name=self.region,
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=botocore.config.Config(s3={"addressing_style": "path"}, **config),
        )

    def storage_options(self) -> dict[str, Any]:
        """Keyword arguments of ``s3fs.S3FileSystem`` (and fsspec's ``storage_options``)."""
        return {
            "key": self.access_key,
            "secret": self.secret_key,
            "client_kwargs": {"endpoint_url": self.endpoint, "region_name": self.region},
            "config_kwargs": {"s3": {"addressing_style": "path"}},
        }

    def create_bucket(self, name: str, *, exist_ok: bool = False) -> None:
        """Create bucket ``name`` (``exist_ok``: an existing bucket of this identity is fine)."""
        client = self.client()
        try:
            client.create_bucket(Bucket=name)
        except client.exceptions.BucketAlreadyOwnedByYou:
            if not exist_ok:
                raise


@contextlib.contextmanager
def running_s3_server(**kwargs: Any) -> Iterator[S3Server]:
    """``with running_s3_server() as s3:`` starts an :class:`S3Server` and always stops it."""
    server = S3Server(**kwargs)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def main(argv: Sequence[str] | None = None) -> int:
    """CLI of the test cluster's script (scripts/cluster.sh), which runs weed itself in the
    cluster's network namespace: ``prepare`` writes the configuration under ``--data-dir``
    and prints weed's command line, one argument per line; the identity's key pair comes from
    ``--keys`` (a JSON file, made with fresh random keys and mode 0600 when missing).
    ``ready`` exits 0 once an authenticated ListBuckets succeeds at ``--endpoint``."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m lakehouse.testing.s3_server")
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="write weed's configuration, print its command line")
    prep.add_argument("--ip", required=True, help="the address every port binds to")
    prep.add_argument("--port", type=int, required=True, help="the S3 port")
    prep.add_argument("--data-dir", type=Path, required=True)
    prep.add_argument("--keys", type=Path, required=True, help="the identity's key pair (JSON)")
    ready = sub.add_parser("ready", help="exit 0 once the gateway answers an authenticated call")
    ready.add_argument("--endpoint", required=True)
    ready.add_argument("--keys", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "ready":
        access = S3Access.from_keys_file(args.endpoint, args.keys)
        try:
            access.client(connect_timeout=2, read_timeout=5, retries={"max_attempts": 1}).list_buckets()
        except Exception as e:  # not ready yet: the caller retries
            print(f"not ready: {e}", file=sys.stderr)
            return 1
        return 0
    if not args.keys.exists():
        args.keys.parent.mkdir(parents=True, exist_ok=True)
        args.keys.touch(mode=0o600)
        access_key, secret_key = new_key_pair()
        args.keys.write_text(json.dumps({"access_key": access_key, "secret_key": secret_key}) + "\n")
    keys = json.loads(args.keys.read_text())
    server = S3Server(args.port, ip=args.ip, access_key=keys["access_key"], secret_key=keys["secret_key"])
    args.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        weed = weed_binary()
    except LakehouseError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print("\n".join(server.command(weed, args.data_dir.resolve())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
