"""The one LLM client every caller uses (evaluation and serving).

:class:`LLMClient` talks to OpenAI, Azure OpenAI, any OpenAI-compatible server, or the bundled local
llama.cpp server (see :mod:`t2s.local_llm`) through the ``openai`` package, with:

- our own retry loop (the ``openai`` client is built with ``max_retries=0``; why, see
  :meth:`LLMClient.complete`): exponential backoff with jitter on 408/409/429/5xx, timeouts and
  connection errors, honouring ``Retry-After``;
- a bound on requests in flight (``settings.llm_concurrency``);
- several endpoints of one request at a time each (the local llama.cpp servers, one per core): a request
  takes a free one, preferring the one its thread used last (it still holds that thread's prompt prefix);
- a persistent SQLite completion cache keyed by (model, messages, params), so reruns cost nothing;
- errors mapped onto :mod:`t2s.errors` (``LLMAuthError``, ``LLMUnavailable``, ``LLMError``, ``ConfigError``).

This module must stay light: it imports neither mlflow, llama_index nor great_expectations.
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import itertools
import json
import os
import random
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from t2s import deadline
from t2s.errors import ConfigError, DeadlineExceeded, LLMAuthError, LLMError, LLMRefused, LLMUnavailable
from t2s.values import json_safe_text

if TYPE_CHECKING:
    import openai

    from t2s.settings import Settings

BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 20.0
#: The longest ``Retry-After`` we obey; a server asking for more gets this much.
RETRY_AFTER_CAP_S = 120.0
#: HTTP statuses worth retrying (besides every 5xx).
RETRYABLE_STATUS = frozenset({408, 409, 429})
#: Providers whose chat API answers ``n`` choices in one request (see :meth:`LLMClient.complete_samples`).
N_PROVIDERS = frozenset({"openai", "azure"})
#: Requests in flight per underlying connection pool. httpcore scans every connection of its pool on each
#: request under the GIL, so one pool serving 100 requests at once costs O(n²) per burst (a serving profile
#: at 100 concurrent users showed 15% of the process's GIL time there); a client with ``concurrency`` above
#: this keeps ``concurrency / POOL_SHARD`` pools (at most ``MAX_POOL_SHARDS``), one per calling thread.
POOL_SHARD = 16
MAX_POOL_SHARDS = 16
#: Key sent to servers that need none (the local llama.cpp server, most compatible servers).
DUMMY_API_KEY = "sk-no-key-required"

Message = dict[str, str]


@dataclass(frozen=True)
class ChatParams:
    """Sampling parameters of one chat completion. Hashable; part of the cache key."""

    temperature: float = 0.0
    max_tokens: int = 512
    stop: tuple[str, ...] = ()
    seed: int | None = 0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["stop"] = list(self.stop)
        return d

    def request_kwargs(self) -> dict[str, Any]:
        """The keyword arguments for ``chat.completions.create`` (empty stop and ``seed=None`` left out)."""
        kw: dict[str, Any] = {"temperature": self.temperature, "max_tokens": self.max_tokens}
        if self.stop:
            kw["stop"] = list(self.stop)
        if self.seed is not None:
            kw["seed"] = self.seed
        return kw

    @property
    def deterministic(self) -> bool:
        """Whether a repeat of the same request should give the same answer (and may be cached)."""
        return self.temperature == 0 or self.seed is not None


@dataclass(frozen=True)
class Completion:
    text: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    #: Wall-clock seconds of the request(s), retries and back-off included, a lazy local server's start-up
    #: excluded; on a cache hit, of the lookup.
    latency_s: float
    cached: bool
    #: HTTP requests made (0 on a cache hit).
    attempts: int


# --------------------------------------------------------------------------------------------- cache


class CompletionCache:
    """A persistent completion cache in one SQLite file (WAL). ``path=None`` disables it.

    Thread-safe: each thread gets its own connection. Several processes may share the file.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = Path(path) if path is not None else None
        self._local = threading.local()
        self._lock = threading.Lock()
        self._conns: list[sqlite3.Connection] = []
        if self.path is not None:
            self._conn()  # create the file and table now, so a bad path fails at construction

    @property
    def enabled(self) -> bool:
        return self.path is not None

    @staticmethod
    def key(model: str, messages: Sequence[Message], params: ChatParams) -> str:
        payload = {"model": model, "messages": list(messages), "params": params.as_dict()}
        blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            assert self.path is not None
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                conn = sqlite3.connect(self.path, timeout=30.0)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS completions (key TEXT PRIMARY KEY, model TEXT NOT NULL, "
                    "text TEXT NOT NULL, prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, "
                    "created REAL NOT NULL)")
                conn.commit()
            except sqlite3.Error as exc:
                raise ConfigError(f"cannot open the completion cache: {exc} (check T2S_CACHE_DIR)",
                                  file=self.path) from exc
            self._local.conn = conn
            with self._lock:
                self._conns.append(conn)
        return conn

    def get(self, key: str) -> tuple[str, str, int, int] | None:
        """(text, model, prompt_tokens, completion_tokens) for ``key``, or None."""
        if self.path is None:
            return None
        row = self._conn().execute(
            "SELECT text, model, prompt_tokens, completion_tokens FROM completions WHERE key = ?", (key,)
        ).fetchone()
        if row is None:
            return None
        text = row[0].decode("utf-8", "surrogatepass") if isinstance(row[0], bytes) else row[0]
        return text, row[1], int(row[2]), int(row[3])

    def put(self, key: str, completion: Completion) -> None:
        if self.path is None:
            return
        conn = self._conn()
        text: str | bytes = completion.text
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: SQLite text must be UTF-8, so the exact text goes as bytes
            text = completion.text.encode("utf-8", "surrogatepass")
        with conn:
            conn.execute("INSERT OR REPLACE INTO completions VALUES (?, ?, ?, ?, ?, ?)",
                         (key, completion.model, text, completion.prompt_tokens,
                          completion.completion_tokens, time.time()))

    def __len__(self) -> int:
        if self.path is None:
            return 0
        return int(self._conn().execute("SELECT COUNT(*) FROM completions").fetchone()[0])

    def close(self) -> None:
        """Close every connection this cache opened (in any thread)."""
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(sqlite3.ProgrammingError):  # opened in another, running thread
                conn.close()
        self._local = threading.local()


