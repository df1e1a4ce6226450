"""Kubernetes backend: each SparkJob runs as a SparkApplication of the Kubeflow Spark operator.

``run`` is the batch contract shared with the local backend:

* submit under a deterministic name (flow run, job, attempt; see ``lakehouse.k8s.naming``). A
  409 on create means the app exists: with the same spec hash the backend re-attaches (a
  restarted worker), with another spec it raises ``SparkApplicationConflict``; an existing app
  that already FAILED with the same spec is deleted and submitted again;
* follow the app with the watch API (``lakehouse.k8s.watch``) through every operator state;
  success and failure come from ``status.applicationState`` only; UNKNOWN for longer than
  ``unknown_state_timeout_seconds`` fails the job;
* a failed job carries the driver's exit code: the driver pod's terminated state, else the
  operator's errorMessage ("driver container failed with ExitCode: 65, ..."), so a data-contract
  ``fail`` (65) is recognised and not retried on Kubernetes either;
* a driver that cannot start fails the job with the pod's reason instead of hanging: the
  operator keeps such an app SUBMITTED (its pod stays Pending), so the backend reads the driver
  pod (``lakehouse.k8s.pods``): a container waiting on ErrImagePull, ImagePullBackOff,
  CreateContainerConfigError (a missing Secret)... or an unschedulable pod for
  ``driver_start_timeout_seconds`` fails the job (at once for InvalidImageName and
  ErrImageNeverPull) with a ``SparkDriverStartFailed`` and the app is deleted;
* stream the driver pod's log into ``log`` while it runs (``lakehouse.k8s.logs``), collecting
  the job's metrics lines as the local backend does; the tail goes into the error;
* on timeout, cancellation, interruption or any crash of the caller, delete the app and wait
  until it is gone (404) before re-raising;
* hand an ``AppReport`` (state timeline, attempts, duration, Spark UI) to ``on_report``; by
  default it becomes one Prefect artifact per app when running inside Prefect. The Spark UI is
  also logged once known, as something to open from outside the cluster (``AppReport``).

``ensure_running`` keeps the one long-running app of a streaming job (restartPolicy Always) in
place: created when absent, left alone when identical, replaced when its spec changed, relaunched
when it ended.

Nothing here imports Prefect at import time: the run identity comes from ``run_info`` (default:
``prefect.runtime``, read when called) and the report goes to ``on_report``.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Literal

import urllib3
from kubernetes import client

from lakehouse.backends.base import JobOutput, JobResult, LogSink
from lakehouse.errors import ConfigError
from lakehouse.jobs import SparkJob
from lakehouse.k8s import pods, states
from lakehouse.k8s.artifacts import publish_prefect_artifact
from lakehouse.k8s.client import (
    CONNECT_TIMEOUT_S,
    REQUEST_TIMEOUT_S,
    SparkApplications,
    api_client_from_settings,
)
from lakehouse.k8s.errors import (
    KubernetesAccessError,
    SparkApplicationConflict,
    SparkApplicationFailed,
    SparkApplicationInvalid,
    SparkApplicationTimeout,
    SparkDriverStartFailed,
)
from lakehouse.k8s.logs import DriverLogFollower
from lakehouse.k8s.naming import app_name, streaming_app_name
from lakehouse.k8s.render import JOB_LABEL, SPEC_HASH, render_application, spec_differences
from lakehouse.k8s.report import AppReport
from lakehouse.k8s.runinfo import RunInfo, prefect_run_info
from lakehouse.k8s.watch import AppWatcher, next_event
from lakehouse.settings import Settings

ReportHook = Callable[[AppReport], None]
RunInfoProvider = Callable[[], RunInfo]
EnsureOutcome = Literal["created", "unchanged", "updated", "relaunched"]

_TICK_S = 0.25
"""Longest wait on the event queue: deadlines and asynchronous exceptions are checked this often."""


def _ignore(_: str) -> None:
    return None


class KubernetesBackend:
    """Runs SparkJobs as SparkApplications (see the module docstring).

    Args:
        settings: Project settings (``settings.kubernetes`` configures the backend).
        api_client: A ready ``kubernetes.client.ApiClient`` (not closed by the backend); by
            default one is made per call from the configured credentials.
        run_info: Returns the submitting run's identity; default: from ``prefect.runtime``.
        on_report: Receives each app's report when following it ends; default: a Prefect
            artifact when inside a Prefect run. Its failures are logged, never raised.
    """

    name = "kubernetes"

    def __init__(
        self,
        settings: Settings,
        *,
        api_client: client.ApiClient | None = None,
        run_info: RunInfoProvider | None = None,
        on_report: ReportHook | None = None,
    ) -> None:
        self.settings = settings
        self.k8s = settings.kubernetes
        self._api = api_client
        self._run_info = run_info or prefect_run_info
        self._on_report = on_report if on_report is not None else publish_prefect_artifact

    # ------------------------------------------------------------------ rendering

    def app_name(self, job: SparkJob, run: RunInfo) -> str:
        """The SparkApplication name of ``job`` for ``run``."""
        return streaming_app_name(job.name) if job.streaming else app_name(job.name, run)

    def render(self, job: SparkJob, run: RunInfo | None = None) -> dict[str, Any]:
        """The SparkApplication manifest of ``job`` (identity from ``run`` or ``run_info``)."""
        run = run or self._run_info()
        return render_application(job, self.settings, name=self.app_name(job, run), run=run)

    def dry_run(self, job: SparkJob, run: RunInfo | None = None) -> dict[str, Any]:
        """Server-side dry-run of the manifest: the object the API server would store.

        Raises ``SparkApplicationInvalid`` with the server's causes when it is refused.
        """
        manifest = self.render(job, run)
        with self._client() as api:
            return SparkApplications(api, self.k8s.namespace).create(manifest, dry_run=True)

    @contextlib.contextmanager
    def _client(self) -> Iterator[client.ApiClient]:
        if self._api is not None:
            yield self._api
            return
        api = api_client_from_settings(self.k8s)
        try:
            yield api
        finally:
            api.close()  # type: ignore[no-untyped-call]

    # ------------------------------------------------------------------ batch

    def run(self, job: SparkJob, *, log: LogSink) -> JobResult:
        """Run ``job`` as a SparkApplication to the end; see the module docstring.

        Raises:
            SparkApplicationFailed: the app ended FAILED / SUBMISSION_FAILED, stayed UNKNOWN too
                long, or was deleted by someone else (errorMessage, the driver's exit code,
                attempts, state, log tail, metrics).
            SparkDriverStartFailed: the driver pod could not start (the app was deleted).
            SparkApplicationTimeout: it ran past the job's timeout (the app was deleted).
            SparkApplicationConflict: an app of that name exists with another spec.
            SparkApplicationInvalid: the API server refused the manifest.
        """
        if job.streaming:
            raise ConfigError(
                f"job {job.name!r} is a streaming job: on Kubernetes it runs as a long-running "
                "app kept by KubernetesBackend.ensure_running, not to completion by run()"
            )
        run = self._run_info()
        manifest = render_application(job, self.settings, name=self.app_name(job, run), run=run)
        name = manifest["metadata"]["name"]
        timeout = job.timeout_seconds or self.settings.spark.job_timeout_seconds
        report = AppReport(name=name, namespace=self.k8s.namespace, job=job.name)
        with self._client() as api:
            apps = SparkApplications(api, self.k8s.namespace)
            start = time.monotonic()
            try:
                obj = self._submit(apps, manifest, run, report, log)
            except (SparkApplicationConflict, SparkApplicationInvalid, KubernetesAccessError):
                raise  # nothing of ours was created
            except BaseException:
                # Interrupted, or the answer to the create was lost: the app may exist anyway.
                self._delete(apps, name, report, log)
                raise
            try:
                return _Follower(self, api, apps, job, report, log, start + timeout).run(obj, start)
            finally:
                report.duration_s = round(time.monotonic() - start, 3)
                self._publish(report, log)

    def _submit(
        self,
        apps: SparkApplications,
        manifest: dict[str, Any],
        run: RunInfo,
        report: AppReport,
        log: LogSink,
    ) -> dict[str, Any]:
        """Create the app, or re-attach to the one already there (see the module docstring)."""
        name = manifest["metadata"]["name"]
        where = f"{apps.namespace}/{name}"
        for _ in range(3):
            try:
                created = apps.create(manifest)
                log(f"SparkApplication {where} submitted")
                return created
            except client.ApiException as exc:
                if exc.status != 409:
                    raise
            existing = apps.get(name)
            if existing is None:
                continue  # deleted in between: create again
            self._check_same_spec(apps, manifest, existing, run)
            state = states.app_state(existing)
            if existing["metadata"].get("deletionTimestamp") or state in (
                states.FAILED,
                states.SUBMISSION_FAILED,
            ):
                log(
                    f"SparkApplication {where} exists with this spec but ended "
                    f"{states.display(state)} ({states.error_message(existing) or 'no message'}); "
                    "deleting it to run the job again"
                )
                report.event(f"REPLACED {states.display(state)}")
                apps.delete(name)
                apps.wait_deleted(name, self.k8s.delete_timeout_seconds)
                continue
            report.reattached = True
            log(f"SparkApplication {where} already exists with this spec (state {states.display(state)}): re-attaching")
            return existing
        raise ConfigError(f"could not create SparkApplication {where}: it keeps reappearing")

    @staticmethod
    def _check_same_spec(
        apps: SparkApplications,
        manifest: dict[str, Any],
        existing: dict[str, Any],
        run: RunInfo | None,
    ) -> None:
        wanted = manifest["metadata"]["annotations"][SPEC_HASH]
        have = (existing["metadata"].get("annotations") or {}).get(SPEC_HASH)
        if have == wanted:
            return
        job = manifest["metadata"]["labels"].get(JOB_LABEL)
        origin = f"(flow run {run.flow_run_id}, job {job}, attempt {run.attempt})" if run else "the job name"
        raise SparkApplicationConflict(
            apps.namespace,
            manifest["metadata"]["name"],
            have,
            wanted,
            spec_differences(manifest["spec"], existing.get("spec") or {}),
            origin,
        )

    def _delete(self, apps: SparkApplications, name: str, report: AppReport, log: LogSink) -> bool:
        """Delete ``name`` and wait for its 404; True when it is confirmed gone."""
        try:
            apps.delete(name)
            gone = apps.wait_deleted(name, self.k8s.delete_timeout_seconds)
        except Exception as exc:  # reported; the original error goes on
            log(f"could not delete SparkApplication {apps.namespace}/{name}: {exc}")
            report.event("DELETE FAILED")
            return False
        report.event("DELETED" if gone else "DELETE UNCONFIRMED")
        wait = self.k8s.delete_timeout_seconds
        log(
            f"SparkApplication {apps.namespace}/{name} "
            + ("deleted" if gone else f"still there {wait:g}s after delete")
        )
        return gone

    def _publish(self, report: AppReport, log: LogSink) -> None:
        try:
            self._on_report(report)
        except Exception as exc:  # a report must never fail the job
            log(f"could not publish the report of SparkApplication {report.name}: {exc!r}")

    # ------------------------------------------------------------------ streaming

    def ensure_running(self, job: SparkJob, *, log: LogSink = _ignore) -> EnsureOutcome:
        """Make sure the long-running app of the streaming ``job`` runs with the current spec.

        The app is named after the job alone (``streaming_app_name``), so every flow run finds
        the same one. Returns what was done:

        * ``created``: there was none;
        * ``unchanged``: one with the same spec hash is there and has not ended (any state but
          COMPLETED/FAILED: the operator reruns it by itself under restartPolicy Always);
        * ``updated``: its spec hash differed: deleted (404 confirmed), then created again;
        * ``relaunched``: it had ended (COMPLETED or FAILED) or was being deleted: created again.
        """
        if not job.streaming:
            raise ConfigError(f"job {job.name!r} is not a streaming job: run it with run()")
        run = self._run_info()
        manifest = render_application(job, self.settings, name=self.app_name(job, run), run=run)
        name = manifest["metadata"]["name"]
        where = f"{self.k8s.namespace}/{name}"
        with self._client() as api:
            apps = SparkApplications(api, self.k8s.namespace)
            existing = apps.get(name)
            if existing is None:
                try:
                    apps.create(manifest)
                    log(f"streaming SparkApplication {where} created")
                    return "created"
                except client.ApiException as exc:
                    if exc.status != 409:
                        raise
                existing = apps.get(name) or {}
            have = (existing.get("metadata", {}).get("annotations") or {}).get(SPEC_HASH)
            state = states.app_state(existing)
            if have != manifest["metadata"]["annotations"][SPEC_HASH]:
                outcome: EnsureOutcome = "updated"
                why = "its spec changed: " + ", ".join(spec_differences(manifest["spec"], existing.get("spec") or {}))
            elif existing.get("metadata", {}).get("deletionTimestamp") or state in states.TERMINAL:
                outcome = "relaunched"
                why = f"it had ended {states.display(state)}"
            else:
                log(f"streaming SparkApplication {where} is up to date ({states.display(state)})")
                return "unchanged"
            log(f"streaming SparkApplication {where}: {why}; replacing it")
            apps.delete(name)
            if not apps.wait_deleted(name, self.k8s.delete_timeout_seconds):
                raise ConfigError(
                    f"SparkApplication {where} was deleted but is still there after "
                    f"{self.k8s.delete_timeout_seconds:g}s (a finalizer?)"
                )
            apps.create(manifest)
            return outcome

    def stop(self, job: SparkJob, *, log: LogSink = _ignore) -> bool:
        """Delete the long-running app of the streaming ``job`` and wait until it is gone.

        Returns False when there was none.
        """
        name = streaming_app_name(job.name)
        with self._client() as api:
            apps = SparkApplications(api, self.k8s.namespace)
            if not apps.delete(name):
                return False
            gone = apps.wait_deleted(name, self.k8s.delete_timeout_seconds)
            log(
                f"streaming SparkApplication {self.k8s.namespace}/{name} "
                + ("deleted" if gone else "delete requested but not yet gone")
            )
            return gone

    def get_app(self, job: SparkJob, run: RunInfo | None = None) -> dict[str, Any] | None:
        """The job's SparkApplication as stored (with status), or None."""
        run = run or (RunInfo(flow_run_id="-") if job.streaming else self._run_info())
        with self._client() as api:
            return SparkApplications(api, self.k8s.namespace).get(self.app_name(job, run))


