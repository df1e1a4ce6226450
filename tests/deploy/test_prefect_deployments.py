"""deployments/prefect.yaml end to end on a real ``prefect server`` (127.0.0.1, its own
PREFECT_HOME) and a real process worker:

* ``lakehouse blocks`` then ``prefect deploy --all`` register the deployments and the alert
  automations;
* ``prefect deployment run 'medallion/daily'`` for a generated day completes and the Delta tables
  hold exactly what the generator wrote (tests/expected.py recomputes silver and gold);
* an SLA breach, a failed run and a run whose process was killed (no hook can run) each send
  exactly one message, from the automations, through the real custom-webhook notification block
  to a receiver on 127.0.0.1;
* a missed scheduled run is cancelled by the automation, not caught up;
* known secrets, delivered to flow runs from Secret blocks, appear in no log, artifact, event,
  deployment, work pool, block document, result or notification.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from lakehouse.datagen import GenConfig, Manifest, generate
from tests import expected
from tests.deploy.conftest import REPO, VENV_BIN, PrefectServer, Service, WebhookReceiver, prefect_server, start

pytestmark = [pytest.mark.e2e, pytest.mark.spark, pytest.mark.timeout(1500)]

DAY = dt.date(2026, 1, 1)
CFG = dict(events_per_day=300, orders_per_day=60, users_initial=40)
SOURCES = ("orders", "users", "events")
SECRETS = {
    "LAKEHOUSE_KAFKA__SASL_PASSWORD": "kafka-" + uuid.uuid4().hex,
    "LAKEHOUSE_DEPLOY__OBJECT_STORE_ACCESS_KEY_ID": "AKID" + uuid.uuid4().hex[:16].upper(),
    "LAKEHOUSE_DEPLOY__OBJECT_STORE_SECRET_ACCESS_KEY": "sk-" + uuid.uuid4().hex + uuid.uuid4().hex,
}
# the variable each secret reaches a local flow run as
DELIVERED_AS = {
    "LAKEHOUSE_KAFKA__SASL_PASSWORD": "LAKEHOUSE_KAFKA__SASL_PASSWORD",
    "LAKEHOUSE_DEPLOY__OBJECT_STORE_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID",
    "LAKEHOUSE_DEPLOY__OBJECT_STORE_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY",
}
DEPLOYMENTS = {
    "medallion/daily",
    "medallion/backfill",
    "streaming/ensure",
    "streaming-monitor/monitor",
    "maintenance/weekly",
    "freshness/hourly",
    "restore-table/on-demand",
    "dbt-build/on-demand",
}
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def _contracts(target: Path) -> Path:
    """The shipped contracts, with one freshness SLA only: events, 1 second (always breached),
    so a run breaches exactly one SLA."""
    target.mkdir()
    for path in sorted((REPO / "contracts").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        if doc["name"] == "events":
            doc["sla"] = {"freshness": "1 second", "freshness_column": "event_time"}
        else:
            doc.pop("sla", None)
        (target / path.name).write_text(yaml.safe_dump(doc, sort_keys=False))
    return target


@dataclass
class Workspace:
    server: PrefectServer
    worker: Service
    receiver: WebhookReceiver
    root: Path
    manifest: Manifest
    workdir: Path
    blocks_output: str
    env: dict[str, str]

    def client(self) -> Any:
        from prefect.client.orchestration import SyncPrefectClient

        return SyncPrefectClient(self.server.api_url)

    def cli(self, *args: str, timeout: float = 300.0) -> str:
        proc = subprocess.run(
            [str(VENV_BIN / "prefect"), "--no-prompt", *args],
            cwd=REPO,
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
        )
        assert proc.returncode == 0, f"prefect {' '.join(args)}:\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout + proc.stderr

    def run(self, deployment: str, *params: str) -> str:
        """``prefect deployment run`` (not waiting); the flow run id."""
        out = self.cli("deployment", "run", deployment, *[a for p in params for a in ("--param", p)])
        m = re.search(r"UUID:\s*([0-9a-f-]{36})", out)
        assert m, out
        return m.group(1)

    def wait(self, flow_run_id: str, timeout: float = 900.0) -> Any:
        deadline = time.monotonic() + timeout
        with self.client() as c:
            while True:
                run = c.read_flow_run(uuid.UUID(flow_run_id))
                if run.state and run.state.type.value in FINAL:
                    return run
                if self.worker.proc.poll() is not None:
                    raise AssertionError(f"the worker exited:\n{self.worker.tail()}")
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"flow run {flow_run_id} still {run.state} after {timeout}s:\n{self.worker.tail(60)}"
                    )
                time.sleep(2)

    def logs(self, flow_run_id: str | None = None) -> list[str]:
        from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

        flt = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[uuid.UUID(flow_run_id)])) if flow_run_id else None
        out: list[str] = []
        with self.client() as c:
            while True:
                page = c.read_logs(log_filter=flt, limit=200, offset=len(out))
                out += [f"{log.name} {log.message}" for log in page]
                if len(page) < 200:
                    return out


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, webhook_receiver: WebhookReceiver) -> Iterator[Workspace]:
    workdir = tmp_path_factory.mktemp("deploy")
    root = workdir / "lake"
    manifest = generate(root / "landing", GenConfig(start=DAY, days=1, **CFG))  # type: ignore[arg-type]
    settings_env = {
        "LAKEHOUSE_STORAGE__ROOT": str(root),
        "LAKEHOUSE_CONTRACTS_DIR": str(_contracts(workdir / "contracts")),
        "LAKEHOUSE_DEPLOY__WEBHOOK_URL": webhook_receiver.url,
        "LAKEHOUSE_DEPLOY__MISSED_RUN_GRACE_SECONDS": "10",
        "LAKEHOUSE_SPARK__DRIVER_MEMORY": "1g",
        "LAKEHOUSE_SPARK__CORES": "2",
        # the flow runs' warm Spark lives in this session's directory (tests/conftest.py), like
        # every other of the session: stopped at its end, out of `make down`'s reach meanwhile
        "LAKEHOUSE_SPARK__WARM_DIR": os.environ["LAKEHOUSE_SPARK__WARM_DIR"],
        "LAKEHOUSE_SPARK__WARM_IDLE_SECONDS": os.environ.get("LAKEHOUSE_SPARK__WARM_IDLE_SECONDS", "300"),
    }
    with prefect_server(workdir) as server:
        env = {k: v for k, v in server.env.items() if not k.startswith("LAKEHOUSE_")}
        env.update(settings_env)
        # the secrets go to `lakehouse blocks` only: flow runs can get them from the blocks alone
        blocks = subprocess.run(
            [str(VENV_BIN / "lakehouse"), "blocks"],
            cwd=REPO,
            env={**env, **SECRETS},
            capture_output=True,
            text=True,
            check=False,
            timeout=300,
        )
        assert blocks.returncode == 0, blocks.stdout + blocks.stderr
        ws = Workspace(
            server,
            None,
            webhook_receiver,
            root,
            manifest,
            workdir,  # type: ignore[arg-type]
            blocks.stdout + blocks.stderr,
            env,
        )
        ws.cli("deploy", "--all", "--prefect-file", "deployments/prefect.yaml", timeout=600)
        ws.cli(
            "deploy",
            "tests/deploy/probe_flow.py:secret_probe",
            "--name",
            "probe",
            "--pool",
            "lakehouse-local",
            timeout=300,
        )
        # no scheduled run may start during the test: pause the schedules, drop what they made
        from prefect.client.schemas.actions import DeploymentUpdate

        with ws.client() as c:
            for d in c.read_deployments():
                c.update_deployment(d.id, DeploymentUpdate(paused=True))
            for r in c.read_flow_runs():
                c.delete_flow_run(r.id)
        ws.worker = start(
            "prefect-worker",
            [str(VENV_BIN / "prefect"), "worker", "start", "--pool", "lakehouse-local", "--type", "process"],
            env,
            workdir,
        )
        try:
            yield ws
        finally:
            ws.worker.stop()


def test_deploy_all_registers_the_deployments(workspace: Workspace) -> None:
    with workspace.client() as c:
        deployments = {f"{c.read_flow(d.flow_id).name}/{d.name}": d for d in c.read_deployments()}
        pools = {p.name: p for p in c.read_work_pools()}
    assert set(deployments) == DEPLOYMENTS | {"secret-probe/probe"}
    assert {pools["lakehouse-local"].type, pools["lakehouse-kubernetes"].type} == {"process", "kubernetes"}
    for name in DEPLOYMENTS:
        d = deployments[name]
        assert d.work_pool_name == "lakehouse-local"  # the lakehouse_work_pool variable
        assert d.pull_steps == [{"prefect.deployments.steps.set_working_directory": {"directory": "."}}]
        assert d.enforce_parameter_schema
    daily = deployments["medallion/daily"]
    assert [(s.schedule.cron, s.schedule.timezone) for s in daily.schedules] == [("0 6 * * *", "UTC")]
    assert "no-catchup" in daily.tags
    props = daily.parameter_openapi_schema["properties"]
    assert props["start_date"]["anyOf"][0] == {"format": "date", "type": "string"}
    backfill = deployments["medallion/backfill"]
    assert backfill.schedules == []
    assert {
        k: backfill.parameter_openapi_schema["properties"][k]["anyOf"][0]["format"] for k in ("start_date", "end_date")
    } == {"start_date": "date", "end_date": "date"}
    restore = deployments["restore-table/on-demand"]
    assert restore.parameter_openapi_schema["required"] == ["table"]
    assert restore.schedules == [] and deployments["dbt-build/on-demand"].schedules == []
    # the alert automations send through the webhook block made by the same `lakehouse blocks`
    with workspace.client() as c:
        automations = {a.name: a for a in c.read_automations()}
        webhook_id = c.read_block_document_by_name("lakehouse-alerts", "custom-webhook").id
    for name in ("lakehouse-flow-run-failed", "lakehouse-sla-alerts"):
        assert [(a.type, a.block_document_id) for a in automations[name].actions] == [
            ("send-notification", webhook_id)
        ], name
    # flows that only submit and watch Spark work get a smaller flow-run pod on the Kubernetes pool
    small = {"cpu_request": "250m", "cpu_limit": "1", "memory_request": "512Mi", "memory_limit": "1Gi"}
    sized = {name for name in DEPLOYMENTS if deployments[name].job_variables}
    assert sized == {"streaming/ensure", "streaming-monitor/monitor", "freshness/hourly", "restore-table/on-demand"}
    assert all(deployments[name].job_variables == small for name in sized)
    monitor = deployments["streaming-monitor/monitor"]
    assert [s.schedule.interval for s in monitor.schedules] == [dt.timedelta(minutes=5)]
    weekly = deployments["maintenance/weekly"]
    assert [(s.schedule.cron, s.schedule.timezone) for s in weekly.schedules] == [("0 3 * * 0", "UTC")]
    hourly = deployments["freshness/hourly"]
    assert [(s.schedule.cron, s.schedule.timezone) for s in hourly.schedules] == [("15 * * * *", "UTC")]


def _delta(spark: Any, root: Path, layer: str, name: str) -> Any:
    return spark.read.format("delta").load(str(root / "warehouse" / layer / name))


def test_daily_run_completes_with_expected_rows_and_one_sla_message(workspace: Workspace, spark: Any) -> None:
    before = len(workspace.receiver.snapshot())
    run = workspace.wait(workspace.run("medallion/daily", f"start_date={DAY.isoformat()}"))
    assert run.state.type.value == "COMPLETED", f"{run.state}\n{workspace.worker.tail(80)}"
    assert run.name == f"medallion {DAY}..{DAY}"  # the flow_run_name template
    root, landing, m = workspace.root, workspace.root / "landing", workspace.manifest
    for s in SOURCES:
        assert _delta(spark, root, "bronze", s).count() == m.total(s, "lines")
        assert _delta(spark, root, "silver", s).count() == len(expected.latest_rows(landing, s, [DAY]))
    orders = expected.latest_rows(landing, "orders", [DAY])
    revenue = {
        r.date_day: (r.total_orders, r.unique_customers, r.total_revenue, r.avg_order_value)
        for r in _delta(spark, root, "gold", "daily_revenue").collect()
    }
    assert revenue == expected.daily_revenue(orders)
    hourly = {
        (r.hour, r.event_type): (r.event_count, r.total_amount)
        for r in _delta(spark, root, "gold", "hourly_stats").collect()
    }
    assert hourly == expected.hourly_stats(expected.latest_rows(landing, "events", [DAY]))
    # the gold step's dbt half ran in the same flow run (a subflow): the dbt mart agrees
    marts = {
        r.date_day: (r.total_orders, r.unique_customers, r.total_revenue, r.avg_order_value)
        for r in _delta(spark, root, "gold", "fct_daily_revenue").collect()
    }
    assert marts == expected.daily_revenue(orders)
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId

    with workspace.client() as c:
        subflows = c.read_flow_runs(
            flow_run_filter=FlowRunFilter(parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[run.id]))
        )
        assert [(c.read_flow(r.flow_id).name, r.state.type.value) for r in subflows] == [("dbt-build", "COMPLETED")]
    # results persisted through the result storage block made by `lakehouse blocks`
    assert any((root / "prefect-results").iterdir())
    # exactly one SLA (events' freshness) was breached: exactly one message (from the automation
    # lakehouse-sla-alerts, on the run's lakehouse.sla.breached event)
    new = _messages(workspace, before)
    assert [msg["subject"] for msg in new] == ["Freshness SLA breached: events"], new
    assert new[0]["source"] == "lakehouse-alerts"


def _messages(workspace: Workspace, before: int, timeout: float = 60.0) -> list[dict[str, Any]]:
    """The messages received since ``before``, once the first has arrived (an automation acts a
    few seconds after the event) and a second, if any, would have arrived too."""
    deadline = time.monotonic() + timeout
    while len(workspace.receiver.snapshot()) == before and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(5)
    return list(workspace.receiver.snapshot()[before:])


def test_a_killed_run_still_sends_exactly_one_message(workspace: Workspace) -> None:
    """The flow-run process is killed (SIGKILL: no hook and no engine code runs): the worker
    reports the run Crashed, and the automation lakehouse-flow-run-failed sends the one message."""
    import psutil

    from lakehouse.backends.warm import stop_all
    from lakehouse.settings import Settings

    # On a warm Spark the run takes a second or two and may end between two looks at it: with
    # none running (this session's directory, the flow runs' too) it must start one (JVM start).
    assert Settings().spark.warm_dir == workspace.env["LAKEHOUSE_SPARK__WARM_DIR"]
    stop_all(Settings())
    before = len(workspace.receiver.snapshot())
    flow_run_id = workspace.run("freshness/hourly")
    deadline = time.monotonic() + 300
    with workspace.client() as c:
        while True:
            run = c.read_flow_run(uuid.UUID(flow_run_id))
            state = run.state.type.value if run.state else None
            if state == "RUNNING" and run.infrastructure_pid:
                break
            assert state not in FINAL, run.state
            assert time.monotonic() < deadline, f"not running after 300s: {run.state}\n{workspace.worker.tail(40)}"
            time.sleep(0.1)
    process = psutil.Process(int(str(run.infrastructure_pid).rsplit(":", 1)[-1]))
    family = [process, *process.children(recursive=True)]  # the flow's process and its Spark driver
    for p in family:
        p.kill()
    psutil.wait_procs(family, timeout=30)
    run = workspace.wait(flow_run_id, timeout=120)
    assert run.state.type.value == "CRASHED", run.state
    alerts = [m for m in _messages(workspace, before) if m["subject"].startswith("Flow run ")]
    assert [m["subject"] for m in alerts] == [f"Flow run freshness/{run.name} crashed"], alerts
    assert flow_run_id in alerts[0]["body"]


def test_failed_run_sends_exactly_one_message(workspace: Workspace) -> None:
    before = len(workspace.receiver.snapshot())
    run = workspace.wait(
        workspace.run("medallion/backfill", "start_date=2026-01-02", "end_date=2026-01-01"), timeout=300
    )
    assert run.state.type.value == "FAILED", run.state
    new = _messages(workspace, before)  # from the automation lakehouse-flow-run-failed, not a hook
    assert len(new) == 1, new
    assert new[0]["subject"] == f"Flow run medallion/{run.name} failed"
    assert "start_date 2026-01-02 is after end_date 2026-01-01" in new[0]["body"]


def test_missed_scheduled_run_is_cancelled_not_caught_up(workspace: Workspace) -> None:
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
    from prefect.states import Scheduled

    with workspace.client() as c:
        daily = c.read_deployments(deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["daily"])))[0]
        # a queue no worker serves stands for a worker that was down at 06:00
        c.create_work_queue(name="down", work_pool_name="lakehouse-local", is_paused=True)
        due = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=30)
        run = c.create_flow_run_from_deployment(daily.id, state=Scheduled(scheduled_time=due), work_queue_name="down")
    final = workspace.wait(str(run.id), timeout=180)
    assert (final.state.type.value, final.state.name) == ("CANCELLED", "Missed"), final.state
    with workspace.client() as c:
        history = [s.name for s in c.read_flow_run_states(run.id)]
    assert "Late" in history and "Pending" not in history and "Running" not in history, history


def _scan(values: dict[str, str], texts: dict[str, str]) -> list[str]:
    return [f"{secret} in {where}" for where, text in texts.items() for secret, v in values.items() if v in text]


def test_secrets_never_in_logs_artifacts_or_manifests(workspace: Workspace) -> None:
    from pydantic import SecretStr

    from lakehouse.blocks import base_job_template
    from lakehouse.settings import DeploySettings, KafkaSettings, Settings

    run = workspace.wait(workspace.run("secret-probe/probe"), timeout=300)
    assert run.state.type.value == "COMPLETED", f"{run.state}\n{workspace.worker.tail(60)}"
    deadline = time.monotonic() + 60  # logs are shipped in batches, possibly after the state
    while "sha256 AWS_SECRET_ACCESS_KEY=" not in (probe_logs := "\n".join(workspace.logs(str(run.id)))):
        assert time.monotonic() < deadline, probe_logs
        time.sleep(1)
    # positive control: the flow run did receive every secret, from the Secret blocks
    for setting, env in DELIVERED_AS.items():
        digest = hashlib.sha256(SECRETS[setting].encode()).hexdigest()
        assert f"sha256 {env}={digest}" in probe_logs, probe_logs
    assert "**********" in probe_logs  # the settings were logged, masked

    texts: dict[str, str] = {"flow-run logs": "\n".join(workspace.logs()), "lakehouse blocks": workspace.blocks_output}
    with workspace.client() as c:
        texts["artifacts"] = "\n".join(a.model_dump_json() for a in c.read_artifacts())
        texts["deployments"] = "\n".join(d.model_dump_json() for d in c.read_deployments())
        texts["work pools"] = "\n".join(p.model_dump_json() for p in c.read_work_pools())
        # as the UI and `prefect block inspect` read them; asked for explicitly, the Secret
        # blocks do hold the values (that is where they live)
        texts["block documents"] = "\n".join(b.model_dump_json() for b in c.read_block_documents(include_secrets=False))
        stored = "\n".join(b.model_dump_json() for b in c.read_block_documents(include_secrets=True))
        assert all(v in stored for v in SECRETS.values())
        texts["variables"] = "\n".join(v.model_dump_json() for v in c.read_variables())
        texts["flow runs"] = "\n".join(r.model_dump_json() for r in c.read_flow_runs())
        texts["task runs"] = "\n".join(t.model_dump_json() for t in c.read_task_runs())
        pages, resp = [], c._client.post("/events/filter", json={"limit": 50})
        while True:
            resp.raise_for_status()
            pages.append(resp.text)
            next_page = resp.json().get("next_page")
            if not next_page or len(pages) >= 100:
                break
            resp = c._client.get(next_page)
        texts["events"] = "\n".join(pages)
    texts["worker output"] = workspace.worker.text()
    texts["server output"] = workspace.server.service.text()
    texts["notifications"] = json.dumps(workspace.receiver.snapshot())
    for path in (workspace.root / "prefect-results").rglob("*"):
        if path.is_file():
            texts[f"result {path.name}"] = path.read_text(errors="replace")
    secret_settings = Settings(  # the known secrets, as the work pool templates would see them
        kafka=KafkaSettings(sasl_password=SecretStr(SECRETS["LAKEHOUSE_KAFKA__SASL_PASSWORD"])),
        deploy=DeploySettings(
            object_store_access_key_id=SecretStr(SECRETS["LAKEHOUSE_DEPLOY__OBJECT_STORE_ACCESS_KEY_ID"]),
            object_store_secret_access_key=SecretStr(SECRETS["LAKEHOUSE_DEPLOY__OBJECT_STORE_SECRET_ACCESS_KEY"]),
        ),
    )
    for kind in ("process", "kubernetes"):
        texts[f"{kind} job template"] = json.dumps(base_job_template(kind, secret_settings))
    assert len(texts["flow-run logs"]) > 1000
    assert _scan(SECRETS, texts) == []