# ------------------------------------------------------------------------------------------ helpers


def _env_api_key(provider: str) -> tuple[str | None, str]:
    """The provider's standard environment variable: the only place this module reads the environment."""
    name = "AZURE_OPENAI_API_KEY" if provider == "azure" else "OPENAI_API_KEY"
    value = os.environ.get(name, "").strip()
    return (value or None), name


def resolve_api_key(settings: Settings) -> tuple[str, str]:
    """(key, where it came from). The source names a setting or variable, never the key itself."""
    provider = settings.llm_provider
    if settings.llm_api_key is not None and settings.llm_api_key.get_secret_value().strip():
        return settings.llm_api_key.get_secret_value().strip(), "T2S_LLM_API_KEY"
    if settings.llm_api_key_file is not None:
        path = Path(settings.llm_api_key_file)
        try:
            key = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"cannot read the API key file: {exc.strerror} (check T2S_LLM_API_KEY_FILE)",
                              file=path) from None
        if not key:
            raise ConfigError("the API key file is empty (check T2S_LLM_API_KEY_FILE)", file=path)
        return key, "T2S_LLM_API_KEY_FILE"
    key, var = _env_api_key(provider)
    if key:
        return key, var
    if provider in ("local", "compatible"):
        return DUMMY_API_KEY, "none needed"
    raise ConfigError(
        f"no API key for provider {provider!r}: set T2S_LLM_API_KEY (or T2S_LLM_API_KEY_FILE, or {var})",
        field="llm_api_key")


def _is_loopback(url: str | None) -> bool:
    host = (urlsplit(url).hostname or "") if url else ""
    return host == "localhost" or host.startswith("127.") or host == "::1"


