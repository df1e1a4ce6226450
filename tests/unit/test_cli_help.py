"""Every command of the ``lakehouse`` CLI, and every option of each, explains itself in --help."""

from __future__ import annotations

import argparse
import contextlib
import io

import pytest

from lakehouse.cli import build_parser


def _commands(parser: argparse.ArgumentParser) -> dict[str, tuple[argparse.ArgumentParser, str | None]]:
    """Command name -> (its parser, its one-line help in the command list)."""
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    helps = {c.dest: c.help for c in sub._choices_actions}
    return {name: (p, helps.get(name)) for name, p in sub.choices.items()}


COMMANDS = _commands(build_parser())


def test_the_command_list_is_what_the_readme_runs() -> None:
    assert {
        "generate",
        "medallion",
        "show-tables",
        "demo",
        "contracts",
        "settings-doc",
        "blocks",
        "produce",
        "stream",
        "stream-status",
        "render",
    } <= set(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_and_option_has_help_text(name: str) -> None:
    parser, line = COMMANDS[name]
    assert line, f"`lakehouse {name}` has no line in the command list"
    missing = [
        a.option_strings or [a.dest] for a in parser._actions if not isinstance(a, argparse._HelpAction) and not a.help
    ]
    assert missing == [], f"`lakehouse {name}` options without help text: {missing}"
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as done:
        parser.parse_args(["--help"])
    assert done.value.code == 0
    text = out.getvalue()
    assert text.startswith(f"usage: lakehouse {name}")
    # written for a user: no module docstring of the implementation (``code`` markup, Sphinx roles)
    assert ":func:" not in text and "``" not in text, text
