"""Bad command-line input gets a clear error (exit 2) and writes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli.main import app

runner = CliRunner()


def test_metrics_show_names_a_missing_or_malformed_file(tmp_path: Path) -> None:
    missing = runner.invoke(app, ["metrics", "show", str(tmp_path / "nope.json")])
    assert missing.exit_code == 2 and "metrics file not found" in missing.output
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    malformed = runner.invoke(app, ["metrics", "show", str(bad)])
    assert malformed.exit_code == 2 and "not a metrics JSON file" in malformed.output
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    assert "not a metrics JSON object" in runner.invoke(app, ["metrics", "show", str(listed)]).output


def test_metrics_show_puts_files_side_by_side(tmp_path: Path) -> None:
    (tmp_path / "a_metrics.json").write_text('{"items": 10, "execution_accuracy": 0.5}')
    (tmp_path / "b_metrics.json").write_text('{"items": 10, "execution_accuracy": 0.75, "valid_sql_rate": 1.0}')
    out = runner.invoke(app, ["metrics", "show", str(tmp_path / "a_metrics.json"), str(tmp_path / "b_metrics.json")],
                        terminal_width=120).output
    assert "50.0%" in out and "75.0%" in out and "—" in out


def test_generate_needs_a_question_or_an_output_file(tmp_path: Path) -> None:
    result = runner.invoke(app, ["generate", "-P", "sql-analyst@2", "--dataset", str(tmp_path)])
    assert result.exit_code == 2 and "give --question" in result.output
    assert list(tmp_path.iterdir()) == []


def test_generate_refuses_an_unknown_prompt_version(tmp_path: Path) -> None:
    result = runner.invoke(app, ["generate", "-P", "sql-analyst@99", "-q", "How many?", "-o", str(tmp_path / "p.jsonl")])
    assert result.exit_code == 2 and "has no version 99" in result.output
    assert not (tmp_path / "p.jsonl").exists()


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("T2S_LOCAL_LLM_SERVERS", "-1", "invalid setting T2S_LOCAL_LLM_SERVERS: Input should be greater than or equal to 0"),
    ("T2S_LOCAL_LLM_SERVERS", "two", "invalid setting T2S_LOCAL_LLM_SERVERS: Input should be a valid integer"),
    ("T2S_SERVE_OTEL", "maybe", "invalid setting T2S_SERVE_OTEL: Input should be a valid boolean"),
])
def test_a_bad_setting_is_one_clear_line_and_exit_2(tmp_path: Path, variable: str, value: str, message: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("T2S_")} | {variable: value}
    done = subprocess.run([sys.executable, "-m", "cli.main", "llm", "status"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
