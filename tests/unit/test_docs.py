"""Docs that must match the code."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from lakehouse.settings_doc import SECTIONS, readme_section, render

ROOT = Path(__file__).resolve().parents[2]


def test_readme_configuration_reference_is_generated_from_the_settings_model() -> None:
    assert readme_section((ROOT / "README.md").read_text()) == render().strip(), (
        "README's configuration reference is stale: run `.venv/bin/lakehouse settings-doc --write README.md`"
    )


def test_readme_exit_codes_and_rule_names_are_generated_from_the_code() -> None:
    readme = (ROOT / "README.md").read_text()
    for name, render_section in SECTIONS.items():
        assert readme_section(readme, name) == render_section().strip(), (
            f"README's {name} section is stale: run `.venv/bin/lakehouse settings-doc --write README.md`"
        )
    assert "null_key" not in readme and "invalid_type" not in readme  # names the code never wrote


def test_every_setting_has_a_description() -> None:
    for line in render().splitlines()[2:]:
        assert not line.rstrip().endswith("|  |"), line


def test_readme_shows_the_two_commands_and_the_make_targets_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    makefile = (ROOT / "Makefile").read_text()
    for target in ("demo", "test"):
        assert f"make {target}" in readme
        assert re.search(rf"^{target}:", makefile, re.M)
    from lakehouse.cli import build_parser

    (sub,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    for cmd in re.findall(r"\.venv/bin/lakehouse ([a-z-]+)", readme):
        assert cmd in sub.choices, f"the README shows `lakehouse {cmd}`, which the CLI lacks"
    for target in re.findall(r"^make ([a-z-]+)", readme, re.M):
        assert re.search(rf"^{target}:", makefile, re.M), f"the README shows `make {target}`"
