"""Kubernetes API access: a client from credentials, SparkApplication calls, typed errors.

Credentials, first match wins: the prefect-kubernetes ``KubernetesCredentials`` block named in
``kubernetes.credentials_block`` (its cluster config is turned into a synchronous client), else
in-cluster config (a pod's ServiceAccount), else kubeconfig (``$KUBECONFIG`` or ~/.kube/config,
context ``kubernetes.kubeconfig_context``).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from typing import Any, cast

import urllib3
from kubernetes import client, config
from kubernetes.config.config_exception import ConfigException

from lakehouse.errors import ConfigError
from lakehouse.k8s.errors import (
    KubernetesAccessError,
    KubernetesApiError,
    SparkApplicationInvalid,
)
from lakehouse.k8s.render import GROUP, PLURAL, VERSION
from lakehouse.settings import KubernetesSettings

CONNECT_TIMEOUT_S = 10.0
REQUEST_TIMEOUT_S = 30.0


def api_client_from_block(block: Any) -> client.ApiClient:
    """A synchronous ``ApiClient`` from a prefect-kubernetes ``KubernetesCredentials`` block.

    The block's own ``get_client`` yields kubernetes_asyncio clients; this backend is
    synchronous, so the block's kubeconfig (``cluster_config.config`` and ``context_name``) is
    loaded into the ``kubernetes`` client instead. A block without cluster config means
    in-cluster config, else kubeconfig, as the block itself does.
    """
    cluster = getattr(block, "cluster_config", None)
    if cluster is None:
        return _in_cluster_or_kubeconfig(None)
    try:
        api: client.ApiClient = config.new_client_from_config_dict(  # type: ignore[no-untyped-call]
            config_dict=dict(cluster.config), context=cluster.context_name
        )
    except ConfigException as exc:
        raise ConfigError(f"the KubernetesCredentials block's cluster config is unusable: {exc}") from exc
    return api


def _in_cluster_or_kubeconfig(context: str | None) -> client.ApiClient:
    cfg = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=cfg)  # type: ignore[no-untyped-call]
        return client.ApiClient(cfg)
    except ConfigException:
        pass
    # $KUBECONFIG read now (the client library reads it once, at import).
    path = os.environ.get("KUBECONFIG") or "~/.kube/config"
    try:
        api: client.ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=path, context=context
        )
        return api
    except (ConfigException, OSError) as exc:
        raise ConfigError(
            "no Kubernetes credentials: set kubernetes.credentials_block (LAKEHOUSE_KUBERNETES__"
            "CREDENTIALS_BLOCK) to a KubernetesCredentials block, run inside a pod, or provide a "
            f"kubeconfig ($KUBECONFIG or ~/.kube/config); kubeconfig said: {exc}"
        ) from exc


def api_client_from_settings(settings: KubernetesSettings) -> client.ApiClient:
    """A new ``ApiClient`` from the configured credentials (see the module docstring)."""
    if settings.credentials_block:
        from prefect_kubernetes.credentials import KubernetesCredentials

        block = KubernetesCredentials.load(settings.credentials_block)
        return api_client_from_block(block)
    return _in_cluster_or_kubeconfig(settings.kubeconfig_context)


def status_of(exc: client.ApiException) -> dict[str, Any]:
    """The Status object in a failed call's body (message, reason, details...)."""
    try:
        body = json.loads(exc.body or "{}")
    except (TypeError, ValueError):
        body = None
    if not isinstance(body, dict):
        body = {"message": str(exc.body or exc.reason or "")}
    body.setdefault("code", exc.status)
    body.setdefault("reason", exc.reason or "")
    return body


def api_error(action: str, exc: client.ApiException) -> KubernetesApiError:
    """The typed error for a failed call (access errors get their own type)."""
    status = status_of(exc)
    cls = KubernetesAccessError if exc.status in (401, 403) else KubernetesApiError
    return cls(action, int(exc.status or 0), str(status.get("reason", "")), str(status.get("message", "")))


