"""Contract-file validation: every mistake is named with its file, field and the valid values."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from spark_jobs.contract import DEFAULT_CONTRACTS_DIR, ContractError, load_contract, load_contracts

BASE = yaml.safe_load((DEFAULT_CONTRACTS_DIR / "orders.yaml").read_text())


def _write(tmp_path: Path, doc: dict) -> Path:
    path = tmp_path / "orders.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _with_field(name: str, **changes: object) -> dict:
    doc = yaml.safe_load(yaml.safe_dump(BASE))
    next(f for f in doc["schema"] if f["name"] == name).update(changes)
    return doc


def test_shipped_contracts_are_valid() -> None:
    contracts = load_contracts()
    assert set(contracts) == {"orders", "users", "events"}
    assert contracts["orders"].field("amount").spark_type == "decimal(10,2)"
    assert (contracts["users"].history_table, contracts["orders"].history_table) == ("users_history", None)


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (
            _with_field("amount", type="money"),
            [
                "schema.2.type",
                "unknown type 'money'",
                "valid types: string, integer, long, double, boolean, date, timestamp, decimal, decimal(p,s)",
            ],
        ),
        (_with_field("amount", constraints=[{"min": 10}, {"max": 5}]), ["schema.2", "min 10 is greater than max 5"]),
        ({**BASE, "owner_email": "x"}, ["unknown key(s) ['owner_email']", "valid keys:", "'primary_key'"]),
        (_with_field("amount", nullable=True), ["schema.2", "unknown key(s) ['nullable']", "'required'"]),
        (
            {**BASE, "quality": [{"type": "uniqueness", "columns": ["order_ref"]}]},
            ["quality[0].columns names column 'order_ref'", "declared columns: ['order_id', 'user_id'"],
        ),
        ({**BASE, "primary_key": "id"}, ["primary_key names column 'id'"]),
        (
            _with_field("status", on_violation="ignore"),
            ["schema.3.on_violation", "'warn', 'drop', 'quarantine' or 'fail'"],
        ),
        ({**BASE, "sla": {"freshness": "soon"}}, ["sla.freshness", "must look like '1 hour'"]),
        (
            {**BASE, "quality": [{"type": "row_count", "min": 1, "action": "quarantine"}]},
            ["row_count action must be warn or fail"],
        ),
        (_with_field("amount", constraints=[{"pattern": "("}]), ["not a valid regular expression"]),
        (
            {**_with_field("updated_at", required=False), "history": {}},
            ["history needs order_by column 'updated_at' to be required"],
        ),
        (
            {**BASE, "history": {}, "schema": [*BASE["schema"], {"name": "valid_to", "type": "timestamp"}]},
            ["history adds columns ['valid_to'], which the schema already declares"],
        ),
        ({**BASE, "history": {"table": "orders"}}, ["history.table must differ from the SCD1 table 'orders'"]),
        ({**BASE, "timestamps": {"max_future": "soon"}}, ["timestamps.max_future", "must look like '1 hour'"]),
        ({**BASE, "timestamps": {"not_before": "long ago"}}, ["timestamps.not_before"]),
    ],
    ids=[
        "unknown-type",
        "min-over-max",
        "unknown-top-key",
        "unknown-field-key",
        "rule-on-missing-column",
        "missing-key-column",
        "unknown-action",
        "bad-duration",
        "row-count-action",
        "bad-pattern",
        "history-without-required-order",
        "history-column-taken",
        "history-on-itself",
        "bad-max-future",
        "bad-not-before",
    ],
)
def test_invalid_contracts_name_file_field_and_valid_values(tmp_path: Path, doc: dict, expected: list[str]) -> None:
    path = _write(tmp_path, doc)
    with pytest.raises(ContractError) as err:
        load_contract(path)
    message = str(err.value)
    assert str(path) in message
    for part in expected:
        assert part in message, (part, message)


def test_name_must_match_file(tmp_path: Path) -> None:
    path = tmp_path / "sales.yaml"
    path.write_text(yaml.safe_dump(BASE))
    with pytest.raises(ContractError, match="name 'orders' must match the file name 'sales'"):
        load_contract(path)


def test_exit_codes_of_the_drivers_are_shared_by_both_sides() -> None:
    from lakehouse.errors import CONFIG_ERROR_EXIT, CONTRACT_VIOLATION_EXIT
    from spark_jobs import cli, silver

    assert silver.CONTRACT_VIOLATION_EXIT == CONTRACT_VIOLATION_EXIT == 65
    assert cli.CONFIG_ERROR_EXIT == CONFIG_ERROR_EXIT == 78
