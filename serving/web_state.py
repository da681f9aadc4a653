"""Server-side state of the web app that expires: sign-in sessions, sign-in attempts and conversations.

One small key → JSON store with a time to live, in Redis when ``T2S_SERVE_REDIS_URL`` is set (shared by
every worker and replica, expiry done by Redis) and in the request store's ``web_state`` table otherwise
(SQLite or PostgreSQL; expired rows are never returned and are purged now and then). Nothing here is
cached in process memory, so any replica can serve any request of a session.

Keys are namespaced by the caller (``login:…``, ``web:…``, ``conv:…``); a secret the browser holds (the
session cookie) is never a key itself — callers key by its SHA-256, so a read of this store does not
hand out usable cookies.
"""

from __future__ import annotations

import json
import random
import threading
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import sqlalchemy as sa

from t2s.errors import Text2SQLError
from t2s.settings import Settings

web_state = sa.Table(
    "web_state", sa.MetaData(),
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False, index=True),
)


class StateUnavailable(Text2SQLError):
    """The session storage (Redis or the store) cannot be reached (HTTP 503)."""


class WebState(Protocol):
    backend: str

    def get(self, key: str) -> dict[str, Any] | None: ...

    def put(self, key: str, value: dict[str, Any], ttl_s: float) -> None: ...

    def pop(self, key: str) -> dict[str, Any] | None:
        """Get and delete in one step: a one-time value (a sign-in attempt) is used at most once."""
        ...

    def delete(self, key: str) -> None: ...


class RedisState:
    backend = "redis"

    def __init__(self, url: str, password: str | None = None) -> None:
        import redis

        self._redis = redis.Redis.from_url(url, password=password, socket_timeout=0.5, socket_connect_timeout=0.5)
        self._errors = (redis.RedisError,)

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return getattr(self._redis, method)(*args, **kwargs)
        except self._errors as exc:
            raise StateUnavailable(f"session storage (Redis) is unreachable ({type(exc).__name__}); retry "
                                   "later") from None

    def get(self, key: str) -> dict[str, Any] | None:
        raw = self._call("get", key)
        return None if raw is None else json.loads(raw)

    def put(self, key: str, value: dict[str, Any], ttl_s: float) -> None:
        self._call("set", key, json.dumps(value), px=max(1, int(ttl_s * 1000)))

    def pop(self, key: str) -> dict[str, Any] | None:
        raw = self._call("getdel", key)
        return None if raw is None else json.loads(raw)

    def delete(self, key: str) -> None:
        self._call("delete", key)


class SqlState:
    """The ``web_state`` table of the request store (created by its migrations)."""

    backend = "store"
    PURGE_EVERY = 200  # about one write in this many also deletes expired rows

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._lock = threading.Lock()

    def _run(self, work: Any) -> Any:
        try:
            return work()
        except sa.exc.OperationalError as exc:
            raise StateUnavailable(f"session storage (the request store) is unavailable "
                                   f"({type(exc.orig).__name__}); retry later") from None

    @staticmethod
    def _live(key: str) -> Any:
        return (web_state.c.key == key) & (web_state.c.expires_at > datetime.now(UTC))

    def get(self, key: str) -> dict[str, Any] | None:
        def work() -> dict[str, Any] | None:
            with self.engine.connect() as conn:
                raw = conn.execute(sa.select(web_state.c.value).where(self._live(key))).scalar()
            return None if raw is None else json.loads(raw)
        return self._run(work)  # type: ignore[no-any-return]

    def put(self, key: str, value: dict[str, Any], ttl_s: float) -> None:
        now = datetime.now(UTC)
        row = {"value": json.dumps(value), "expires_at": now + timedelta(seconds=ttl_s)}

        def work() -> None:
            with self.engine.begin() as conn:
                if not conn.execute(web_state.update().where(web_state.c.key == key).values(**row)).rowcount:
                    conn.execute(web_state.insert(), [{"key": key, **row}])
                if random.randrange(self.PURGE_EVERY) == 0:
                    conn.execute(web_state.delete().where(web_state.c.expires_at <= now))
        self._run(work)

    def pop(self, key: str) -> dict[str, Any] | None:
        def work() -> dict[str, Any] | None:
            with self.engine.begin() as conn:  # a write transaction: two callers cannot both read the row
                raw = conn.execute(sa.select(web_state.c.value).where(self._live(key))
                                   .with_for_update()).scalar()
                conn.execute(web_state.delete().where(web_state.c.key == key))
            return None if raw is None else json.loads(raw)
        return self._run(work)  # type: ignore[no-any-return]

    def delete(self, key: str) -> None:
        def work() -> None:
            with self.engine.begin() as conn:
                conn.execute(web_state.delete().where(web_state.c.key == key))
        self._run(work)


def open_state(settings: Settings, store_engine: sa.Engine) -> WebState:
    """Redis when configured (the same one the rate limits use), else the request store."""
    if settings.serve_redis_url:
        password = settings.serve_redis_password.get_secret_value() if settings.serve_redis_password else None
        return RedisState(settings.serve_redis_url, password)
    return SqlState(store_engine)
