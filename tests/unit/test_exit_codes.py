"""The documented exit codes: which error gives which code, and what the CLI returns."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import yaml

from lakehouse.cli import main
from lakehouse.dbt import DbtError
from lakehouse.errors import (
    ConfigError,
    ExitCode,
    SetupError,
    SparkJobError,
    StreamUnhealthyError,
    exit_code_of,
    is_retryable,
)
from lakehouse.kafka import KafkaClientError, KafkaTopicError
from lakehouse.settings import Settings, get_settings

REPO = Path(__file__).resolve().parents[2]


def _validation_error() -> Exception:
    try:
        Settings(backend="mesos")  # type: ignore[arg-type]
    except Exception as exc:
        return exc
    raise AssertionError("Settings accepted an unknown backend")


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (SparkJobError("silver", "failed", exit_code=65), 65),
        (SparkJobError("silver", "failed", exit_code=78), 78),
        (SparkJobError("silver", "failed", exit_code=1), 1),
        (SparkJobError("silver", "failed", exit_code=None, state="TIMEOUT"), 1),
        (DbtError(["build"], "failed"), 1),
        (ConfigError("bad"), 78),
        (KafkaTopicError("topic events has 1 partition, expected 3"), 78),
        (StreamUnhealthyError("lag 500 > 100"), 3),
        (SetupError("java not found"), 69),
        (KafkaClientError("broker 127.0.0.1:1 not reachable"), 69),
    ],
)
def test_each_error_has_its_documented_code(exc: Exception, code: int) -> None:
    assert int(exit_code_of(exc)) == code


def test_invalid_settings_are_a_configuration_error() -> None:
    assert exit_code_of(_validation_error()) == ExitCode.CONFIG


def test_configuration_errors_of_the_driver_are_not_retried() -> None:
    assert not is_retryable(SparkJobError("bronze", "failed", exit_code=78))
    assert not is_retryable(SparkJobError("silver", "failed", exit_code=65))
    assert is_retryable(SparkJobError("silver", "failed", exit_code=1))


def test_cli_exits_78_on_an_invalid_setting_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LAKEHOUSE_BACKEND", "mesos")
    get_settings.cache_clear()
    try:
        code = main(["contracts"])
    finally:
        get_settings.cache_clear()
    err = capsys.readouterr().err
    assert code == 78
    assert "invalid settings" in err and "backend" in err and "mesos" in err


def test_cli_exits_78_on_an_invalid_contract_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = yaml.safe_load((REPO / "contracts" / "orders.yaml").read_text())
    doc["schema"][0]["type"] = "varchar"
    (tmp_path / "orders.yaml").write_text(yaml.safe_dump(doc))
    assert main(["contracts", "--dir", str(tmp_path)]) == 78
    assert "orders.yaml" in capsys.readouterr().err


def test_cli_maps_a_lakehouse_error_to_its_code_and_says_which(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The mapping at the CLI's edge (the real driver -> CLI path is tests/e2e's exit-65 test)."""
    import lakehouse.cli as cli

    def stopped(args: object, settings: object) -> int:
        raise SparkJobError("medallion", "failed: contract violation", exit_code=65)

    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    sub.choices["contracts"].set_defaults(fn=stopped)
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    assert main(["contracts"]) == 65
    err = capsys.readouterr().err
    assert "contract violation" in err and "exit code 65: a data-contract fail rule" in err


def test_help_lists_every_exit_code(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for code in ExitCode:
        assert f"{int(code):>3}  {code.meaning}" in out
