"""The DVC pipeline runs for real in a scratch copy of the repository, and dvc.lock matches the code."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.mark.slow
@pytest.mark.llm
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
           "GIT_COMMITTER_EMAIL": "t@t", "MLFLOW_TRACKING_URI": f"sqlite:///{repo / 'mlflow.db'}"}
    _run(["git", "init", "-q"], repo, env)
    _run(["git", "add", "-A"], repo, env)
    _run(["git", "commit", "-qm", "snapshot"], repo, env)
    scoring = ["build_bank", "validate_bank", "selfcheck_bank", "score_bank_examples", "build_freight",
               "validate_freight", "selfcheck_freight"]
    out = _run([f"{bindir}/dvc", "repro", "score_bank_examples", "selfcheck_bank", "selfcheck_freight"], repo, env)
    assert all(f"Running stage '{s}'" in out for s in scoring)
    for dataset in ("bank", "freight"):
        selfcheck = json.loads((repo / f"reports/{dataset}/selfcheck_metrics.json").read_text())
        assert selfcheck["execution_accuracy"] == 1.0
    examples = json.loads((repo / "reports/bank/example_metrics.json").read_text())
    assert 0.5 < examples["execution_accuracy"] < 0.8

    # The whole pipeline on a small matrix with the real local model: 2 prompt versions × 4 questions of the
    # bundled set and 4 of the held-out set.
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["eval"]["prompts"] = {"v1": "sql-analyst@1", "v2": "sql-analyst@2"}
    params["eval"]["limit"] = 4
    params["gate"]["budget"] = {"p95_latency_s": 600, "model_calls_per_answer": 1}  # checked, not binding
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    full = _run([f"{bindir}/dvc", "repro"], repo, env)
    for stage in ("evaluate@v1", "evaluate@v2", "compare", "promote"):
        assert f"Running stage '{stage}'" in full, full[-3000:]
    assert not any(f"Running stage '{s}'" in full for s in scoring)
    assert (repo / "reports/compare/bank/report.html").is_file()
    assert (repo / "reports/compare/freight/report.html").is_file()
    board = json.loads((repo / "reports/compare/leaderboard.json").read_text())
    assert {r["n"] for r in board} == {8} and {r["dataset"] for r in board} == {"bank+freight"}
    decision = json.loads((repo / "reports/promotion/decision.json").read_text())
    assert decision["promoted"] is True and decision["record"]["action"] == "first_promotion"
    assert decision["record"]["gate"]["checks"] == {"heldout": True, "within_budget": True}
    assert json.loads((repo / "reports/promotion/outcome.json").read_text())["challenger"] == decision["challenger"]
    audit = (repo / "audit/promotions.jsonl").read_text().splitlines()
    assert len(audit) == 1

    # Nothing changed: a second repro runs no stage.
    again = _run([f"{bindir}/dvc", "repro"], repo, env)
    assert "Running stage" not in again
    # A fresh run of the same commit (no outputs, no MLflow store, the same caches) writes the same dvc.lock:
    # MLflow run ids, times and cache hits are not part of what it records.
    lock = (repo / "dvc.lock").read_text()
    for generated in ("reports", "audit", "mlflow.db", "datasets/bank/bank.sqlite", "datasets/freight/freight.sqlite"):
        path = repo / generated
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    fresh = _run([f"{bindir}/dvc", "repro"], repo, env)
    assert "Running stage 'promote'" in fresh
    assert (repo / "dvc.lock").read_text() == lock
    # A changed scoring parameter re-runs the scoring stages only.
    text = (repo / "params.yaml").read_text().replace("rules: t2s", "rules: spider", 1)
    (repo / "params.yaml").write_text(text)
    third = _run([f"{bindir}/dvc", "repro", "score_bank_examples"], repo, env)
    assert "Running stage 'score_bank_examples'" in third and "Running stage 'build_bank'" not in third


def _tracked_copy(dest: Path) -> Path:
    """The files git tracks, as they are in the working tree, in ``dest``: what a clean clone of a commit of
    this tree has (no generated databases or reports, no untracked files)."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.split("\0")
    for name in filter(None, files):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def stale_lock_entries(root: Path) -> list[str]:
    """What dvc.lock records that no longer matches ``root``: each stage's command, parameters and the
    dependencies a clean clone has. Dependencies produced by an earlier stage (the databases, the reports)
    are not there before `make demo`; they are checked through the stage that produces them."""
    from dvc.repo import Repo

    problems = []
    with Repo(str(root), config={"core": {"no_scm": True}}) as repo:
        for stage in repo.index.stages:
            if stage.cmd_changed:
                problems.append(f"{stage.addressing}: the command changed")
            for dep in stage.deps:
                if not Path(dep.fs_path).exists():  # an output of an earlier stage
                    continue
                for path, change in dep.status().items():
                    problems.append(f"{stage.name}: {path} {json.dumps(change) if isinstance(change, dict) else change}")
    return problems


def test_dvc_lock_is_up_to_date_with_the_code_and_parameters(tmp_path: Path) -> None:
    """CI fails when a commit changes what a stage runs (its code, prompts, parameters, command) without the
    pipeline having been run again: a fresh `make demo` would otherwise rewrite dvc.lock (a dirty tree)."""
    root = _tracked_copy(tmp_path / "clone")
    problems = stale_lock_entries(root)
    assert not problems, ("dvc.lock is stale; run `make demo` (a warm completion cache makes it quick) and commit "
                          "dvc.lock:\n  " + "\n  ".join(problems))
    # The check sees an edit to a stage's code, and to a parameter.
    (root / "evals" / "gate.py").write_text((root / "evals" / "gate.py").read_text() + "\n# edited\n")
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["gate"]["alpha"] = 0.01
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    changed = stale_lock_entries(root)
    assert any(p.startswith("compare: evals") for p in changed), changed
    assert any(p.startswith("promote: params.yaml") and '"gate"' in p for p in changed), changed
