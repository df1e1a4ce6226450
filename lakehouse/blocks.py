"""The Prefect workspace of the project, made from the settings: ``lakehouse blocks``.

Creates or updates (idempotent, safe to rerun):

* Secret blocks for the Kafka and object-store credentials that are configured
  (``lakehouse-kafka-sasl-password``, ``lakehouse-object-store-access-key-id``,
  ``lakehouse-object-store-secret-access-key``);
* a ``KubernetesCredentials`` block (kubeconfig from ``deploy.kubeconfig`` if set, else none:
  in-cluster config, then the default kubeconfig);
* the result storage block flow runs persist to: ``local-file-system`` at the results directory
  by default, ``remote-file-system`` on an S3-compatible URL when ``deploy.results_url`` is set;
* a ``custom-webhook`` notification block when ``deploy.webhook_url`` is set;
* the work pools: a process pool for local runs and a Kubernetes pool whose job template
  (deployments/kubernetes-job-template.json) carries image, namespace, service account and
  resources from the settings;
* the Prefect variable ``lakehouse_work_pool`` that deployments/prefect.yaml deploys to;
* the automation that cancels a scheduled run of a ``no-catchup`` deployment that did not start
  within ``deploy.missed_run_grace_seconds`` of turning Late (a missed run is not caught up).

Secret values go into Secret blocks only. Work pools reference them: local flow runs get them
as environment variables through ``{{ prefect.blocks.secret.<name> }}`` placeholders that the
worker resolves when it starts the run; Kubernetes flow runs read a Kubernetes Secret through
``secretKeyRef`` (only its name is in the template). Nothing here logs a value.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import SecretStr

from lakehouse import objectstore
from lakehouse.settings import REPO_ROOT, Credential, Settings, credentials

TEMPLATES_DIR = REPO_ROOT / "deployments"
WORK_POOL_VARIABLE = "lakehouse_work_pool"
NO_CATCHUP_TAG = "no-catchup"
MISSED_RUN_AUTOMATION = "lakehouse-missed-run-not-caught-up"
IMAGE_PULL_AUTOMATION = "lakehouse-flow-run-image-cannot-be-pulled"
FAILURE_AUTOMATION = "lakehouse-flow-run-failed"
SLA_AUTOMATION = "lakehouse-sla-alerts"
FAILURE_SUBJECT = "Flow run {{ flow.name }}/{{ flow_run.name }} {{ flow_run.state.name | lower }}"
FAILURE_BODY = (
    "{{ flow.name }} run {{ flow_run.name }} ({{ flow_run.id }}) {{ flow_run.state.name | lower }}: "
    "{{ flow_run.state.message }}. Parameters: {{ flow_run.parameters }}"
)
WEBHOOK_BLOCK = "lakehouse-alerts"
DEFAULT_CREDENTIALS_BLOCK = "lakehouse-kubernetes"
PoolKind = Literal["process", "kubernetes"]


SecretSpec = Credential
"""One credential: its Secret block, the env var flow runs see, its key in the k8s Secret."""
secret_specs = credentials


def results_url(settings: Settings) -> str | None:
    """Where results go when that is an object store: ``deploy.results_url``, else the results
    directory when it is a URI (``s3a://`` read as fsspec's ``s3://``); None for a local path."""
    root = settings.storage.root
    url = (
        settings.deploy.results_url
        or settings.results_dir
        or (root.rstrip("/") + "/prefect-results" if "://" in root else "")
    )
    if "://" not in url:
        return None
    return "s3://" + url.removeprefix("s3a://") if url.startswith("s3a://") else url


def result_storage_slug(settings: Settings) -> str:
    """``<block-type-slug>/<name>`` of the result storage block (PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK)."""
    kind = "remote-file-system" if results_url(settings) else "local-file-system"
    return f"{kind}/{settings.deploy.result_storage_block}"


def notification_slug(settings: Settings) -> str | None:
    """The notification block flow runs use: the explicit setting, else the webhook block."""
    if settings.notifications.block:
        return settings.notifications.block
    return f"custom-webhook/{WEBHOOK_BLOCK}" if settings.deploy.webhook_url else None


def flow_run_env(settings: Settings, *, secrets: bool) -> dict[str, str]:
    """Environment the work pools give every flow run (values or block placeholders only).

    With ``secrets`` (the process pool), each configured credential is a
    ``{{ prefect.blocks.secret.<name> }}`` placeholder the worker resolves at run start.
    """
    env = {
        "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "true",
        "PREFECT_RESULTS_DEFAULT_STORAGE_BLOCK": result_storage_slug(settings),
    }
    if slug := notification_slug(settings):
        env["LAKEHOUSE_NOTIFICATIONS__BLOCK"] = slug
    if settings.deploy.object_store_endpoint:
        env["AWS_ENDPOINT_URL"] = settings.deploy.object_store_endpoint
    if secrets:
        for spec in secret_specs(settings):
            if spec.value is not None:
                env[spec.env] = "{{ prefect.blocks.secret." + spec.block + " }}"
    return env


def _template(kind: PoolKind) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((TEMPLATES_DIR / f"{kind}-job-template.json").read_text())
    return data


def base_job_template(kind: PoolKind, settings: Settings) -> dict[str, Any]:
    """The base job template of a work pool: deployments/<kind>-job-template.json with the
    defaults of its variables taken from the settings."""
    t = copy.deepcopy(_template(kind))
    props: dict[str, Any] = t["variables"]["properties"]
    if kind == "process":
        props["env"]["default"] = flow_run_env(settings, secrets=True)
        props["working_dir"]["default"] = str(REPO_ROOT)
        return t
    d = settings.deploy
    defaults: dict[str, Any] = {
        "image": d.prefect_image,
        "namespace": d.flow_namespace,
        "service_account_name": d.flow_service_account,
        "cpu_request": d.flow_cpu_request,
        "cpu_limit": d.flow_cpu_limit,
        "memory_request": d.flow_memory_request,
        "memory_limit": d.flow_memory_limit,
        "env": flow_run_env(settings, secrets=False),
    }
    for name, value in defaults.items():
        props[name]["default"] = value
    pod = t["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]
    keys = {s.env: s.k8s_key for s in secret_specs(settings)}
    # the flow run's container and the reaper sidecar (lakehouse.k8s.reaper) alike
    for container in [*pod.get("initContainers", []), *pod["containers"]]:
        for source in container.get("envFrom", []):
            if "configMapRef" in source:
                source["configMapRef"]["name"] = d.settings_configmap
        for var in container.get("env", []):
            ref = var.get("valueFrom", {}).get("secretKeyRef")
            if ref is not None:
                ref["name"] = d.credentials_secret
                ref["key"] = keys.get(var["name"], ref["key"])
    return t


# --------------------------------------------------------------------------- Prefect objects


def _save(block: Any, name: str) -> None:
    block.save(name, overwrite=True)


def _result_block(settings: Settings) -> Any:
    if url := results_url(settings):
        from prefect.filesystems import RemoteFileSystem

        # credentials come from the environment (AWS_* of the flow run), never from the block
        return RemoteFileSystem(basepath=url, settings=objectstore.fsspec_options(settings, with_keys=False))
    from prefect.filesystems import LocalFileSystem

    path = Path(settings.resolved_results_dir())
    path.mkdir(parents=True, exist_ok=True)
    return LocalFileSystem(basepath=str(path))


def _credentials_block(settings: Settings) -> Any:
    from prefect_kubernetes.credentials import KubernetesClusterConfig, KubernetesCredentials

    cfg = None
    if settings.deploy.kubeconfig:
        cfg = KubernetesClusterConfig.from_file(
            Path(settings.deploy.kubeconfig), context_name=settings.kubernetes.kubeconfig_context
        )
    return KubernetesCredentials(cluster_config=cfg)


def _webhook_block(url: SecretStr) -> Any:
    from prefect.blocks.notifications import CustomWebhookNotificationBlock
    from prefect.types import SecretDict

    return CustomWebhookNotificationBlock(
        name=WEBHOOK_BLOCK,
        url="{{ url }}",
        json_data={"subject": "{{ subject }}", "body": "{{ body }}", "source": "{{ name }}"},
        headers=None,
        cookies=None,
        secrets=SecretDict({"url": url.get_secret_value()}),
    )


async def _upsert_pool(name: str, kind: PoolKind, template: dict[str, Any], description: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate, WorkPoolUpdate
    from prefect.exceptions import ObjectNotFound

    async with get_client() as client:
        try:
            await client.read_work_pool(name)
        except ObjectNotFound:
            await client.create_work_pool(
                WorkPoolCreate(name=name, type=kind, base_job_template=template, description=description)
            )
            return "created"
        await client.update_work_pool(name, WorkPoolUpdate(base_job_template=template, description=description))
        return "updated"


def missed_run_automation(settings: Settings) -> Any:
    """The automation that cancels a Late run of a ``no-catchup`` deployment that has not
    started (Pending) within ``deploy.missed_run_grace_seconds``."""
    from datetime import timedelta

    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture

    grace = settings.deploy.missed_run_grace_seconds
    return Automation(
        name=MISSED_RUN_AUTOMATION,
        description=f"A scheduled run of a deployment tagged {NO_CATCHUP_TAG!r} that has not "
        f"started {grace}s after turning Late is cancelled: missed runs are not caught up.",
        trigger=EventTrigger(
            match={"prefect.resource.id": "prefect.flow-run.*"},
            match_related={"prefect.resource.id": f"prefect.tag.{NO_CATCHUP_TAG}"},
            after={"prefect.flow-run.Late"},
            expect={
                "prefect.flow-run.Pending",
                "prefect.flow-run.Running",
                "prefect.flow-run.Cancelled",
                "prefect.flow-run.Cancelling",
            },
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=grace),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CANCELLED,
                name="Missed",
                force=False,
                message=f"Not started within {grace}s of its schedule: not caught up "
                "(the next scheduled run covers the next day).",
            )
        ],
    )


def image_pull_automation() -> Any:
    """The automation that cancels a flow run whose pod cannot pull its image.

    Such a pod stays Pending for ever (the kubelet keeps backing off) and the Kubernetes worker
    only waits. Its observer replicates the pod's events with the diagnosis
    ``kubernetes.diagnosis=ImagePullError`` and logs the cause (the image and the kubelet's
    message) in the flow run's log; this automation then cancels the run, and the worker
    deletes its Job. A pull that fails once and would have worked later cancels the run too:
    the next scheduled run tries again.
    """
    from prefect.automations import Automation
    from prefect.events.actions import CancelFlowRun
    from prefect.events.schemas.automations import EventTrigger, Posture

    return Automation(
        name=IMAGE_PULL_AUTOMATION,
        description="A flow run whose Kubernetes pod cannot pull its image (ErrImagePull, "
        "ImagePullBackOff) is cancelled instead of staying Pending; the cause is in its log.",
        trigger=EventTrigger(
            match={"prefect.resource.id": "prefect.kubernetes.pod.*", "kubernetes.diagnosis": "ImagePullError"},
            expect={"prefect.kubernetes.pod.pending"},
            posture=Posture.Reactive,
            threshold=1,
        ),
        actions=[CancelFlowRun()],
    )


def _alert_automation(
    name: str, description: str, resource: str, events: set[str], block_document_id: Any, subject: str, body: str
) -> Any:
    """An automation sending ``subject``/``body`` through the notification block on each of
    ``events`` about a ``resource`` (glob) of a run of a deployment."""
    from prefect.automations import Automation
    from prefect.events.actions import SendNotification
    from prefect.events.schemas.automations import EventTrigger, Posture

    return Automation(
        name=name,
        description=description,
        trigger=EventTrigger(
            match={"prefect.resource.id": resource},
            match_related={"prefect.resource.role": "deployment"},
            expect=events,
            for_each={"prefect.resource.id"},
            posture=Posture.Reactive,
            threshold=1,
        ),
        actions=[SendNotification(block_document_id=block_document_id, subject=subject, body=body)],
    )


def failure_automation(block_document_id: Any) -> Any:
    """The automation that sends one message for every failed or crashed run of a deployment.

    It fires on Prefect's own state events (``prefect.flow-run.Failed`` / ``.Crashed``), which
    the server records whoever reports the state: the engine, or the worker when the flow's
    process or pod died (killed, OOM) and no hook of the flow could run. Runs without a
    deployment (the ``lakehouse`` command, a script) and subflows are left to the flow's own
    hooks (tasks/notify.py), which skip deployed runs, so each failure is reported once.
    """
    return _alert_automation(
        FAILURE_AUTOMATION,
        "One message through the notification block for each failed or crashed flow run of a deployment, "
        "also when its process or pod died before any hook ran.",
        "prefect.flow-run.*",
        {"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
        block_document_id,
        FAILURE_SUBJECT,
        FAILURE_BODY,
    )


def sla_automation(block_document_id: Any) -> Any:
    """The automation that sends the message of each freshness SLA breach and recovery: the
    ``lakehouse.sla.breached`` / ``.recovered`` events carry their subject and body."""
    return _alert_automation(
        SLA_AUTOMATION,
        "One message through the notification block when a table's freshness SLA breach starts and one "
        "when it ends (events of tasks/quality.py).",
        "lakehouse.table.*",
        {"lakehouse.sla.breached", "lakehouse.sla.recovered"},
        block_document_id,
        "{{ event.payload.subject }}",
        "{{ event.payload.body }}",
    )


async def _upsert_automation(automation: Any) -> str:
    from prefect.automations import Automation

    try:
        current = await Automation.aread(name=automation.name)
    except ValueError:
        await automation.acreate()
        return "created"
    automation.id = current.id
    await automation.aupdate()
    return "updated"


def ensure_workspace(settings: Settings, log: Callable[[str], None] = lambda _: None) -> dict[str, str]:
    """Create or update every block, work pool, variable and automation; return
    ``{object: "created"|"updated"|"saved"}``. Logs names only, never values."""
    from prefect.utilities.asyncutils import run_coro_as_sync
    from prefect.variables import Variable

    done: dict[str, str] = {}

    def record(what: str, outcome: str) -> None:
        done[what] = outcome
        log(f"{outcome:8} {what}")

    from prefect.blocks.system import Secret

    for spec in secret_specs(settings):
        if spec.value is not None:
            _save(Secret(value=spec.value), spec.block)
            record(f"secret/{spec.block}", "saved")
    creds = settings.kubernetes.credentials_block or DEFAULT_CREDENTIALS_BLOCK
    _save(_credentials_block(settings), creds)
    record(f"kubernetes-credentials/{creds}", "saved")
    _save(_result_block(settings), settings.deploy.result_storage_block)
    record(result_storage_slug(settings), "saved")
    if settings.deploy.webhook_url is not None:
        _save(_webhook_block(settings.deploy.webhook_url), WEBHOOK_BLOCK)
        record(f"custom-webhook/{WEBHOOK_BLOCK}", "saved")
    d = settings.deploy
    pools: list[tuple[str, PoolKind, str]] = [
        (d.local_pool, "process", "Local flow runs: subprocesses of a process worker in the repo."),
        (d.kubernetes_pool, "kubernetes", "Cluster flow runs: one Kubernetes Job per run."),
    ]
    for name, kind, description in pools:
        outcome = run_coro_as_sync(_upsert_pool(name, kind, base_job_template(kind, settings), description))
        record(f"work-pool/{name} ({kind})", str(outcome))
    Variable.set(WORK_POOL_VARIABLE, d.work_pool, overwrite=True)
    record(f"variable/{WORK_POOL_VARIABLE} = {d.work_pool}", "saved")
    outcome = run_coro_as_sync(_upsert_automation(missed_run_automation(settings)))
    record(f"automation/{MISSED_RUN_AUTOMATION}", str(outcome))
    outcome = run_coro_as_sync(_upsert_automation(image_pull_automation()))
    record(f"automation/{IMAGE_PULL_AUTOMATION}", str(outcome))
    slug = notification_slug(settings)
    if slug is None:
        log(
            "no notification block (LAKEHOUSE_DEPLOY__WEBHOOK_URL or LAKEHOUSE_NOTIFICATIONS__BLOCK): "
            "no alert automations"
        )
        return done
    from prefect.blocks.core import Block

    block: Any = Block.load(slug)  # sync here: ensure_workspace runs outside an event loop
    block_id = block._block_document_id
    for automation in (failure_automation(block_id), sla_automation(block_id)):
        outcome = run_coro_as_sync(_upsert_automation(automation))
        record(f"automation/{automation.name} -> {slug}", str(outcome))
    return done
