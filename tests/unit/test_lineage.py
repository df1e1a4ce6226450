"""Lineage naming and the OpenLineage transports (lakehouse/lineage.py).

The graph itself, from real jobs and a real dbt build into a real Prefect server and the file
transport, is tested in tests/dbt/test_gold_marts.py. Here: the names, the facets and the HTTP
transport against a real HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from lakehouse import lineage
from lakehouse.settings import Settings

ENTRY: dict[str, Any] = {
    "job": "silver",
    "layer": "silver",
    "table": "users",
    "duration_s": 4.5,
    "rows_written": 12,
    "inputs": [{"table": "bronze/users", "path": "s3a://lake/root/warehouse/bronze/users"}],
    "outputs": [
        {
            "table": "silver/users",
            "path": "s3a://lake/root/warehouse/silver/users",
            "version": 3,
            "committed": True,
            "schema": [{"name": "user_id", "type": "string"}, {"name": "country", "type": "string"}],
        },
        {"table": "silver/users_history", "path": "s3a://lake/root/warehouse/silver/users_history", "version": 2,
         "committed": True, "schema": [{"name": "user_id", "type": "string"}]},
        {"table": "quarantine/users", "path": "s3a://lake/root/warehouse/quarantine/users", "version": 7,
         "committed": False},
    ],
}  # fmt: skip


def test_asset_keys_join_prefect_dbt_and_name_landing_by_location(tmp_path: Path) -> None:
    assert lineage.table_asset_key("silver/orders") == "spark://silver/orders"
    assert lineage.table_asset_key("gold.fct_daily_revenue") == "spark://gold/fct_daily_revenue"
    assert (
        lineage.asset_key({"table": "landing/orders", "path": "s3a://b/r/landing/orders"}) == "s3://b/r/landing/orders"
    )
    local = tmp_path / "landing" / "users"
    assert lineage.asset_key({"table": "landing/users", "path": str(local)}) == f"file://{local}"
    with pytest.raises(ValueError, match="layer/name"):
        lineage.table_asset_key("orders")


def test_only_committed_outputs_are_materialized_with_their_own_metadata() -> None:
    done = lineage.committed_outputs([ENTRY])
    assert [out["table"] for _, out in done] == ["silver/users", "silver/users_history"]
    main = lineage.materialization_metadata(ENTRY, done[0][1])
    assert main["delta_version"] == 3 and main["rows_written"] == 12
    assert main["schema"] == {"user_id": "string", "country": "string"}
    # the job's row counts belong to the table the entry is about, not to its side outputs
    assert "rows_written" not in lineage.materialization_metadata(ENTRY, done[1][1])


def test_spark_events_carry_inputs_outputs_facets_and_parent() -> None:
    events = lineage.spark_job_events(
        "medallion", [ENTRY], namespace="lake", parent={"run_id": "0192a3b4-0000-7000-8000-000000000001", "job": "m"}
    )
    start, complete = (json.loads(lineage_json(e)) for e in events)
    assert (start["eventType"], complete["eventType"]) == ("START", "COMPLETE")
    assert start["run"]["runId"] == complete["run"]["runId"]
    assert complete["job"] == {"namespace": "lake", "name": "medallion.silver.users", "facets": {}}
    assert [(i["namespace"], i["name"]) for i in complete["inputs"]] == [("spark://lake", "bronze.users")]
    outs = {o["name"]: o for o in complete["outputs"]}
    assert set(outs) == {"silver.users", "silver.users_history"}  # not the uncommitted quarantine
    users = outs["silver.users"]
    assert users["facets"]["version"]["datasetVersion"] == "3"
    assert [f["name"] for f in users["facets"]["schema"]["fields"]] == ["user_id", "country"]
    assert users["facets"]["dataSource"]["uri"] == "s3://lake/root/warehouse/silver/users"
    assert users["outputFacets"]["outputStatistics"]["rowCount"] == 12
    assert "outputStatistics" not in outs["silver.users_history"]["outputFacets"]
    assert complete["run"]["facets"]["parent"]["run"]["runId"] == "0192a3b4-0000-7000-8000-000000000001"
    took = _seconds(complete["eventTime"]) - _seconds(start["eventTime"])
    assert took == pytest.approx(4.5)


def test_a_table_that_finished_before_its_job_keeps_its_own_times() -> None:
    job_end = dt.datetime(2026, 1, 2, 12, 0, 0, tzinfo=dt.UTC)
    table_end = job_end - dt.timedelta(seconds=30)  # the job went on with other tables
    entry = {**ENTRY, "finished_at": table_end.timestamp()}
    start, complete = (
        json.loads(lineage_json(e))
        for e in lineage.spark_job_events("medallion", [entry], namespace="lake", parent=None, ended=job_end)
    )
    assert _seconds(complete["eventTime"]) == pytest.approx(table_end.timestamp())
    assert _seconds(start["eventTime"]) == pytest.approx(table_end.timestamp() - 4.5)
    # an entry without it (a driver of an earlier version) ends with the job
    start, complete = (
        json.loads(lineage_json(e))
        for e in lineage.spark_job_events("medallion", [ENTRY], namespace="lake", parent=None, ended=job_end)
    )
    assert _seconds(complete["eventTime"]) == pytest.approx(job_end.timestamp())


def test_dbt_events_follow_the_manifest_dependencies() -> None:
    rows = [
        {"resource_type": "model", "status": "success", "name": "fct_daily_revenue",
         "relation": "gold.fct_daily_revenue", "upstream": ["silver.orders", "staging.stg_orders"],
         "seconds": 1.0, "rows_affected": -1,
         "columns": [{"name": "date_day", "type": None}]},
        {"resource_type": "test", "status": "pass", "name": "unique_x", "relation": None},
        {"resource_type": "model", "status": "error", "name": "dim_users", "relation": "gold.dim_users"},
    ]  # fmt: skip
    events = [json.loads(lineage_json(e)) for e in lineage.dbt_model_events(rows, namespace="lake", parent=None)]
    assert [e["job"]["name"] for e in events] == ["dbt.fct_daily_revenue"] * 2
    complete = events[1]
    assert [i["name"] for i in complete["inputs"]] == ["silver.orders", "staging.stg_orders"]
    assert complete["outputs"][0]["name"] == "gold.fct_daily_revenue"
    assert complete["outputs"][0]["outputFacets"] == {}  # dbt-spark reports no row count (-1)
    assert "parent" not in complete["run"]["facets"]


def test_file_transport_defaults_under_a_local_root_and_none_sends_nothing(tmp_path: Path) -> None:
    settings = Settings(storage={"root": str(tmp_path / "lake")})
    client = lineage.client(settings)
    assert client is not None
    for event in lineage.spark_job_events("medallion", [ENTRY], namespace="lake", parent=None):
        client.emit(event)
    lines = (tmp_path / "lake" / "lineage" / "openlineage.jsonl").read_text().splitlines()
    assert [json.loads(line)["eventType"] for line in lines] == ["START", "COMPLETE"]
    assert lineage.client(Settings(lineage={"transport": "none"})) is None
    with pytest.raises(ValueError, match="LAKEHOUSE_LINEAGE__URL"):
        lineage.client(Settings(lineage={"transport": "http"}))


@pytest.fixture
def lineage_endpoint() -> Iterator[tuple[str, list[tuple[str, dict[str, str], dict[str, Any]]]]]:
    """A real HTTP server on 127.0.0.1 recording what is POSTed to it."""
    received: list[tuple[str, dict[str, str], dict[str, Any]]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, dict(self.headers), json.loads(body)))
            self.send_response(201)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


def test_http_transport_posts_each_event_with_the_api_key(lineage_endpoint: Any) -> None:
    url, received = lineage_endpoint
    key = "lineage-test-key"  # a value made up for this test
    settings = Settings(lineage={"transport": "http", "url": url, "api_key": key, "endpoint": "api/v1/lineage"})
    client = lineage.client(settings)
    assert client is not None
    for event in lineage.spark_job_events("medallion", [ENTRY], namespace="lake", parent=None):
        client.emit(event)
    assert [path for path, _, _ in received] == ["/api/v1/lineage", "/api/v1/lineage"]
    assert [body["eventType"] for _, _, body in received] == ["START", "COMPLETE"]
    assert all(headers.get("Authorization") == f"Bearer {key}" for _, headers, _ in received)


def lineage_json(event: Any) -> str:
    from openlineage.client.serde import Serde

    return str(Serde.to_json(event))


def _seconds(iso: str) -> float:
    return dt.datetime.fromisoformat(iso).timestamp()
