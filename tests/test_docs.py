"""The README's commands exist: every `t2s …` command line it shows has working --help."""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from cli.main import app
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()
COMMANDS = sorted({m.group(1) for m in re.finditer(r"^t2s ([a-z-]+(?: [a-z][a-z-]*)?)(?=\s|$)", README, re.M)})


def test_readme_shows_commands() -> None:
    assert {"score", "datasets validate", "datasets import-spider", "datasets import-bird"} <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_exists(command: str) -> None:
    words = command.split()
    result = CliRunner().invoke(app, [*words, "--help"])
    assert result.exit_code == 0, result.output


def test_readme_documents_every_score_option() -> None:
    help_text = CliRunner().invoke(app, ["score", "--help"], terminal_width=200).output
    for option in ("--rules", "--timeout", "--out", "--predictions", "--dataset"):
        assert option in help_text and option in README
