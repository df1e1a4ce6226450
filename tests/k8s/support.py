"""Test doubles for what the loopback control plane lacks: the operator, a kubelet, the network.

* ``Operator`` writes SparkApplication status to the status subresource the way the Kubeflow
  Spark operator v2.5.2 does (internal/controller/sparkapplication/controller.go): a full
  object PUT (``Status().Update``) with the fields each reconcile step sets.
* ``FakeKubelet`` is a Node whose kubelet endpoint (status.addresses + daemonEndpoints) is a
  small HTTPS server on 127.0.0.1 serving ``/containerLogs/<ns>/<pod>/<container>``: the real
  kube-apiserver proxies ``pods/log`` to it, so logs reach clients through the real API path.
* ``TcpProxy`` sits between a client and the apiserver and can cut every connection at once.
* ``load_kustomization`` / ``apply`` build the k8s/ kustomize base and create its objects.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import datetime as dt
import hashlib
import http.server
import ipaddress
import select
import shutil
import socket
import ssl
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kubernetes import client, dynamic

from lakehouse.k8s.render import GROUP, PLURAL, VERSION

# --------------------------------------------------------------------------- operator


def _now() -> str:
    """metav1.Now() as JSON: RFC 3339, seconds."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Operator:
    """Plays the Spark operator's part for the apps of one namespace (admin credentials)."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.objects = client.CustomObjectsApi(api)
        self.namespace = namespace
        self._args = (GROUP, VERSION, namespace, PLURAL)

    def get(self, name: str) -> dict[str, Any]:
        return self.objects.get_namespaced_custom_object(*self._args, name)

    def exists(self, name: str) -> bool:
        try:
            self.get(name)
            return True
        except client.ApiException as exc:
            if exc.status == 404:
                return False
            raise

    def wait_for(
        self, name: str, timeout: float = 20.0, until: Callable[[dict[str, Any]], bool] = lambda _: True
    ) -> dict[str, Any]:
        """The app once it exists and ``until`` holds (bounded)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                app = self.get(name)
                if until(app):
                    return app
            except client.ApiException as exc:
                if exc.status != 404:
                    raise
            if time.monotonic() > deadline:
                raise AssertionError(f"SparkApplication {name} not there (or not as expected) after {timeout}s")
            time.sleep(0.02)

    def wait_gone(self, name: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while self.exists(name):
            if time.monotonic() > deadline:
                raise AssertionError(f"SparkApplication {name} still exists after {timeout}s")
            time.sleep(0.02)

    def _update(self, name: str, mutate: Callable[[dict[str, Any], dict[str, Any]], None]) -> dict[str, Any]:
        """GET, mutate the status, PUT /status (retry on conflict, as RetryOnConflict does)."""
        for _ in range(10):
            app = self.get(name)
            status = app.setdefault("status", {})
            status.setdefault("driverInfo", {})
            status.setdefault("applicationState", {"state": ""})
            mutate(app, status)
            try:
                return self.objects.replace_namespaced_custom_object_status(*self._args, name, app)
            except client.ApiException as exc:
                if exc.status != 409:
                    raise
        raise AssertionError("status update kept conflicting")

    # ---- reconcile steps (controller.go, v2.5.2)

    def submit(self, name: str) -> dict[str, Any]:
        """submitSparkApplication, success: SUBMITTED, a new submission and execution attempt."""

        def m(app: dict[str, Any], st: dict[str, Any]) -> None:
            st["submissionID"] = str(uuid.uuid4())
            st["driverInfo"] = {**st["driverInfo"], "podName": driver_pod_name(app)}
            st["lastSubmissionAttemptTime"] = _now()
            st["submissionAttempts"] = int(st.get("submissionAttempts") or 0) + 1
            st["applicationState"] = {"state": "SUBMITTED"}
            st["executionAttempts"] = int(st.get("executionAttempts") or 0) + 1

        return self._update(name, m)

    def submission_failed(self, name: str, error: str) -> dict[str, Any]:
        """submitSparkApplication, failure: SUBMISSION_FAILED with the submit error."""

        def m(app: dict[str, Any], st: dict[str, Any]) -> None:
            st["submissionID"] = str(uuid.uuid4())
            st["driverInfo"] = {**st["driverInfo"], "podName": driver_pod_name(app)}
            st["lastSubmissionAttemptTime"] = _now()
            st["submissionAttempts"] = int(st.get("submissionAttempts") or 0) + 1
            st["applicationState"] = {
                "state": "SUBMISSION_FAILED",
                "errorMessage": f"failed to submit spark application: {error}",
            }

        return self._update(name, m)

    def running(self, name: str, ui: bool = True) -> dict[str, Any]:
        """reconcileSubmitted: driver pod running -> RUNNING, web UI service recorded."""

        def m(app: dict[str, Any], st: dict[str, Any]) -> None:
            st["sparkApplicationId"] = f"spark-{uuid.uuid4().hex}"
            st["applicationState"] = {**st["applicationState"], "state": "RUNNING"}
            if ui:
                st["driverInfo"] = {
                    **st["driverInfo"],
                    "webUIServiceName": f"{app['metadata']['name']}-ui-svc",
                    "webUIPort": 4040,
                    "webUIAddress": "10.0.0.17:4040",
                }

        return self._update(name, m)

    def succeeding(self, name: str) -> dict[str, Any]:
        """updateDriverState: driver completed -> SUCCEEDING, terminationTime."""

        def m(app: dict[str, Any], st: dict[str, Any]) -> None:
            st["terminationTime"] = _now()
            st["applicationState"] = {**st["applicationState"], "state": "SUCCEEDING"}

        return self._update(name, m)

    def completed(self, name: str) -> dict[str, Any]:
        """reconcileSucceeding, restartPolicy Never: COMPLETED."""

        def m(app: dict[str, Any], st: dict[str, Any]) -> None:
            st["applicationState"] = {**st["applicationState"], "state": "COMPLETED"}

        return self._update(name, m)

    def failing(self, name: str, exit_code: int = 1, reason: str = "Error") -> dict[str, Any]:
        """updateDriverState: driver failed -> FAILING with the container's exit code."""

        def m(app: dict[str, Any], st: dict[str, Any]) -> None:
            st["terminationTime"] = _now()
            st["applicationState"] = {
                "state": "FAILING",
                "errorMessage": f"driver container failed with ExitCode: {exit_code}, Reason: {reason}",
            }

        return self._update(name, m)

    def driver_ended(self, name: str, core: client.CoreV1Api) -> dict[str, Any]:
        """updateDriverState after the driver pod ended, from the pod itself: FAILING with the
        driver container's exit code and reason (or "driver container status missing"), or
        SUCCEEDING for exit code 0; "driver pod not found" when there is no pod."""

        def m(app: dict[str, Any], st: dict[str, Any]) -> None:
            st["terminationTime"] = st.get("terminationTime") or _now()
            try:
                pod = core.read_namespaced_pod(driver_pod_name(app), self.namespace)
            except client.ApiException as exc:
                if exc.status != 404:
                    raise
                st["applicationState"] = {"state": "FAILING", "errorMessage": "driver pod not found"}
                return
            terminated = next(
                (
                    cs.state.terminated
                    for cs in pod.status.container_statuses or []
                    if cs.name == "spark-kubernetes-driver" and cs.state.terminated
                ),
                None,
            )
            if terminated is not None and terminated.exit_code == 0:
                st["applicationState"] = {**st["applicationState"], "state": "SUCCEEDING"}
                return
            st["applicationState"] = {
                "state": "FAILING",
                "errorMessage": (
                    f"driver container failed with ExitCode: {terminated.exit_code}, Reason: {terminated.reason}"
                    if terminated is not None
                    else "driver container status missing"
                ),
            }

        return self._update(name, m)

    def failed(self, name: str) -> dict[str, Any]:
        """reconcileFailing / reconcileFailedSubmission without retries: FAILED."""

        def m(app: dict[str, Any], st: dict[str, Any]) -> None:
            st["applicationState"] = {**st["applicationState"], "state": "FAILED"}
            st.setdefault("terminationTime", _now())

        return self._update(name, m)

    def pending_rerun(self, name: str) -> dict[str, Any]:
        """reconcileFailing with a retry due: resetSparkApplicationStatus, PENDING_RERUN."""

        def m(app: dict[str, Any], st: dict[str, Any]) -> None:
            st["sparkApplicationId"] = ""
            st.pop("terminationTime", None)
            st["driverInfo"] = {}
            st.pop("executorState", None)
            st["applicationState"] = {"state": "PENDING_RERUN"}

        return self._update(name, m)

    def unknown(self, name: str) -> dict[str, Any]:
        """updateDriverState: driver pod state unknown -> UNKNOWN."""

        def m(app: dict[str, Any], st: dict[str, Any]) -> None:
            st["applicationState"] = {**st["applicationState"], "state": "UNKNOWN"}

        return self._update(name, m)

    def set_state(self, name: str, state: str) -> dict[str, Any]:
        def m(app: dict[str, Any], st: dict[str, Any]) -> None:
            st["applicationState"] = {**st["applicationState"], "state": state}

        return self._update(name, m)


def driver_pod_name(app: dict[str, Any]) -> str:
    """util.GetDriverPodName: spec.driver.podName, else <app>-driver."""
    return (app["spec"].get("driver") or {}).get("podName") or f"{app['metadata']['name']}-driver"


# --------------------------------------------------------------------------- kubelet


def _self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-kubelet")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "kubelet.crt", directory / "kubelet.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def _nano(t: int) -> str:
    """``t`` (ns since the epoch) as the kubelet stamps log lines: RFC3339Nano, UTC."""
    secs, nanos = divmod(t, 1_000_000_000)
    base = dt.datetime.fromtimestamp(secs, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{nanos:09d}Z"


@dataclass
class _ContainerLog:
    lines: list[tuple[str, str]] = field(default_factory=list)
    done: bool = False


class FakeKubelet:
    """A Node backed by a loopback HTTPS server that serves container logs (see module doc)."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.node_name = f"fake-node-{uuid.uuid4().hex[:6]}"
        self._logs: dict[tuple[str, str], _ContainerLog] = {}
        self._waiting: dict[tuple[str, str], str] = {}
        self._cond = threading.Condition()
        self._conns: set[socket.socket] = set()
        self.requests: list[str] = []
        self._dir = Path(tempfile.mkdtemp(prefix="fake-kubelet-"))
        self._server: http.server.ThreadingHTTPServer | None = None

    # ---- lifecycle

    def start(self) -> FakeKubelet:
        kubelet = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # the body ends when the connection closes

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                kubelet._serve(self)

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        cert, key = _self_signed(self._dir)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(cert), str(key))
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
        self._server = server
        threading.Thread(target=server.serve_forever, name="fake-kubelet", daemon=True).start()
        port = server.server_address[1]
        self.core.create_node(
            client.V1Node(
                metadata=client.V1ObjectMeta(name=self.node_name),
                status=client.V1NodeStatus(
                    addresses=[client.V1NodeAddress(type="InternalIP", address="127.0.0.1")],
                    daemon_endpoints=client.V1NodeDaemonEndpoints(kubelet_endpoint=client.V1DaemonEndpoint(port=port)),
                ),
            )
        )
        return self

    def stop(self) -> None:
        with self._cond:
            for log in self._logs.values():
                log.done = True
            self._cond.notify_all()
        self.cut()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        with contextlib.suppress(client.ApiException):
            self.core.delete_node(self.node_name)
        shutil.rmtree(self._dir, ignore_errors=True)

    # ---- pods and logs

    def _pod_body(
        self,
        namespace: str,
        name: str,
        container: str,
        pod_security: dict[str, Any] | None,
        security: dict[str, Any] | None,
    ) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "labels": {"spark-role": "driver"}},
            "spec": {
                "nodeName": self.node_name,
                "serviceAccountName": "spark-driver",
                "automountServiceAccountToken": False,
                "restartPolicy": "Never",
                "securityContext": pod_security
                or {"runAsNonRoot": True, "runAsUser": 185, "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [
                    {
                        "name": container,
                        "image": "lakehouse-spark:test",
                        "securityContext": security
                        or {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                    }
                ],
            },
        }

    def start_pod(
        self,
        namespace: str,
        name: str,
        *,
        container: str = "spark-kubernetes-driver",
        pod_security: dict[str, Any] | None = None,
        security: dict[str, Any] | None = None,
    ) -> str:
        """Create a Running pod bound to this node (a new one if the name was used); its uid."""
        with contextlib.suppress(client.ApiException):
            self.core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.core.read_namespaced_pod(name, namespace)
            except client.ApiException as exc:
                if exc.status == 404:
                    break
                raise
            if time.monotonic() > deadline:
                raise AssertionError(f"pod {name} not deleted")
            time.sleep(0.02)
        with self._cond:
            self._logs[(namespace, name)] = _ContainerLog()
            self._waiting.pop((namespace, name), None)
        body = self._pod_body(namespace, name, container, pod_security, security)
        pod = self.core.create_namespaced_pod(namespace, body)
        pod.status = client.V1PodStatus(
            phase="Running",
            container_statuses=[
                client.V1ContainerStatus(
                    name=container,
                    image="lakehouse-spark:test",
                    image_id="",
                    ready=True,
                    restart_count=0,
                    state=client.V1ContainerState(
                        running=client.V1ContainerStateRunning(started_at=dt.datetime.now(dt.UTC))
                    ),
                )
            ],
        )
        self.core.replace_namespaced_pod_status(name, namespace, pod)
        return str(pod.metadata.uid)

    def start_waiting_pod(
        self,
        namespace: str,
        name: str,
        reason: str,
        message: str,
        *,
        container: str = "spark-kubernetes-driver",
        pod_security: dict[str, Any] | None = None,
        security: dict[str, Any] | None = None,
    ) -> str:
        """A pod bound to this node whose container cannot start: phase Pending, the container
        waiting with ``reason`` (ErrImagePull, CreateContainerConfigError...), as the kubelet
        reports it; its log answers 400 "is waiting to start". Returns its uid."""
        uid = self.start_pod(namespace, name, container=container, pod_security=pod_security, security=security)
        self.set_waiting(namespace, name, reason, message)
        return uid

    def set_waiting(self, namespace: str, pod: str, reason: str, message: str) -> None:
        """The container is (still) waiting, now with ``reason`` (e.g. ErrImagePull ->
        ImagePullBackOff, the kubelet's back-off between pulls)."""
        p = self.core.read_namespaced_pod(pod, namespace)
        container = p.spec.containers[0].name
        p.status = client.V1PodStatus(
            phase="Pending",
            conditions=[client.V1PodCondition(type="PodScheduled", status="True")],
            container_statuses=[
                client.V1ContainerStatus(
                    name=container,
                    image=p.spec.containers[0].image,
                    image_id="",
                    ready=False,
                    restart_count=0,
                    state=client.V1ContainerState(
                        waiting=client.V1ContainerStateWaiting(reason=reason, message=message)
                    ),
                )
            ],
        )
        self.core.replace_namespaced_pod_status(pod, namespace, p)
        with self._cond:
            self._waiting[(namespace, pod)] = reason

    def set_running(self, namespace: str, pod: str) -> None:
        """The waiting container started after all (e.g. the missing Secret was created)."""
        p = self.core.read_namespaced_pod(pod, namespace)
        container = p.spec.containers[0].name
        p.status = client.V1PodStatus(
            phase="Running",
            container_statuses=[
                client.V1ContainerStatus(
                    name=container,
                    image=p.spec.containers[0].image,
                    image_id="",
                    ready=True,
                    restart_count=0,
                    state=client.V1ContainerState(
                        running=client.V1ContainerStateRunning(started_at=dt.datetime.now(dt.UTC))
                    ),
                )
            ],
        )
        self.core.replace_namespaced_pod_status(pod, namespace, p)
        with self._cond:
            self._waiting.pop((namespace, pod), None)

    def reject(self, namespace: str, pod: str, reason: str, message: str) -> None:
        """The kubelet refuses the pod at admission (e.g. OutOfcpu): phase Failed with a pod
        reason, no container ever ran, so no container status."""
        p = self.core.read_namespaced_pod(pod, namespace)
        p.status = client.V1PodStatus(phase="Failed", reason=reason, message=message)
        self.core.replace_namespaced_pod_status(pod, namespace, p)
        with self._cond:
            self._logs.pop((namespace, pod), None)

    def create_unschedulable_pod(
        self,
        namespace: str,
        name: str,
        message: str,
        *,
        pod_security: dict[str, Any] | None = None,
        security: dict[str, Any] | None = None,
    ) -> None:
        """A pod on no node that the scheduler cannot place: PodScheduled False, Unschedulable
        (the real apiserver answers its log with an empty 200)."""
        body = self._pod_body(namespace, name, "spark-kubernetes-driver", pod_security, security)
        del body["spec"]["nodeName"]
        pod = self.core.create_namespaced_pod(namespace, body)
        pod.status = client.V1PodStatus(
            phase="Pending",
            conditions=[
                client.V1PodCondition(type="PodScheduled", status="False", reason="Unschedulable", message=message)
            ],
        )
        self.core.replace_namespaced_pod_status(name, namespace, pod)

    def write(self, namespace: str, pod: str, *lines: str) -> None:
        self.write_stamped(namespace, pod, *((time.time_ns(), line) for line in lines))

    def write_stamped(self, namespace: str, pod: str, *lines: tuple[int, str]) -> None:
        """Append ``(timestamp ns, line)`` pairs in this order, whatever their timestamps: as
        containerd writes a container's stdout and stderr, each line stamped before the two
        streams take turns at the log file."""
        with self._cond:
            self._logs[(namespace, pod)].lines += [(_nano(t), line) for t, line in lines]
            self._cond.notify_all()

    def finish(self, namespace: str, pod: str, exit_code: int = 0) -> None:
        """The container exits: pod status terminated (as a kubelet reports), log stream ends."""
        p = self.core.read_namespaced_pod(pod, namespace)
        container = p.spec.containers[0].name
        p.status = client.V1PodStatus(
            phase="Succeeded" if exit_code == 0 else "Failed",
            container_statuses=[
                client.V1ContainerStatus(
                    name=container,
                    image="lakehouse-spark:test",
                    image_id="",
                    ready=False,
                    restart_count=0,
                    state=client.V1ContainerState(
                        terminated=client.V1ContainerStateTerminated(
                            exit_code=exit_code, reason="Completed" if exit_code == 0 else "Error"
                        )
                    ),
                )
            ],
        )
        self.core.replace_namespaced_pod_status(pod, namespace, p)
        with self._cond:
            self._logs[(namespace, pod)].done = True
            self._cond.notify_all()

    def cut(self) -> None:
        """Drop every open log connection (as a network failure would)."""
        with self._cond:
            conns = list(self._conns)
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)

    def _serve(self, h: http.server.BaseHTTPRequestHandler) -> None:
        url = urllib.parse.urlsplit(h.path)
        query = urllib.parse.parse_qs(url.query)
        self.requests.append(h.path)
        parts = url.path.strip("/").split("/")
        if len(parts) != 4 or parts[0] != "containerLogs":
            h.send_error(404)
            return
        _, ns, pod, container = parts
        with self._cond:
            log = self._logs.get((ns, pod))
            waiting = self._waiting.get((ns, pod))
        if log is None or waiting is not None:
            # The kubelet's own words (kubelet_pods.go, validateContainerLogStatus).
            what = {
                "ErrImagePull": "image can't be pulled",
                "ImagePullBackOff": "trying and failing to pull image",
            }.get(waiting or "", waiting or "ContainerCreating")
            body = f'container "{container}" in pod "{pod}" is waiting to start: {what}'.encode()
            h.send_response(400)
            h.send_header("Content-Type", "text/plain")
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
            return
        follow = query.get("follow") == ["true"]
        stamps = query.get("timestamps") == ["true"]
        h.send_response(200)
        h.send_header("Content-Type", "text/plain")
        h.end_headers()
        sent = 0
        with self._cond:
            self._conns.add(h.connection)
        try:
            while True:
                with self._cond:
                    while sent >= len(log.lines) and follow and not log.done:
                        if not self._cond.wait(0.5) and h.connection.fileno() < 0:
                            return
                    batch = log.lines[sent:]
                    done = log.done or not follow
                for ts, line in batch:
                    h.wfile.write(((f"{ts} " if stamps else "") + line + "\n").encode())
                sent += len(batch)
                h.wfile.flush()
                if done and sent >= len(log.lines):
                    return
        except OSError:
            return
        finally:
            with self._cond:
                self._conns.discard(h.connection)


# --------------------------------------------------------------------------- network


class TcpProxy:
    """A loopback TCP proxy to ``upstream`` ("host:port"); ``cut()`` drops every connection."""

    def __init__(self, upstream: str) -> None:
        host, port = upstream.rsplit(":", 1)
        self.upstream = (host, int(port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._pairs: set[tuple[socket.socket, socket.socket]] = set()
        self._lock = threading.Lock()
        self.accepted = 0
        self._closed = False
        threading.Thread(target=self._accept, name="tcp-proxy", daemon=True).start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closed:
            try:
                down, _ = self._listener.accept()
            except OSError:
                return
            try:
                up = socket.create_connection(self.upstream, timeout=10)
            except OSError:
                down.close()
                continue
            with self._lock:
                self.accepted += 1
                self._pairs.add((down, up))
            threading.Thread(target=self._pump, args=(down, up), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while True:
                ready, _, _ = select.select([a, b], [], [], 1.0)
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    (b if s is a else a).sendall(data)
        except OSError:
            return
        finally:
            with self._lock:
                self._pairs.discard((a, b))
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.close()

    def open_connections(self) -> int:
        with self._lock:
            return len(self._pairs)

    def cut(self) -> int:
        """Close every proxied connection; how many there were."""
        with self._lock:
            pairs = list(self._pairs)
        for a, b in pairs:
            for s in (a, b):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
        return len(pairs)

    def close(self) -> None:
        self._closed = True
        self.cut()
        with contextlib.suppress(OSError):
            self._listener.close()


# --------------------------------------------------------------------------- kustomize


SUPPORTED_KUSTOMIZATION_KEYS = {"apiVersion", "kind", "resources", "labels"}


def load_kustomization(directory: Path) -> list[dict[str, Any]]:
    """The objects of a kustomize base using only ``resources`` and ``labels`` (pairs, no
    selectors): each resource file's documents, with the labels added to metadata.labels.

    Anything else in kustomization.yaml is refused, so this never builds something other than
    what ``kubectl apply -k`` would.
    """
    kust = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kust) - SUPPORTED_KUSTOMIZATION_KEYS
    if unknown:
        raise AssertionError(f"kustomization.yaml uses {sorted(unknown)}: extend the loader")
    extra: dict[str, str] = {}
    for entry in kust.get("labels") or []:
        if set(entry) - {"pairs"}:
            raise AssertionError(f"labels entry {entry} uses more than pairs")
        extra.update(entry["pairs"])
    objects = []
    for resource in kust["resources"]:
        for doc in yaml.safe_load_all((directory / resource).read_text()):
            if doc:
                doc = copy.deepcopy(doc)
                doc.setdefault("metadata", {}).setdefault("labels", {}).update(extra)
                objects.append(doc)
    return objects


_DISCOVERY_DIR: Path | None = None


def dynamic_client(api: client.ApiClient) -> dynamic.DynamicClient:
    """The dynamic client over ``api``, its API discovery cached in a directory of this test
    process, removed at its exit. By default the client caches it as ``/tmp/osrcp-<hash>.json``,
    a file per test cluster that outlived every test run."""
    global _DISCOVERY_DIR
    if _DISCOVERY_DIR is None:
        _DISCOVERY_DIR = Path(tempfile.mkdtemp(prefix="lakehouse-discovery-"))
        atexit.register(shutil.rmtree, _DISCOVERY_DIR, True)
    name = hashlib.sha256(str(api.configuration.host).encode()).hexdigest()[:16]
    return dynamic.DynamicClient(api, cache_file=str(_DISCOVERY_DIR / f"{name}.json"))


def apply(api: client.ApiClient, objects: list[dict[str, Any]]) -> None:
    """Create each object through the dynamic client (replace when it already exists)."""
    dyn = dynamic_client(api)
    for obj in objects:
        res = dyn.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        ns = obj["metadata"].get("namespace")
        try:
            res.create(body=obj, namespace=ns)
        except client.ApiException as exc:
            if exc.status != 409:
                raise
            current = res.get(name=obj["metadata"]["name"], namespace=ns)
            body = copy.deepcopy(obj)
            body["metadata"]["resourceVersion"] = current.metadata.resourceVersion
            res.replace(body=body, namespace=ns)


@contextlib.contextmanager
def running(kubelet: FakeKubelet) -> Iterator[FakeKubelet]:
    kubelet.start()
    try:
        yield kubelet
    finally:
        kubelet.stop()
