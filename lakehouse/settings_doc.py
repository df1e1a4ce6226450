"""Render the settings reference (Markdown) from the settings model, so docs cannot drift."""

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


BEGIN, END = "<!-- settings:begin -->", "<!-- settings:end -->"


def readme_section(text: str) -> str:
    """The generated part of a README (between the settings markers)."""
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    return text[start:end].strip()


def write_readme(path: Path) -> None:
    """Replace the settings section of ``path`` with the current reference."""
    text = path.read_text()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    path.write_text(text[:start] + "\n" + render() + "\n" + text[end:])
