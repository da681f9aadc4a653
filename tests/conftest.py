"""Hermetic tests: caches, MLflow and databases live under tmp_path; servers are started by fixtures."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from t2s.settings import get_settings

ROOT = Path(__file__).resolve().parents[1]

pytest_plugins = ["tests.pg", "tests.serving_support", "tests.web_support"]


@pytest.fixture(autouse=True)
def _hermetic(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path_factory.mktemp("t2s-home")
    monkeypatch.setenv("T2S_CACHE_DIR", str(home / "cache"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
    monkeypatch.delenv("T2S_POSTGRES_DSN", raising=False)
    # a served app with auth required refuses the built-in user-hash key; tests that do not care use this one
    monkeypatch.setenv("T2S_SERVE_USER_HASH_KEY", "tests-user-hash-key-0123456789")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def make_sqlite(path: Path, ddl_and_rows: dict[str, tuple[str, list[tuple]]]) -> Path:
    """Create a SQLite file with tables given as {name: (column DDL, rows)}."""
    conn = sqlite3.connect(path)
    for name, (cols, rows) in ddl_and_rows.items():
        conn.execute(f"CREATE TABLE {name} ({cols})")
        if rows:
            conn.executemany(f"INSERT INTO {name} VALUES ({', '.join('?' * len(rows[0]))})", rows)
    conn.commit()
    conn.close()
    return path


@pytest.fixture(scope="session")
def shop_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small shop database: customers, orders (with a NULL), and a wide-enough table for permutations."""
    path = tmp_path_factory.mktemp("shop") / "shop.sqlite"
    customers = [(1, "Ann", "Paris", 34), (2, "Bob", "Lyon", 41), (3, "Cid", "Paris", None),
                 (4, "Dee", "Nice", 29), (5, "Eve", "Lyon", 41)]
    orders = [(10, 1, 20.5, "2024-01-03"), (11, 1, 7.25, "2024-02-11"), (12, 2, 99.0, "2024-02-12"),
              (13, 3, 15.0, "2024-03-01"), (14, 5, 42.0, "2024-03-09"), (15, 5, 42.0, "2024-03-10")]
    nums = [(i, i % 7, (i * 13) % 11, f"n{i % 5}") for i in range(1, 3001)]
    return make_sqlite(path, {
        "customers": ("id INTEGER PRIMARY KEY, name TEXT, city TEXT, age INTEGER", customers),
        "orders": ("id INTEGER PRIMARY KEY, customer_id INTEGER REFERENCES customers(id), amount REAL, "
                   "placed TEXT", orders),
        "nums": ("id INTEGER PRIMARY KEY, a INTEGER, b INTEGER, tag TEXT", nums),
    })


@pytest.fixture(scope="session")
def local_llm_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real llama.cpp server with the bundled model, shared by the session's tests.

    Skipped when the model or llama-cpp-python is not installed, unless ``T2S_REQUIRE_LLM`` is set (CI),
    where that is a failure.
    """
    import os

    from t2s.local_llm import LocalServer, llama_cpp_installed, model_status
    from t2s.settings import Settings

    settings = Settings(cache_dir=tmp_path_factory.mktemp("llm-cache"))
    status = model_status(settings, verify=False)
    if not (llama_cpp_installed() and status.ok):
        reason = "local model or llama-cpp-python not installed (run `make setup` and `t2s llm install`)"
        if os.environ.get("T2S_REQUIRE_LLM"):
            pytest.fail(reason)
        pytest.skip(reason)
    with LocalServer(settings) as server:
        yield server.base_url
