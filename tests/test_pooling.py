"""A decision over several datasets: pooled runs, the per-dataset gate check and the held-out requirement."""

from __future__ import annotations

import json

import pytest

from evals.gate import GatePolicy, decide
from evals.pooling import datasets_of, pool_datasets
from evals.records import EvalItem, VariantRun
from pipelines.comparison_report import leaderboard, write_leaderboard_markdown
from pipelines.eval_config import build_config
from t2s.errors import ConfigError

POLICY = GatePolicy(n_resamples=2000)


def item(qid: str, ok: bool, difficulty: str = "easy", latency: float = 1.0) -> EvalItem:
    return EvalItem(id=qid, question=f"question {qid}", db_id="db", difficulty=difficulty, category="filter",
                    gold_sql="SELECT 1", pred_sql="SELECT 1" if ok else "SELECT 2", match=ok,
                    error_class=None if ok else "wrong_result", valid_sql=True, latency_s=latency,
                    prompt_tokens=100, completion_tokens=10)


def run(variant: str, dataset: str, outcomes: list[bool], run_id: str | None = None,
        cost: float = 0.0) -> VariantRun:
    items = [item(f"q{i}", ok, ("easy", "hard")[i % 2]) for i, ok in enumerate(outcomes)]
    return VariantRun(variant=variant, prompt=f"{variant}@1", prompt_name=variant, prompt_version=1, model="m",
                      provider="fake", dataset=dataset, dataset_version=f"{dataset}-v1", rules="t2s",
                      run_id=run_id or f"{variant}-{dataset}", dataset_path=f"datasets/{dataset}",
                      metrics={"execution_accuracy": sum(outcomes) / len(outcomes), "estimated_cost_usd": cost},
                      items=items)


def test_pooled_runs_hold_every_item_of_every_dataset() -> None:
    runs = [run("a", "bank", [True] * 6 + [False] * 4, cost=0.5), run("a", "freight", [True, False, False, False],
                                                                    cost=0.25),
            run("b", "bank", [True] * 10), run("b", "freight", [False] * 4),
            run("only-bank", "bank", [True] * 10)]
    pooled = {p.variant: p for p in pool_datasets(runs, primary="bank")}
    assert set(pooled) == {"a", "b"}  # a variant missing from a dataset cannot be compared on the same items
    a = pooled["a"]
    assert len(a.items) == 14 and a.dataset == "bank+freight" and a.dataset_version == "bank-v1+freight-v1"
    assert {i.id for i in a.items} >= {"bank/q0", "freight/q0"} and datasets_of(a) == ["bank", "freight"]
    assert a.metrics["execution_accuracy"] == pytest.approx(7 / 14)
    assert a.metrics["execution_accuracy/dataset/bank"] == pytest.approx(0.6)
    assert a.metrics["execution_accuracy/dataset/freight"] == pytest.approx(0.25)
    assert a.metrics["estimated_cost_usd"] == pytest.approx(0.75)
    assert a.metrics["prompt_tokens_total"] == 1400 and a.metrics["latency_p50_s"] == 1.0
    # The pooled run stands for its run on the primary dataset: that is what a promotion registers and serves.
    assert (a.run_id, a.dataset_path) == ("a-bank", "datasets/bank")
    assert pool_datasets(runs, primary="freight")[0].run_id == "a-freight"
    with pytest.raises(ValueError, match="not in the sweep"):
        pool_datasets(runs, primary="spider")
    with pytest.raises(ValueError, match="two runs on dataset"):
        pool_datasets([*runs, run("a", "bank", [True])])
    one = [run("a", "bank", [True]), run("b", "bank", [False])]
    assert pool_datasets(one) == one


def test_the_gate_refuses_a_version_that_wins_overall_but_loses_the_held_out_set() -> None:
    # The challenger gains 12 bank items and loses 3 of 8 held-out items: significant overall, but the
    # held-out set, the one the versions were not written against, regresses by 37.5 points.
    champion = pool_datasets([run("champ", "bank", [False] * 12 + [True] * 8),
                              run("champ", "freight", [True] * 8)])[0]
    challenger = pool_datasets([run("chall", "bank", [True] * 20),
                                run("chall", "freight", [False] * 3 + [True] * 5)])[0]
    d = decide(challenger, champion, POLICY)
    assert d.checks["significant"] and not d.checks["no_dataset_regression"] and not d.passed
    assert any("Dataset 'freight' regresses by 37.5 pts" in r for r in d.reasons)
    assert d.by_dataset is not None and set(d.by_dataset.buckets) == {"bank", "freight"}
    assert json.loads(json.dumps(d.to_dict()))["by_dataset"]["buckets"]["freight"]["c"] == 3
    # Within the tolerance it passes, and the reason names the weakest dataset.
    lenient = decide(challenger, champion, GatePolicy(n_resamples=2000, dataset_tolerance=0.4))
    assert lenient.passed and any("No dataset regresses" in r and "'freight'" in r for r in lenient.reasons)


