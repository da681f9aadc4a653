"""Generation strategies against a scripted loopback model: repair, self-consistency voting, masked-question
few-shot selection, the strategy in the version's hash and lock, the served bundle, and the per-item record."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evals.compare import T2S, results_match
from t2s.datasets import DatasetManifest, GoldExample, write_dataset
from t2s.errors import PromptError
from t2s.execution import SqliteTarget
from t2s.generator import SqlGenerator
from t2s.prompts import PromptLibrary, PromptSpec, push
from t2s.result_store import store_key
from t2s.strategy import (
    StrategySettings,
    StrategyTrace,
    missing_column,
    question_implies_rows,
    same_result,
    vote,
)
from tests.conftest import ROOT
from tests.fakes import FakeOpenAI, Reply
from tests.test_llm_client import client_for_test


def spec_with(**strategy: Any) -> PromptSpec:
    base = PromptLibrary(ROOT / "prompts").get("sql-analyst", 2).spec
    return base.model_copy(update={"strategy": StrategySettings(**strategy)})


def example(id: str, question: str, sql: str) -> GoldExample:
    return GoldExample(id=id, question=question, gold_sql=sql, db_id="shop", difficulty="easy", category="count")


def fenced(sql: str) -> Reply:
    return Reply(content=f"```sql\n{sql}\n```")


@pytest.fixture
def fake() -> FakeOpenAI:
    server = FakeOpenAI()
    yield server
    server.close()


def test_repair_fixes_an_invented_column_on_round_two(fake: FakeOpenAI, tmp_path: Path, shop_db: Path) -> None:
    def respond(body: dict[str, Any]) -> Reply:
        last = body["messages"][-1]["content"]
        return fenced("SELECT name FROM customers WHERE age > 40" if "failed on the database" in last
                      else "SELECT full_name FROM customers WHERE age > 40")

    fake.responder = respond
    gen = SqlGenerator(spec_with(kind="repair", repair_rounds=2), client_for_test(tmp_path, fake.url))
    result = gen.generate("Names of customers older than 40?", SqliteTarget(shop_db), question_id="q")
    assert result.sql == "SELECT name FROM customers WHERE age > 40" and result.error is None
    assert result.model_calls == 2 and result.strategy == "repair repair=2"
    assert result.prompt_tokens == 22 and result.completion_tokens == 14  # both calls counted
    trace = result.trace
    assert trace is not None and trace["repair_rounds"] == 1 and trace["chosen"] == 1
    first, second = trace["candidates"]
    assert (first["round"], first["rows"], second["round"], second["rows"]) == (0, None, 1, 2)
    assert "full_name" in first["detail"] and first["error"] is not None
    # the repair continues the same conversation (shared prefix), with the error and the table's columns
    initial, repair = fake.requests[0]["json"]["messages"], fake.requests[1]["json"]["messages"]
    assert repair[: len(initial)] == initial and repair[len(initial)]["role"] == "assistant"
    assert "full_name" in repair[-1]["content"] and "customers(id, name, city, age)" in repair[-1]["content"]
    assert "No table has a column named `full_name`" in repair[-1]["content"]


def test_repair_points_to_the_table_of_a_misplaced_column_and_resamples_a_repeat(
        fake: FakeOpenAI, tmp_path: Path, shop_db: Path) -> None:
    def respond(body: dict[str, Any]) -> Reply:  # greedy repeats itself; sampling finds the join
        if body["temperature"] > 0:
            return fenced("SELECT SUM(o.amount) FROM orders o JOIN customers c ON c.id = o.customer_id "
                          "WHERE c.city = 'Lyon'")
        return fenced("SELECT SUM(amount) FROM orders WHERE city = 'Lyon'")

    fake.responder = respond
    gen = SqlGenerator(spec_with(kind="repair", repair_rounds=1), client_for_test(tmp_path, fake.url))
    result = gen.generate("Total order amount from Lyon customers?", SqliteTarget(shop_db))
    assert result.sql is not None and "JOIN customers" in result.sql and result.model_calls == 3
    assert result.trace is not None
    assert [c["error"] for c in result.trace["candidates"]] == ["unknown_column", "repeated", None]
    hint = fake.requests[1]["json"]["messages"][-1]["content"]
    assert "`city` is a column of customers only" in hint and "customers(id, name, city, age)" in hint
    assert missing_column('column "c.segment" does not exist') == "segment"
    assert missing_column('Binder Error: Referenced column "segment" not found in FROM clause') == "segment"


def test_repair_retries_an_empty_result_only_when_rows_are_expected(fake: FakeOpenAI, tmp_path: Path,
                                                                     shop_db: Path) -> None:
    def respond(body: dict[str, Any]) -> Reply:
        city = "Paris" if "returned no rows" in body["messages"][-1]["content"] else "paris"
        return fenced(f"SELECT name FROM customers WHERE city = '{city}'")

    fake.responder = respond
    gen = SqlGenerator(spec_with(kind="repair", repair_rounds=1), client_for_test(tmp_path, fake.url))
    fixed = gen.generate("Which customers live in Paris?", SqliteTarget(shop_db))
    assert fixed.sql is not None and "'Paris'" in fixed.sql and fixed.model_calls == 2
    kept = gen.generate("Is there a customer in paris?", SqliteTarget(shop_db))  # yes/no: empty is an answer
    assert kept.model_calls == 1 and kept.sql is not None and "'paris'" in kept.sql
    assert not question_implies_rows("Are there any loans?") and question_implies_rows("List the loans.")


SC = {"kind": "self_consistency", "samples": 3, "temperature": 0.7}


def by_seed(answers: dict[int, str]) -> Any:
    def respond(body: dict[str, Any]) -> Reply:
        return fenced(answers[body["seed"]])
    return respond


def test_self_consistency_returns_a_query_of_the_majority_result(fake: FakeOpenAI, tmp_path: Path,
                                                                  shop_db: Path) -> None:
    fake.responder = by_seed({0: "SELECT name FROM customers WHERE city = 'Paris'",  # Ann, Cid
                              1: "SELECT name FROM customers WHERE age > 40",  # Bob, Eve
                              2: "SELECT name FROM customers WHERE city = 'Lyon' ORDER BY name DESC"})  # Eve, Bob
    gen = SqlGenerator(spec_with(**SC), client_for_test(tmp_path, fake.url))
    result = gen.generate("Who are the Lyon customers?", SqliteTarget(shop_db))
    assert result.sql == "SELECT name FROM customers WHERE age > 40"
    assert result.model_calls == 3 and result.trace is not None
    assert result.trace["votes"] == [1, 2] and [c["group"] for c in result.trace["candidates"]] == [0, 1, 1]
    temps = [(r["json"]["temperature"], r["json"]["seed"]) for r in fake.requests]
    assert temps == [(0.0, 0), (0.7, 1), (0.7, 2)]


def test_self_consistency_breaks_ties_deterministically(fake: FakeOpenAI, tmp_path: Path, shop_db: Path) -> None:
    answers = {0: "SELECT name FROM customers WHERE city = 'Paris'", 1: "SELECT name FROM customers WHERE age > 40",
               2: "SELECT nope FROM customers"}
    fake.responder = by_seed(answers)
    chosen = {SqlGenerator(spec_with(**SC), client_for_test(tmp_path / str(i), fake.url)).generate(
        "Which customers?", SqliteTarget(shop_db)).sql for i in range(2)}
    assert chosen == {answers[0]}  # 1-1 tie, the failed sample has no vote: the greedy answer's group wins
    answers[0] = "SELECT broken FROM customers"
    gen = SqlGenerator(spec_with(**SC), client_for_test(tmp_path / "x", fake.url))
    assert gen.generate("Which customers?", SqliteTarget(shop_db)).sql == answers[1]  # earliest executed group
    groups, sizes, winner = vote([[(1,)], None, [(2,)], [(1.0,)], [(2,)]])
    assert (groups, sizes, winner) == ([0, None, 1, 0, 1], [2, 2], 0)


def test_candidates_share_the_result_cache(fake: FakeOpenAI, tmp_path: Path, shop_db: Path) -> None:
    fake.responder = by_seed({s: "SELECT COUNT(*) FROM orders" for s in range(3)})
    gen = SqlGenerator(spec_with(**SC), client_for_test(tmp_path, fake.url))
    result = gen.generate("How many orders?", SqliteTarget(shop_db))
    assert result.trace is not None and result.trace["executions"] == 1 and result.trace["votes"] == [3]


def test_a_persistent_result_store_is_shared_by_generators_and_keeps_no_timeout(
        fake: FakeOpenAI, tmp_path: Path, shop_db: Path) -> None:
    from t2s.errors import SqlTimeout
    from t2s.result_store import ResultStore

    fake.responder = by_seed({s: "SELECT COUNT(*) FROM orders" for s in range(3)})
    path = tmp_path / "results.sqlite"
    first = SqlGenerator(spec_with(**SC), client_for_test(tmp_path, fake.url), result_store=ResultStore(path))
    assert first.generate("How many orders?", SqliteTarget(shop_db)).trace["executions"] == 1
    # Another generator (another cell, a rerun, another process) executes nothing it finds in the file.
    store = ResultStore(path)
    second = SqlGenerator(spec_with(**SC), client_for_test(tmp_path / "b", fake.url), result_store=store)
    again = second.generate("How many orders?", SqliteTarget(shop_db))
    assert again.trace["executions"] == 0 and again.trace["votes"] == [3] and store.hits == 3
    # The entry depends on the database's content: another database executes again.
    other = tmp_path / "other.sqlite"
    shutil.copy(shop_db, other)
    with sqlite3.connect(other) as conn:
        conn.execute("DELETE FROM orders")
    assert second.generate("How many orders?", SqliteTarget(other)).trace["executions"] == 1

    class Slow(SqliteTarget):
        def execute(self, sql: str, **kwargs: Any) -> Any:
            raise SqlTimeout("too slow")

    assert isinstance(second._execute("SELECT 1", Slow(shop_db), "fp", StrategyTrace("self_consistency"))[1], SqlTimeout)
    assert store.get(store_key("candidate", "fp", second.spec.strategy.max_rows, "SELECT 1")) is None


def test_samples_go_in_one_request_where_the_provider_supports_n(fake: FakeOpenAI, tmp_path: Path,
                                                                   shop_db: Path) -> None:
    fake.script = [fenced("SELECT COUNT(*) FROM orders")]

    def generate() -> Any:
        client = client_for_test(tmp_path, fake.url, cache=True, llm_provider="openai")
        return SqlGenerator(spec_with(**SC), client).generate("How many orders?", SqliteTarget(shop_db))

    result = generate()
    assert [r["json"].get("n") for r in fake.requests] == [None, 2]  # greedy, then both samples at once
    assert result.model_calls == 3 and result.trace is not None and result.trace["votes"] == [3]
    assert result.prompt_tokens == 22  # usage of the n-request is counted once
    again = generate()
    assert again.cached and len(fake.requests) == 2 and again.sql == result.sql


rows = st.lists(st.tuples(st.integers(-3, 3), st.sampled_from(["a", "b"]), st.floats(-2, 2, width=16)),
                max_size=6)


@settings(max_examples=150, deadline=None)
@given(a=rows, b=rows, perm=st.permutations([0, 1, 2]), reorder=st.booleans())
def test_vote_grouping_agrees_with_the_scorer_rules(a: list, b: list, perm: list, reorder: bool) -> None:
    b2 = [tuple(r[j] for j in perm) for r in (a if reorder else b)]
    assert same_result(a, b2) == results_match(a, b2, T2S, order_matters=False)


def test_masked_similarity_picks_examples_by_question_shape(tmp_path: Path, shop_db: Path) -> None:
    pool = [example(f"t{i}", q, "SELECT 1") for i, q in enumerate([
        "How many orders did Ann place in 2024?", "List the names of customers in Paris",
        "How many customers live in each city?", "What is the total amount of orders per customer?"])]
    base = PromptLibrary(ROOT / "prompts").get("sql-analyst", 3).spec
    masked = base.model_copy(update={"few_shot": base.few_shot.model_copy(update={"selector": "masked_similarity"})})
    gen = SqlGenerator(masked, llm=None, few_shot_pool=pool)
    target = SqliteTarget(shop_db)
    top = [ex.id for ex in gen.few_shot("How many orders in each city?", target)]
    assert top[0] == "t2" and top == [ex.id for ex in gen.few_shot("How many orders in each city?", target)]
    assert masked.content_hash() != base.content_hash()


# ---------------------------------------------------------------------------- the version's identity


@pytest.fixture
def library(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PromptLibrary:
    from t2s.settings import get_settings
    from t2s.tracking import configure_mlflow

    root = tmp_path / "prompts"
    shutil.copytree(ROOT / "prompts", root)
    monkeypatch.setenv("T2S_PROMPTS_DIR", str(root))
    get_settings.cache_clear()
    configure_mlflow(get_settings())
    return PromptLibrary(root)


def test_strategy_is_part_of_the_hash_lock_registry_and_show(library: PromptLibrary) -> None:
    from typer.testing import CliRunner

    from cli.main import app
    from t2s.prompts import registry_spec

    shipped = {pf.spec.version: pf.spec for pf in library.versions("sql-analyst")}
    assert {s.strategy.kind for s in shipped.values()} >= {"single", "repair", "self_consistency"}
    changed = shipped[4].model_copy(update={"strategy": StrategySettings(kind="repair", repair_rounds=1)})
    assert changed.content_hash() != shipped[4].content_hash()
    push(library)
    assert registry_spec("prompts:/sql-analyst/6") == shipped[6]  # the registry round-trips the strategy
    out = CliRunner().invoke(app, ["prompts", "show", "sql-analyst@6"], terminal_width=200).output
    assert "self_consistency k=3 T=0.7 repair=1" in out and "masked_similarity" in out
    path = library.root / "sql-analyst" / "v4.yaml"
    path.write_text(path.read_text().replace("repair_rounds: 2", "repair_rounds: 1"))
    with pytest.raises(PromptError, match="changed after it was registered"):
        library.versions("sql-analyst")


@pytest.mark.parametrize(("strategy", "message"), [
    ({"kind": "single", "samples": 3}, "single"), ({"kind": "repair"}, "repair_rounds >= 1"),
    ({"kind": "self_consistency", "samples": 3}, "temperature > 0"), ({"kind": "vote"}, "kind"),
])
def test_inconsistent_strategies_are_refused(strategy: dict[str, Any], message: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=message):
        StrategySettings(**strategy)


# ------------------------------------------------------------------- serving and the eval's record


def test_bundle_runs_the_same_strategy_and_the_eval_records_it(fake: FakeOpenAI, library: PromptLibrary,
                                                                tmp_path: Path, shop_db: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import mlflow
    import pandas as pd

    from pipelines.eval_config import EvalConfig, ModelSpec
    from pipelines.evaluate import evaluate_cell
    from t2s.bundle import bundle_config, load_bundle, log_bundle
    from t2s.datasets import load_dataset

    def respond(body: dict[str, Any]) -> Reply:  # invented column first, fixed when the error comes back
        fixed = "failed on the database" in body["messages"][-1]["content"]
        return fenced("SELECT COUNT(*) FROM orders" if fixed else "SELECT COUNT(order_no) FROM orders")

    fake.responder = respond
    ds = tmp_path / "mini"
    ds.mkdir()
    shutil.copy(shop_db, ds / "shop.sqlite")
    questions = [example("q1", "How many orders?", "SELECT COUNT(*) FROM orders")]
    write_dataset(ds, DatasetManifest(name="mini", databases={"shop": "shop.sqlite"}), questions)
    (ds / "train.jsonl").write_text(example("t1", "How many customers?", "SELECT COUNT(*) FROM customers")
                                    .model_dump_json() + "\n")
    for key, value in {"T2S_LLM_PROVIDER": "compatible", "T2S_LLM_BASE_URL": fake.url,
                       "T2S_LLM_MODEL": "fake-model", "T2S_LLM_API_KEY": "k"}.items():
        monkeypatch.setenv(key, value)
    from t2s.settings import get_settings

    get_settings.cache_clear()
    push(library)
    with mlflow.start_run():
        info = log_bundle(bundle_config("prompts:/sql-analyst/4", "compatible", "fake-model", ds, fake.url),
                          registered_model_name=None)
    out = load_bundle(info.model_uri).predict(pd.DataFrame({"question": ["How many orders?"], "db_id": ["shop"]}))
    spec = library.get("sql-analyst", 4).spec
    direct = SqlGenerator(spec, client_for_test(tmp_path / "direct", fake.url),
                          few_shot_pool=[GoldExample.model_validate_json((ds / "train.jsonl").read_text())]
                          ).generate("How many orders?", SqliteTarget(shop_db))
    assert list(out["sql"]) == [direct.sql] == ["SELECT COUNT(*) FROM orders"]
    assert list(out["strategy"]) == [direct.strategy] and list(out["model_calls"]) == [2]
    assert json.loads(out["trace"][0])["candidates"] == direct.trace["candidates"]  # type: ignore[index]

    variant = evaluate_cell(load_dataset(ds), library.get("sql-analyst", 4),
                            ModelSpec(name="fake-model", provider="compatible"),
                            client_for_test(tmp_path / "eval", fake.url), EvalConfig(prompts=["sql-analyst@4"]))
    item = variant.items[0]
    assert item.match and (item.model_calls, item.candidates, item.repair_rounds) == (2, 2, 1)
    assert item.extra_tokens == 18 and item.strategy_trace is not None
    assert item.strategy_trace["candidates"][0]["error"] is not None
    assert variant.metrics["model_calls_per_question"] == 2.0
    from pipelines.mlflow_runs import _items_frame

    row = _items_frame(variant).iloc[0]
    assert (row["strategy"], row["model_calls"], row["repair_rounds"]) == ("repair repair=2", 2, 1)
    from pipelines.comparison_report import write_html_report

    html = write_html_report(tmp_path / "report.html", [variant], None).read_text()
    assert "repair repair=2: 2 model calls (+18 tokens), 2 candidates, 1 repair rounds" in html
    assert "→ sample 0 round 1: SELECT COUNT(*) FROM orders" in html.replace("&gt;", ">")


def test_a_limited_sweep_can_spread_over_a_set_ordered_by_difficulty() -> None:
    from pipelines.eval_config import select_items

    ordered = [f"{d}{i}" for d in ("easy", "medium", "hard", "extra") for i in range(25)]
    spread = select_items(ordered, 40, "spread")
    assert len(spread) == 40 == len(set(spread)) and spread == select_items(ordered, 40, "spread")
    assert {x.rstrip("0123456789") for x in spread} == {"easy", "medium", "hard", "extra"}
    assert select_items(ordered, 40, "first") == ordered[:40] and select_items(ordered, None) == ordered
