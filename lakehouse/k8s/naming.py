"""Deterministic SparkApplication names and valid label values.

A batch app is named ``<job>-<digest>`` where the digest is a hash of (flow run id, job name,
attempt): a restarted worker computes the same name and re-attaches instead of submitting a
second app; a new attempt (a Prefect retry) gets a new name. Names are DNS-1123 labels of at most
``MAX_APP_NAME`` characters, short enough for the names the operator derives from them
(``<app>-driver`` pods, ``<app>-ui-svc`` services: at most 63 characters each).
"""

from __future__ import annotations

import hashlib
import re

from lakehouse.k8s.runinfo import RunInfo

MAX_APP_NAME = 56
"""63 (DNS-1123 label) minus len('-ui-svc'), the longest suffix the operator appends."""
DIGEST_LEN = 10

_LABEL_VALUE_BAD = re.compile(r"[^A-Za-z0-9_.-]+")
_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def name_digest(*parts: str) -> str:
    """First ``DIGEST_LEN`` hex digits of the SHA-256 of the NUL-joined parts."""
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:DIGEST_LEN]


def app_name(job_name: str, run: RunInfo) -> str:
    """The SparkApplication name of ``job_name`` for one (flow run, attempt).

    ``<job>-<10 hex digits>``, the job part cut so the whole is at most ``MAX_APP_NAME`` long, and
    prefixed with ``j-`` when the job name starts with a digit (Service names derived from it
    must start with a letter).
    """
    digest = name_digest(run.flow_run_id, job_name, str(run.attempt))
    base = job_name if job_name[:1].isalpha() else f"j-{job_name}"
    base = base[: MAX_APP_NAME - DIGEST_LEN - 1].rstrip("-")
    name = f"{base}-{digest}"
    assert is_app_name(name), name
    return name


def streaming_app_name(job_name: str) -> str:
    """The name of the one long-running app of a streaming job: stable across flow runs."""
    base = job_name if job_name[:1].isalpha() else f"j-{job_name}"
    if len(base) <= MAX_APP_NAME:
        return base
    return f"{base[: MAX_APP_NAME - DIGEST_LEN - 1].rstrip('-')}-{name_digest(job_name)}"


def is_app_name(name: str) -> bool:
    """True when ``name`` is a usable SparkApplication name (see the module docstring)."""
    return len(name) <= MAX_APP_NAME and bool(_DNS_LABEL.match(name))


def label_value(value: str) -> str:
    """``value`` made a valid label value (at most 63 chars of [A-Za-z0-9_.-], alnum at ends)."""
    cleaned = _LABEL_VALUE_BAD.sub("-", value)[:63]
    return cleaned.strip("-_.")
