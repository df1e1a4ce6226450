"""Job metrics: measured in the driver, printed as one marked line that every backend reads."""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

METRICS_MARKER = "LAKEHOUSE_METRICS "  # must equal lakehouse.jobs.METRICS_MARKER


class Report:
    """Collects one metrics dict per table a job touched and prints them at the end."""

    def __init__(self, job: str) -> None:
        self.job = job
        self.tables: list[dict[str, Any]] = []
        self.violations: dict[str, list[str]] = {}
        self._lock = threading.Lock()

    def table(self, layer: str, table: str, started: float, **values: Any) -> dict[str, Any]:
        """Record the metrics of ``layer.table``; ``started`` is a ``time.monotonic()`` value.
        ``finished_at``: when the table was done (Unix time, seconds): its own end, which the job's
        may be well after (lineage times, the benchmarks' per-table breakdowns)."""
        entry = {
            "job": self.job,
            "layer": layer,
            "table": table,
            "duration_s": round(time.monotonic() - started, 3),
            "finished_at": round(time.time(), 3),
            **values,
        }
        line = f"[{self.job}] {layer}.{table}: " + ", ".join(
            f"{k}={v}" for k, v in values.items() if not isinstance(v, (dict, list)) or (k == "failed_rules" and v)
        )
        with self._lock:  # tables of a layer may finish at the same time (for_each_table)
            self.tables.append(entry)
            sys.stdout.write(line + "\n")
            sys.stdout.flush()
        return entry

    def order(self, tables: list[str]) -> None:
        """Put the recorded tables in the order of ``tables`` (concurrent work records them in
        the order it finished)."""
        rank = {name: i for i, name in enumerate(tables)}
        self.tables.sort(key=lambda entry: rank.get(entry["table"], len(rank)))

    def emit(self) -> None:
        """Print the metrics line (stdout, flushed)."""
        sys.stdout.write(METRICS_MARKER + json.dumps(self.tables, default=str) + "\n")
        sys.stdout.flush()


def lineage_output(spark: Any, table: str, path: str, version: int | None, *, committed: bool) -> dict[str, Any]:
    """One output of a table's lineage: ``table`` (layer/name), its storage ``path``, the Delta
    ``version`` it stands at and whether this run ``committed`` that version; for a commit, the
    table's schema too (read from the Delta log the write just cached: no data is read)."""
    out: dict[str, Any] = {"table": table, "path": path, "version": version, "committed": committed}
    if committed:
        schema = spark.read.format("delta").load(path).schema
        out["schema"] = [{"name": f.name, "type": f.dataType.simpleString()} for f in schema.fields]
    return out
