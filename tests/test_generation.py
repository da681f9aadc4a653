"""Question → SQL: extraction, the generator's failure handling, and real generations on the local model."""

from __future__ import annotations

from pathlib import Path

import pytest

from t2s.errors import LLMUnavailable, SqlExtractionError
from t2s.execution import SqliteTarget
from t2s.generator import SqlGenerator
from t2s.prompts import PromptLibrary, PromptSpec
from t2s.sql_extract import extract_sql
from tests.conftest import ROOT
from tests.fakes import FakeOpenAI, Reply
from tests.test_llm_client import client_for_test

EXTRACT = {
    "fenced": ("```sql\nSELECT name FROM t;\n```\nThis returns names.", "SELECT name FROM t"),
    "fenced-no-language": ("```\nWITH x AS (SELECT 1) SELECT * FROM x\n```", "WITH x AS (SELECT 1) SELECT * FROM x"),
    "leading-prose": ("Sure! Here is the query:\nSELECT a\nFROM t", "SELECT a\nFROM t"),
    "trailing-prose": ("SELECT a FROM t\n\nThis query selects a.", "SELECT a FROM t"),
    "semicolons": ("SELECT 1;;", "SELECT 1"),
    "quoted-semicolon": ("SELECT ';' AS s FROM t; -- done", "SELECT ';' AS s FROM t"),
    "lowercase": ("select count(*) from t", "select count(*) from t"),
    "python-fence-skipped": ("```python\nprint(1)\n```\n```sql\nSELECT 2\n```", "SELECT 2"),
}


@pytest.mark.parametrize(("text", "sql"), EXTRACT.values(), ids=EXTRACT.keys())
def test_extract_sql(text: str, sql: str) -> None:
    assert extract_sql(text) == sql


@pytest.mark.parametrize("text", ["I cannot help with that.", "", "```python\nprint('SELECT')\n```"])
def test_prose_only_is_an_extraction_error(text: str) -> None:
    with pytest.raises(SqlExtractionError):
        extract_sql(text)


def spec(**changes: object) -> PromptSpec:
    base = PromptLibrary(ROOT / "prompts").get("sql-analyst", 2).spec
    return base.model_copy(update=changes)


@pytest.fixture
def fake() -> FakeOpenAI:
    server = FakeOpenAI()
    yield server
    server.close()


@pytest.mark.parametrize(("answer", "error", "sql"), [
    ("```sql\nSELECT name FROM customers;\n```", None, "SELECT name FROM customers"),
    ("I am not able to answer questions about databases.", "no_sql", None),
    ("SELECT name FROM customers; DROP TABLE customers", "refused", None),  # several statements: none runs
    ("WITH d AS (DELETE FROM customers RETURNING *) SELECT * FROM d", "refused", None),
    ("SELECT name FROM customers WHERE", "parse_error", None),
])
def test_model_answers_become_sql_or_recorded_failures(fake: FakeOpenAI, tmp_path: Path, shop_db: Path,
                                                        answer: str, error: str | None, sql: str | None) -> None:
    fake.script = [Reply(content=answer)]
    gen = SqlGenerator(spec(), client_for_test(tmp_path, fake.url))
    result = gen.generate("Who are the customers?", SqliteTarget(shop_db), question_id="q1")
    assert (result.error, result.sql) == (error, sql)
    assert result.raw_text == answer and result.question_id == "q1" and result.prompt == "sql-analyst@2"
    prompt = fake.requests[0]["json"]["messages"][-1]["content"]
    assert "CREATE TABLE customers" in prompt and "Who are the customers?" in prompt


def test_tsql_prompt_output_is_transpiled_to_the_engine(fake: FakeOpenAI, tmp_path: Path, shop_db: Path) -> None:
    fake.script = [Reply(content="SELECT TOP 2 [name] FROM customers ORDER BY age DESC")]
    gen = SqlGenerator(spec(dialect="tsql"), client_for_test(tmp_path, fake.url))
    result = gen.generate("Two oldest?", SqliteTarget(shop_db))
    assert result.sql is not None and "LIMIT 2" in result.sql
    assert "T-SQL" in fake.requests[0]["json"]["messages"][0]["content"]


def test_persistent_server_errors_are_recorded_but_an_unreachable_endpoint_raises(
        fake: FakeOpenAI, tmp_path: Path, shop_db: Path) -> None:
    fake.script = [Reply(status=500)]
    result = SqlGenerator(spec(), client_for_test(tmp_path, fake.url, llm_max_retries=1)).generate(
        "Anything?", SqliteTarget(shop_db))
    assert result.error == "llm_error" and result.sql is None
    closed = client_for_test(tmp_path, "http://127.0.0.1:9/v1", llm_max_retries=0)
    with pytest.raises(LLMUnavailable):
        SqlGenerator(spec(), closed).generate("Anything?", SqliteTarget(shop_db))