class SparkApplications:
    """SparkApplication calls in one namespace, with dicts in and out and typed errors."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.api = api
        self.namespace = namespace
        self.objects = client.CustomObjectsApi(api)
        self._args = (GROUP, VERSION, namespace, PLURAL)

    def create(self, body: dict[str, Any], *, dry_run: bool = False) -> dict[str, Any]:
        """Create (or server-side dry-run) ``body``.

        Raises ``SparkApplicationInvalid`` (422/400) with the server's causes, lets a 409
        ``ApiException`` through for the caller, ``KubernetesApiError`` otherwise.
        """
        name = body["metadata"]["name"]
        try:
            kwargs: dict[str, Any] = {"dry_run": "All"} if dry_run else {}
            created = self.objects.create_namespaced_custom_object(
                *self._args, body, _request_timeout=(CONNECT_TIMEOUT_S, REQUEST_TIMEOUT_S), **kwargs
            )
            return cast(dict[str, Any], created)
        except client.ApiException as exc:
            if exc.status == 409:
                raise
            if exc.status in (400, 422):
                raise SparkApplicationInvalid(name, status_of(exc)) from None
            raise api_error(f"create SparkApplication {self.namespace}/{name}", exc) from None

    def get(self, name: str) -> dict[str, Any] | None:
        """The app, or None when it does not exist."""
        try:
            obj = self.objects.get_namespaced_custom_object(
                *self._args, name, _request_timeout=(CONNECT_TIMEOUT_S, REQUEST_TIMEOUT_S)
            )
            return cast(dict[str, Any], obj)
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise api_error(f"get SparkApplication {self.namespace}/{name}", exc) from None

    def list(
        self, *, label_selector: str | None = None, field_selector: str | None = None
    ) -> tuple[list[dict[str, Any]], str]:
        """Apps matching the selectors, and the list's resourceVersion."""
        kwargs: dict[str, Any] = {
            k: v for k, v in (("label_selector", label_selector), ("field_selector", field_selector)) if v
        }
        try:
            result = cast(
                dict[str, Any],
                self.objects.list_namespaced_custom_object(
                    *self._args, _request_timeout=(CONNECT_TIMEOUT_S, REQUEST_TIMEOUT_S), **kwargs
                ),
            )
        except client.ApiException as exc:
            raise api_error(f"list SparkApplications in {self.namespace}", exc) from None
        return list(result.get("items") or []), str(result["metadata"]["resourceVersion"])

    def delete(self, name: str) -> bool:
        """Delete the app (dependents in the background); False when it was already gone."""
        try:
            self.objects.delete_namespaced_custom_object(
                *self._args,
                name,
                propagation_policy="Background",
                _request_timeout=(CONNECT_TIMEOUT_S, REQUEST_TIMEOUT_S),
            )
            return True
        except client.ApiException as exc:
            if exc.status == 404:
                return False
            raise api_error(f"delete SparkApplication {self.namespace}/{name}", exc) from None

    def watch(self, name: str, resource_version: str, timeout_s: int) -> Any:
        """Open a watch of the one app ``name`` from ``resource_version`` (raw response).

        The server ends it after ``timeout_s``; bookmarks are asked for. Raises ApiException.
        """
        return self.objects.list_namespaced_custom_object(
            *self._args,
            field_selector=f"metadata.name={name}",
            resource_version=resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=timeout_s,
            watch=True,
            _preload_content=False,
            _request_timeout=(CONNECT_TIMEOUT_S, timeout_s + REQUEST_TIMEOUT_S),
        )

    def wait_deleted(self, name: str, timeout_s: float) -> bool:
        """Wait until ``name`` is gone (404); True when it is, False on timeout.

        Uses the watch API: list (by name), then watch for its DELETED event.
        """
        deadline = time.monotonic() + timeout_s
        while True:
            items, rv = self.list(field_selector=f"metadata.name={name}")
            if not items:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                resp = self.watch(name, rv, max(1, min(int(remaining) + 1, 30)))
            except client.ApiException as exc:
                if exc.status == 410:
                    continue
                raise api_error(f"watch SparkApplication {self.namespace}/{name}", exc) from None
            try:
                for event in iter_json_lines(resp):
                    if event.get("type") == "DELETED":
                        return True
                    if time.monotonic() > deadline:
                        break
            except (urllib3.exceptions.HTTPError, OSError):
                pass  # a dropped stream: look again
            finally:
                resp.close()
                resp.release_conn()


def iter_lines(resp: Any) -> Iterator[bytes]:
    """Complete lines (without the newline) of a streamed response, as they arrive."""
    buffer = b""
    for chunk in resp.stream(amt=None, decode_content=False):
        buffer += chunk
        while True:
            cut = buffer.find(b"\n")
            if cut < 0:
                break
            yield buffer[:cut]
            buffer = buffer[cut + 1 :]
    if buffer:
        yield buffer


def iter_json_lines(resp: Any) -> Iterator[dict[str, Any]]:
    """Watch events of a streamed watch response."""
    for line in iter_lines(resp):
        if line.strip():
            event: dict[str, Any] = json.loads(line)
            yield event
