"""Record lineage in a flow run: Prefect asset materializations and OpenLineage run events.

Called after each Spark job (:func:`record_spark_lineage`) and after a dbt build
(:func:`record_dbt_lineage`); the graph and naming are :mod:`lakehouse.lineage`'s. Lineage never
fails a pipeline run: an event that cannot be sent is a warning in the run log.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from prefect.assets import Asset, AssetProperties, add_asset_metadata, materialize
from prefect.cache_policies import NO_CACHE
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


def _record(key: str, metadata: dict[str, Any]) -> str:
    add_asset_metadata(key, metadata)
    return key


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


def record_spark_lineage(job_name: str, result: JobResult) -> list[str]:
    """Materialize an asset for every table the job committed (its upstream assets the tables
    the job read for it) and send the job's OpenLineage events. Returns the assets' keys."""
    keys = []
    for entry, out in lineage.committed_outputs(result.metrics):
        asset = _asset(out)
        task = materialize(
            asset,
            by="spark",
            asset_deps=[_asset(ref) for ref in entry.get("inputs") or []],
            name="materialize-table",
            task_run_name=f"materialize {asset.properties.name if asset.properties else asset.key}",
            cache_policy=NO_CACHE,
            persist_result=False,
        )(_record)
        keys.append(task(asset.key, lineage.materialization_metadata(entry, out)))
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