def test_a_decision_must_cover_a_held_out_dataset_when_the_policy_names_one() -> None:
    policy = GatePolicy(n_resamples=2000, heldout=("freight",))
    bank_only = run("chall", "bank", [True] * 20)
    first = decide(bank_only, None, policy)
    assert not first.passed and first.first_promotion and first.checks == {"heldout": False}
    assert any("none of the held-out datasets (freight)" in r for r in first.reasons)
    pooled = pool_datasets([bank_only, run("chall", "freight", [True] * 4)])[0]
    assert decide(pooled, None, policy).passed
    champ = pool_datasets([run("champ", "bank", [False] * 20), run("champ", "freight", [True] * 4)])[0]
    d = decide(pooled, champ, policy)
    assert d.passed and d.checks["heldout"] and any("includes freight" in r for r in d.reasons)
    # Without held-out datasets in the policy nothing changes for a one-dataset decision.
    assert decide(bank_only, None, POLICY).checks == {}


def test_the_pooled_leaderboard_shows_each_dataset(tmp_path) -> None:  # type: ignore[no-untyped-def]
    runs = pool_datasets([run("a", "bank", [True, True, False, False]), run("a", "freight", [True, False]),
                          run("b", "bank", [True, False, False, False]), run("b", "freight", [True, True])])
    rows = leaderboard(runs, None, POLICY)
    # 3 of 6 each: the tie is broken by name
    assert [(r["variant"], r["execution_accuracy"]) for r in rows] == [("a", 0.5), ("b", 0.5)]
    assert rows[0]["by_dataset"] == {"bank": 0.5, "freight": 0.5}
    text = write_leaderboard_markdown(rows, tmp_path / "lb.md").read_text()
    header = text.splitlines()[0]
    assert "| bank | freight |" in header and "100.0%" in text  # b's freight accuracy


def test_limits_per_dataset() -> None:
    config = build_config(None, {"prompts": ["p@1"], "limit": {"bank": 20, "freight": 12}})
    assert (config.limit_for("bank"), config.limit_for("freight"), config.limit_for("spider")) == (20, 12, None)
    assert build_config(None, {"prompts": ["p@1"], "limit": 5}).limit_for("any") == 5
    for bad in ({"bank": 0}, -3):
        with pytest.raises(ConfigError, match="positive number of questions"):
            build_config(None, {"prompts": ["p@1"], "limit": bad})


def test_the_served_dataset_of_a_pooled_decision() -> None:
    from cli.compare_cli import decision_runs

    runs = [run("a", "bank", [True]), run("a", "freight", [False]), run("a", "shop", [True])]
    with pytest.raises(ConfigError, match="--serve-dataset"):  # two sets are not held out: which one serves?
        decision_runs(runs, ["freight"])
    assert decision_runs(runs, ["freight", "shop"])[0].run_id == "a-bank"
    assert decision_runs(runs, ["freight"], "shop")[0].run_id == "a-shop"
    with pytest.raises(ConfigError, match="'spider' is not in the sweep"):
        decision_runs(runs, [], "spider")
    with pytest.raises(ConfigError, match="no variant was evaluated on every dataset"):
        decision_runs([run("a", "bank", [True]), run("b", "freight", [True])], ["freight"])


def test_the_pooled_report_shows_the_gate_dataset_by_dataset(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from pipelines.comparison_report import write_html_report

    champion = pool_datasets([run("champ", "bank", [False] * 12 + [True] * 8), run("champ", "freight", [True] * 8)])
    challenger = pool_datasets([run("chall", "bank", [True] * 20), run("chall", "freight", [False] * 3 + [True] * 5)])
    html = write_html_report(tmp_path / "r.html", [*challenger, *champion], champion[0], POLICY).read_text()
    assert "<th>dataset</th>" in html and "<td>freight</td>" in html and "<td>bank</td>" in html
    assert "Dataset &#x27;freight&#x27; regresses by 37.5 pts" in html and "held-out" not in html
    assert "dataset tolerance 5.0 pts" in html
