"""The one settings object. Values come from ``T2S_*`` environment variables or a ``.env`` file.

Nothing happens at import; call :func:`get_settings` (cached) and override it in tests with
``get_settings.cache_clear()`` after changing the environment.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="T2S_", env_file=".env", extra="ignore")

    cache_dir: Path = Field(Path(".t2s-cache"), description="Gold-result and completion caches.")
    query_timeout_s: float = Field(10.0, gt=0, description="Wall-clock limit for one SQL execution.")
    max_rows: int = Field(100_000, gt=0, description="Rows fetched per query before the result is cut.")
    workers: int = Field(0, ge=0, description="Scoring processes; 0 chooses from the item count and cores.")
    postgres_dsn: str | None = Field(None, description="DSN of the PostgreSQL execution target, if any.")

    mlflow_tracking_uri: str = Field(
        "sqlite:///mlflow.db", validation_alias=AliasChoices("T2S_MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_URI"),
        description="MLflow tracking + registry store: a local sqlite file by default, or a server URL.")
    prompts_dir: Path = Field(Path("prompts"), description="Where the versioned prompt files live.")
    audit_log: Path = Field(Path("audit/promotions.jsonl"), description="Append-only log of every alias move.")
    actor: str | None = Field(None, description="Who promotes (default: the OS user); recorded in the audit log.")

    # --- safe execution (see t2s/sandbox.py) ---
    sandbox_workers: int = Field(4, ge=1, description="SQL worker processes per process: queries that run at once.")
    sandbox_memory_mb: int = Field(2048, ge=256, description="Address-space limit of one SQL worker process.")
    sandbox_grace_s: float = Field(0.5, ge=0.1, le=1.0,
                                   description="How long past its timeout a query may run before its worker is killed.")

    # --- the LLM (see t2s/llm.py) ---
    llm_provider: Literal["local", "openai", "azure", "compatible"] = Field(
        "local", description="local: the bundled llama.cpp server; compatible: any OpenAI-compatible base_url.")
    llm_model: str = Field("qwen2.5-coder-0.5b-instruct", description="Model name, or Azure deployment name.")
    llm_base_url: str | None = Field(None, description="Base URL for provider 'compatible' (…/v1).")
    llm_api_key: SecretStr | None = Field(None, description="API key; falls back to OPENAI_API_KEY / AZURE_OPENAI_API_KEY.")
    llm_api_key_file: Path | None = Field(None, description="File holding the API key (e.g. a mounted secret).")
    azure_endpoint: str | None = Field(None, description="https://<resource>.openai.azure.com for provider 'azure'.")
    azure_api_version: str = "2024-10-21"
    llm_timeout_s: float = Field(60.0, gt=0, description="Per-request timeout.")
    llm_max_retries: int = Field(4, ge=0, description="Retries on 429/5xx/timeouts/connection errors.")
    llm_concurrency: int = Field(4, ge=1, description="Requests in flight at once from one process.")
    models_dir: Path = Field(Path.home() / ".cache" / "text2sql-ops" / "models",
                             description="Where `t2s llm install` puts the local model (shared across clones).")
    local_llm_port: int = Field(0, ge=0, description="Port for the local server; 0 picks a free one.")

    # --- serving (see serving/ and the README's "Serving" section) ---
    serve_host: str = Field("127.0.0.1", description="Address `t2s serve` binds to.")
    serve_port: int = Field(8000, ge=0, le=65535, description="Port `t2s serve` listens on.")
    serve_workers: int = Field(1, ge=1, description="uvicorn worker processes for `t2s serve`.")
    serve_store_url: str = Field("sqlite:///serving.db",
                                 description="SQLAlchemy URL of the request/feedback store (sqlite or postgresql+psycopg).")
    serve_experiment_file: Path = Field(Path("experiments/default.yaml"),
                                        description="The experiment served: variants, weights, salt.")
    serve_databases: dict[str, str] = Field(
        default_factory=lambda: {"bank": "datasets/bank"},
        description="Databases requests may name: NAME -> dataset dir[#db_id], sqlite:PATH, duckdb:PATH or "
                    "postgres:DSN[#schema] (JSON in T2S_SERVE_DATABASES).")
    serve_threads: int = Field(256, ge=1, description="Threads for model calls, execution and store writes.")
    serve_llm_concurrency: int = Field(256, ge=1, description="Model requests in flight per serving process.")
    serve_db_pool: int = Field(16, ge=1, description="Open connections per served database and process.")
    serve_max_question_chars: int = Field(2000, ge=1, description="Longer questions are refused (HTTP 422).")
    serve_max_rows: int = Field(1000, ge=1, description="Most rows one response may return.")
    serve_store_raw_user_id: bool = Field(False, description="Also store the raw user id (default: only its hash).")
    serve_user_hash_key: SecretStr = Field(SecretStr("t2s-user"), description="Key of the stored user-id hash.")
    serve_status_ttl_s: float = Field(1.0, ge=0, description="How long a process trusts its cached experiment status.")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
