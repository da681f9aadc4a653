"""The one settings object. Values come from ``T2S_*`` environment variables or a ``.env`` file.

Nothing happens at import; call :func:`get_settings` (cached) and override it in tests with
``get_settings.cache_clear()`` after changing the environment.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from t2s.errors import ConfigError
from t2s.fileio import first_validation_error


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
    local_llm_servers: int = Field(
        0, ge=0, le=16, description="Local llama.cpp servers (one thread and one request at a time each) a "
                                    "process runs; 0: one per CPU core, at most 4.")

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
    serve_user_hash_key: SecretStr = Field(
        SecretStr("t2s-user"), description="Key of the stored user-id hash; with T2S_SERVE_AUTH=required a secret of "
                                           "16+ characters must be set (the built-in one is refused).")
    serve_status_ttl_s: float = Field(1.0, ge=0, description="How long a process trusts its cached experiment status.")

    # --- serving in production: auth, rate limits, input limits, metrics, logs, model circuit breaker
    # (see serving/auth.py, serving/ratelimit.py, serving/metrics.py, serving/breaker.py and the README's
    # "Serving in production") ---
    serve_auth: Literal["none", "required"] = Field(
        "none", description="'required': every /v1 and /admin call needs a JWT or an API key. 'none' is only "
                            "accepted on a loopback host unless T2S_SERVE_ALLOW_NO_AUTH is set.")
    serve_allow_no_auth: bool = Field(False, description="Serve without auth on a non-loopback host (never in production).")
    serve_jwks_url: str | None = Field(None, description="OIDC JWKS URL (Cognito: https://cognito-idp.REGION.amazonaws.com/POOL/.well-known/jwks.json).")
    serve_jwt_issuer: str | None = Field(None, description="Expected `iss` (Cognito: https://cognito-idp.REGION.amazonaws.com/POOL).")
    serve_jwt_client_ids: list[str] = Field(default_factory=list, description="Accepted `client_id` (or `aud`) values.")
    serve_jwt_algorithms: list[str] = Field(default_factory=lambda: ["RS256"], description="Accepted signature algorithms (asymmetric only).")
    serve_jwt_roles_claim: str = Field("cognito:groups", description="Claim holding the caller's groups.")
    serve_jwt_admin_groups: list[str] = Field(default_factory=lambda: ["admin"], description="Groups that make a caller admin.")
    serve_jwt_reviewer_groups: list[str] = Field(
        default_factory=lambda: ["reviewer"], description="Groups that make a caller a reviewer (may label any query).")
    serve_jwt_act_for_users_groups: list[str] = Field(
        default_factory=list, description="Groups whose principals may name the end user of a request (body user_id).")
    serve_jwt_leeway_s: float = Field(30.0, ge=0, le=300, description="Clock skew allowed on exp/nbf.")
    serve_jwks_ttl_s: float = Field(300.0, gt=0, description="How long the fetched JWKS is trusted before a refetch.")
    serve_jwks_cooldown_s: float = Field(30.0, ge=0, description="Least time between refetches caused by an unknown kid.")
    serve_api_keys_file: Path | None = Field(None, description="JSON list of {name, sha256, role} API-key records.")
    serve_api_keys_check_s: float = Field(
        2.0, ge=0, description="How often (at most) the API keys file is checked for a change (mtime, size, inode) "
                               "and re-read: a removed key stops working within this time.")
    serve_reload_poll_s: float = Field(
        2.0, gt=0, description="How often each process looks for a POST /admin/reload made on another one.")
    serve_rate_limit: str = Field("10/minute", description="Per-principal limit on POST /v1/sql (limits syntax).")
    serve_rate_limit_other: str = Field("120/minute", description="Per-principal limit on the other /v1 and /admin calls.")
    serve_redis_url: str | None = Field(
        None, validation_alias=AliasChoices("serve_redis_url", "T2S_SERVE_REDIS_URL", "T2S_REDIS_URL"),
        description="Redis shared by all replicas for rate limits (redis:// or rediss://); memory when unset.")
    serve_redis_password: SecretStr | None = Field(
        None, validation_alias=AliasChoices("serve_redis_password", "T2S_SERVE_REDIS_PASSWORD", "T2S_REDIS_PASSWORD"),
        description="Redis AUTH token (kept out of the URL).")
    serve_rate_limit_on_redis_error: Literal["local", "closed"] = Field(
        "local", description="Redis unreachable: 'local' limits per process in memory; 'closed' answers 503.")
    serve_max_body_bytes: int = Field(262_144, ge=1024, description="Larger request bodies are refused (HTTP 413).")
    serve_ready_cache_s: float = Field(5.0, ge=0, description="How long a /health/ready result is reused (admins may ask ?fresh=true).")
    serve_ready_rate_limit: str = Field("60/minute", description="Per-client-address limit on /health/ready without admin credentials.")
    serve_forwarded_allow_ips: list[str] = Field(
        default_factory=lambda: ["127.0.0.1"],
        description="Proxies (IPs, CIDRs or '*') whose X-Forwarded-For/-Proto are believed: the client address "
                    "and https scheme behind a load balancer.")
    serve_cors_origins: list[str] = Field(default_factory=list, description="Origins allowed by CORS (none by default).")
    serve_docs: bool = Field(True, description="Serve the Swagger UI page /docs (from this origin; /openapi.json stays).")
    serve_hsts: Literal["auto", "always", "off"] = Field(
        "auto", description="Strict-Transport-Security: 'auto' only on requests that came over TLS (directly or "
                            "per X-Forwarded-Proto from T2S_SERVE_FORWARDED_ALLOW_IPS).")
    metrics_namespace: str = Field("TextToSQL", description="CloudWatch namespace of the serving metrics.")
    serve_metrics: Literal["auto", "none", "emf", "cloudwatch", "both"] = Field(
        "auto", description="Metric sinks: EMF lines on stdout, PutMetricData, both; auto = emf on ECS/AWS_EMF_ENVIRONMENT.")
    serve_metrics_buffer: int = Field(20_000, ge=10, description="Datums buffered for PutMetricData before drops.")
    serve_metrics_flush_s: float = Field(10.0, gt=0, description="How often PutMetricData batches are sent.")
    serve_cloudwatch_endpoint: str | None = Field(None, description="CloudWatch endpoint URL override (tests, VPC endpoints).")
    serve_log_content: bool = Field(False, description="Put questions and SQL into the request log lines.")
    serve_otel: bool = Field(
        False, description="FastAPI's native OpenTelemetry spans, metrics and logs through the globally configured "
                            "providers (e.g. the AWS Distro for OpenTelemetry); off, no provider lookup per request.")
    serve_log_format: Literal["json", "text"] = Field("json", description="Request log lines as JSON or plain text.")
    serve_breaker_failures: int = Field(5, ge=1, description="Consecutive model failures that open the circuit.")
    serve_breaker_reset_s: float = Field(30.0, gt=0, description="How long the circuit stays open before one probe.")
    serve_answer_cache: int = Field(1024, ge=0, description="Answers kept per process to serve while the circuit is open.")
    # --- serving under steered answers and abusive callers (t2s/deadline.py, serving/service.py)
    serve_request_deadline_s: float = Field(
        30.0, gt=0, description="Wall-clock budget of one POST /v1/sql: every model call and every SQL execution of "
                                "the strategy and the final one share it; past it the answer is outcome timeout.")
    serve_sql_workers_per_principal: int = Field(
        0, ge=0, description="SQL worker processes one principal may hold at once in a serving process; more of its "
                             "queries wait within their deadline. 0: half of T2S_SANDBOX_WORKERS (at least 1).")
    serve_max_cell_chars: int = Field(10_000, ge=16, description="A returned value is cut to this many characters "
                                                                 "(response truncated: true).")
    serve_max_response_bytes: int = Field(2_000_000, ge=1024, description="Rows stop once their approximate size "
                                                                          "reaches this (response truncated: true).")

    # --- the analyst web app at /app (serving/web/, serving/oauth.py; the README's "The analyst web app").
    # Sign-in is the Cognito hosted UI (authorization code + PKCE) done by the server; the three
    # T2S_SERVE_OAUTH_{DOMAIN,CLIENT_ID,REDIRECT_URL} turn it on together, with T2S_SERVE_AUTH=required and
    # the pool's T2S_SERVE_JWKS_URL/ISSUER (the tokens are checked like any bearer token). Without them the
    # app runs unauthenticated on loopback (T2S_SERVE_AUTH=none) and refuses sign-in otherwise.
    serve_web: bool = Field(True, description="Serve the analyst web app at /app.")
    serve_oauth_domain: str | None = Field(
        None, description="The user pool's hosted-UI base URL, e.g. https://PREFIX.auth.REGION.amazoncognito.com "
                          "(the app uses its /oauth2/authorize, /oauth2/token, /oauth2/revoke and /logout).")
    serve_oauth_client_id: str | None = Field(
        None, description="The web app's app client id (code grant + PKCE); must be in T2S_SERVE_JWT_CLIENT_IDS.")
    serve_oauth_client_secret: SecretStr | None = Field(
        None, description="That app client's secret, only if it has one (sent to the token endpoint with HTTP Basic).")
    serve_oauth_redirect_url: str | None = Field(
        None, description="https://HOST/app/callback: where the hosted UI returns; a callback URL of the app client.")
    serve_oauth_logout_url: str | None = Field(
        None, description="Where the hosted UI's /logout returns (a sign-out URL of the app client); default https://HOST/app.")
    serve_oauth_scopes: list[str] = Field(default_factory=lambda: ["openid", "email"],
                                          description="Scopes the app asks for.")
    serve_session_ttl_s: float = Field(
        28_800.0, gt=0, description="Web sessions end this long after sign-in, conversations this long after their "
                                    "last question (8 h). Kept in Redis when T2S_SERVE_REDIS_URL is set, else the store.")
    serve_dry_run_rows: int = Field(20, ge=1, le=1000, description="Rows a dry run of caller SQL returns (POST /v1/sql/dry-run).")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings (``T2S_*`` environment variables, ``.env``). A bad value is a
    :class:`~t2s.errors.ConfigError` naming the variable, not a validation traceback."""
    try:
        return Settings()
    except ValidationError as exc:
        field, message = first_validation_error(exc)
        name = field if field.isupper() else f"T2S_{field.upper()}"
        raise ConfigError(f"invalid setting {name}: {message}") from None
