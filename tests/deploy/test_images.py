"""The images scripts/images.sh builds from the Dockerfile (buildah, daemonless): each runs as
its non-root user, with the pinned software where the cluster and the deployments expect it.
The Spark image's use on a cluster (Pod Security "restricted", driver/executor contract) is
tested by running jobs on the real cluster (tests/cluster)."""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

import pytest

from lakehouse import versions
from tests.deploy.conftest import REPO

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(3600)]

SCRIPT = str(REPO / "scripts" / "images.sh")


@pytest.fixture(scope="module")
def built() -> None:
    proc = subprocess.run([SCRIPT, "spark", "prefect"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]


def _config(name: str) -> dict[str, Any]:
    out = subprocess.run([SCRIPT, "--inspect", name], capture_output=True, text=True, check=True).stdout
    config: dict[str, Any] = json.loads(out)["Docker"]["config"]
    return config


def _run(name: str, *cmd: str) -> str:
    proc = subprocess.run([SCRIPT, "--run", name, *cmd], capture_output=True, text=True, check=False, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def test_spark_image(built: None) -> None:
    config = _config("spark")
    assert config["User"] == "185:185"
    assert config["Entrypoint"] == ["/opt/entrypoint.sh"]
    env = dict(e.split("=", 1) for e in config["Env"])
    assert env["SPARK_HOME"] == "/opt/spark/home"
    out = _run(
        "spark",
        "/opt/entrypoint.sh",
        "python3",
        "-c",
        "import os, pyspark, delta, pydantic, spark_jobs.medallion; "
        "print(os.getuid(), pyspark.__version__, sorted(os.listdir(os.environ['SPARK_HOME'] + '/jars')))",
    )
    uid, version, jars = out.strip().split(" ", 2)
    assert (uid, version) == ("185", versions.SPARK_VERSION)
    assert f"delta-spark_{versions.SCALA_BINARY_VERSION}-{versions.DELTA_VERSION}.jar" in jars
    assert f"spark-sql-kafka-0-10_{versions.SCALA_BINARY_VERSION}-{versions.SPARK_VERSION}.jar" in jars
    # s3a:// storage: hadoop-aws at the Hadoop of the wheel, with the AWS SDK's S3 module
    assert f"hadoop-aws-{versions.HADOOP_VERSION}.jar" in jars
    assert f"hadoop-client-api-{versions.HADOOP_VERSION}.jar" in jars
    assert f"s3-{versions.AWS_SDK_VERSION}.jar" in jars
    java = _run("spark", "/opt/entrypoint.sh", "java", "-version")
    assert java == ""  # java -version writes to stderr; it ran (exit 0 checked)


def test_prefect_image(built: None) -> None:
    config = _config("prefect")
    assert config["User"] == "10001:10001"
    assert config["WorkingDir"] == "/opt/lakehouse"
    assert config["Cmd"][:3] == ["prefect", "worker", "start"]
    out = _run(
        "prefect",
        "/opt/venv/bin/python",
        "-c",
        "import os, prefect, prefect_kubernetes, flows.medallion, lakehouse.settings; "
        "print(os.getuid(), prefect.__version__)",
    )
    uid, version = out.split()
    assert uid == "10001"
    lock = (REPO / "requirements.lock").read_text()
    assert f"prefect=={version} " in lock or f"prefect=={version}\\" in lock
    # exactly the runtime lock: no dev tools (pytest, ruff, mypy) in a production image
    listed = {
        _name(n)
        for n in _run(
            "prefect",
            "/opt/venv/bin/python",
            "-c",
            "import importlib.metadata as m; print(' '.join(d.metadata['Name'] for d in m.distributions()))",
        ).split()
    }
    assert listed == _pinned("requirements.lock"), (
        sorted(listed - _pinned("requirements.lock")),
        sorted(_pinned("requirements.lock") - listed),
    )
    dev = {"pytest", "ruff", "mypy", "pytest-timeout"}
    assert dev <= _pinned("requirements-dev.lock")  # the dev tools are locked, for .venv only
    assert not dev & listed
    # compiled to bytecode in the image: a pod does not compile what it imports from source
    probe = (
        "import importlib.util as u, pathlib as p, sys, prefect, prefect_kubernetes\n"
        "files = [f for m in (prefect, prefect_kubernetes) for f in p.Path(m.__file__).parent.rglob('*.py')]\n"
        "files += [f for d in ('lakehouse', 'flows', 'tasks') for f in p.Path(d).rglob('*.py')]\n"
        "missing = [str(f) for f in files if not p.Path(u.cache_from_source(str(f))).is_file()]\n"
        "print(sys.dont_write_bytecode, len(files), missing)"
    )
    no_writes, count, missing = _run("prefect", "/opt/venv/bin/python", "-c", probe).strip().split(" ", 2)
    assert no_writes == "True"  # PYTHONDONTWRITEBYTECODE: nothing is written at run time
    assert int(count) > 500
    assert missing == "[]"


def _name(name: str) -> str:
    """A distribution name normalised (PEP 503), as the lock files write them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _pinned(lock: str) -> set[str]:
    return {
        _name(line.split("==")[0])
        for line in (REPO / lock).read_text().splitlines()
        if "==" in line and not line.startswith((" ", "#"))
    }
