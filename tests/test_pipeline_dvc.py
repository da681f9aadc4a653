"""The DVC pipeline runs for real in a scratch copy of the repository."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def test_dvc_repro_builds_validates_and_scores(tmp_path: Path) -> None:
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    repo = tmp_path / "repo"
    for name in files:
        src = ROOT / name
        if src.is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, repo / name)
    bindir = str(Path(sys.executable).parent)
    env = {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}", "T2S_CACHE_DIR": str(tmp_path / "cache"),
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    _run(["git", "init", "-q"], repo, env)
    _run(["git", "add", "-A"], repo, env)
    _run(["git", "commit", "-qm", "snapshot"], repo, env)
    out = _run([f"{bindir}/dvc", "repro"], repo, env)
    assert "Running stage 'build_bank'" in out and "Running stage 'score_bank_examples'" in out
    selfcheck = json.loads((repo / "reports/bank/selfcheck_metrics.json").read_text())
    assert selfcheck["execution_accuracy"] == 1.0
    examples = json.loads((repo / "reports/bank/example_metrics.json").read_text())
    assert 0.5 < examples["execution_accuracy"] < 0.8
    # Nothing changed: a second repro runs no stage.
    again = _run([f"{bindir}/dvc", "repro"], repo, env)
    assert "Running stage" not in again
    # A changed parameter re-runs the scoring stages only.
    params = (repo / "params.yaml").read_text().replace("rules: t2s", "rules: spider")
    (repo / "params.yaml").write_text(params)
    third = _run([f"{bindir}/dvc", "repro"], repo, env)
    assert "Running stage 'score_bank_examples'" in third and "Running stage 'build_bank'" not in third
