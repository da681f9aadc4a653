"""`t2s eval` → `t2s compare` → `t2s promote` / `t2s rollback`, end to end on a real MLflow sqlite store.

The model is a loopback OpenAI-compatible server (tests/fakes.py) that answers with the gold SQL for prompt
version 2 and with wrong SQL for version 1, so the gate has a real, significant difference to judge.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from cli.main import app
from t2s.datasets import DatasetManifest, GoldExample, write_dataset
from t2s.settings import get_settings
from tests.fakes import FakeOpenAI, Reply

QUESTIONS = [
    ("q1", "How many customers are there?", "SELECT COUNT(*) FROM customers", "easy"),
    ("q2", "Names of customers in Paris", "SELECT name FROM customers WHERE city = 'Paris'", "easy"),
    ("q3", "Oldest customer's name", "SELECT name FROM customers ORDER BY age DESC, name LIMIT 1", "medium"),
    ("q4", "Total order amount", "SELECT SUM(amount) FROM orders", "easy"),
    ("q5", "Customers with orders", "SELECT DISTINCT c.name FROM customers c JOIN orders o ON o.customer_id = c.id",
     "medium"),
    ("q6", "Orders per city", "SELECT c.city, COUNT(*) FROM customers c JOIN orders o ON o.customer_id = c.id "
     "GROUP BY c.city", "hard"),
    ("q7", "Largest order amount", "SELECT MAX(amount) FROM orders", "easy"),
    ("q8", "Customers without an age", "SELECT name FROM customers WHERE age IS NULL", "medium"),
]
GOLD_BY_QUESTION = {q: sql for _, q, sql, _ in QUESTIONS}
runner = CliRunner()


def prompt_file(version: int, marker: str) -> dict[str, Any]:
    return {"name": "demo", "version": version, "description": f"version {version}", "dialect": "sqlite",
            "variables": ["schema", "question"],
            "messages": [{"role": "system", "content": f"{marker} Write one SQLite query."},
                         {"role": "user", "content": "{{schema}}\nQuestion: {{question}}"}]}


def write_project(root: Path, shop_db: Path, dataset: str, prompt: str) -> Path:
    """Under ``root``: the QUESTIONS golden set on the shop database (``datasets/<dataset>``) and prompt
    ``<prompt>`` versions 1 (always wrong) and 2 (``prompts/<prompt>``). Returns the dataset folder."""
    ds = root / "datasets" / dataset
    ds.mkdir(parents=True)
    shutil.copy(shop_db, ds / "shop.sqlite")
    write_dataset(ds, DatasetManifest(name=dataset, databases={"shop": "shop.sqlite"}),
                  [GoldExample(id=i, question=q, gold_sql=s, db_id="shop", difficulty=d, category="filter")
                   for i, q, s, d in QUESTIONS])
    prompts = root / "prompts" / prompt
    prompts.mkdir(parents=True)
    for version, marker in ((1, "ALWAYS-WRONG"), (2, "Be exact.")):
        spec = {**prompt_file(version, marker), "name": prompt}
        (prompts / f"v{version}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return ds


def answer(body: dict[str, Any]) -> Reply:
    system, user = body["messages"][0]["content"], body["messages"][-1]["content"]
    question = user.rsplit("Question: ", 1)[-1].strip()
    if "ALWAYS-WRONG" in system:
        return Reply(content="SELECT 42")
    return Reply(content=f"```sql\n{GOLD_BY_QUESTION[question]}\n```")


@pytest.fixture
def project(tmp_path: Path, shop_db: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    ds = write_project(tmp_path, shop_db, "mini", "demo")
    fake = FakeOpenAI()
    fake.responder = answer
    env = {"T2S_LLM_PROVIDER": "compatible", "T2S_LLM_BASE_URL": fake.url, "T2S_LLM_MODEL": "fake-model",
           "T2S_LLM_API_KEY": "test-key", "T2S_PROMPTS_DIR": str(tmp_path / "prompts"),
           "T2S_AUDIT_LOG": str(tmp_path / "audit.jsonl"), "T2S_LLM_MAX_RETRIES": "0"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield {"root": tmp_path, "dataset": ds, "fake": fake, "env": env}
    fake.close()


def run(*args: str) -> Any:
    result = runner.invoke(app, list(args), terminal_width=200)
    return result


def mlflow_client() -> Any:
    from mlflow import MlflowClient

    from t2s.tracking import configure_mlflow

    configure_mlflow(get_settings())
    return MlflowClient()


def evaluate(p: dict[str, Any], sweep: str, *extra: str) -> Any:
    return run("eval", "-d", str(p["dataset"]), "-P", "demo@1", "-P", "demo@2", "-m", "compatible:fake-model",
               "--sweep-id", sweep, "--out-dir", str(p["root"] / "reports"), *extra)


def test_unknown_matrix_entries_fail_before_any_work(project: dict[str, Any]) -> None:
    cases = [
        (["-P", "demo@9"], "has no version 9"),
        (["-P", "nothing@1"], "no prompt named 'nothing'"),
        (["-P", "demo"], "NAME@VERSION"),
        (["-P", "demo@1", "-d", "missing-dataset"], "dataset.yaml"),
        (["-P", "demo@1", "-m", "klingon:x"], "unknown provider"),
    ]
    for args, message in cases:
        base = ["eval"] + ([] if "-d" in args else ["-d", str(project["dataset"])])
        result = run(*base, *args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output, (args, result.output)
    assert project["fake"].requests == []
    assert mlflow_client().get_experiment_by_name("t2s/mini") is None


def test_sweep_compare_promote_and_rollback(project: dict[str, Any]) -> None:
    fake = project["fake"]
    first = evaluate(project, "s1")
    assert first.exit_code == 0, first.output
    assert len(fake.requests) == 16
    client = mlflow_client()
    exp = client.get_experiment_by_name("t2s/mini")
    runs = {r.data.tags["t2s.variant"]: r for r in client.search_runs(
        [exp.experiment_id], "tags.`t2s.kind` = 'variant'")}
    v1, v2 = runs["demo@1/compatible:fake-model"], runs["demo@2/compatible:fake-model"]
    assert v1.data.metrics["execution_accuracy"] == 0.0 and v2.data.metrics["execution_accuracy"] == 1.0
    assert v2.data.metrics["execution_accuracy/medium"] == 1.0 and "latency_p95_s" in v2.data.metrics
    assert v2.data.params["prompt_version"] == "2" and v2.data.tags["t2s.prompt_uri"] == "prompts:/demo/2"
    parent = v2.data.tags["mlflow.parentRunId"]
    assert client.get_run(parent).data.tags["t2s.kind"] == "sweep"
    assert v2.inputs.dataset_inputs and v2.inputs.dataset_inputs[0].dataset.name == "mini"
    artifacts = {a.path for a in client.list_artifacts(v2.info.run_id)}
    assert {"eval_items.json", "variant", "prompt"} <= artifacts
    table = json.loads(Path(client.download_artifacts(v2.info.run_id, "eval_items.json")).read_text())
    assert "predicted_sql" in table["columns"] and "gold_result" in table["columns"]

    # A rerun is served from the completion cache: no model call, same verdicts.
    again = evaluate(project, "s2")
    assert again.exit_code == 0 and len(fake.requests) == 16

    compared = run("compare", "--sweep", "s1", "--out", str(project["root"] / "cmp"))
    assert compared.exit_code == 0, compared.output
    rows = json.loads((project["root"] / "cmp" / "leaderboard.json").read_text())
    assert [r["variant"] for r in rows] == ["demo@2/compatible:fake-model", "demo@1/compatible:fake-model"]
    assert "demo@2" in (project["root"] / "cmp" / "report.html").read_text()

    promoted = run("promote", "--best", "--sweep", "s1")
    assert promoted.exit_code == 0, promoted.output
    assert "first_promotion" in promoted.output
    champion = client.get_model_version_by_alias("t2s-generator", "champion")
    assert champion.tags["t2s.prompt"] == "demo@2"
    assert client.get_prompt_version_by_alias("demo", "champion").version == 2
    # The promoted model lives in a promotion run; the evaluation run has it as an input, not an output, so
    # MLflow keeps listing it among the evaluation runs.
    promotions = client.get_experiment_by_name("t2s/promotions")
    (promotion,) = client.search_runs([promotions.experiment_id])
    assert promotion.info.run_name == "demo v2 · fake-model · mini → champion (t2s-generator v1)"
    assert promotion.info.status == "FINISHED" and champion.tags["t2s.promotion_run_id"] == promotion.info.run_id
    evaluated = client.get_run(v2.info.run_id)
    assert not (evaluated.outputs and evaluated.outputs.model_outputs)
    (model_input,) = evaluated.inputs.model_inputs
    assert client.get_logged_model(model_input.model_id).source_run_id == promotion.info.run_id
    assert f"#/experiments/{promotions.experiment_id}/runs/{promotion.info.run_id}" in promoted.output
    assert f"evaluation-runs?selectedRunUuid={v2.info.run_id}" in promoted.output
    assert "#/models/t2s-generator/versions/1" in promoted.output
    assert client.get_run(parent).info.status == "FINISHED"  # the sweep's run ended with its process

    # The worse variant cannot take over, and nothing moves when the gate refuses.
    refused = run("promote", v1.info.run_id)
    assert refused.exit_code == 2 and "refused by the gate" in refused.output
    assert client.get_model_version_by_alias("t2s-generator", "champion").version == champion.version
    no_reason = run("promote", v1.info.run_id, "--force")
    assert no_reason.exit_code == 2 and "--reason" in no_reason.output
    forced = run("promote", v1.info.run_id, "--force", "--reason", "incident drill")
    assert forced.exit_code == 0, forced.output
    assert client.get_prompt_version_by_alias("demo", "champion").version == 1

    rolled = run("rollback", "--reason", "drill over")
    assert rolled.exit_code == 0, rolled.output
    assert client.get_model_version_by_alias("t2s-generator", "champion").version == champion.version
    assert client.get_prompt_version_by_alias("demo", "champion").version == 2
    audit = [json.loads(line) for line in Path(project["env"]["T2S_AUDIT_LOG"]).read_text().splitlines()]
    assert [a["action"] for a in audit] == ["first_promotion", "forced_promotion", "rollback"]
    assert audit[1]["reason"] == "incident drill" and audit[1]["gate"]["passed"] is False
    assert audit[2]["to_model_version"] == int(champion.version)
    names = [r.info.run_name for r in client.search_runs([promotions.experiment_id], order_by=["start_time ASC"])]
    assert names == ["demo v2 · fake-model · mini → champion (t2s-generator v1)",
                     "demo v1 · fake-model · mini → champion (forced) (t2s-generator v2)",
                     "rollback → demo v2 · fake-model (t2s-generator v1)"]


def per_item(folder: Path, prompt: str) -> dict[str, dict[str, Any]]:
    from evals.records import VariantRun

    variant = VariantRun.read(next((folder / "mini" / prompt).rglob("variant.json")).parent)
    return {i.id: i.model_dump() for i in variant.items}


def test_answer_latency_survives_the_cache_and_the_budget_decides_the_best(project: dict[str, Any]) -> None:
    """Version 2 is right but slow (0.3 s per call), version 1 wrong but fast: a rerun served from the cache
    keeps version 2's measured latency, and under a 0.2 s p95 budget `promote --best` passes it over."""
    def slow_right(body: dict[str, Any]) -> Reply:
        reply = answer(body)
        if "ALWAYS-WRONG" not in body["messages"][0]["content"]:
            reply.delay = 0.3
        return reply

    project["fake"].responder = slow_right
    root = project["root"]
    assert evaluate(project, "t1").exit_code == 0
    first = per_item(root / "reports", "demo@2")
    assert all(i["answer_latency_s"] >= 0.3 and not i["cached"] for i in first.values())
    assert 1 <= sum(i["cold_start"] for i in first.values()) <= 4  # each worker's first answer (4 in flight)
    fast = per_item(root / "reports", "demo@1")
    assert all(i["answer_latency_s"] < 0.3 for i in fast.values()), [i["answer_latency_s"] for i in fast.values()]
    asked = len(project["fake"].requests)
    again = evaluate(project, "t2")
    assert again.exit_code == 0 and len(project["fake"].requests) == asked  # every call from the cache
    rerun = per_item(root / "reports", "demo@2")
    for qid, item in rerun.items():
        assert item["cached"] and item["latency_s"] < 0.1  # the lookup
        assert item["answer_latency_s"] == pytest.approx(first[qid]["answer_latency_s"], abs=0.1)  # the call

    params = root / "params.yaml"
    params.write_text(yaml.safe_dump({"gate": {"budget": {"p95_latency_s": 0.2, "model_calls_per_answer": 1}}}))
    compared = run("compare", "--sweep", "t2", "--params", str(params), "--out", str(root / "cmp"))
    assert compared.exit_code == 0, compared.output
    board = run("leaderboard", str(root / "cmp" / "leaderboard.json"))
    assert board.exit_code == 0 and "budget" in board.output and "over" in board.output and "within" in board.output
    promoted = run("promote", "--best", "--sweep", "t2", "--params", str(params),
                   "--decision-out", str(root / "decision.json"), "--outcome-out", str(root / "outcome.json"))
    assert promoted.exit_code == 0, promoted.output
    decision = json.loads((root / "decision.json").read_text())
    assert json.loads((root / "outcome.json").read_text()) == {  # what DVC tracks: no ids, times or figures
        "challenger": "demo@1/compatible:fake-model", "passed_over": ["demo@2/compatible:fake-model"]}
    assert decision["challenger"] == "demo@1/compatible:fake-model" and decision["promoted"] is True
    assert "demo@2/compatible:fake-model is over the serving budget" in decision["passed_over"][0]
    assert "gate.budget.p95_latency_s = 0.20 s" in decision["passed_over"][0]
    assert decision["record"]["gate"]["checks"] == {"within_budget": True}
    assert decision["record"]["gate"]["budget"]["measured"]["model_calls_per_answer"] == 1.0
    # Naming the slow variant itself: refused, and the reason names the budget.
    slow_run = next(r for r in mlflow_client().search_runs(
        [mlflow_client().get_experiment_by_name("t2s/mini").experiment_id],
        "tags.`t2s.sweep_id` = 't2' and tags.`t2s.variant` = 'demo@2/compatible:fake-model'"))
    refused = run("promote", slow_run.info.run_id, "--params", str(params))
    assert refused.exit_code == 2 and "over the serving budget" in refused.output, refused.output