def retry_after_seconds(headers: Any, now: float | None = None) -> float | None:
    """Seconds asked for by ``retry-after-ms`` / ``Retry-After`` (delta-seconds or HTTP date), else None."""
    if headers is None:
        return None
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000.0)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    raw = raw.strip()
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def backoff_delay(retry: int, rng: Callable[[], float] = random.random) -> float:
    """Delay before retry number ``retry`` (1-based): exponential, capped, with jitter in [50%, 100%]."""
    ceiling = min(BACKOFF_CAP_S, BACKOFF_BASE_S * (2 ** (retry - 1)))
    return ceiling * (0.5 + 0.5 * rng())


_KEYLIKE = re.compile(r"\b(sk|key|api[-_]?key)[-_][A-Za-z0-9_*\-]{6,}", re.IGNORECASE)


def _provider_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"]
    if isinstance(body, str) and body.strip():
        return body.strip()
    return str(getattr(exc, "message", "") or exc)


# ------------------------------------------------------------------------------------------- client


class _Endpoints:
    """Several endpoints that each serve one request at a time (the local llama.cpp servers).

    A request takes a free endpoint and waits while all are busy. It prefers the endpoint its thread used
    last: llama.cpp keeps the previous prompt's KV cache, so a thread working through one question (its
    samples, its repair rounds) or one database keeps reusing its shared prompt prefix.
    """

    def __init__(self, clients: list[openai.OpenAI]) -> None:
        self.clients = clients
        self._busy = [False] * len(clients)
        self._cond = threading.Condition()
        self._last = threading.local()

    @contextlib.contextmanager
    def take(self, timeout_s: float | None = None) -> Any:
        end = None if timeout_s is None else time.monotonic() + timeout_s
        with self._cond:
            while all(self._busy):
                if end is None:
                    self._cond.wait()
                elif end <= time.monotonic():
                    raise DeadlineExceeded("the request's deadline passed while every model server was busy",
                                           model_slow=True)
                else:
                    self._cond.wait(end - time.monotonic())
            last = getattr(self._last, "index", None)
            index = last if last is not None and not self._busy[last] else self._busy.index(False)
            self._busy[index] = True
        try:
            yield self.clients[index]
        finally:
            with self._cond:
                self._busy[index] = False
                self._last.index = index
                self._cond.notify()

    def move_on(self) -> None:
        """The calling thread's next request prefers the endpoint after the one it used last."""
        last = getattr(self._last, "index", None)
        if last is not None:
            self._last.index = (last + 1) % len(self.clients)