class _Follower:
    """Follows one submitted app to its end (one ``run`` call)."""

    def __init__(
        self,
        backend: KubernetesBackend,
        api: client.ApiClient,
        apps: SparkApplications,
        job: SparkJob,
        report: AppReport,
        log: LogSink,
        deadline: float,
    ) -> None:
        k = backend.k8s
        self.backend = backend
        self.apps = apps
        self.job = job
        self.report = report
        self.deadline = deadline
        self.unknown_timeout = k.unknown_state_timeout_seconds
        self._log_lock = threading.Lock()
        self._log = log
        # the driver's log lines: metrics apart, the rest logged, kept in the tail, diagnosed
        self.output = JobOutput(backend.settings, job, backend.name, self.log)
        self.core = client.CoreV1Api(api)
        self.container = k.driver_container
        self.logs = DriverLogFollower(
            self.core, apps.namespace, k.driver_container, self.output.feed, on_pod=self._driver_pod
        )
        self.watch_timeout = k.watch_timeout_seconds
        self.drain_s = k.log_drain_seconds
        self.unknown_since: float | None = None
        self.ui_template = k.spark_ui_url
        self.ui_logged: str | None = None
        self.start_timeout = k.driver_start_timeout_seconds
        self._pod_lock = threading.Lock()
        self._start_problem: tuple[str, str, pods.StartProblem, float] | None = None
        """(pod name, pod uid, problem, monotonic time first seen) of a driver not starting."""
        self._reasons_logged: set[tuple[str, str]] = set()

    def log(self, line: str) -> None:
        with self._log_lock:
            self._log(line)

    def _observe(self, obj: dict[str, Any]) -> None:
        r = self.report
        if r.observe(obj, ui_url_template=self.ui_template):
            self.log(
                f"SparkApplication {self.apps.namespace}/{r.name}: {r.state}"
                f" (execution attempts {r.execution_attempts})"
                + (f": {states.error_message(obj)}" if states.error_message(obj) else "")
            )
        ui = r.spark_ui_text()
        if ui and ui != self.ui_logged and states.web_ui(obj).service:
            self.ui_logged = ui
            self.log(f"Spark UI of {self.apps.namespace}/{r.name} (while the driver runs): {ui}")
        if states.app_state(obj) == states.UNKNOWN:
            self.unknown_since = self.unknown_since or time.monotonic()
        else:
            self.unknown_since = None
        pod = states.driver_pod(obj)
        with self._pod_lock:
            if self._start_problem is not None and self._start_problem[0] != pod:
                self._start_problem = None  # that pod is no longer the app's driver
        self.logs.follow(pod, states.execution_attempts(obj))

    def _driver_pod(self, pod: Any) -> None:
        """Each read of the driver pod (log follower thread): note a driver that cannot start."""
        name, uid = str(pod.metadata.name), str(pod.metadata.uid)
        problem = pods.start_problem(pod, self.container)
        with self._pod_lock:
            before = self._start_problem
            if problem is None:
                self._start_problem = None
                return
            if before is not None and before[1] == uid:
                self._start_problem = (name, uid, problem, before[3])  # still stuck: keep since
            else:
                self._start_problem = (name, uid, problem, time.monotonic())
            if (uid, problem.reason) in self._reasons_logged:
                return  # e.g. the kubelet's ErrImagePull / ImagePullBackOff alternation
            self._reasons_logged.add((uid, problem.reason))
        when = (
            "failing now" if problem.permanent else f"the job fails if it does not start within {self.start_timeout:g}s"
        )
        self.log(
            f"driver pod {self.apps.namespace}/{name} is not starting: {problem.reason}"
            + (f" ({problem.message})" if problem.message else "")
            + f"; {when}"
        )

    def _check_start(self, now: float) -> None:
        """Raise ``SparkDriverStartFailed`` when the driver has been stuck too long."""
        with self._pod_lock:
            stuck = self._start_problem
        if stuck is None:
            return
        name, _, problem, since = stuck
        if not problem.permanent and now - since < self.start_timeout:
            return
        r = self.report
        r.event(f"DRIVER NOT STARTING: {problem.reason}")
        raise SparkDriverStartFailed(
            self.job.name,
            app=r.name,
            namespace=r.namespace,
            pod=name,
            reason=problem.reason,
            pod_message=problem.message,
            waited_s=now - since,
            permanent=problem.permanent,
            error_message=r.error_message,
            state=r.state,
            attempts=max(1, r.execution_attempts),
            log_tail=list(self.output.tail),
        )

    def _exit_code(self, obj: dict[str, Any]) -> tuple[int | None, str | None]:
        """The failed driver's exit code: from its pod when readable, else from the operator's
        errorMessage; and the pod's own failure reason when it has no container exit."""
        name = states.driver_pod(obj)
        pod = None
        if name:
            try:
                pod = self.core.read_namespaced_pod(
                    name, self.apps.namespace, _request_timeout=(CONNECT_TIMEOUT_S, REQUEST_TIMEOUT_S)
                )
            except (client.ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
                status = getattr(exc, "status", None)
                if status != 404:
                    self.log(
                        f"could not read driver pod {self.apps.namespace}/{name} for its "
                        f"exit code ({status or exc!r}); using the operator's errorMessage"
                    )
        code = pods.exit_code(pod, self.container) if pod is not None else None
        if not code:  # 0 from a pod says nothing about this failure (an executor's, say)
            code = states.exit_code_from_error_message(states.error_message(obj) or self.report.error_message)
        return code, pods.failure(pod) if pod is not None and code is None else None

    def _watch_stats(self, watcher: AppWatcher) -> None:
        self.report.watch_reconnects = watcher.reconnects
        self.report.watch_relists = watcher.relists

    def _failure(self, message: str, state: str, exit_code: int | None = None) -> SparkApplicationFailed:
        r = self.report
        error = SparkApplicationFailed(
            self.job.name,
            self.output.diagnoser.explain(message),
            app=r.name,
            namespace=r.namespace,
            error_message=r.error_message,
            state=state,
            attempts=max(1, r.execution_attempts),
            log_tail=list(self.output.tail),
            exit_code=exit_code,
            metrics=self.output.metrics,
        )
        error.permanent = self.output.diagnoser.cause is not None and self.output.diagnoser.cause.permanent
        return error

    def run(self, obj: dict[str, Any], start: float) -> JobResult:
        name = self.report.name
        watcher = AppWatcher(
            self.apps, name, str(obj["metadata"]["resourceVersion"]), watch_timeout_s=self.watch_timeout
        )
        self.logs.start()
        watcher.start()
        outcome: states.Outcome | None = None
        try:
            self._observe(obj)
            while (outcome := states.outcome(states.app_state(obj), "Never")) is None:
                now = time.monotonic()
                if now >= self.deadline:
                    raise SparkApplicationTimeout(
                        self.job.name,
                        f"ran past its timeout of {self.deadline - start:g}s and was deleted",
                        app=name,
                        namespace=self.apps.namespace,
                        state=self.report.state,
                        attempts=max(1, self.report.execution_attempts),
                        log_tail=list(self.output.tail),
                    )
                unknown_for = now - (self.unknown_since or now)
                if self.unknown_since is not None and unknown_for > self.unknown_timeout:
                    raise self._failure(
                        f"was UNKNOWN for more than {self.unknown_timeout:g}s and was deleted",
                        states.UNKNOWN,
                    )
                self._check_start(now)
                event = next_event(watcher.events, min(_TICK_S, self.deadline - now))
                if event is None:
                    continue
                if event.type == "ERROR":
                    assert event.error is not None
                    raise event.error
                if event.type in ("DELETED", "GONE"):
                    self.report.event("DELETED (not by this run)")
                    self.report.outcome = "deleted"
                    raise self._failure("was deleted before it finished", "DELETED")
                obj = event.obj
                self._observe(obj)
        except BaseException as exc:
            # Timeout, UNKNOWN, cancellation, interruption, crash: leave no app behind.
            watcher.stop()
            self.logs.stop()
            self._watch_stats(watcher)
            if self.report.outcome != "deleted":
                self.report.outcome = _outcome_of(exc)
                self.backend._delete(self.apps, name, self.report, self.log)
            raise
        watcher.stop()
        self._watch_stats(watcher)
        self.logs.finish(self.drain_s)
        self.report.outcome = outcome
        if outcome == "failed":
            code, pod_failure = self._exit_code(obj)
            how = "failed" if code is None else f"failed with exit code {code}"
            raise self._failure(how + (f" (driver pod {pod_failure})" if pod_failure else ""), self.report.state, code)
        return JobResult(
            job=self.job.name,
            backend=KubernetesBackend.name,
            state=self.report.state,
            exit_code=None,
            duration_s=round(time.monotonic() - start, 3),
            metrics=self.output.metrics,
            log_tail=list(self.output.tail),
        )


def _outcome_of(exc: BaseException) -> str:
    if isinstance(exc, SparkApplicationTimeout):
        return "timeout"
    if isinstance(exc, SparkApplicationFailed):
        return "failed"
    if isinstance(exc, (KeyboardInterrupt, TimeoutError)) or type(exc).__name__ in (
        "TerminationSignal",
        "CancelledError",
        "Abort",
    ):
        return "cancelled"
    return "error"