def test_question_failures_are_recorded_and_the_cell_goes_on(project: dict[str, Any]) -> None:
    def flaky(body: dict[str, Any]) -> Reply:
        question = body["messages"][-1]["content"].rsplit("Question: ", 1)[-1].strip()
        if question.startswith("How many"):
            return Reply(content="I do not know.")
        if question.startswith("Names"):
            return Reply(content="SELECT COUNT(*) FROM nums a, nums b, nums c")
        if question.startswith("Total"):
            return Reply(status=500)
        return answer(body)

    project["fake"].responder = flaky
    params = project["root"] / "params.yaml"
    params.write_text(yaml.safe_dump({"eval": {"datasets": [str(project["dataset"])], "prompts": ["demo@2"],
                                               "models": ["compatible:fake-model"], "timeout_s": 0.5}}))
    result = run("eval", "--params", str(params), "--sweep-id", "flaky", "--out-dir", str(project["root"] / "r"))
    assert result.exit_code == 0, result.output
    folder = next((project["root"] / "r").rglob("per_item.jsonl"))
    items = {i["id"]: i for i in map(json.loads, folder.read_text().splitlines())}
    assert items["q1"]["error_class"] == "no_sql" and items["q2"]["error_class"] == "timeout"
    assert items["q4"]["error_class"] == "llm_error"
    assert sum(i["match"] for i in items.values()) == 5


