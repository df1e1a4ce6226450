"""Resolve the pinned JVM jars (Delta Lake, Spark Kafka connector) once and cache them.

`python -m lakehouse.jars ensure` runs Maven against `jvm/spark-jars.pom.xml` with the versions
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


def jars_dir() -> Path:
    """Return the version-keyed directory holding the resolved jars."""
    return cache_dir() / "jars" / versions.JARS_KEY


def resolved_jars() -> list[Path]:
    """Return the cached jar paths, failing clearly when set-up has not resolved them yet."""
    d = jars_dir()
    if not (d / _COMPLETE).exists():
        raise SetupError(
            f"Spark jars for {versions.JARS_KEY} are not resolved at {d}; run `make setup` "
            "(needs Maven and access to Maven Central once)."
        )
    return sorted(d.glob("*.jar"))


def _artifact(jar: str) -> str:
    m = _ARTIFACT.match(jar)
    return m.group("name") if m else jar


def ensure(repo_root: Path) -> Path:
    """Resolve the jars into the cache unless they are already there; return the directory."""
    target = jars_dir()
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
            "mvn", "-q", "-B",
            "-s", str(repo_root / "jvm" / "maven-settings.xml"),
            "-f", str(repo_root / "jvm" / "spark-jars.pom.xml"),
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
            f"-Dspark.version={versions.SPARK_VERSION}",
            f"-Ddelta.version={versions.DELTA_VERSION}",
            f"-Dscala.binary.version={versions.SCALA_BINARY_VERSION}",
            f"-DoutputDirectory={out}",
        ]
        print(f"==> resolving Delta {versions.DELTA_VERSION} + Spark Kafka connector "
              f"{versions.SPARK_VERSION} jars with Maven", file=sys.stderr)
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
            raise SetupError(f"Maven could not resolve the Spark jars:\n{tail}")
        stage = Path(tmp) / "stage"
        stage.mkdir()
        for jar in sorted(out.glob("*.jar")):
            if _artifact(jar.name) not in shipped:
                shutil.copy2(jar, stage / jar.name)
        (stage / _COMPLETE).write_text(versions.JARS_KEY + "\n")
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
        if args.command == "ensure":
            d = ensure(Path(__file__).resolve().parents[1])
            print(f"==> Spark jars ready: {d} ({len(resolved_jars())} jars)", file=sys.stderr)
        else:
            for jar in resolved_jars():
                print(jar)
    except SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
