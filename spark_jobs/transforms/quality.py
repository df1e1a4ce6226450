"""Contract rules compiled to Spark column expressions (no Python UDFs).

Every row rule yields a pass condition and a readable reason. :func:`evaluate` adds to each row
the names of the rules it breaks (``_failed_rules``), their reasons joined (``_reason``) and the
most severe action among them (``_action``: null when the row passes everything). A malformed
line reports ``malformed_json`` only.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from spark_jobs.contract import ACTIONS, NEW_COLUMNS, SEVERITY, Contract, FieldSpec, Timestamps
from spark_jobs.contract import MALFORMED as MALFORMED  # re-exported: the name the callers use

METRICS_SCHEMA = (
    "run_id string, table string, rule string, action string, evaluated long, "
    "passed long, failed long, batches array<string>, evaluated_at timestamp"
)
"""Schema of the ``quality/metrics`` table (one row per run or micro-batch, table and rule)."""


@dataclass(frozen=True)
class RowRule:
    """A per-row rule: ``passes`` is true for a conforming row; ``reason`` explains a failure."""

    name: str
    action: str
    passes: Column
    reason: Column


def _present(col: Column) -> Column:
    return col.isNotNull() & (F.trim(col) != "")


def _show(col: Column) -> Column:
    """The value as JSON (strings quoted), ``null`` when absent."""
    as_json = F.regexp_extract(F.to_json(F.struct(col.alias("v"))), r'^\{"v":(.*)\}$', 1)
    return F.when(col.isNull(), F.lit("null")).otherwise(as_json)


def _plausible(f: FieldSpec, raw: Column, typed: Column, window: Timestamps) -> list[RowRule]:
    """``<column>.plausible`` for a timestamp or date column under a ``timestamps`` window."""
    if f.type not in ("timestamp", "date") or (window.not_before is None and window.max_future is None):
        return []
    at = typed.cast("timestamp")
    ok = F.lit(True)
    lo = hi = ""
    if window.not_before is not None:
        ok = ok & (at >= F.lit(dt.datetime.combine(window.not_before, dt.time())))
        lo = window.not_before.isoformat()
    if window.max_future_seconds is not None:
        ok = ok & (at <= F.current_timestamp() + F.expr(f"INTERVAL {int(window.max_future_seconds)} SECONDS"))
        hi = f"now + {window.max_future}"
    text = f"outside the plausible window [{lo}, {hi}]"
    return [
        RowRule(
            f"{f.name}.plausible",
            f.on_violation,
            typed.isNull() | ok,
            F.format_string("%s=%s is %s", F.lit(f.name), raw, F.lit(text)),
        )
    ]


def _field_rules(
    f: FieldSpec,
    required_action: str | None,
    typed_col: Column | None = None,
    window: Timestamps | None = None,
) -> list[RowRule]:
    raw = F.col(f.name)
    typed = typed_col if typed_col is not None else raw.try_cast(f.spark_type)
    rules = []
    if required_action:
        rules.append(RowRule(f"{f.name}.required", required_action, _present(raw), F.lit(f"{f.name} is missing")))
    if f.type != "string":
        rules.append(
            RowRule(
                f"{f.name}.type",
                f.on_violation,
                raw.isNull() | typed.isNotNull(),
                F.format_string("%s=%s is not a valid %s", F.lit(f.name), raw, F.lit(f.spark_type)),
            )
        )
    for c in f.constraints:
        if c.min is not None:
            rules.append(
                RowRule(
                    f"{f.name}.min",
                    f.on_violation,
                    typed.isNull() | (typed >= F.lit(c.min)),
                    F.format_string("%s=%s is below the minimum %s", F.lit(f.name), raw, F.lit(f"{c.min:g}")),
                )
            )
        if c.max is not None:
            rules.append(
                RowRule(
                    f"{f.name}.max",
                    f.on_violation,
                    typed.isNull() | (typed <= F.lit(c.max)),
                    F.format_string("%s=%s is above the maximum %s", F.lit(f.name), raw, F.lit(f"{c.max:g}")),
                )
            )
        if c.pattern is not None:
            rules.append(
                RowRule(
                    f"{f.name}.pattern",
                    f.on_violation,
                    raw.isNull() | raw.rlike(c.pattern),
                    F.format_string("%s=%s does not match %s", F.lit(f.name), _show(raw), F.lit(c.pattern)),
                )
            )
    if window is not None:
        rules += _plausible(f, raw, typed, window)
    if f.allowed_values is not None:
        allowed = list(f.allowed_values)
        rules.append(
            RowRule(
                f"{f.name}.allowed_values",
                f.on_violation,
                raw.isNull() | raw.isin(*allowed),
                F.format_string("%s=%s is not one of [%s]", F.lit(f.name), _show(raw), F.lit(", ".join(allowed))),
            )
        )
    return rules


def row_rules(
    contract: Contract,
    drifted_batches: Sequence[str] = (),
    new_columns: Sequence[str] = (),
    typed: Mapping[str, Column] | None = None,
) -> list[RowRule]:
    """All per-row rules of ``contract``.

    Args:
        contract: The contract.
        drifted_batches: Batch ids carrying columns the contract does not allow; with
            ``evolution.new_columns: quarantine`` every row of those batches is quarantined.
        new_columns: The undeclared columns seen (for the reason text).
        typed: Column name -> the raw text already cast to the field's declared type with
            ``try_cast``, when the caller has it (the rules then reuse it instead of casting
            the text again); missing names are cast by the rules.
    """
    null_checked = {c: q.resolved_action for q in contract.quality if q.type == "null_check" for c in q.columns}
    rules: list[RowRule] = []
    for f in contract.fields:
        required: str | None = None
        if f.name == contract.primary_key or f.required:
            required = f.on_violation
        if f.name in null_checked:
            required = max(required or "warn", null_checked[f.name], key=SEVERITY.__getitem__)
        rules += _field_rules(f, required, (typed or {}).get(f.name), contract.timestamps)
    if drifted_batches and contract.evolution.new_columns == "quarantine":
        rules.append(
            RowRule(
                NEW_COLUMNS,
                "quarantine",
                ~F.col("_batch_id").isin(*drifted_batches),
                F.lit(
                    f"schema drift: undeclared column(s) {', '.join(sorted(new_columns))} in this batch; "
                    f"contract {contract.name} v{contract.version} does not allow new columns "
                    "(evolution.new_columns: quarantine)"
                ),
            )
        )
    return rules


def shape_rules(contract: Contract, line: Column | None = None) -> list[RowRule]:
    """``<column>.type`` for each string column given a JSON array or object: its text would
    reach silver (or bronze) as if it were the value. ``line`` is the row's JSON text (default
    the batch path's ``_raw``; the stream passes the Kafka value): the value must start with
    ``[``/``{`` and the line must give that key an array or object, so a string that merely
    starts with a bracket passes."""
    text = line if line is not None else F.col("_raw")
    rules = []
    for f in contract.fields:
        if f.type != "string":
            continue
        raw = F.col(f.name)
        nested = raw.rlike(r"^\s*[\[{]") & text.rlike(f'"{f.name}"\\s*:\\s*[\\[{{]')
        rules.append(
            RowRule(
                f"{f.name}.type",
                f.on_violation,
                raw.isNull() | ~nested,
                F.format_string("%s=%s is not a string (a JSON array or object)", F.lit(f.name), raw),
            )
        )
    return rules


@dataclass(frozen=True)
class Verdict:
    """The rule outcome of a row as column expressions (see :func:`verdict`)."""

    failed_rules: Column
    """Names of the rules the row breaks (array; ``malformed_json`` alone for a malformed row)."""
    reason: Column
    """Their reasons joined with ``; `` (empty when it breaks none)."""
    action: Column
    """The most severe action among them, null when it breaks none."""
    passes: Column
    """True when the row is well formed and passes every rule: a cheap test that lets a caller
    skip building the three columns above for the (usual) conforming row."""


def verdict(rules: Sequence[RowRule], malformed: Column, malformed_reason: Column | None = None) -> Verdict:
    """Compile ``rules`` into the :class:`Verdict` columns of a row; ``malformed`` is true for a
    row that is not a JSON object (it then reports ``malformed_json`` only, with
    ``malformed_reason``, by default "line is not a JSON object")."""
    fails = [(r, ~malformed & ~F.coalesce(r.passes, F.lit(False))) for r in rules]
    names = [F.when(malformed, F.lit(MALFORMED))] + [F.when(fail, F.lit(r.name)) for r, fail in fails]
    why = malformed_reason if malformed_reason is not None else F.lit("line is not a JSON object")
    reasons = [F.when(malformed, why)] + [F.when(fail, r.reason) for r, fail in fails]
    severity = [F.when(malformed, F.lit(SEVERITY["quarantine"])), F.lit(None)] + [
        F.when(fail, F.lit(SEVERITY[r.action])) for r, fail in fails
    ]
    worst = F.greatest(*severity)
    passes = ~malformed
    for r in rules:
        passes = passes & F.coalesce(r.passes, F.lit(False))
    return Verdict(
        failed_rules=F.filter(F.array(*names), lambda x: x.isNotNull()),
        reason=F.concat_ws("; ", F.array(*reasons)),
        action=F.when(worst.isNotNull(), F.element_at(F.array(*map(F.lit, ACTIONS)), worst + 1)),
        passes=passes,
    )


def evaluate(df: DataFrame, rules: Sequence[RowRule]) -> DataFrame:
    """Add ``_failed_rules`` (array), ``_reason`` (string) and ``_action`` (most severe, or null)."""
    why = F.when(~F.is_valid_utf8("_raw"), F.lit("line is not valid UTF-8 text")).otherwise(
        F.lit("line is not a JSON object")
    )
    v = verdict(rules, F.col("_malformed"), why)
    return (
        df.withColumn("_failed_rules", v.failed_rules).withColumn("_reason", v.reason).withColumn("_action", v.action)
    )


def profile(evaluated: DataFrame, rules: Sequence[RowRule], contract: Contract) -> dict[str, int]:
    """One aggregation over the evaluated rows: ``_rows``, ``malformed_json``, rows failing each
    rule (by name), rows per action (``action:<a>``) and, per declared column, well-formed rows
    lacking it (``missing:<column>``)."""
    keys = F.json_object_keys("_raw")
    well_formed = ~F.col("_malformed")
    aggs = [F.count(F.lit(1)).alias("_rows"), F.sum(F.col("_malformed").cast("int")).alias(MALFORMED)]
    aggs += [F.sum(F.array_contains("_failed_rules", r.name).cast("int")).alias(r.name) for r in rules]
    aggs += [F.sum((F.col("_action") == a).cast("int")).alias(f"action:{a}") for a in ACTIONS]
    aggs += [
        F.sum((well_formed & ~F.array_contains(keys, c)).cast("int")).alias(f"missing:{c}") for c in contract.columns
    ]
    row = evaluated.agg(*aggs).first()
    assert row is not None
    return {k: int(v or 0) for k, v in row.asDict().items()}


def undeclared_columns(df: DataFrame, contract: Contract) -> dict[str, tuple[list[str], int]]:
    """Undeclared JSON keys seen in ``_raw``: key -> (batch ids it appeared in, rows carrying it)."""
    keys = (
        df.where(~F.col("_malformed"))
        .select("_batch_id", F.explode(F.json_object_keys("_raw")).alias("key"))
        .where(~F.col("key").isin(*contract.columns))
        .groupBy("key")
        .agg(F.sort_array(F.collect_set("_batch_id")).alias("batches"), F.count(F.lit(1)).alias("rows"))
    )
    return {r["key"]: (list(r["batches"]), int(r["rows"])) for r in sorted(keys.collect(), key=lambda r: r["key"])}
