"""Record lineage in a flow run: Prefect asset materializations and OpenLineage run events.

Called after each Spark job (:func:`record_spark_lineage`) and after a dbt build
(:func:`record_dbt_lineage`); the graph and naming are :mod:`lakehouse.lineage`'s. Lineage never
fails a pipeline run: an event that cannot be sent is a warning in the run log.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from prefect.assets import Asset, AssetProperties
from prefect.context import AssetContext
from prefect.events import emit_event
from prefect.logging import get_run_logger
from prefect.runtime import flow_run

from lakehouse import lineage
from lakehouse.backends import JobResult
from lakehouse.settings import get_settings


def _asset(ref: Mapping[str, Any]) -> Asset:
    table = str(ref["table"])
    layer, _, name = table.partition("/")
    where = ref.get("path")
    kind = {"landing": "Landing files of the source", "kafka": "Kafka topic"}.get(layer, "Delta table")
    return Asset(
        key=lineage.asset_key(ref),
        properties=AssetProperties(
            name=f"{layer}.{name}", description=f"{kind} {name}" + (f" at {where}" if where else "")
        ),
    )


def _parent() -> dict[str, str] | None:
    run_id = flow_run.get_id()
    return {"run_id": str(run_id), "job": str(flow_run.get_flow_name())} if run_id else None


def _emit(events: Iterable[Any], what: str) -> int:
    events = list(events)
    settings = get_settings()
    try:
        client = lineage.client(settings)
        if client is None or not events:
            return 0
        for event in events:
            client.emit(event)
    except Exception as exc:  # lineage is a by-product: never fail the run for it
        get_run_logger().warning("OpenLineage events of %s not sent (%s): %s", what, settings.lineage.transport, exc)
        return 0
    return len(events)


MATERIALIZED_BY = "spark"
"""The tool a Spark table's materialization names (prefect-dbt's models name ``dbt``)."""


def materialize_tables(metrics: Iterable[Mapping[str, Any]]) -> list[str]:
    """One Prefect asset materialization per table a job committed (its ``metrics``).

    The events are the ones Prefect's ``@materialize`` tasks send (``prefect.asset.referenced``
    for each upstream asset, ``prefect.asset.materialization.succeeded`` per table, with its
    upstream assets, ``materialized-by`` and its metadata), sent from the flow run, which they
    name as their run. Not one ``@materialize`` task run per table: a medallion run commits
    about 15 tables, and every task run's three state changes are transactions of their own in
    the Prefect server's database. On the local SQLite server those bursts made the flow's next
    write (the SLA state, the dbt subflow's start) fail with ``database is locked``, and
    Prefect's client retried it two seconds later (see also the order of the medallion flow's
    last steps). Returns the assets' keys."""
    tables = [
        (_asset(out), [_asset(ref) for ref in entry.get("inputs") or []], lineage.materialization_metadata(entry, out))
        for entry, out in lineage.committed_outputs(metrics)
    ]
    upstream = {dep.key: dep for _, deps, _ in tables for dep in deps}
    for dep in upstream.values():
        _send("prefect.asset.referenced", AssetContext.asset_as_resource(dep), [], None)
    by = AssetContext.related_materialized_by(MATERIALIZED_BY)
    for asset, deps, metadata in tables:
        _send(
            "prefect.asset.materialization.succeeded",
            AssetContext.asset_as_resource(asset),
            [*(AssetContext.asset_as_related(dep) for dep in deps), by],
            metadata,
        )
    return [asset.key for asset, _, _ in tables]


def _send(event: str, resource: dict[str, str], related: list[dict[str, str]], payload: dict[str, Any] | None) -> None:
    try:
        emit_event(event=event, resource=resource, related=related, payload=payload)
    except Exception as exc:  # e.g. an event over the server's size limit: lineage never fails a run
        get_run_logger().warning("Prefect event %s of %s not sent: %s", event, resource["prefect.resource.id"], exc)


def record_spark_lineage(job_name: str, result: JobResult) -> list[str]:
    """Materialize an asset for every table the job committed (its upstream assets the tables
    the job read for it; :func:`materialize_tables`) and send the job's OpenLineage events.
    Returns the assets' keys."""
    keys = materialize_tables(result.metrics)
    settings = get_settings()
    sent = _emit(
        lineage.spark_job_events(job_name, result.metrics, namespace=settings.lineage.namespace, parent=_parent()),
        f"job {job_name}",
    )
    get_run_logger().info("lineage: %d table(s) materialized, %d OpenLineage event(s) sent", len(keys), sent)
    return keys


def record_dbt_lineage(rows: Iterable[Mapping[str, Any]]) -> int:
    """Send the OpenLineage events of the dbt models a build ran (prefect-dbt already made
    them assets). Returns the number of events sent."""
    settings = get_settings()
    return _emit(
        lineage.dbt_model_events(rows, namespace=settings.lineage.namespace, parent=_parent()), "the dbt build"
    )
