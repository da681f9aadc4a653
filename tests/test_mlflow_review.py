"""What a reviewer finds in MLflow after `t2s eval`: one trace per question with its verdicts, runs that
compare question by question, the golden set as an evaluation dataset — read back from the store, and
checked in the MLflow UI itself (`mlflow server` on the test's store, headless Chromium).

The model is the loopback server of tests/fakes.py, scripted so the two prompt versions disagree on some
questions: v1 answers q1–q4 right and the rest wrong, v2 answers everything right except q1. So v2 fixes
q5–q8 and breaks q1.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from evals.records import EvalItem
from t2s.settings import get_settings
from tests.browser import Browser, chromium_path
from tests.fakes import Reply
from tests.mlflow_ui import serve, stop
from tests.test_eval_pipeline import GOLD_BY_QUESTION, QUESTIONS, evaluate, mlflow_client, project, run  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "reports" / "test-artifacts" / "mlflow-ui"
V1_RIGHT = {"q1", "q2", "q3", "q4"}
V2_WRONG = {"q1"}
ID_BY_QUESTION = {q: i for i, q, _, _ in QUESTIONS}
TEXT_BY_ID = {i: q for i, q, _, _ in QUESTIONS}


def disagreeing(body: dict[str, Any]) -> Reply:
    system, user = body["messages"][0]["content"], body["messages"][-1]["content"]
    question = user.rsplit("Question: ", 1)[-1].strip()
    qid = ID_BY_QUESTION[question]
    right = qid in V1_RIGHT if "ALWAYS-WRONG" in system else qid not in V2_WRONG
    return Reply(content=GOLD_BY_QUESTION[question] if right else "SELECT 42")


def variant_runs(client: Any) -> tuple[str, dict[str, Any]]:
    exp = client.get_experiment_by_name("t2s/mini")
    runs = client.search_runs([exp.experiment_id], "tags.`t2s.kind` = 'variant'")
    return exp.experiment_id, {r.data.tags["t2s.variant"].split("/")[0]: r for r in runs}


def traces_of(exp_id: str, run_id: str) -> dict[str, Any]:
    import mlflow

    traces = mlflow.search_traces(locations=[exp_id], run_id=run_id, return_type="list", max_results=1000)
    return {json.loads(t.info.request_preview)["question_id"]: t for t in traces}


def test_each_question_is_a_trace_with_its_verdicts_and_the_golden_set_is_linked(project: dict[str, Any]) -> None:  # noqa: F811
    project["fake"].responder = disagreeing
    result = evaluate(project, "s1")
    assert result.exit_code == 0
    client = mlflow_client()
    exp_id, runs = variant_runs(client)
    assert f"http://127.0.0.1:5000/#/experiments/{exp_id}/evaluation-runs" in result.output
    assert client.get_experiment(exp_id).tags["mlflow.experimentKind"] == "genai_development"
    assert runs["demo@1"].info.run_name == "demo v1 · fake-model"  # short: the list gives it ~20 px
    parent = client.get_run(runs["demo@1"].data.tags["mlflow.parentRunId"])
    assert parent.info.status == "FINISHED" and parent.data.tags["t2s.kind"] == "sweep"
    assert runs["demo@1"].data.metrics["execution_accuracy"] == 0.5 and runs["demo@2"].data.metrics[
        "execution_accuracy"] == 0.875  # 7/8 logged as is: it needs no rounding

    per_run = {name: traces_of(exp_id, run.info.run_id) for name, run in runs.items()}
    for name, traces in per_run.items():
        assert set(traces) == set(TEXT_BY_ID), name
        for qid, trace in traces.items():
            values = {a.name: a.value for a in trace.info.assessments}
            rationale = {a.name: a.rationale for a in trace.info.assessments}
            right = qid in V1_RIGHT if name == "demo@1" else qid not in V2_WRONG
            assert values["execution_match"] is right, (name, qid)
            # booleans only: the compare view's arrows then mean better/worse; the error class is a tag
            assert "error_class" not in values and trace.info.tags["error_class"] == ("none" if right else "wrong_result")
            assert rationale["execution_match"].startswith("result sets equal" if right else "wrong_result")
            assert values["valid_sql"] is True and values["gold_sql"] == GOLD_BY_QUESTION[TEXT_BY_ID[qid]]
            assert "exact_match" not in values  # not computed in this sweep
            assert trace.info.tags["verdict"] == ("pass" if right else "fail")
            assert trace.info.trace_metadata["mlflow.sourceRun"] == runs[name].info.run_id
            assert trace.data.spans[0].outputs["predicted_sql"].startswith("SELECT")
            assert trace.data.spans[0].inputs["question"] == TEXT_BY_ID[qid]
            assert trace.info.trace_metadata["t2s.gold_result"]
    # The comparison view joins rows on the request: identical for both variants.
    for qid in TEXT_BY_ID:
        assert per_run["demo@1"][qid].info.request_preview == per_run["demo@2"][qid].info.request_preview

    from mlflow.genai.datasets import search_datasets

    golden = search_datasets(experiment_ids=[exp_id], filter_string="name LIKE 'mini@%'")
    assert len(golden) == 1 and len(golden[0].to_df()) == len(QUESTIONS)
    assert golden[0].tags["t2s.dataset_version"].startswith(golden[0].name.split("@")[1])
    for variant_run in runs.values():
        names = {d.dataset.name for d in client.get_run(variant_run.info.run_id).inputs.dataset_inputs}
        assert names == {"mini", golden[0].name}

    # Another run on the same dataset version reuses the golden set.
    from pipelines.mlflow_runs import download_variant
    from pipelines.mlflow_traces import register_golden_set

    again = register_golden_set(download_variant(runs["demo@2"].info.run_id), experiment_id=exp_id)
    assert again.dataset_id == golden[0].dataset_id
    assert len(search_datasets(experiment_ids=[exp_id], filter_string="name LIKE 'mini@%'")) == 1


def test_exact_match_is_an_assessment_only_when_computed() -> None:
    from pipelines.mlflow_traces import build_trace

    item = EvalItem(id="q9", question="Q?", db_id="shop", difficulty="easy", category="filter", gold_sql="SELECT 1",
                    pred_sql=None, match=False, error_class="no_sql", exact_match=False, valid_sql=False,
                    latency_s=1.25)
    info, span = build_trace(item, run_id="r" * 32, experiment_id="1", start_ms=1_000, variant="demo@1/m")
    values = {a.name: a.value for a in info.assessments}
    assert values["exact_match"] is False and values["execution_match"] is False and "error_class" not in values
    assert info.tags["error_class"] == "no_sql" and info.tags["verdict"] == "fail"
    assert next(a for a in info.assessments if a.name == "execution_match").rationale == "no_sql"
    assert info.execution_duration == 1250 and info.state.value == "ERROR"
    assert span.end_time_ns - span.start_time_ns == 1_250_000_000 and span.outputs == {"predicted_sql": ""}
    again, _ = build_trace(item, run_id="r" * 32, experiment_id="1", start_ms=5_000, variant="demo@1/m")
    assert again.trace_id == info.trace_id  # logging the same run again does not duplicate questions


def _question_block(text: str, qid: str) -> str:
    """The part of the page's text for one question row: from its question to the next one."""
    start = text.index(TEXT_BY_ID[qid])
    ends = [text.find(q, start + 1) for q in TEXT_BY_ID.values() if q != TEXT_BY_ID[qid]]
    return text[start:min([e for e in ends if e > start] or [len(text)])]