def test_few_shot_examples_come_from_the_training_split(fake: FakeOpenAI, tmp_path: Path) -> None:
    from pipelines.build_bank import build_bank_database
    from t2s.datasets import load_split

    db = build_bank_database(tmp_path / "bank.sqlite")
    pool = load_split(ROOT / "datasets" / "bank", "train")
    v3 = PromptLibrary(ROOT / "prompts").get("sql-analyst", 3).spec
    gen = SqlGenerator(v3, client_for_test(tmp_path, fake.url), few_shot_pool=pool)
    chosen = gen.few_shot("How many loans does each branch have?")
    assert len(chosen) == 3 and all(ex.id.startswith("bank-train-") for ex in chosen)
    assert chosen == gen.few_shot("How many loans does each branch have?")  # deterministic
    gen.generate("How many loans does each branch have?", SqliteTarget(db))
    user = fake.requests[0]["json"]["messages"][-1]["content"]
    assert all(ex.question in user for ex in chosen)


# --- the real local model -----------------------------------------------------------------------------

BANK_QUESTIONS = [  # easy questions the shipped model answers correctly at temperature 0
    ("How many customers are there?", "SELECT COUNT(*) FROM customers"),
    ("How many loans have the status 'late'?", "SELECT COUNT(*) FROM loans WHERE status = 'late'"),
    ("List the names of the branches in the North region.", "SELECT branch_name FROM branches WHERE region = 'North'"),
]


@pytest.fixture(scope="module")
def bank_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipelines.build_bank import build_bank_database

    return build_bank_database(tmp_path_factory.mktemp("bankdb") / "bank.sqlite")


@pytest.mark.llm
def test_real_generations_execute_and_answer_correctly(local_llm_url: str, bank_db: Path, tmp_path: Path) -> None:
    from evals.execution import execution_match
    from t2s.llm import LLMClient
    from t2s.settings import Settings

    settings = Settings(llm_provider="local", cache_dir=tmp_path)
    client = LLMClient.from_settings(settings, base_url_override=local_llm_url)
    gen = SqlGenerator(spec(), client)
    target = SqliteTarget(bank_db)
    results = [gen.generate(q, target) for q, _ in BANK_QUESTIONS]
    for (question, gold), r in zip(BANK_QUESTIONS, results, strict=True):
        assert r.error is None, (question, r.raw_text)
        assert r.prompt_tokens > 500 and r.completion_tokens > 0 and not r.cached
        assert execution_match(gold, r.sql, target).match, (question, r.sql)
    again = gen.generate(BANK_QUESTIONS[0][0], target)
    assert again.cached and again.sql == results[0].sql


@pytest.mark.llm
def test_bundle_registers_loads_by_alias_and_serves_the_same_sql(local_llm_url: str, bank_db: Path,
                                                                  tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    import mlflow
    import pandas as pd
    from mlflow import MlflowClient

    from t2s.bundle import REGISTERED_MODEL, bundle_config, load_bundle, log_bundle
    from t2s.llm import LLMClient
    from t2s.prompts import push
    from t2s.settings import Settings, get_settings
    from t2s.tracking import configure_mlflow

    dataset = tmp_path / "bank"
    shutil.copytree(ROOT / "datasets" / "bank", dataset, ignore=shutil.ignore_patterns("*.sqlite"))
    shutil.copy(bank_db, dataset / "bank.sqlite")
    prompts = tmp_path / "prompts"
    shutil.copytree(ROOT / "prompts", prompts)
    monkeypatch.setenv("T2S_PROMPTS_DIR", str(prompts))
    get_settings.cache_clear()
    configure_mlflow(get_settings())
    push(PromptLibrary(prompts))
    with mlflow.start_run():
        info = log_bundle(bundle_config("prompts:/sql-analyst/2", "local", get_settings().llm_model, dataset))
    MlflowClient().set_registered_model_alias(REGISTERED_MODEL, "champion", info.registered_model_version)
    model = load_bundle(f"models:/{REGISTERED_MODEL}@champion")
    questions = pd.DataFrame({"question": [q for q, _ in BANK_QUESTIONS[:2]], "db_id": ["bank", "bank"],
                              "id": ["a", "b"]})
    out = model.predict(questions, params={"base_url": local_llm_url})
    assert list(out["id"]) == ["a", "b"] and out["error"].isna().all()
    assert set(out["prompt"]) == {"sql-analyst@2"}
    # Evaluate what you serve: the bundle's SQL is the generator's SQL for the same prompt and model.
    direct = SqlGenerator(spec(), LLMClient.from_settings(Settings(cache_dir=tmp_path / "c2"),
                                                          base_url_override=local_llm_url))
    assert list(out["sql"]) == [direct.generate(q, SqliteTarget(bank_db)).sql for q, _ in BANK_QUESTIONS[:2]]