class LLMClient:
    """Chat completions with retries, a concurrency bound and a completion cache.

    Build it with :meth:`from_settings`; for the local provider use :func:`t2s.local_llm.client_for`,
    which starts the server and passes its ``base_url``.
    """

    def __init__(self, *, provider: str, model: str,
                 base_url: str | Sequence[str] | Callable[[], str | Sequence[str]] | None, api_key: str,
                 key_source: str = "argument", azure_endpoint: str | None = None,
                 azure_api_version: str | None = None, timeout_s: float = 60.0, max_retries: int = 4,
                 concurrency: int = 4, cache: CompletionCache | None = None,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        """``base_url`` may be a callable: it is called once, at the first request that misses the cache
        (this is how :func:`t2s.local_llm.client_for` starts the local servers only when needed). A list of
        URLs (or a callable returning one) names several endpoints of one request at a time each."""
        if provider == "azure" and not azure_endpoint:
            raise ConfigError("provider 'azure' needs an endpoint: set T2S_AZURE_ENDPOINT "
                              "(https://<resource>.openai.azure.com)", field="azure_endpoint")
        self.provider = provider
        self.model = model
        self.max_retries = max_retries
        self.timeout_s = timeout_s
        self.cache = cache if cache is not None else CompletionCache(None)
        self.key_source = key_source
        self._sleep = sleep
        self._api_key = api_key
        self._azure = (azure_endpoint, azure_api_version)
        self._base_url = base_url
        self.concurrency = concurrency
        self._semaphore = threading.BoundedSemaphore(concurrency)
        self._client_lock = threading.Lock()
        self._client: openai.OpenAI | None = None
        self._endpoints: _Endpoints | None = None
        self._shards: list[openai.OpenAI] = []
        self._shard_counter = itertools.count()
        self._thread = threading.local()
        #: The :class:`t2s.local_llm.LocalServerPool` behind this client, when client_for started one.
        self.local_server: Any = None
        if not callable(base_url):
            self._openai()  # build it now: configuration errors surface at construction

    @property
    def base_url(self) -> str:
        """The endpoint (the first one, when there are several)."""
        return self.base_urls[0]

    @property
    def base_urls(self) -> list[str]:
        if self.provider == "azure":
            return [str(self._azure[0])]
        if self._client is not None:
            clients = self._endpoints.clients if self._endpoints else [self._client]
            return [str(c.base_url).rstrip("/") for c in clients]
        return ["(not started yet)"]

    def _openai(self) -> openai.OpenAI:
        if self._client is not None:
            return self._client
        with self._client_lock:
            if self._client is None:
                found = self._base_url() if callable(self._base_url) else self._base_url
                urls = [found] if found is None or isinstance(found, str) else list(found)
                if len(urls) > 1:  # several one-request-at-a-time servers (the local pool)
                    self._endpoints = _Endpoints([self._build(url) for url in urls])
                    self._client = self._endpoints.clients[0]
                else:
                    shards = max(1, min(MAX_POOL_SHARDS, -(-self.concurrency // POOL_SHARD)))
                    self._shards = [self._build(urls[0]) for _ in range(shards)]
                    self._client = self._shards[0]
            return self._client

    def _build(self, url: str | None) -> openai.OpenAI:
        import openai

        if self.provider == "azure":
            return openai.AzureOpenAI(
                azure_endpoint=self._azure[0], api_version=self._azure[1], api_key=self._api_key,
                timeout=self.timeout_s, max_retries=0, http_client=self._http_client(self._azure[0]))
        return openai.OpenAI(base_url=url, api_key=self._api_key, timeout=self.timeout_s, max_retries=0,
                             http_client=self._http_client(url))

    @staticmethod
    def _http_client(url: str | None) -> Any:
        import openai

        # A loopback server is never reached through an HTTP(S)_PROXY from the environment.
        return openai.DefaultHttpxClient(trust_env=False) if _is_loopback(url) else None

    @contextlib.contextmanager
    def _endpoint(self, wait_s: float | None = None) -> Any:
        """The openai client for one request (a request slot held): the calling thread's shard, or a free one of
        several endpoints. ``wait_s`` bounds the wait for a slot (a served request's deadline)."""
        self._openai()
        if not self._semaphore.acquire(timeout=wait_s):
            raise DeadlineExceeded(f"the request's deadline passed while {self.concurrency} model requests were "
                                   "in flight", model_slow=True)
        try:
            if self._endpoints is None:
                index = getattr(self._thread, "shard", None)
                if index is None:  # each thread keeps one connection pool
                    index = self._thread.shard = next(self._shard_counter) % len(self._shards)
                yield self._shards[index]
            else:
                with self._endpoints.take(wait_s) as taken:
                    yield taken
        finally:
            self._semaphore.release()

    @classmethod
    def from_settings(cls, settings: Settings,
                      base_url_override: str | Sequence[str] | Callable[[], str | Sequence[str]] | None = None, *,
                      cache: CompletionCache | bool | None = True,
                      sleep: Callable[[float], None] = time.sleep) -> LLMClient:
        """A client for ``settings.llm_provider``.

        ``cache=True`` uses ``settings.cache_dir / "completions.sqlite"``; ``None``/``False`` disables it;
        a :class:`CompletionCache` is used as given.
        """
        provider = settings.llm_provider
        base_url = base_url_override or settings.llm_base_url
        if provider == "local" and not base_url:
            if settings.local_llm_port:
                base_url = f"http://127.0.0.1:{settings.local_llm_port}/v1"
            else:
                raise ConfigError("provider 'local' needs a running server: use t2s.local_llm.client_for() "
                                  "(it starts one), or set T2S_LLM_BASE_URL / T2S_LOCAL_LLM_PORT to one "
                                  "started with `t2s llm serve`", field="llm_base_url")
        if provider == "compatible" and not base_url:
            raise ConfigError("provider 'compatible' needs T2S_LLM_BASE_URL (…/v1)", field="llm_base_url")
        api_key, source = resolve_api_key(settings)
        if cache is True:
            cache_obj: CompletionCache | None = CompletionCache(Path(settings.cache_dir) / "completions.sqlite")
        elif cache is False or cache is None:
            cache_obj = None
        else:
            cache_obj = cache
        return cls(provider=provider, model=settings.llm_model, base_url=base_url, api_key=api_key,
                   key_source=source, azure_endpoint=settings.azure_endpoint,
                   azure_api_version=settings.azure_api_version, timeout_s=settings.llm_timeout_s,
                   max_retries=settings.llm_max_retries, concurrency=settings.llm_concurrency,
                   cache=cache_obj, sleep=sleep)

    # -- plumbing

    @property
    def where(self) -> str:
        """Provider and endpoint, for messages."""
        return f"{self.provider} ({self.base_url})"

    def _redact(self, text: str) -> str:
        if self._api_key and self._api_key != DUMMY_API_KEY:
            text = text.replace(self._api_key, "***")
        return _KEYLIKE.sub("***", text)

    def close(self) -> None:
        for client in self._endpoints.clients if self._endpoints else self._shards:
            client.close()
        self.cache.close()

    def __enter__(self) -> LLMClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the call

    def complete(self, messages: list[Message], params: ChatParams | None = None) -> Completion:
        """One chat completion: from the cache if present, else from the provider (with retries)."""
        params = params or ChatParams()
        start = time.perf_counter()
        use_cache = self.cache.enabled and params.deterministic
        key = CompletionCache.key(self.model, messages, params) if use_cache else ""
        if use_cache:
            hit = self.cache.get(key)
            if hit is not None:
                text, model, pt, ct = hit
                return Completion(text=text, model=model, prompt_tokens=pt, completion_tokens=ct,
                                  latency_s=time.perf_counter() - start, cached=True, attempts=0)

        self._openai()  # may start the local server: not part of the call's latency
        start = time.perf_counter()
        response, attempts = self._request(messages, params)
        text = ""
        if response.choices:
            text = response.choices[0].message.content or ""
        usage = response.usage
        completion = Completion(
            text=text, model=response.model or self.model,
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0) if usage else 0,
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0) if usage else 0,
            latency_s=time.perf_counter() - start, cached=False, attempts=attempts)
        if use_cache:
            self.cache.put(key, completion)
        return completion

    def _request(self, messages: list[Message], params: ChatParams, **extra: Any) -> tuple[Any, int]:
        """One chat-completions request with our retry loop: (response, attempts)."""
        import openai

        self._openai()
        # JSON bodies are UTF-8: a lone surrogate (in a question, or a model answer echoed by a repair turn)
        # would make the HTTP client raise before anything is sent.
        sendable = [{k: json_safe_text(v) if isinstance(v, str) else v for k, v in m.items()} for m in messages]
        attempts = 0
        client: Any = None
        # Our own retry loop, not the openai client's (built with max_retries=0). openai 2.x does honour
        # Retry-After / retry-after-ms and jitters its backoff, but (read in openai/_base_client.py):
        # - it sleeps inside ``create()``, i.e. while holding one of our ``llm_concurrency`` slots: a
        #   rate-limited request would idle a slot for its whole wait; here the slot is released first;
        # - a Retry-After above its 120 s cap makes it give up at once; here we wait the cap and retry;
        # - its sleep is a hard-wired ``time.sleep`` and it does not report the attempts made, while the
        #   tests inject ``sleep`` and :class:`Completion` / the error messages carry the attempt count.
        budget = deadline.current()  # a served request's deadline bounds every attempt and wait
        while True:
            attempts += 1
            per_attempt = self.timeout_s if budget is None else min(self.timeout_s, budget.left_for("the model answered"))
            try:
                with self._endpoint(None if budget is None else per_attempt) as client:
                    response = client.chat.completions.create(
                        model=self.model, messages=sendable, **params.request_kwargs(), **extra,  # type: ignore[arg-type]
                        timeout=per_attempt)
            except openai.APIStatusError as exc:
                status = exc.status_code
                message = self._redact(_provider_message(exc))
                if status in (401, 403):
                    raise LLMAuthError(
                        f"{self.where} rejected the credentials (HTTP {status}: {message}); the key came from "
                        f"{self.key_source}: set a valid key in T2S_LLM_API_KEY (or T2S_LLM_API_KEY_FILE)"
                        + (" and check the deployment's access" if status == 403 else "")) from None
                if status not in RETRYABLE_STATUS and status < 500:
                    raise LLMRefused(f"{self.where} refused the request: HTTP {status}: {message}") from None
                if attempts > self.max_retries:
                    raise LLMError(f"{self.where} kept failing: HTTP {status} after {attempts} attempt(s): "
                                   f"{message}") from None
                delay = retry_after_seconds(exc.response.headers)
                delay = backoff_delay(attempts) if delay is None else min(delay, RETRY_AFTER_CAP_S)
            except openai.APIConnectionError as exc:  # includes APITimeoutError
                if budget is not None and budget.remaining() <= 0:
                    raise DeadlineExceeded(f"the request's deadline ({budget.seconds:g} s) passed while waiting for "
                                           f"the model ({attempts} attempt(s))", model_slow=True) from None
                if self._endpoints is not None:
                    self._endpoints.move_on()  # one of several servers is gone or stuck: retry on another
                if attempts > self.max_retries:
                    what = (f"timed out after {self.timeout_s:g} s" if isinstance(exc, openai.APITimeoutError)
                            else "cannot be reached")
                    cause = exc.__cause__ or exc
                    url = str(getattr(client, "base_url", self.base_url)).rstrip("/")  # the one that failed
                    raise LLMUnavailable(
                        f"the LLM endpoint {url} ({self.provider}) {what} after {attempts} "
                        f"attempt(s): {type(cause).__name__}: {self._redact(str(cause)) or 'no detail'}"
                    ) from None
                delay = backoff_delay(attempts)
            else:
                break
            if budget is not None and delay >= budget.remaining():
                raise DeadlineExceeded(f"the request's deadline ({budget.seconds:g} s) leaves no time to retry the "
                                       f"model after {attempts} failed attempt(s)", model_slow=True)
            self._sleep(delay)
        return response, attempts

    def complete_samples(self, messages: list[Message], params: ChatParams, n: int) -> list[Completion]:
        """``n`` samples of the same messages (self-consistency), each cached on its own key.

        Providers that implement ``n`` (:data:`N_PROVIDERS`) get one request with ``n`` choices; others get
        ``n`` requests with seeds ``params.seed``, ``params.seed + 1``, … (llama-cpp-python's server ignores
        ``n``; it reuses the shared prompt prefix across the requests instead). With ``n`` in one request the
        usage is reported once: its tokens are put on the first sample.
        """
        if n <= 1 or self.provider not in N_PROVIDERS:
            base = params.seed or 0
            return [self.complete(messages, replace(params, seed=base + i)) for i in range(max(1, n))]
        start = time.perf_counter()
        use_cache = self.cache.enabled and params.deterministic
        keys = [f"{CompletionCache.key(self.model, messages, params)}:n{n}:{i}" for i in range(n)]
        hits = [self.cache.get(k) for k in keys] if use_cache else [None] * n
        if all(h is not None for h in hits):
            elapsed = time.perf_counter() - start
            return [Completion(text=h[0], model=h[1], prompt_tokens=h[2], completion_tokens=h[3],  # type: ignore[index]
                               latency_s=elapsed / n, cached=True, attempts=0) for h in hits]
        self._openai()  # may start the local server: not part of the call's latency
        start = time.perf_counter()
        response, attempts = self._request(messages, params, n=n)
        latency = time.perf_counter() - start
        usage = response.usage
        pt = int(getattr(usage, "prompt_tokens", 0) or 0) if usage else 0
        ct = int(getattr(usage, "completion_tokens", 0) or 0) if usage else 0
        choices = sorted(response.choices or [], key=lambda c: c.index)
        out = []
        for i in range(n):
            text = (choices[i].message.content or "") if i < len(choices) else ""
            completion = Completion(text=text, model=response.model or self.model, prompt_tokens=pt if i == 0 else 0,
                                    completion_tokens=ct if i == 0 else 0, latency_s=latency / n, cached=False,
                                    attempts=attempts)
            if use_cache:
                self.cache.put(keys[i], completion)
            out.append(completion)
        return out
