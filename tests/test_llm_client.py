"""LLMClient against a real loopback HTTP server speaking the OpenAI chat-completions shape.

Only the real ``openai`` client code runs here: nothing of it is mocked. Each test scripts the replies.
"""

from __future__ import annotations

import email.utils
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from t2s.errors import ConfigError, LLMAuthError, LLMError, LLMRefused, LLMUnavailable
from t2s.llm import (
    ChatParams,
    CompletionCache,
    LLMClient,
    backoff_delay,
    resolve_api_key,
    retry_after_seconds,
)
from t2s.local_llm import free_port
from t2s.settings import Settings
from tests.fakes import FakeOpenAI, Reply

SECRET = "sk-test-SECRET0123456789"
ASK = [{"role": "user", "content": "How many rows are in t?"}]


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI()
    yield server
    server.close()


def settings_for(tmp_path: Path, url: str | None, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"llm_provider": "compatible", "llm_base_url": url, "llm_model": "fake-model",
                              "llm_api_key": SECRET, "cache_dir": tmp_path / "cache", "llm_max_retries": 3,
                              "llm_concurrency": 4, "llm_timeout_s": 5.0}
    values.update(overrides)
    return Settings(**values)


def client_for_test(tmp_path: Path, url: str | None, sleeps: list[float] | None = None, *,
                    cache: Any = None, **overrides: Any) -> LLMClient:
    sleep = sleeps.append if sleeps is not None else (lambda s: None)
    return LLMClient.from_settings(settings_for(tmp_path, url, **overrides), cache=cache, sleep=sleep)


# --------------------------------------------------------------------------------------------- retries


def test_success_records_usage_and_sends_params(fake: FakeOpenAI, tmp_path: Path) -> None:
    client = client_for_test(tmp_path, fake.url)
    done = client.complete(ASK, ChatParams(temperature=0.0, max_tokens=64, stop=(";",), seed=7))
    assert (done.text, done.model, done.prompt_tokens, done.completion_tokens) == (
        "SELECT COUNT(*) FROM t", "fake-model", 11, 7)
    assert done.attempts == 1 and not done.cached and done.latency_s > 0
    sent = fake.requests[0]
    assert sent["path"] == "/v1/chat/completions"
    assert sent["headers"]["Authorization"] == f"Bearer {SECRET}"
    assert sent["json"]["messages"] == ASK
    assert {k: sent["json"][k] for k in ("model", "temperature", "max_tokens", "stop", "seed")} == {
        "model": "fake-model", "temperature": 0.0, "max_tokens": 64, "stop": [";"], "seed": 7}


def test_missing_usage_counts_zero_and_seed_none_is_not_sent(fake: FakeOpenAI, tmp_path: Path) -> None:
    fake.script = [Reply(usage=False)]
    done = client_for_test(tmp_path, fake.url).complete(ASK, ChatParams(seed=None))
    assert (done.prompt_tokens, done.completion_tokens) == (0, 0)
    assert "seed" not in fake.requests[0]["json"] and "stop" not in fake.requests[0]["json"]


def test_429_honours_retry_after_seconds(fake: FakeOpenAI, tmp_path: Path) -> None:
    fake.script = [Reply(429, headers={"Retry-After": "3"}), Reply()]
    sleeps: list[float] = []
    done = client_for_test(tmp_path, fake.url, sleeps).complete(ASK, ChatParams())
    assert sleeps == [3.0]
    assert done.attempts == 2 and done.text == "SELECT COUNT(*) FROM t"
    assert len(fake.requests) == 2


def test_429_honours_retry_after_http_date(fake: FakeOpenAI, tmp_path: Path) -> None:
    when = email.utils.formatdate(time.time() + 5, usegmt=True)
    fake.script = [Reply(429, headers={"Retry-After": when}), Reply()]
    sleeps: list[float] = []
    assert client_for_test(tmp_path, fake.url, sleeps).complete(ASK).attempts == 2
    assert len(sleeps) == 1 and 3.0 <= sleeps[0] <= 5.0


