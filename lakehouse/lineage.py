"""Lineage of the pipeline's tables, from what each job reports it read and wrote.

Two views of the same graph, landing -> bronze -> silver -> gold -> dbt marts:

- **Prefect assets.** Every table is an asset keyed ``spark://<layer>/<table>``: the key
  prefect-dbt gives a dbt source or model (``<adapter>://<schema>/<table>``; the silver tables are
  dbt's sources ``silver.<table>``, the marts ``gold.<model>``), so the Spark tables and the dbt
  models join into one graph. A landing folder, or the stream's Kafka topic, is an asset keyed by
  its location. The Spark side is recorded by ``tasks.lineage`` (one materialization per table a
  job committed), the dbt side by prefect-dbt.
- **OpenLineage run events** (START and COMPLETE) for every table a job committed and every dbt
  model built: inputs, outputs, the Delta version, schema and row-count facets, and the Prefect
  flow run as the parent run. Tables are named as in the catalog (namespace
  ``spark://<lineage.namespace>``, name ``<layer>.<table>``, dbt's naming too), their storage
  location in the datasource facet; a landing folder or a topic is named by its location
  (namespace ``file``, ``s3://<bucket>`` or ``kafka://<broker>``, OpenLineage's naming). The transport is the
  ``lineage`` settings': a JSON-lines file by default, HTTP for a Marquez-style backend.

Why not openlineage-dbt: its artifact processor refuses dbt-spark's ``session`` connection
method (every target here uses it), so the dbt events are built here from the manifest that
prefect-dbt already loaded, with the same client and naming as the Spark events.

The driver side is ``spark_jobs.report.lineage_output``: each table a job reports carries
``inputs`` and ``outputs`` (table, path, Delta version, whether this run committed it, schema).
"""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from lakehouse.settings import REPO_ROOT, Settings

LOCATIONS = ("landing", "kafka")
"""Inputs named by their location, not as tables: landing folders and Kafka topics."""

PRODUCER = "https://lakehouse.invalid/lineage"
"""The OpenLineage ``producer`` of the events (an identifier, never contacted)."""


def table_asset_key(table: str) -> str:
    """The Prefect asset key of a table ``layer/name``: ``spark://layer/name`` (prefect-dbt's
    key for the same table as a dbt source or model)."""
    layer, name = _split(table)
    return f"spark://{layer}/{name}"


def location_key(path: str) -> str:
    """The asset key of a storage location: its URI (``file://`` for a local path)."""
    if "://" in path:
        return path.replace("s3a://", "s3://", 1)
    return Path(path).absolute().as_uri()


def asset_key(ref: Mapping[str, Any]) -> str:
    """The asset key of one lineage reference (``{"table": "layer/name", "path": ...}``)."""
    table = str(ref["table"])
    return location_key(str(ref["path"])) if table.split("/")[0] in LOCATIONS else table_asset_key(table)


def _split(table: str) -> tuple[str, str]:
    layer, _, name = table.replace(".", "/", 1).partition("/")
    if not layer or not name or "/" in name:
        raise ValueError(f"a table is layer/name, e.g. silver/events; got {table!r}")
    return layer, name


def committed_outputs(metrics: Iterable[Mapping[str, Any]]) -> list[tuple[Mapping[str, Any], Mapping[str, Any]]]:
    """(table entry, output) for every output a job's run committed, in the job's order."""
    return [(entry, out) for entry in metrics for out in entry.get("outputs") or [] if out.get("committed")]


def materialization_metadata(entry: Mapping[str, Any], out: Mapping[str, Any]) -> dict[str, Any]:
    """What a table's materialization records: the Delta version, where it lives, its schema and
    (for the table the entry is about) the job's row counts."""
    meta: dict[str, Any] = {"delta_version": out.get("version"), "location": out.get("path"), "job": entry.get("job")}
    if out.get("schema"):
        meta["schema"] = {f["name"]: f["type"] for f in out["schema"]}
    if _split(str(out["table"])) == (entry.get("layer"), entry.get("table")):
        meta.update({k: entry[k] for k in ("rows_read", "rows_written", "inserted", "updated") if k in entry})
    return meta


# --- OpenLineage -------------------------------------------------------------------------------


def default_file(settings: Settings) -> str:
    """``<storage.root>/lineage/openlineage.jsonl`` for a local root, else
    ``.lakehouse/lineage/openlineage.jsonl`` in the project."""
    root = settings.storage.root
    if "://" not in root or root.startswith("file://"):
        return str(Path(root.removeprefix("file://")) / "lineage" / "openlineage.jsonl")
    return str(REPO_ROOT / ".lakehouse" / "lineage" / "openlineage.jsonl")


def client(settings: Settings) -> Any | None:
    """The OpenLineage client of the ``lineage`` settings' transport; None when it is ``none``."""
    conf = settings.lineage
    if conf.transport == "none":
        return None
    from openlineage.client import OpenLineageClient

    transport: dict[str, Any]
    if conf.transport == "file":
        path = conf.file or default_file(settings)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        transport = {"type": "file", "log_file_path": path, "append": True}
    elif conf.transport == "http":
        if not conf.url:
            raise ValueError("lineage.transport http needs lineage.url (LAKEHOUSE_LINEAGE__URL)")
        transport = {"type": "http", "url": conf.url, "endpoint": conf.endpoint, "timeout": conf.timeout_seconds}
        if conf.api_key is not None:
            transport["auth"] = {"type": "api_key", "apiKey": conf.api_key.get_secret_value()}
    else:
        transport = {"type": "console"}
    return OpenLineageClient(config={"transport": transport})


