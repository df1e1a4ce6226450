"""Data contracts: the YAML format, its validation, and the parts of it silver is built from.

Plain pydantic + YAML (no pyspark), so the orchestration side validates contract files with the
very model the Spark driver enforces. A contract names the dataset's key, the column that
orders versions of a key, the silver partition, the typed schema with per-column rules, the
schema-evolution policy, the freshness SLA and dataset-level quality rules. Every rule has an
action: ``warn`` (keep and count), ``drop`` (leave out and count), ``quarantine`` (write to
``quarantine/<table>`` with the reason) or ``fail`` (nothing of the batch reaches silver).
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

Action = Literal["warn", "drop", "quarantine", "fail"]
ACTIONS: tuple[str, ...] = ("warn", "drop", "quarantine", "fail")
SEVERITY = {a: i for i, a in enumerate(ACTIONS)}
BASE_TYPES = ("string", "integer", "long", "double", "boolean", "date", "timestamp", "decimal")
_DECIMAL = re.compile(r"^decimal\((\d{1,2}),\s*(\d{1,2})\)$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(second|minute|hour|day|week)s?\s*$")
_SECONDS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 604800}
DEFAULT_CONTRACTS_DIR = Path(__file__).resolve().parents[1] / "contracts"


MALFORMED = "malformed_json"
NEW_COLUMNS = "schema.new_columns"

RULE_NAMES: dict[str, str] = {
    MALFORMED: "the line (or Kafka value) is not a JSON object; reported alone",
    "<column>.required": "a required column (the key, `required: true`, a `null_check`) is missing or empty",
    "<column>.type": "the value cannot be read as the declared type",
    "<column>.min": "below the `min` constraint",
    "<column>.max": "above the `max` constraint",
    "<column>.pattern": "does not match the `pattern` constraint",
    "<column>.allowed_values": "not one of `allowed_values`",
    "<column>.plausible": "a timestamp or date outside the contract's `timestamps` window (`not_before`, `max_future`)",
    NEW_COLUMNS: "the batch carries columns the contract does not declare (`evolution.new_columns: quarantine`)",
}
"""Every rule name a rejected row can carry (``failed_rules`` of ``quarantine/<source>``, the
dead letters' rules, the ``rule`` of ``quality/metrics``); ``<column>`` is a contract column."""


class ContractError(ValueError):
    """A contract file is invalid; the message names the file, the field and the valid values."""


class _Strict(BaseModel):
    """Refuses unknown keys with a message listing the valid ones."""

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            valid = {f.alias or n for n, f in cls.model_fields.items()}
            unknown = sorted(set(data) - valid)
            if unknown:
                raise ValueError(f"unknown key(s) {unknown}; valid keys: {sorted(valid)}")
        return data


def spark_type(name: str) -> str:
    """The Spark SQL type of a contract type (``decimal`` alone means decimal(10,2))."""
    if name == "decimal":
        return "decimal(10,2)"
    if name == "integer":
        return "int"
    if name == "long":
        return "bigint"
    return name


def duration_seconds(text: str) -> float:
    """Parse ``"1 hour"``, ``"30 minutes"``, ``"7 days"``."""
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"duration {text!r} must look like '1 hour' or '30 minutes' (units: {sorted(_SECONDS)})")
    return float(m.group(1)) * _SECONDS[m.group(2)]


class Constraint(_Strict):
    """One constraint; exactly one of min, max, pattern."""

    min: float | None = None
    max: float | None = None
    pattern: str | None = None

    @model_validator(mode="after")
    def _one(self) -> Constraint:
        set_ = [k for k in ("min", "max", "pattern") if getattr(self, k) is not None]
        if len(set_) != 1:
            raise ValueError(f"a constraint has exactly one of min, max, pattern; got {set_ or 'none'}")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"pattern {self.pattern!r} is not a valid regular expression: {exc}") from None
        return self


class FieldSpec(_Strict):
    """A column: type, nullability, uniqueness, constraints, allowed values, action."""

    name: str
    type: str
    required: bool = False
    unique: bool = False
    description: str | None = None
    constraints: tuple[Constraint, ...] = ()
    allowed_values: tuple[str, ...] | None = None
    on_violation: Action = "quarantine"

    @field_validator("type")
    @classmethod
    def _type(cls, v: str) -> str:
        v = v.strip().lower()
        if v in BASE_TYPES:
            return v
        m = _DECIMAL.match(v)
        if m and 0 < int(m.group(1)) <= 38 and int(m.group(2)) <= int(m.group(1)):
            return f"decimal({m.group(1)},{m.group(2)})"
        raise ValueError(f"unknown type {v!r}; valid types: {', '.join(BASE_TYPES)}, decimal(p,s)")

    @model_validator(mode="after")
    def _bounds(self) -> FieldSpec:
        mins = [c.min for c in self.constraints if c.min is not None]
        maxs = [c.max for c in self.constraints if c.max is not None]
        if mins and maxs and max(mins) > min(maxs):
            raise ValueError(f"min {max(mins):g} is greater than max {min(maxs):g}")
        if (mins or maxs) and not (self.type.startswith("decimal") or self.type in ("integer", "long", "double")):
            raise ValueError(f"min/max need a numeric type, not {self.type}")
        return self

    @property
    def spark_type(self) -> str:
        """Spark SQL type of the column."""
        return spark_type(self.type)


class Partition(_Strict):
    """Silver partition column, derived as the date of a timestamp column."""

    column: str
    from_: str = Field(alias="from")


class Evolution(_Strict):
    """What to do with columns the contract does not declare."""

    new_columns: Literal["allow", "quarantine"] = "quarantine"


