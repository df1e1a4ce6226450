"""Resolve the pinned JVM jars (Delta Lake, Spark Kafka connector; the S3A connector) once and
cache them.

`python -m lakehouse.jars ensure` runs Maven against `jvm/spark-jars.pom.xml` and
`jvm/s3-jars.pom.xml` with the versions
from :mod:`lakehouse.versions`, drops any jar whose artifact the pyspark wheel already ships (one
copy per library on the classpath), and moves the result atomically into the cache directory
keyed by version. Jobs then get the jar paths explicitly (``spark.jars``); nothing is fetched at
job time.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from lakehouse import versions
from lakehouse.errors import SetupError

_COMPLETE = ".complete"
_ARTIFACT = re.compile(r"^(?P<name>.+?)-\d[\w.\-]*\.jar$")


def spark_home() -> Path:
    """Return the Spark installation bundled in the pyspark wheel, without importing pyspark."""
    spec = importlib.util.find_spec("pyspark")
    if spec is None or spec.origin is None:
        raise SetupError("pyspark is not installed in this environment; run `make setup`.")
    return Path(spec.origin).parent


def cache_dir() -> Path:
    """Return the cache root (``$LAKEHOUSE_CACHE_DIR``, default ``~/.cache/lakehouse``)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lakehouse"
    return Path(os.environ.get("LAKEHOUSE_CACHE_DIR", default))


@dataclass(frozen=True)
class JarSet:
    """One pinned jar set: its Maven pom under ``jvm/``, its cache key and the ``-D`` properties."""

    name: str
    pom: str
    key: str
    properties: dict[str, str]


SPARK = JarSet(
    "spark",
    "spark-jars.pom.xml",
    versions.JARS_KEY,
    {
        "spark.version": versions.SPARK_VERSION,
        "delta.version": versions.DELTA_VERSION,
        "scala.binary.version": versions.SCALA_BINARY_VERSION,
    },
)
"""Delta Lake and the Spark Kafka connector: every job."""

S3 = JarSet(
    "s3",
    "s3-jars.pom.xml",
    versions.S3_JARS_KEY,
    {"hadoop.version": versions.HADOOP_VERSION, "aws.sdk.version": versions.AWS_SDK_VERSION},
)
"""The S3A connector (hadoop-aws and the AWS SDK modules it calls): jobs on s3a:// storage."""

JAR_SETS = (SPARK, S3)


def jars_dir(jar_set: JarSet = SPARK) -> Path:
    """Return the version-keyed directory holding the resolved jars of ``jar_set``."""
    return cache_dir() / "jars" / jar_set.key


def resolved_jars(jar_set: JarSet = SPARK) -> list[Path]:
    """Return the cached jar paths of ``jar_set``, failing clearly when set-up has not resolved
    them yet."""
    d = jars_dir(jar_set)
    if not (d / _COMPLETE).exists():
        raise SetupError(
            f"{jar_set.name} jars for {jar_set.key} are not resolved at {d}; run `make setup` "
            "(needs Maven and access to Maven Central once)."
        )
    return sorted(d.glob("*.jar"))


def job_jars(storage_root: str) -> list[Path]:
    """The jars of a job on ``storage_root``: the Spark set, and the S3A set for s3a://."""
    return resolved_jars(SPARK) + (resolved_jars(S3) if storage_root.startswith("s3a://") else [])


def _artifact(jar: str) -> str:
    m = _ARTIFACT.match(jar)
    return m.group("name") if m else jar


def ensure(repo_root: Path, jar_set: JarSet = SPARK) -> Path:
    """Resolve ``jar_set`` into the cache unless it is already there; return the directory."""
    target = jars_dir(jar_set)
    if (target / _COMPLETE).exists():
        return target
    central = os.environ.get("LAKEHOUSE_MAVEN_CENTRAL")
    if not central:
        raise SetupError("LAKEHOUSE_MAVEN_CENTRAL is unset; run this through scripts/setup.sh.")
    target.parent.mkdir(parents=True, exist_ok=True)
    shipped = {_artifact(p.name) for p in (spark_home() / "jars").glob("*.jar")}
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        out = Path(tmp) / "all"
        cmd = [
            "mvn",
            "-q",
            "-B",
            "-s",
            str(repo_root / "jvm" / "maven-settings.xml"),
            "-f",
            str(repo_root / "jvm" / jar_set.pom),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            *[f"-D{k}={v}" for k, v in jar_set.properties.items()],
            f"-DoutputDirectory={out}",
        ]
        print(f"==> resolving the {jar_set.name} jars ({jar_set.key}) with Maven", file=sys.stderr)
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
            raise SetupError(f"Maven could not resolve the {jar_set.name} jars:\n{tail}")
        stage = Path(tmp) / "stage"
        stage.mkdir()
        for jar in sorted(out.glob("*.jar")):
            if _artifact(jar.name) not in shipped:
                shutil.copy2(jar, stage / jar.name)
        (stage / _COMPLETE).write_text(jar_set.key + "\n")
        if target.exists():
            shutil.rmtree(target)
        stage.rename(target)
    return target


def main(argv: list[str] | None = None) -> int:
    """CLI: ``ensure`` resolves the jars; ``list`` prints their paths."""
    parser = argparse.ArgumentParser(prog="python -m lakehouse.jars")
    parser.add_argument("command", choices=["ensure", "list"])
    args = parser.parse_args(argv)
    try:
        for jar_set in JAR_SETS:
            if args.command == "ensure":
                d = ensure(Path(__file__).resolve().parents[1], jar_set)
                print(f"==> {jar_set.name} jars ready: {d} ({len(resolved_jars(jar_set))} jars)", file=sys.stderr)
            else:
                for jar in resolved_jars(jar_set):
                    print(jar)
    except SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