def _location(path: str) -> tuple[str, str]:
    """OpenLineage (namespace, name) of a storage location: ``file`` and the absolute path, or
    ``<scheme>://<bucket>`` and the key (``s3a`` named ``s3``)."""
    if "://" not in path or path.startswith("file://"):
        return "file", str(Path(path.removeprefix("file://")).absolute())
    parsed = urlparse(path)
    scheme = "s3" if parsed.scheme == "s3a" else parsed.scheme
    return f"{scheme}://{parsed.netloc}", parsed.path.lstrip("/")


def _dataset(cls: Any, ref: Mapping[str, Any], namespace: str, **extra: Any) -> Any:
    from openlineage.client.generated import datasource_dataset, schema_dataset, storage_dataset

    table = str(ref["table"])
    path = ref.get("path")
    facets: dict[str, Any] = {}
    if table.split("/")[0] in LOCATIONS:
        ns, name = _location(str(path))
    else:
        layer, table_name = _split(table)
        ns, name = namespace, f"{layer}.{table_name}"
        if path:
            facets["dataSource"] = datasource_dataset.DatasourceDatasetFacet(
                name=_location(str(path))[0], uri=location_key(str(path))
            )
            facets["storage"] = storage_dataset.StorageDatasetFacet(storageLayer="delta", fileFormat="parquet")
    if ref.get("schema"):
        facets["schema"] = schema_dataset.SchemaDatasetFacet(
            fields=[schema_dataset.SchemaDatasetFacetFields(name=f["name"], type=f.get("type")) for f in ref["schema"]]
        )
    if ref.get("version") is not None:
        from openlineage.client.generated import dataset_version_dataset

        facets["version"] = dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=str(ref["version"]))
    return cls(namespace=ns, name=name, facets=facets, **extra)


def _events(
    job_name: str,
    inputs: Iterable[Mapping[str, Any]],
    outputs: Iterable[Mapping[str, Any]],
    *,
    namespace: str,
    started: dt.datetime,
    ended: dt.datetime,
    parent: Mapping[str, str] | None,
) -> list[Any]:
    """START and COMPLETE events of one run of ``job_name``."""
    from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
    from openlineage.client.generated import output_statistics_output_dataset, parent_run

    table_ns = f"spark://{namespace}"
    ins = [_dataset(InputDataset, ref, table_ns) for ref in inputs]
    outs = []
    for ref in outputs:
        stats = {}
        if isinstance(ref.get("rows"), int) and ref["rows"] >= 0:
            stats["outputStatistics"] = output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
                rowCount=ref["rows"]
            )
        outs.append(_dataset(OutputDataset, ref, table_ns, outputFacets=stats))
    run_facets: dict[str, Any] = {}
    if parent:
        run_facets["parent"] = parent_run.ParentRunFacet(
            run=parent_run.Run(runId=parent["run_id"]),
            job=parent_run.Job(namespace=namespace, name=parent["job"]),
        )
    run = Run(runId=str(_uuid7()), facets=run_facets)
    job = Job(namespace=namespace, name=job_name)
    return [
        RunEvent(
            eventType=state,
            eventTime=when.isoformat(),
            run=run,
            job=job,
            inputs=ins,
            outputs=outs,
            producer=PRODUCER,
        )
        for state, when in ((RunState.START, started), (RunState.COMPLETE, ended))
    ]


def _uuid7() -> uuid.UUID:
    from openlineage.client.uuid import generate_new_uuid

    return generate_new_uuid()


def spark_job_events(
    job: str,
    metrics: Iterable[Mapping[str, Any]],
    *,
    namespace: str,
    parent: Mapping[str, str] | None,
    ended: dt.datetime | None = None,
) -> list[Any]:
    """The run events of a Spark job's committed tables: one OpenLineage job per table
    (``<job>.<layer>.<table>``) with the inputs it read and the outputs it committed."""
    ended = ended or dt.datetime.now(dt.UTC)
    events = []
    for entry in metrics:
        outs = [dict(o) for o in entry.get("outputs") or [] if o.get("committed")]
        if not outs:
            continue
        for out in outs:
            if _split(str(out["table"])) == (entry.get("layer"), entry.get("table")):
                out["rows"] = entry.get("rows_written")
        finished = entry.get("finished_at")  # the table's own end; older drivers give none
        done = dt.datetime.fromtimestamp(float(finished), dt.UTC) if finished is not None else ended
        started = done - dt.timedelta(seconds=float(entry.get("duration_s") or 0.0))
        events += _events(
            f"{job}.{entry['layer']}.{entry['table']}",
            entry.get("inputs") or [],
            outs,
            namespace=namespace,
            started=started,
            ended=done,
            parent=parent,
        )
    return events


def dbt_model_events(
    rows: Iterable[Mapping[str, Any]],
    *,
    namespace: str,
    parent: Mapping[str, str] | None,
    ended: dt.datetime | None = None,
) -> list[Any]:
    """The run events of the dbt models a build ran successfully: one OpenLineage job per model
    (``dbt.<model>``), its inputs the sources and models it selects from (``upstream``)."""
    ended = ended or dt.datetime.now(dt.UTC)
    events = []
    for row in rows:
        if row.get("resource_type") != "model" or row.get("status") != "success" or not row.get("relation"):
            continue
        out = {
            "table": row["relation"],
            "relation": True,
            "schema": row.get("columns"),
            "rows": row.get("rows_affected"),
        }
        ins = [{"table": rel} for rel in row.get("upstream") or []]
        started = ended - dt.timedelta(seconds=float(row.get("seconds") or 0.0))
        events += _events(
            f"dbt.{row['name']}", ins, [out], namespace=namespace, started=started, ended=ended, parent=parent
        )
    return events