class Sla(_Strict):
    """Freshness and availability objectives."""

    freshness: str | None = None
    freshness_column: str | None = None
    availability: str | None = None
    action: Literal["warn", "fail"] = "warn"

    @field_validator("freshness")
    @classmethod
    def _freshness(cls, v: str | None) -> str | None:
        if v is not None:
            duration_seconds(v)
        return v

    @property
    def freshness_seconds(self) -> float | None:
        """The freshness objective in seconds."""
        return duration_seconds(self.freshness) if self.freshness else None


class Timestamps(_Strict):
    """The plausible window of every ``timestamp`` and ``date`` column: a value before
    ``not_before`` or more than ``max_future`` after the time of the check breaks
    ``<column>.plausible`` (the column's ``on_violation``). Unset bounds check nothing."""

    not_before: dt.date | None = None
    max_future: str | None = None

    @field_validator("max_future")
    @classmethod
    def _max_future(cls, v: str | None) -> str | None:
        if v is not None:
            duration_seconds(v)
        return v

    @property
    def max_future_seconds(self) -> float | None:
        """``max_future`` in seconds."""
        return duration_seconds(self.max_future) if self.max_future else None


class History(_Strict):
    """SCD type 2 beside the SCD1 table: every version of a key with its validity interval.

    ``silver/<table>`` (default ``<name>_history``) holds the contract's declared columns plus
    ``valid_from`` (the version's ``order_by`` value), ``valid_to`` (the next version's
    ``valid_from``; null for the open version) and ``is_current``, written by Delta MERGE in the
    same silver run as the SCD1 table.
    """

    table: str | None = None


class QualityRule(_Strict):
    """A dataset-level rule."""

    type: Literal["row_count", "null_check", "uniqueness"]
    min: int | None = None
    max: int | None = None
    columns: tuple[str, ...] = ()
    action: Action | None = None

    @model_validator(mode="after")
    def _shape(self) -> QualityRule:
        if self.type == "row_count":
            if self.min is None and self.max is None:
                raise ValueError("row_count needs min and/or max")
            if self.action in ("drop", "quarantine"):
                raise ValueError(f"row_count action must be warn or fail, not {self.action}")
        elif not self.columns:
            raise ValueError(f"{self.type} needs columns")
        return self

    @property
    def resolved_action(self) -> str:
        """The action, defaulting per rule type."""
        return self.action or {"row_count": "warn", "null_check": "quarantine", "uniqueness": "drop"}[self.type]


class Contract(_Strict):
    """A data contract (see the module docstring)."""

    name: str
    version: str
    owner: str
    description: str = ""
    primary_key: str
    order_by: str
    partition: Partition | None = None
    fields: tuple[FieldSpec, ...] = Field(alias="schema")
    evolution: Evolution = Evolution()
    sla: Sla = Sla()
    quality: tuple[QualityRule, ...] = ()
    history: History | None = None
    timestamps: Timestamps = Timestamps()

    @model_validator(mode="after")
    def _columns_exist(self) -> Contract:
        names = [f.name for f in self.fields]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"schema declares {dupes} more than once")
        refs = [("primary_key", self.primary_key), ("order_by", self.order_by)]
        if self.partition:
            refs.append(("partition.from", self.partition.from_))
        if self.sla.freshness_column:
            refs.append(("sla.freshness_column", self.sla.freshness_column))
        refs += [(f"quality[{i}].columns", c) for i, q in enumerate(self.quality) for c in q.columns]
        for where, col in refs:
            if col not in names:
                raise ValueError(
                    f"{where} names column {col!r}, which the schema does not declare; declared columns: {names}"
                )
        if self.partition and self.partition.column in names:
            raise ValueError(f"partition.column {self.partition.column!r} must be a new (derived) column")
        taken = {"valid_from", "valid_to", "is_current"} & set(names)
        if self.history and taken:
            raise ValueError(f"history adds columns {sorted(taken)}, which the schema already declares")
        if self.history and not self.field(self.order_by).required:
            raise ValueError(
                f"history needs order_by column {self.order_by!r} to be required: it is each version's valid_from"
            )
        if self.history and self.history_table == self.name:
            raise ValueError(f"history.table must differ from the SCD1 table {self.name!r}")
        return self

    @property
    def history_table(self) -> str | None:
        """The SCD2 table's name in silver (None without ``history``)."""
        if self.history is None:
            return None
        return self.history.table or f"{self.name}_history"

    @property
    def columns(self) -> list[str]:
        """Declared column names in order."""
        return [f.name for f in self.fields]

    def field(self, name: str) -> FieldSpec:
        """The declared column ``name``."""
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)


def _format(path: Path, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith(("function-", "constrained")))
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "literal_error":
            msg += f" (got {err.get('input')!r})"
        lines.append(f"  {loc or '<top>'}: {msg}")
    return f"{path}: invalid contract\n" + "\n".join(lines)


def load_contract(path: Path) -> Contract:
    """Read and validate one contract file; raise :class:`ContractError` naming what is wrong."""
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ContractError(f"{path}: cannot read contract: {exc}") from None
    if not isinstance(raw, dict):
        raise ContractError(f"{path}: a contract is a YAML mapping, got {type(raw).__name__}")
    try:
        contract = Contract.model_validate(raw)
    except ValidationError as exc:
        raise ContractError(_format(path, exc)) from None
    if contract.name != path.stem:
        raise ContractError(f"{path}: name {contract.name!r} must match the file name {path.stem!r}")
    return contract


def load_contracts(directory: Path = DEFAULT_CONTRACTS_DIR) -> dict[str, Contract]:
    """All contracts in ``directory`` (``<name>.yaml``), by name."""
    files = sorted(directory.glob("*.yaml"))
    if not files:
        raise ContractError(f"no contracts (*.yaml) in {directory}")
    return {c.name: c for c in (load_contract(f) for f in files)}