def test_an_unreachable_model_fails_its_cells_only(project: dict[str, Any]) -> None:
    params = project["root"] / "params.yaml"
    params.write_text(yaml.safe_dump({"eval": {
        "datasets": [str(project["dataset"])], "prompts": ["demo@2"],
        "models": [{"name": "fake-model", "provider": "compatible"},
                   {"name": "gone", "provider": "compatible", "base_url": "http://127.0.0.1:9/v1"}]}}))
    result = run("eval", "--params", str(params), "--sweep-id", "partial", "--out-dir", str(project["root"] / "r"))
    assert result.exit_code == 1
    assert "could not run" in result.output
    client = mlflow_client()
    exp = client.get_experiment_by_name("t2s/mini")
    runs = client.search_runs([exp.experiment_id], "tags.`t2s.kind` = 'variant'")
    status = {r.data.tags["t2s.variant"]: r.info.status for r in runs}
    assert status == {"demo@2/compatible:fake-model": "FINISHED", "demo@2/compatible:gone": "FAILED"}
    (sweep,) = client.search_runs([exp.experiment_id], "tags.`t2s.kind` = 'sweep'")
    assert sweep.info.status == "FAILED"  # one of its cells could not run
    failed = next(r for r in runs if r.info.status == "FAILED")
    assert "127.0.0.1:9" in failed.data.tags["t2s.error"]