CHECKED_ROWS = ("Array.from(document.querySelectorAll('input[type=checkbox]')).filter(c => c.checked).map(c => {"
                " let e = c; for (let i = 0; i < 10 && e; i++) { e = e.parentElement;"
                " if (e && e.getAttribute('role') === 'row') break; } return e ? e.textContent : ''; })")


@pytest.mark.slow
def test_a_reviewer_sees_questions_verdicts_and_flips_in_the_mlflow_ui(project: dict[str, Any]) -> None:  # noqa: F811
    if chromium_path() is None:
        if os.environ.get("T2S_REQUIRE_BROWSER"):
            pytest.fail("chromium is not installed (infra/local/install_system_deps.sh installs it)")
        pytest.skip("chromium is not installed (infra/local/install_system_deps.sh installs it)")
    project["fake"].responder = disagreeing
    assert evaluate(project, "s1").exit_code == 0
    client = mlflow_client()
    exp_id, runs = variant_runs(client)
    v1, v2 = runs["demo@1"].info.run_id, runs["demo@2"].info.run_id
    promoted = run("promote", v2)  # the champion's evaluation run must stay an evaluation run
    assert promoted.exit_code == 0, promoted.output
    (promotion,) = client.search_runs([client.get_experiment_by_name("t2s/promotions").experiment_id])
    server, url = serve(project["root"], get_settings().mlflow_tracking_uri)
    try:
        with Browser(1600, 1000) as browser:
            page = browser.page()
            # The experiment opens on MLflow's overview; its description links the evaluation runs.
            page.goto(f"{url}/#/experiments/{exp_id}")
            page.wait_for_text("Reviewers: open Evaluation runs")
            page.screenshot(ARTIFACTS / "00-experiment-opens.png")
            link = page.evaluate("Array.from(document.querySelectorAll('a[target=_blank]'))"
                                 ".map(a => a.getAttribute('href')).find(h => h && h.endsWith('/evaluation-runs'))")
            assert link == f"#/experiments/{exp_id}/evaluation-runs"  # the markdown link opens a new tab

            # The link `t2s promote` prints selects the champion's run, still listed among the evaluation runs.
            page.goto(f"{url}/#/experiments/{exp_id}/evaluation-runs?selectedRunUuid={v2}")
            listing = page.wait_for_text("demo v1 · fake-model", "demo v2 · fake-model",
                                         "execution_accuracy", "sweep s1")
            checked = page.evaluate(CHECKED_ROWS)
            assert len(checked) == 1 and "demo v2 · fake-model" in checked[0], (checked, listing[-2000:])
            page.click('[data-component-id="mlflow.assistant.chat_panel.close"]')
            page.screenshot(ARTIFACTS / "01-evaluation-runs.png")

            # Every question of a run with its verdicts: booleans, no string assessment (its arrows would
            # compare error classes alphabetically).
            page.goto(f"{url}/#/experiments/{exp_id}/runs/{v2}/traces")
            rows = page.wait_for_text(*TEXT_BY_ID.values(), "execution_match", "valid_sql", "8 of 8")
            assert "True" in _question_block(rows, "q5") and "False" in _question_block(rows, "q1")
            assert "False" not in _question_block(rows, "q5") and "STRING" not in rows
            page.screenshot(ARTIFACTS / "02-run-questions.png")

            # Question by question against v1, from the run page (the "compare to" picker).
            page.goto(f"{url}/#/experiments/{exp_id}/runs/{v2}/traces?compareToRunUuid={v1}")
            compared = page.wait_for_text("compare to", *TEXT_BY_ID.values(), "execution_match")
            flipped, same = _question_block(compared, "q5"), _question_block(compared, "q2")
            assert "True" in flipped and "False" in flipped
            assert "False" not in same
            assert "True" in _question_block(compared, "q1") and "False" in _question_block(compared, "q1")
            page.screenshot(ARTIFACTS / "03-run-compare.png")

            # The run's overview links the prompt version it used.
            page.goto(f"{url}/#/experiments/{exp_id}/runs/{v2}")
            page.wait_for_text("Registered prompts", "demo (v2)", "execution_accuracy")

            # The promotion: a readable run of t2s/promotions with the registered model and the way back.
            page.goto(f"{url}/#/experiments/{promotion.info.experiment_id}/runs/{promotion.info.run_id}")
            page.wait_for_text("demo v2 · fake-model · mini → champion (t2s-generator v1)", "first promotion",
                               "The evaluation run", "t2s-generator", "execution_accuracy")
            page.screenshot(ARTIFACTS / "04-promotion-run.png")
    finally:
        stop(server)
