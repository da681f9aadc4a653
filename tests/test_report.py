"""Leaderboard, markdown/JSON files, the difficulty chart and the static HTML report."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from evals.gate import GatePolicy
from evals.records import EvalItem, VariantRun
from pipelines.comparison_report import (
    difficulty_chart,
    leaderboard,
    leaderboard_table,
    write_html_report,
    write_leaderboard_json,
    write_leaderboard_markdown,
)

POLICY = GatePolicy(n_resamples=500)
DIFFS = ("easy", "medium", "hard", "extra")
EVIL_Q = "Show <script>alert('x')</script> & \"quoted\" names"
EVIL_SQL = "SELECT name FROM t WHERE a < 3 AND b > 'x' & 1"


def make_run(prompt: str, model: str, correct: set[int], *, n: int = 40, valid: set[int] | None = None,
             prompt_text: str = "", metrics: dict[str, float] | None = None, latency: float | None = 0.5,
             slow: float | None = None, calls: int = 1) -> VariantRun:
    """``n`` items; each answer takes ``latency`` seconds but the last 3 take ``slow`` (the p95 of 40)."""
    items = []
    for i in range(n):
        ok = i in correct
        items.append(EvalItem(
            id=f"q{i:03d}", question=EVIL_Q if i == 0 else f"question {i}", db_id="shop",
            difficulty=DIFFS[i % 4], category="filter", gold_sql=EVIL_SQL if i == 0 else f"SELECT {i}",
            pred_sql=f"SELECT {i} /* {prompt} */" if ok else f"SELECT {i} + 1 -- {prompt} <b>",
            match=ok, error_class=None if ok else "wrong_result", exact_match=ok and i % 2 == 0,
            valid_sql=ok or (valid is not None and i in valid), detail="" if ok else "rows differ",
            gold_preview=f"gold rows <{i}>", pred_preview=f"pred rows for {prompt} <{i}>",
            answer_latency_s=slow if slow is not None and i >= n - 3 else latency, cached=latency is None,
            model_calls=calls, prompt_tokens=400 * calls, completion_tokens=30 * calls))
    name, _, version = prompt.partition("@")
    return VariantRun(variant=f"{prompt}/{model}", prompt=prompt, prompt_name=name, prompt_version=int(version),
                      model=model, provider="fake", dataset="shop", dataset_version="v7", rules="t2s",
                      prompt_text=prompt_text, metrics=metrics or {}, items=items)


@pytest.fixture
def runs() -> dict[str, VariantRun]:
    base = set(range(0, 40, 2))  # 20 / 40
    return {
        "champion": make_run("base@1", "m", base, prompt_text="You write SQL.\nUse the schema.\nReturn SQL only.\n",
                             slow=1.25),
        # +16 items, no losses: significant
        "strong": make_run("fewshot@2", "m", base | set(range(1, 33, 2)), latency=None, calls=3,
                           prompt_text="You write SQL.\nUse the schema & <examples>.\nReturn SQL only.\n"),
        # same accuracy as "tie-b" but a better valid-SQL rate
        "tie-a": make_run("cot@1", "m", base | {1, 3}, valid=set(range(40))),
        "tie-b": make_run("cot@1", "n", base | {5, 7}),
        "weak": make_run("terse@1", "m", set(range(0, 20, 2)), slow=9.0),
    }


def test_leaderboard_ordering_and_champion_columns(runs: dict[str, VariantRun]) -> None:
    variants = [runs["weak"], runs["tie-b"], runs["strong"], runs["tie-a"]]
    rows = leaderboard(variants, runs["champion"], POLICY)
    assert [r["variant"] for r in rows] == ["fewshot@2/m", "cot@1/m", "cot@1/n", "base@1/m", "terse@1/m"]
    assert [r["rank"] for r in rows] == [1, 2, 3, 4, 5]
    top, champ = rows[0], rows[3]
    assert top["execution_accuracy"] == pytest.approx(36 / 40)
    assert list(top["by_difficulty"]) == list(DIFFS)
    assert top["gate"] == "pass" and top["diff"] == pytest.approx(0.4) and top["p_value"] < 0.001
    assert top["ci_low"] <= top["diff"] <= top["ci_high"]
    assert champ["is_champion"] and champ["gate"] is None and champ["latency_p95_s"] == 1.25
    assert rows[1]["gate"] == "fail" and rows[1]["gate_reasons"]
    assert rows[4]["gate"] == "fail" and rows[4]["diff"] < 0
    # p50/p95 per answer from the items (as the serving budget measures them); not measured → None
    assert champ["latency_p50_s"] == 0.5 and top["latency_p50_s"] is None and top["latency_p95_s"] is None
    assert top["model_calls_per_question"] == 3 and top["tokens_per_answer"] == 1290
    assert top["budget"] is None and top["cost_per_1k_answers_usd"] is None  # no budget; a hosted model unpriced


def test_leaderboard_without_champion(runs: dict[str, VariantRun]) -> None:
    rows = leaderboard([runs["weak"], runs["strong"]], None)
    assert [r["variant"] for r in rows] == ["fewshot@2/m", "terse@1/m"]
    assert all(r["gate"] is None and r["diff"] is None and not r["is_champion"] for r in rows)


def test_leaderboard_keeps_rows_it_cannot_compare(runs: dict[str, VariantRun]) -> None:
    other = make_run("base@1", "x", set(range(10)), n=30)
    rows = leaderboard([other, runs["strong"]], runs["champion"], POLICY)
    row = next(r for r in rows if r["variant"] == "base@1/x")
    assert row["gate"] is None and "same items" in row["comparison_error"]


def test_markdown_json_and_terminal_table(runs: dict[str, VariantRun], tmp_path: Path) -> None:
    rows = leaderboard(list(runs.values()), runs["champion"], POLICY)
    md = write_leaderboard_markdown(rows, tmp_path / "out" / "leaderboard.md").read_text()
    lines = md.splitlines()
    assert lines[0].startswith("| # | variant | model | exec acc | easy | medium | hard | extra | exact match | "
                               "valid SQL | p50 | p95 | calls/q | tokens/q | Δ vs champion |")
    assert "| 1 | fewshot@2/m | m | 90.0% |" in lines[2] and "| 3.00 | 1,290 |" in lines[2]
    assert "base@1/m ★" in md and "| pass |" in md and "champion: base@1/m" in md
    data = json.loads((write_leaderboard_json(rows, tmp_path / "leaderboard.json")).read_text())
    assert data == json.loads(json.dumps(rows)) and data[0]["variant"] == "fewshot@2/m"
    console = Console(record=True, width=250)
    console.print(leaderboard_table(rows))
    text = console.export_text()
    assert "fewshot v2 · m" in text and "pass" in text and "90.0%" in text and "champ" in text
    assert "prompt base, cot, fewshot, terse · model m, n; ★ champion" in text


def test_the_terminal_table_fits_100_columns(runs: dict[str, VariantRun]) -> None:
    """Long model and prompt names, two datasets and a budget: still one line per variant in 100 columns."""
    from evals.budget import Budget
    from evals.pooling import pool_datasets

    model = "qwen2.5-coder-0.5b-instruct-q4_k_m-gguf"
    variants = []
    for version, correct, slow in ((6, set(range(30)), 40.0), (3, set(range(0, 40, 2)), 7.5), (8, set(range(12)), None)):
        for dataset in ("bank", "freight"):
            run = make_run(f"sql-analyst-with-a-long-name@{version}", model, correct, slow=slow)
            variants.append(run.model_copy(update={"dataset": dataset}))
    pooled = pool_datasets(variants, primary="bank")
    policy = GatePolicy(n_resamples=200, budget=Budget(p95_latency_s=3.0))
    rows = leaderboard(pooled[1:], pooled[0], policy)
    console = Console(record=True, width=100)
    console.print(leaderboard_table(rows, title="Leaderboard: every item of bank+freight"))
    lines = console.export_text().splitlines()
    assert max(len(line.rstrip()) for line in lines) <= 100
    body = [line for line in lines if line.lstrip()[:1].isdigit()]
    assert len(body) == 3  # one line per variant: nothing wrapped
    assert [line.split()[1] for line in body] == ["v6", "v3", "v8"] and model not in "".join(body)
    assert "bank" in lines[1] and "freight" in lines[1] and "budget" in lines[1]
    by_version = {line.split()[1]: line for line in body}
    assert "over" in by_version["v6"] and "over" in by_version["v3"] and "within" in by_version["v8"]
    assert {r["budget"] for r in rows} == {"over", "within"}
    assert next(r for r in rows if r["variant"].startswith("sql-analyst-with-a-long-name@6"))["gate"] == "fail"


def test_difficulty_chart_is_a_deterministic_png(runs: dict[str, VariantRun], tmp_path: Path) -> None:
    variants = [runs["strong"], runs["champion"]]
    one = difficulty_chart(variants, tmp_path / "a.png").read_bytes()
    two = difficulty_chart(variants, tmp_path / "b.png").read_bytes()
    assert one.startswith(b"\x89PNG") and one == two


def test_html_report(runs: dict[str, VariantRun], tmp_path: Path) -> None:
    path = write_html_report(tmp_path / "report.html", [runs["strong"], runs["weak"], runs["tie-a"]],
                             runs["champion"], POLICY)
    html = path.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and "shop @ v7" in html
    # leaderboard and gate
    assert "id=\"leaderboard\"" in html and "fewshot@2/m" in html and "terse@1/m" in html
    assert "PASS" in html and "significantly better" in html and "McNemar p = " in html
    # chart inline, nothing external
    assert "src=\"data:image/png;base64," in html
    assert "<link" not in html and "src=\"http" not in html
    # escaping of user-derived text
    assert "<script>" not in html
    assert "Show &lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &quot;quoted&quot; names" in html
    assert "a &lt; 3 AND b &gt; &#x27;x&#x27; &amp; 1" in html
    assert "<b>" not in html and "&lt;b&gt;" in html
    # per-question diff: 16 changed items first, then all 40 in <details>
    section = html.split("id=\"per-question\"")[1].split("id=\"prompt-diff\"")[0]
    changed, everything = section.split("<details>")
    assert "16 of 40 items have different verdicts" in changed
    assert changed.count("class=\"item\"") == 16 and "item-q001" in changed and "item-q000" not in changed
    assert everything.count("class=\"item\"") == 40
    assert "pred rows for fewshot@2 &lt;1&gt;" in changed and "pred rows for base@1 &lt;1&gt;" in changed
    assert "gold rows &lt;1&gt;" in changed and "wrong_result" in changed
    # prompt diff, coloured and escaped
    diff = html.split("id=\"prompt-diff\"")[1]
    assert "<span class=\"del\">-Use the schema.</span>" in diff
    assert "<span class=\"add\">+Use the schema &amp; &lt;examples&gt;.</span>" in diff
    assert "<span class=\"ctx\"> You write SQL.</span>" in diff


def test_html_report_prompt_text_override_and_failed_gate(runs: dict[str, VariantRun], tmp_path: Path) -> None:
    html = write_html_report(tmp_path / "r.html", [runs["weak"]], runs["champion"], POLICY,
                             prompt_texts={"terse@1": "Be terse.\n", "base@1": "Be verbose.\n"}).read_text()
    assert "FAIL" in html and "does not beat the champion" in html
    assert "<span class=\"del\">-Be verbose.</span>" in html and "<span class=\"add\">+Be terse.</span>" in html


def test_html_report_without_champion(runs: dict[str, VariantRun], tmp_path: Path) -> None:
    html = write_html_report(tmp_path / "first.html", [runs["weak"], runs["strong"]], None).read_text()
    assert "first promotion" in html and "no champion yet" in html.lower()
    assert "data:image/png;base64," in html and "<script>" not in html
    section = html.split("id=\"per-question\"")[1]
    assert "4 items fewshot@2/m gets wrong" in section
    assert section.split("<details>")[1].count("class=\"item\"") == 40
    assert "Use the schema &amp; &lt;examples&gt;." in html  # the challenger's prompt, shown in full


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 50), st.integers(0, 20)), min_size=1, max_size=12))
def test_the_pareto_front_is_exactly_the_undominated_variants(pairs: list[tuple[int, int]]) -> None:
    from pipelines.pareto import Point, pareto_front

    points = [Point(f"v{i}", float(c), a / 20) for i, (c, a) in enumerate(pairs)]
    front = pareto_front(points)

    def beats(q: Point, p: Point) -> bool:
        return q.cost <= p.cost and q.accuracy >= p.accuracy and (q.cost < p.cost or q.accuracy > p.accuracy)

    assert all(not any(beats(q, p) for q in points) for p in front)
    assert all(any(beats(q, p) for q in front) for p in points if p not in front)
    assert [p.cost for p in front] == sorted(p.cost for p in front)
    # cheaper along the front means less accurate: it is a trade-off, never a free lunch
    assert all(a.accuracy < b.accuracy or (a.cost, a.accuracy) == (b.cost, b.accuracy)  # ties: the same point
               for a, b in itertools.pairwise(front))


def test_html_report_draws_accuracy_against_latency_and_tokens(runs: dict[str, VariantRun], tmp_path: Path) -> None:
    from evals.budget import Budget

    policy = GatePolicy(n_resamples=200, budget=Budget(p95_latency_s=3.0))
    html = write_html_report(tmp_path / "r.html", [runs["weak"], runs["tie-a"], runs["strong"]], runs["champion"],
                             policy).read_text()
    section = html.split("id=\"pareto\"")[1].split("</section>")[0]
    assert section.count("<svg") == 2 and "p95 seconds per answer" in section and "tokens per answer" in section
    assert "class=\"limit\"" in section and ">budget<" in section  # the latency budget, dashed
    assert "Not drawn against p95 seconds per answer (not measured): fewshot v2." in section  # one model: no suffix
    assert "Front: cot v1 · m ★" not in section and "Front: cot v1" in section  # as accurate as the champion, faster
    assert "serving budget p95 latency 3 s" in html and "over the serving budget" in html
    assert "<script" not in section and "http://www.w3.org/2000/svg" in section