def test_5xx_twice_then_success_backs_off_exponentially(fake: FakeOpenAI, tmp_path: Path) -> None:
    fake.script = [Reply(500), Reply(502), Reply()]
    sleeps: list[float] = []
    done = client_for_test(tmp_path, fake.url, sleeps).complete(ASK)
    assert done.attempts == 3 and len(fake.requests) == 3
    assert len(sleeps) == 2
    assert 0.25 <= sleeps[0] <= 0.5 and 0.5 <= sleeps[1] <= 1.0


def test_401_is_an_auth_error_without_retries_and_never_shows_the_key(fake: FakeOpenAI, tmp_path: Path) -> None:
    fake.script = [Reply(401, error=f"Incorrect API key provided: {SECRET}.")]
    sleeps: list[float] = []
    with pytest.raises(LLMAuthError) as info:
        client_for_test(tmp_path, fake.url, sleeps).complete(ASK)
    message = str(info.value)
    assert "T2S_LLM_API_KEY" in message and "compatible" in message and "401" in message
    assert SECRET not in message and "SECRET0123" not in message
    assert len(fake.requests) == 1 and sleeps == []


def test_403_is_an_auth_error(fake: FakeOpenAI, tmp_path: Path) -> None:
    fake.script = [Reply(403, error="model access denied")]
    with pytest.raises(LLMAuthError, match=r"403.*model access denied"):
        client_for_test(tmp_path, fake.url).complete(ASK)


def test_other_4xx_is_an_error_with_status_and_provider_message(fake: FakeOpenAI, tmp_path: Path) -> None:
    fake.script = [Reply(400, error="context length exceeded")]
    sleeps: list[float] = []
    with pytest.raises(LLMError, match="HTTP 400: context length exceeded") as info:
        client_for_test(tmp_path, fake.url, sleeps).complete(ASK)
    assert type(info.value) is LLMRefused  # the request's fault: serving's circuit breaker does not count it
    assert len(fake.requests) == 1 and sleeps == []


def test_endless_503_gives_up_after_max_retries(fake: FakeOpenAI, tmp_path: Path) -> None:
    fake.script = [Reply(503, error="overloaded")]
    sleeps: list[float] = []
    with pytest.raises(LLMError, match="503 after 3 attempt") as info:
        client_for_test(tmp_path, fake.url, sleeps, llm_max_retries=2).complete(ASK)
    assert type(info.value) is LLMError
    assert len(fake.requests) == 3 and len(sleeps) == 2


