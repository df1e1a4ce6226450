"""The flow-run pod's reaper: no batch SparkApplication outlives the flow run that submitted it.

The Kubernetes work pool's job template (deployments/kubernetes-job-template.json) runs this as
a native sidecar (an init container with ``restartPolicy: Always``) next to the flow run's
container. It waits; Kubernetes terminates it (SIGTERM) once the flow run's container has ended,
however it ended: finished, rescheduled after the pod was deleted, OOM-killed or killed with
SIGKILL, when no code of the flow run itself can clean up. It then deletes every batch app
labelled with this pod's name (``lakehouse.io/submitter-pod``, see ``kubernetes.submitter_pod``)
that has not finished, and waits until each is gone. Finished apps stay for their
``timeToLiveSeconds``; the streaming app carries no such label and is never touched.

    python -m lakehouse.k8s.reaper            # the sidecar: wait for SIGTERM, then reap
    python -m lakehouse.k8s.reaper --now      # reap at once (by hand, after a node loss)
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType

from lakehouse.errors import ConfigError
from lakehouse.k8s import states
from lakehouse.k8s.client import SparkApplications, api_client_from_settings
from lakehouse.k8s.naming import label_value
from lakehouse.k8s.render import SUBMITTER_POD_LABEL
from lakehouse.settings import Settings, get_settings


def reap(settings: Settings, pod: str, log: Callable[[str], None] = print) -> list[str]:
    """Delete the unfinished batch apps submitted from ``pod``; return their names."""
    k8s = settings.kubernetes
    api = api_client_from_settings(k8s)
    try:
        apps = SparkApplications(api, k8s.namespace)
        items, _ = apps.list(label_selector=f"{SUBMITTER_POD_LABEL}={label_value(pod)}")
        reaped = []
        for app in items:
            name = app["metadata"]["name"]
            state = states.app_state(app)
            if state in states.TERMINAL or app["metadata"].get("deletionTimestamp"):
                continue
            log(
                f"reaper: deleting SparkApplication {k8s.namespace}/{name} "
                f"({states.display(state)}): the flow run in pod {pod} has ended"
            )
            if apps.delete(name):
                gone = apps.wait_deleted(name, k8s.delete_timeout_seconds)
                log(
                    f"reaper: SparkApplication {k8s.namespace}/{name} "
                    + ("deleted" if gone else f"still there {k8s.delete_timeout_seconds:g}s after delete")
                )
            reaped.append(name)
        if not reaped:
            log(f"reaper: no unfinished SparkApplication of pod {pod}")
        return reaped
    finally:
        api.close()  # type: ignore[no-untyped-call]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m lakehouse.k8s.reaper", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--now", action="store_true", help="reap at once instead of on SIGTERM")
    parser.add_argument("--pod", help="the submitting pod's name (default: kubernetes.submitter_pod)")
    args = parser.parse_args(argv)
    settings = get_settings()
    pod = args.pod or settings.kubernetes.submitter_pod
    if not pod:
        raise ConfigError(
            "the reaper needs the flow-run pod's name: set LAKEHOUSE_KUBERNETES__"
            "SUBMITTER_POD (the job template sets it from metadata.name) or --pod"
        )
    if not args.now:
        stop = threading.Event()

        def _on_term(signum: int, frame: FrameType | None) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, _on_term)
        signal.signal(signal.SIGINT, _on_term)
        print(f"reaper: watching over the SparkApplications of pod {pod}", flush=True)
        while not stop.wait(3600):
            pass
    reap(settings, pod, log=lambda line: print(line, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
