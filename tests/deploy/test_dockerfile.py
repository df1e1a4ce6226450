"""The Dockerfile: hadolint-clean (the real hadolint), versions pinned to the project's, only
existing and non-ignored sources copied; the images scripts/images.sh built from it (buildah)
run as their non-root users with the pinned software inside."""

from __future__ import annotations

import fnmatch
import re
import subprocess
from pathlib import Path

import pytest

from lakehouse import versions
from tests.deploy.conftest import REPO

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

DOCKERFILE = REPO / "Dockerfile"


def _args() -> dict[str, str]:
    return dict(re.findall(r"^ARG (\w+)=(\S+)$", DOCKERFILE.read_text(), re.M))


def test_hadolint_finds_nothing(hadolint_bin: Path) -> None:
    proc = subprocess.run(
        [str(hadolint_bin), "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_versions_match_the_project_pins() -> None:
    args = _args()
    assert args["BASE_IMAGE"] == f"debian:{versions.DEBIAN_SUITE}-slim"
    assert args["SPARK_VERSION"] == versions.SPARK_VERSION
    assert args["DELTA_VERSION"] == versions.DELTA_VERSION
    assert args["SCALA_BINARY_VERSION"] == versions.SCALA_BINARY_VERSION
    lib = (REPO / "scripts" / "lib.sh").read_text()
    assert f'UV_VERSION="{args["UV_VERSION"]}"' in lib
    # no registry host in any image reference
    assert "." not in args["BASE_IMAGE"].split("/")[0].split(":")[0], args["BASE_IMAGE"]


def test_targets_run_as_non_root_and_copy_what_exists() -> None:
    text = DOCKERFILE.read_text()
    stages = re.split(r"^FROM ", text, flags=re.M)[1:]
    final = {s.split()[2]: s for s in stages if " AS " in s.splitlines()[0]}
    assert set(final) >= {"spark", "prefect"}
    users = {name: re.findall(r"^USER (\S+)", final[name], re.M)[-1] for name in ("spark", "prefect")}
    assert users["spark"] == "185:185"
    assert users["prefect"] == "10001:10001"
    ignore = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for src in re.findall(r"^COPY (?!--from)(?:--\S+ )*(\S+)", text, re.M):
        path = REPO / src.rstrip("/")
        assert path.exists(), src
        included = False
        for pattern in ignore:  # last matching pattern wins, as in Docker
            negate = pattern.startswith("!")
            pat = pattern.lstrip("!").rstrip("/")
            if pat == "**" or fnmatch.fnmatch(src.rstrip("/"), pat):
                included = negate
        assert included, f"{src} is excluded by .dockerignore"
