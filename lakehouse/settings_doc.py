"""Render the README's reference tables (settings, exit codes, rule names) from the code, so docs cannot drift."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from lakehouse.settings import REPO_ROOT, Settings


def _rows(model: type[BaseModel], env: str, rows: list[tuple[str, str, str]]) -> None:
    for name, field in model.model_fields.items():
        ann: Any = field.annotation
        var = f"{env}{name.upper()}"
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            _rows(ann, var + "__", rows)
            continue
        default = field.get_default(call_default_factory=True)
        if name == "root":
            default = "<repo>/.lakehouse"
        elif isinstance(default, Path) and default.is_relative_to(REPO_ROOT):
            default = f"<repo>/{default.relative_to(REPO_ROOT)}"
        rows.append((var, f"`{default}`", field.description or ""))


def render() -> str:
    """Markdown table of every setting: environment variable, default, description (the
    lakehouse settings, then the dbt settings of ``lakehouse.dbt``)."""
    from lakehouse.dbt import DbtSettings

    rows: list[tuple[str, str, str]] = []
    _rows(Settings, "LAKEHOUSE_", rows)
    _rows(DbtSettings, "LAKEHOUSE_DBT__", rows)
    lines = ["| variable | default | description |", "| --- | --- | --- |"]
    lines += [f"| `{v}` | {d} | {desc} |" for v, d, desc in rows]
    return "\n".join(lines)


def render_exit_codes() -> str:
    """Markdown table of the ``lakehouse`` command's exit codes (``lakehouse.errors.ExitCode``)."""
    from lakehouse.errors import ExitCode

    lines = ["| exit code | meaning |", "| --- | --- |"]
    lines += [f"| {int(code)} | {code.meaning} |" for code in ExitCode]
    return "\n".join(lines)


def render_rule_names() -> str:
    """Markdown table of the rule names a rejected row can carry (``spark_jobs.contract.RULE_NAMES``)."""
    from spark_jobs.contract import RULE_NAMES

    lines = ["| rule | the row was rejected because |", "| --- | --- |"]
    lines += [f"| `{name}` | {meaning} |" for name, meaning in RULE_NAMES.items()]
    return "\n".join(lines)


SECTIONS = {"settings": render, "exit-codes": render_exit_codes, "rules": render_rule_names}
"""The generated parts of the README, each between ``<!-- NAME:begin -->`` and ``<!-- NAME:end -->``."""


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def readme_section(text: str, name: str = "settings") -> str:
    """The generated part ``name`` of a README (between its markers)."""
    begin, end = _markers(name)
    start, stop = text.index(begin) + len(begin), text.index(end)
    return text[start:stop].strip()


def write_readme(path: Path) -> None:
    """Replace every generated section of ``path`` with the current text (see :data:`SECTIONS`)."""
    text = path.read_text()
    for name, render_section in SECTIONS.items():
        begin, end = _markers(name)
        start, stop = text.index(begin) + len(begin), text.index(end)
        text = text[:start] + "\n" + render_section() + "\n" + text[stop:]
    path.write_text(text)