@pytest.mark.slow
def test_a_killed_sweep_resumes_without_counting_anything_twice(project: dict[str, Any]) -> None:
    fake = project["fake"]

    def slow(body: dict[str, Any]) -> Reply:
        reply = answer(body)
        reply.delay = 0.4
        return reply

    fake.responder = slow
    env = {**os.environ, **project["env"], "MLFLOW_TRACKING_URI": get_settings().mlflow_tracking_uri,
           "T2S_CACHE_DIR": str(get_settings().cache_dir)}
    cmd = [sys.executable, "-m", "cli.main", "eval", "-d", str(project["dataset"]), "-P", "demo@2",
           "-m", "compatible:fake-model", "--sweep-id", "k", "--out-dir", str(project["root"] / "r"),
           "--workers", "1"]  # one question in flight, so exactly one may be asked again
    proc = subprocess.Popen(cmd, env=env, cwd=project["root"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while len(fake.requests) < 3 and time.time() < deadline:
        time.sleep(0.05)
    proc.terminate()  # SIGTERM, as `kill` or a CI timeout sends: the question in flight ends, no new one starts
    assert proc.wait(timeout=30) != 0
    done_before = len(fake.requests)
    assert 3 <= done_before < len(QUESTIONS)
    client = mlflow_client()
    exp = client.get_experiment_by_name("t2s/mini")
    (sweep,) = client.search_runs([exp.experiment_id], "tags.`t2s.kind` = 'sweep'")
    assert sweep.info.status == "KILLED"
    resumed = subprocess.run(cmd, env=env, cwd=project["root"], capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    asked = [r["json"]["messages"][-1]["content"].rsplit("Question: ", 1)[-1] for r in fake.requests]
    # Each question reached the model at most once more than the killed run had finished (the one in flight).
    assert len(fake.requests) <= len(QUESTIONS) + 1 and set(asked) == set(GOLD_BY_QUESTION)
    items = list(per_item(project["root"] / "r", "demo@2").values())
    assert len(items) == len(QUESTIONS) and all(i["match"] for i in items)
    assert sum(i["cached"] for i in items) >= done_before - 1
    assert client.get_run(sweep.info.run_id).info.status == "FINISHED"  # resumed and done


@pytest.mark.parametrize(("gate", "field"), [({"alpha": 2}, "gate.alpha"), ({"min_gain": -1}, "gate.min_gain"),
                                              ({"alpah": 0.1}, "gate.alpah"),
                                              ({"dataset_tolerance": 2}, "gate.dataset_tolerance"),
                                              ({"heldout": "freight"}, "gate.heldout"),
                                              ({"budget": {"p95_latency_s": 0}}, "gate.budget.p95_latency_s"),
                                              ({"budget": {"p59": 3}}, "gate.budget.p59")])
def test_a_malformed_gate_config_is_named(project: dict[str, Any], gate: dict[str, Any], field: str) -> None:
    params = project["root"] / "params.yaml"
    params.write_text(yaml.safe_dump({"gate": gate}))
    result = run("compare", "--dir", str(project["root"]), "--params", str(params))
    assert result.exit_code == 2 and field in result.output, result.output


def test_a_sweep_with_a_held_out_set_decides_on_every_item_of_both(project: dict[str, Any], shop_db: Path) -> None:
    root = project["root"]
    held = root / "datasets" / "held"
    held.mkdir(parents=True)
    shutil.copy(shop_db, held / "shop.sqlite")
    write_dataset(held, DatasetManifest(name="held", databases={"shop": "shop.sqlite"}),
                  [GoldExample(id=f"h{i}", question=q, gold_sql=s, db_id="shop", difficulty=d, category="join")
                   for i, q, s, d in QUESTIONS])
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump({
        "eval": {"datasets": [str(project["dataset"]), str(held)], "prompts": {"v1": "demo@1", "v2": "demo@2"},
                 "models": ["compatible:fake-model"], "limit": {"held": 4}, "limit_mode": "spread",
                 "out_dir": str(root / "reports")},
        "gate": {"heldout": ["held"]}}))
    done = run("eval", "--params", str(params), "--sweep-id", "both")
    assert done.exit_code == 0, done.output
    counts = {f.parent.parent.parent.name: len(f.read_text().splitlines())
              for f in (root / "reports").rglob("per_item.jsonl")}
    assert counts == {"mini": 8, "held": 4}  # the held-out set is limited to 4 spread questions

    # Without the held-out set the gate refuses even a first promotion, and says what is missing.
    bank_only = run("promote", "--best", "--dir", str(root / "reports" / "mini"), "--params", str(params))
    assert bank_only.exit_code == 2 and "none of the held-out datasets (held)" in bank_only.output, bank_only.output

    compared = run("compare", "--dir", str(root / "reports" / "mini"), "--dir", str(root / "reports" / "held"),
                   "--params", str(params), "--out", str(root / "cmp"),
                   "--metrics-out", str(root / "cmp.json"))
    assert compared.exit_code == 0, compared.output
    for dataset, n in (("mini", 8), ("held", 4)):
        rows = json.loads((root / "cmp" / dataset / "leaderboard.json").read_text())
        assert [r["n"] for r in rows] == [n, n] and rows[0]["dataset"] == dataset
    pooled = json.loads((root / "cmp" / "leaderboard.json").read_text())
    assert [(r["variant"], r["n"], r["dataset"]) for r in pooled] == [
        ("demo@2/compatible:fake-model", 12, "held+mini"), ("demo@1/compatible:fake-model", 12, "held+mini")]
    assert pooled[0]["by_dataset"] == {"held": 1.0, "mini": 1.0}
    assert "held+mini" in (root / "cmp" / "report.html").read_text()
    summary = json.loads((root / "cmp.json").read_text())
    assert summary["best_execution_accuracy"] == 1.0 and set(summary["datasets"]) == {"held", "mini"}

    promoted = run("promote", "--best", "--dir", str(root / "reports"), "--params", str(params))
    assert promoted.exit_code == 0 and "first_promotion" in promoted.output, promoted.output
    assert "includes held" in promoted.output
    client = mlflow_client()
    champion = client.get_model_version_by_alias("t2s-generator", "champion")
    assert champion.tags["t2s.dataset"] == "held+mini" and champion.tags["t2s.prompt"] == "demo@2"
    # The registered version stands for the run on the dataset it serves (not the held-out one).
    served = client.get_run(champion.tags["t2s.variant_run_id"])
    assert served.data.tags["t2s.dataset"] == "mini"
    # Naming a variant's run on the held-out set decides on both sets too, and the gate refuses the worse one.
    exp = client.get_experiment_by_name("t2s/held")
    v1_held = next(r for r in client.search_runs([exp.experiment_id], "tags.`t2s.kind` = 'variant'")
                   if r.data.tags["t2s.variant"].startswith("demo@1"))
    refused = run("promote", v1_held.info.run_id, "--params", str(params))
    assert refused.exit_code == 2 and "on 12 paired items" in refused.output, refused.output
    assert client.get_model_version_by_alias("t2s-generator", "champion").version == champion.version


def test_workers_answer_a_fixed_split_in_a_fixed_order() -> None:
    """Each local server sees the same questions in the same order on every run (its answers depend a
    little on what its cache held before), and the budget knows which answers found a cold server."""
    from types import SimpleNamespace

    from pipelines.evaluate import cold_starts, lanes

    items = [SimpleNamespace(id=f"{db}{i}", db_id=db) for i, db in enumerate("bababcab")]
    split = lanes(items, 2)
    assert sorted(x.id for lane in split for x in lane) == sorted(x.id for x in items)
    assert [[x.db_id for x in lane] for lane in split] == [["a", "a", "b", "b"], ["a", "b", "b", "c"]]
    assert [x.id for x in split[0]] == [x.id for x in lanes(items, 2)[0]]  # deterministic
    assert lanes(items[:1], 4) == [[items[0]]]  # no empty lanes
    # Warmed: each worker's first database was read before any answer; the next ones are cold.
    assert cold_starts(items, 2, warmed=True) == {split[0][2].id, split[1][1].id, split[1][3].id}
    # Not warmed (a hosted model): each worker's first answer on each database.
    assert cold_starts(items, 2, warmed=False) == {split[0][0].id, split[0][2].id, split[1][0].id, split[1][1].id,
                                                   split[1][3].id}
    assert cold_starts([x for x in items if x.db_id == "a"], 2, warmed=True) == set()