def test_connection_refused_is_unavailable_naming_the_url(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    sleeps: list[float] = []
    with pytest.raises(LLMUnavailable, match="cannot be reached after 2 attempt") as info:
        client_for_test(tmp_path, url, sleeps, llm_max_retries=1).complete(ASK)
    assert url in str(info.value)
    assert len(sleeps) == 1


def test_timeout_is_retried_then_unavailable(fake: FakeOpenAI, tmp_path: Path) -> None:
    fake.script = [Reply(delay=0.6)]
    sleeps: list[float] = []
    with pytest.raises(LLMUnavailable, match="timed out"):
        client_for_test(tmp_path, fake.url, sleeps, llm_max_retries=1, llm_timeout_s=0.15).complete(ASK)
    assert len(fake.requests) == 2 and len(sleeps) == 1


def test_concurrency_is_bounded(fake: FakeOpenAI, tmp_path: Path) -> None:
    fake.script = [Reply(delay=0.1)]
    client = client_for_test(tmp_path, fake.url, llm_concurrency=2)
    errors: list[BaseException] = []

    def ask(i: int) -> None:
        try:
            client.complete([{"role": "user", "content": f"question {i}"}])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    assert len(fake.requests) == 8
    assert fake.max_inflight == 2


def test_backoff_and_retry_after_helpers() -> None:
    assert backoff_delay(1, rng=lambda: 1.0) == 0.5
    assert backoff_delay(3, rng=lambda: 0.0) == 1.0
    assert backoff_delay(30, rng=lambda: 1.0) == 20.0  # capped
    assert retry_after_seconds({"retry-after": "2"}) == 2.0
    assert retry_after_seconds({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0  # in the past
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({}) is None


# ----------------------------------------------------------------------------------------------- cache


def test_cache_hit_makes_no_request_and_survives_a_new_client(fake: FakeOpenAI, tmp_path: Path) -> None:
    path = tmp_path / "cache" / "completions.sqlite"
    first = client_for_test(tmp_path, fake.url, cache=CompletionCache(path))
    a = first.complete(ASK, ChatParams(max_tokens=32))
    b = first.complete(ASK, ChatParams(max_tokens=32))
    assert len(fake.requests) == 1
    assert not a.cached and b.cached and b.attempts == 0
    assert (b.text, b.model, b.prompt_tokens, b.completion_tokens) == (a.text, a.model, 11, 7)
    first.complete(ASK, ChatParams(max_tokens=33))  # different params: a new request
    assert len(fake.requests) == 2
    first.close()

    fake.script = [Reply(content="something else")]
    second = client_for_test(tmp_path, fake.url, cache=True)  # the default path: cache_dir/completions.sqlite
    assert second.cache.path == path
    c = second.complete(ASK, ChatParams(max_tokens=32))
    assert c.cached and c.text == a.text and len(fake.requests) == 2
    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_failures_are_not_cached_and_sampling_without_seed_is_not_cached(fake: FakeOpenAI, tmp_path: Path) -> None:
    fake.script = [Reply(400), Reply()]
    client = client_for_test(tmp_path, fake.url, cache=True)
    with pytest.raises(LLMError):
        client.complete(ASK)
    assert len(client.cache) == 0
    assert not client.complete(ASK).cached
    hot = ChatParams(temperature=0.8, seed=None)
    client.complete(ASK, hot)
    assert not client.complete(ASK, hot).cached
    assert len(fake.requests) == 4 and len(client.cache) == 1


def test_cache_key_depends_on_model_messages_and_params() -> None:
    base = CompletionCache.key("m", ASK, ChatParams())
    assert base == CompletionCache.key("m", [dict(reversed(list(ASK[0].items())))], ChatParams())
    assert base != CompletionCache.key("m2", ASK, ChatParams())
    assert base != CompletionCache.key("m", ASK, ChatParams(stop=("\n",)))
    assert base != CompletionCache.key("m", [{"role": "user", "content": "other"}], ChatParams())
    assert ChatParams(stop=(";",)).as_dict() == {"temperature": 0.0, "max_tokens": 512, "stop": [";"], "seed": 0}
    assert hash(ChatParams()) == hash(ChatParams())


def test_cache_is_shared_across_threads(tmp_path: Path) -> None:
    from t2s.llm import Completion

    cache = CompletionCache(tmp_path / "c.sqlite")

    def work(i: int) -> None:
        key = CompletionCache.key("m", [{"role": "user", "content": str(i)}], ChatParams())
        cache.put(key, Completion(str(i), "m", 1, 2, 0.1, False, 1))
        assert cache.get(key) == (str(i), "m", 1, 2)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(cache) == 6
    cache.close()


# ------------------------------------------------------------------------------------ providers and keys


def test_azure_client_construction(tmp_path: Path) -> None:
    client = LLMClient.from_settings(settings_for(
        tmp_path, None, llm_provider="azure", azure_endpoint="https://example-res.openai.azure.com",
        llm_model="my-deployment"), cache=None)
    assert isinstance(client._openai(), openai.AzureOpenAI)
    assert client.provider == "azure" and client.model == "my-deployment"
    assert client.base_url == "https://example-res.openai.azure.com"


def test_azure_requests_go_to_the_deployment(fake: FakeOpenAI, tmp_path: Path) -> None:
    endpoint = fake.url.removesuffix("/v1")
    client = LLMClient.from_settings(settings_for(
        tmp_path, None, llm_provider="azure", azure_endpoint=endpoint, llm_model="my-deployment"), cache=None)
    assert client.complete(ASK).text == "SELECT COUNT(*) FROM t"
    sent = fake.requests[0]
    assert sent["path"] == "/openai/deployments/my-deployment/chat/completions?api-version=2024-10-21"
    assert sent["headers"]["api-key"] == SECRET


def test_azure_without_endpoint_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="T2S_AZURE_ENDPOINT"):
        LLMClient.from_settings(settings_for(tmp_path, None, llm_provider="azure"), cache=None)


@pytest.mark.parametrize(("provider", "variable"), [("openai", "OPENAI_API_KEY"),
                                                    ("azure", "AZURE_OPENAI_API_KEY")])
def test_missing_key_is_a_config_error(provider: str, variable: str, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("AZURE_OPENAI_API_KEY", raising=False)
    settings = settings_for(tmp_path, None, llm_provider=provider, llm_api_key=None,
                            azure_endpoint="https://example-res.openai.azure.com")
    with pytest.raises(ConfigError, match=f"T2S_LLM_API_KEY.*{variable}"):
        LLMClient.from_settings(settings, cache=None)
    monkeypatch.setenv(variable, "from-env")
    assert resolve_api_key(settings) == ("from-env", variable)


def test_key_resolution_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "from-env")
    key_file = tmp_path / "key"
    key_file.write_text("  from-file \n")
    both = settings_for(tmp_path, None, llm_provider="openai", llm_api_key_file=key_file)
    assert resolve_api_key(both) == (SECRET, "T2S_LLM_API_KEY")
    file_only = settings_for(tmp_path, None, llm_provider="openai", llm_api_key=None, llm_api_key_file=key_file)
    assert resolve_api_key(file_only) == ("from-file", "T2S_LLM_API_KEY_FILE")
    missing = settings_for(tmp_path, None, llm_provider="openai", llm_api_key=None,
                           llm_api_key_file=tmp_path / "nope")
    with pytest.raises(ConfigError, match="T2S_LLM_API_KEY_FILE"):
        resolve_api_key(missing)
    monkeypatch.delenv("OPENAI_API_KEY")
    local = settings_for(tmp_path, None, llm_provider="local", llm_api_key=None)
    assert resolve_api_key(local)[1] == "none needed"


def test_compatible_and_local_need_a_base_url(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="T2S_LLM_BASE_URL"):
        LLMClient.from_settings(settings_for(tmp_path, None), cache=None)
    with pytest.raises(ConfigError, match="client_for"):
        LLMClient.from_settings(settings_for(tmp_path, None, llm_provider="local"), cache=None)
    local = LLMClient.from_settings(settings_for(tmp_path, None, llm_provider="local", local_llm_port=8765),
                                    cache=None)
    assert local.base_url == "http://127.0.0.1:8765/v1"


def test_module_stays_light() -> None:
    import subprocess
    import sys

    code = ("import sys, t2s.llm, t2s.local_llm; "
            "print([m for m in ('mlflow', 'llama_index', 'great_expectations', 'llama_cpp') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_dead_endpoint_among_several_is_skipped_on_retry(fake: FakeOpenAI, tmp_path: Path) -> None:
    """Local servers run one per core; one that died must not fail the requests of the thread that used it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/v1"  # closed again before use: nothing listens
    sleeps: list[float] = []
    client = LLMClient(provider="compatible", model="m", base_url=[dead, fake.url], api_key="k", max_retries=2,
                       sleep=sleeps.append)
    answers = [client.complete(ASK, ChatParams(seed=i)) for i in range(4)]
    assert all(a.text for a in answers) and len(fake.requests) == 4
    assert answers[0].attempts == 2 and all(a.attempts == 1 for a in answers[1:])  # then it stays on the live one
    assert len(sleeps) == 1
