"""s3a:// storage: the S3A connector's Spark conf and the credentials a job needs.

One place for both backends. Spark reads an ``s3a://`` root through hadoop-aws (the ``s3`` jar
set of :mod:`lakehouse.jars`, added to local jobs on such a root and baked into the images).
Settings: ``deploy.object_store_endpoint`` / ``_region`` / ``_path_style`` (no secrets, so they
go into Spark conf) and the key pair ``deploy.object_store_access_key_id`` /
``_secret_access_key`` (or, when those are unset, ``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY`` of the calling process, as a Kubernetes flow-run pod gets them from the
credentials Secret), which reach the driver only as ``AWS_ACCESS_KEY_ID`` /
``AWS_SECRET_ACCESS_KEY`` in its environment (locally from the settings, on Kubernetes as
``secretKeyRef``s): S3A's environment-variable credentials provider reads them there.

Failing soon: an unreachable endpoint or refused credentials would keep S3A retrying for minutes
with its defaults; the conf here bounds the connection time and the retries.
"""

from __future__ import annotations

import os
from typing import Any

from lakehouse.settings import Settings

CREDENTIAL_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
"""The environment variables S3A's credentials provider reads (names of
:func:`lakehouse.settings.credentials`)."""


def uses_s3(settings: Settings) -> bool:
    """True when the storage root is an ``s3a://`` URI."""
    return settings.storage.root.startswith("s3a://")


def key_pair(settings: Settings) -> tuple[str, str] | None:
    """The object store's key pair: from the settings, else from ``AWS_ACCESS_KEY_ID`` /
    ``AWS_SECRET_ACCESS_KEY`` of this process (a Kubernetes flow-run pod gets them that way, from
    the credentials Secret); None when neither has both."""
    d = settings.deploy
    if d.object_store_access_key_id is not None and d.object_store_secret_access_key is not None:
        return (d.object_store_access_key_id.get_secret_value(), d.object_store_secret_access_key.get_secret_value())
    key_id, secret = (os.environ.get(name) for name in CREDENTIAL_ENV)
    return (key_id, secret) if key_id and secret else None


def has_credentials(settings: Settings) -> bool:
    """True when both keys of the object store are known (see :func:`key_pair`)."""
    return key_pair(settings) is not None


def s3a_conf(settings: Settings) -> dict[str, str]:
    """Spark conf of the S3A connector for the configured object store (no secret in it)."""
    d = settings.deploy
    path_style = d.object_store_path_style
    if path_style is None:
        path_style = d.object_store_endpoint is not None
    h = "spark.hadoop.fs.s3a."
    conf = {
        f"{h}endpoint.region": d.object_store_region,
        f"{h}path.style.access": str(path_style).lower(),
        # bounded: a wrong endpoint or key fails the job in seconds, not after minutes of retries
        f"{h}connection.establish.timeout": "5s",
        f"{h}attempts.maximum": "2",
        f"{h}retry.limit": "2",
        f"{h}retry.interval": "500ms",
        f"{h}retry.throttle.limit": "5",
    }
    if d.object_store_endpoint:
        conf[f"{h}endpoint"] = d.object_store_endpoint
    if has_credentials(settings):
        conf[f"{h}aws.credentials.provider"] = (
            "software.amazon.awssdk.auth.credentials.EnvironmentVariableCredentialsProvider"
        )
    return conf


def job_conf(settings: Settings) -> dict[str, str]:
    """The S3A conf when the storage is s3a://, else nothing."""
    return s3a_conf(settings) if uses_s3(settings) else {}


def secret_env(settings: Settings) -> tuple[str, ...]:
    """The credential variables a job on this storage reads (none off s3a:// or without keys)."""
    return CREDENTIAL_ENV if uses_s3(settings) and has_credentials(settings) else ()


def credential_env(settings: Settings) -> dict[str, str]:
    """The values of :func:`secret_env` (see :func:`key_pair`), for a process that starts a
    driver or the JVM itself (the local backend, the local dbt target's in-process Spark)."""
    pair = key_pair(settings)
    if not uses_s3(settings) or pair is None:
        return {}
    return dict(zip(CREDENTIAL_ENV, pair, strict=True))


def fsspec_options(settings: Settings, *, with_keys: bool = True) -> dict[str, Any]:
    """s3fs options for the configured object store: endpoint, region, addressing style, and
    (``with_keys``) the key pair from the settings; without keys s3fs takes them from the
    environment (``AWS_ACCESS_KEY_ID`` ...)."""
    d = settings.deploy
    client: dict[str, Any] = {"region_name": d.object_store_region}
    if d.object_store_endpoint:
        client["endpoint_url"] = d.object_store_endpoint
    path_style = d.object_store_path_style
    if path_style is None:
        path_style = d.object_store_endpoint is not None
    options: dict[str, Any] = {"client_kwargs": client}
    if path_style:
        options["config_kwargs"] = {"s3": {"addressing_style": "path"}}
    pair = key_pair(settings) if with_keys else None
    if pair is not None:
        options["key"], options["secret"] = pair
    return options
