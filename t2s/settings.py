"""The one settings object. Values come from ``T2S_*`` environment variables or a ``.env`` file.

Nothing happens at import; call :func:`get_settings` (cached) and override it in tests with
``get_settings.cache_clear()`` after changing the environment.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="T2S_", env_file=".env", extra="ignore")

    cache_dir: Path = Field(Path(".t2s-cache"), description="Gold-result and completion caches.")
    query_timeout_s: float = Field(10.0, gt=0, description="Wall-clock limit for one SQL execution.")
    max_rows: int = Field(100_000, gt=0, description="Rows fetched per query before the result is cut.")
    workers: int = Field(0, ge=0, description="Scoring processes; 0 chooses from the item count and cores.")
    postgres_dsn: str | None = Field(None, description="DSN of the PostgreSQL execution target, if any.")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
