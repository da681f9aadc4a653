"""Killable worker processes that run untrusted SQL, so that no query can outlive its timeout.

Engine timeouts only fire between steps of the engine's own loop. One long function call
(``printf('%.*c', 1e9)``, ``repeat('x', 1e9)``), a planner blow-up, or an engine bug that aborts the
process slips past them. So every query runs in a worker process:

- the caller waits at most ``timeout_s + grace_s``; past that the worker is killed (SIGKILL) and the
  caller gets :class:`~t2s.errors.SqlTimeout`; a replacement starts on the next query;
- a worker that dies (``SIGABRT`` from an engine, the memory limit) gives the caller a
  :class:`~t2s.errors.SqlExecutionError` naming the signal; the caller's process never dies of a query;
- each worker limits its own address space (``RLIMIT_AS``), file writes (``RLIMIT_FSIZE``) and core dumps,
  so memory stays bounded even where an engine has no limit of its own;
- workers keep engine sessions open between queries (see :mod:`t2s.engines` for how each session resets),
  are reused across calls, and exit when their parent goes away.

The pool is shared by the threads of a process (``max_workers`` queries run at once; more wait for a free
worker). Requests and replies are length-prefixed pickles on the worker's stdin and a private pipe.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import os
import pickle
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from t2s import errors
from t2s.engines import EngineLimits, QueryResult

_HEADER = struct.Struct(">Q")
_DEFAULT_LIMITS = EngineLimits()
MAX_REPLY_BYTES = 256 << 20


@dataclass(frozen=True, slots=True)
class EngineSpec:
    """Where a query runs; workers open (and cache) one engine session per spec."""

    engine: str          # sqlite | duckdb | postgres
    location: str        # file path, or DSN for postgres
    schema: str | None = None
    limits: EngineLimits = _DEFAULT_LIMITS


class _WorkerGone(Exception):
    pass


class _Worker:
    def __init__(self, memory_mb: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "t2s.sandbox", str(memory_mb)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            start_new_session=True, close_fds=True,
            # glibc gives each new thread its own malloc arena, reserving 64 MB of address space apiece:
            # under the worker's RLIMIT_AS, a few query timers used to exhaust it ("cannot allocate memory
            # for thread-local data", exit 127). Two arenas are plenty for one query at a time.
            env={**os.environ, "MALLOC_ARENA_MAX": "2"},
        )
        self.ready = False

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Wait for the worker's start-up frame (engines imported), so start-up never eats a query's timeout."""
        if not self.ready:
            self._read(_HEADER.size, time.monotonic() + timeout_s)
            self.ready = True

    def call(self, request: tuple[Any, ...], deadline: float) -> tuple[Any, ...]:
        blob = pickle.dumps(request, protocol=pickle.HIGHEST_PROTOCOL)
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(_HEADER.pack(len(blob)) + blob)
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise _WorkerGone(self._how_it_died()) from exc
        header = self._read(_HEADER.size, deadline)
        (size,) = _HEADER.unpack(header)
        return pickle.loads(self._read(size, deadline))

    def _read(self, n: int, deadline: float) -> bytes:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        chunks: list[bytes] = []
        while n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                raise TimeoutError
            chunk = os.read(fd, min(n, 1 << 20))
            if not chunk:
                raise _WorkerGone(self._how_it_died())
            chunks.append(chunk)
            n -= len(chunk)
        return b"".join(chunks)

    def _how_it_died(self) -> str:
        try:
            code = self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            return "the worker stopped answering"
        if code < 0:
            with contextlib.suppress(ValueError):
                return f"the worker was killed by {signal.Signals(-code).name}"
        return f"the worker exited with code {code}"

    def kill(self, *, reap_in_background: bool = False) -> None:
        """SIGKILL the worker's process group and reap it: here, or in a daemon thread when the caller
        must not wait for the kernel to tear down a worker that filled its memory (a second or more under
        load for a worker holding ~1 GB)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            self.proc.kill()
        for stream in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(Exception):
                stream.close()  # type: ignore[union-attr]
        if reap_in_background:
            threading.Thread(target=self._reap, daemon=True).start()
        else:
            self._reap()

    def _reap(self) -> None:
        with contextlib.suppress(Exception):
            self.proc.wait(timeout=5)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None


class Sandbox:
    """A pool of killable SQL workers (see the module docstring)."""

    def __init__(self, max_workers: int = 4, memory_mb: int = 2048, grace_s: float = 0.5) -> None:
        self.max_workers = max(1, max_workers)
        self.memory_mb = memory_mb
        self.grace_s = grace_s
        self._idle: list[_Worker] = []
        self._count = 0
        self._cond = threading.Condition()
        self.killed = 0  # workers killed at a deadline or found dead: visible to benchmarks and tests
        self.in_use = 0  # workers handed to a query right now (released or killed when execute returns)

    def execute(self, spec: EngineSpec, sql: str, *, timeout_s: float, max_rows: int,
                wait_s: float | None = None) -> QueryResult:
        """Run ``sql`` on a worker. ``wait_s`` bounds the wait for a free (and started) worker: past it,
        :class:`~t2s.errors.DeadlineExceeded` (a served request's deadline; no bound by default)."""
        start = time.monotonic()
        worker = self._acquire(wait_s)
        ready_s = None if wait_s is None else max(0.0, wait_s - (time.monotonic() - start))
        try:
            return self._run(worker, spec, sql, timeout_s, max_rows, ready_s)
        finally:
            with self._cond:
                self.in_use -= 1

    def _run(self, worker: _Worker, spec: EngineSpec, sql: str, timeout_s: float, max_rows: int,
             ready_s: float | None) -> QueryResult:
        """The query on ``worker``; ``ready_s`` bounds the wait for a worker still starting (None: 60 s)."""
        try:
            worker.wait_ready(60.0 if ready_s is None else min(60.0, ready_s))
        except TimeoutError:
            if ready_s is None:
                self._discard(worker)
                raise errors.SqlExecutionError("a SQL worker process did not start within 60 s") from None
            self._release(worker)  # still starting: the next query gets it
            raise errors.DeadlineExceeded("no SQL worker was ready before the request's deadline") from None
        except _WorkerGone as exc:
            self._discard(worker)
            raise errors.SqlExecutionError(f"a SQL worker process did not start: {exc}") from None
        deadline = time.monotonic() + timeout_s + self.grace_s
        try:
            reply = worker.call(("run", spec, sql, float(timeout_s), int(max_rows)), deadline)
        except TimeoutError:
            self._discard(worker)
            raise errors.SqlTimeout(
                f"query exceeded the timeout ({timeout_s:g} s) and its worker was stopped") from None
        except _WorkerGone as gone:
            self._discard(worker)
            raise errors.SqlExecutionError(
                f"the {spec.engine} engine crashed on this query ({gone}); nothing else was affected") from None
        except BaseException:
            self._discard(worker)
            raise
        self._release(worker)
        if reply[0] == "ok":
            return QueryResult(*reply[1:])
        _, kind, message = reply
        cls = getattr(errors, kind, None)
        if not (isinstance(cls, type) and issubclass(cls, errors.Text2SQLError)):
            cls = errors.SqlExecutionError
        raise cls(message)

    def _acquire(self, wait_s: float | None = None) -> _Worker:
        end = None if wait_s is None else time.monotonic() + wait_s
        with self._cond:
            while True:
                while self._idle:
                    worker = self._idle.pop()
                    if worker.alive:
                        self.in_use += 1
                        return worker
                    self._count -= 1
                    worker.kill()
                if self._count < self.max_workers:
                    self._count += 1
                    self.in_use += 1
                    break
                if end is None:
                    self._cond.wait()
                elif not self._cond.wait(max(0.0, end - time.monotonic())) and time.monotonic() >= end:
                    raise errors.DeadlineExceeded("no SQL worker was free before the request's deadline")
        try:
            return _Worker(self.memory_mb)
        except BaseException as exc:
            with self._cond:
                self._count -= 1
                self.in_use -= 1
                self._cond.notify()
            if isinstance(exc, OSError):
                raise errors.SqlExecutionError(f"cannot start a SQL worker process: {exc}") from exc
            raise

    def _release(self, worker: _Worker) -> None:
        with self._cond:
            self._idle.append(worker)
            self._cond.notify()

    def _discard(self, worker: _Worker) -> None:
        worker.kill(reap_in_background=True)  # the caller's answer does not wait for the process to exit
        with self._cond:
            self.killed += 1
            self._count -= 1
            self._cond.notify()
        threading.Thread(target=self._replace, daemon=True).start()

    def _replace(self) -> None:
        """Start a worker in the background so the query after a kill finds one ready."""
        with self._cond:
            if self._count >= self.max_workers:
                return
            self._count += 1
        try:
            worker = _Worker(self.memory_mb)
            worker.wait_ready()
        except Exception:
            with self._cond:
                self._count -= 1
                self._cond.notify()
            return
        self._release(worker)

    def close(self) -> None:
        with self._cond:
            idle, self._idle = self._idle, []
            self._count -= len(idle)
        for worker in idle:
            worker.kill()


_default: Sandbox | None = None
_default_lock = threading.Lock()


def default_sandbox() -> Sandbox:
    """The process's shared pool, sized by settings (``T2S_SANDBOX_WORKERS``, ``T2S_SANDBOX_MEMORY_MB``)."""
    global _default
    with _default_lock:
        if _default is None:
            from t2s.settings import get_settings

            s = get_settings()
            _default = Sandbox(s.sandbox_workers, s.sandbox_memory_mb, s.sandbox_grace_s)
        return _default


def _close_default() -> None:
    if _default is not None:
        _default.close()


def _forget_inherited_pool() -> None:
    """A forked child must not share its parent's workers (their pipes would interleave): start afresh."""
    global _default
    _default = None


atexit.register(_close_default)
os.register_at_fork(after_in_child=_forget_inherited_pool)


# --- the worker side ------------------------------------------------------------------------------------

def _limit_resources(memory_mb: int) -> None:
    import resource

    limit = memory_mb << 20
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 20, 64 << 20))


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(1.0)
        if os.getppid() != parent:
            os._exit(0)


#: Sessions a worker keeps open (databases it queried recently), in all and per engine.
MAX_SESSIONS = 16
MAX_SESSIONS_PER_ENGINE = {"duckdb": 4}


def _run_cached(sessions: dict[EngineSpec, Any], spec: EngineSpec, sql: str, timeout_s: float,
                max_rows: int) -> Any:
    """Run on the cached session for ``spec`` (opened when missing or unusable; the oldest closed first)."""
    session = sessions.get(spec)
    if session is None or not getattr(session, "usable", True):
        same_engine = [key for key in sessions if key.engine == spec.engine]
        # A DuckDB instance reserves far more address space than a SQLite or PostgreSQL connection.
        if len(sessions) >= MAX_SESSIONS or len(same_engine) >= MAX_SESSIONS_PER_ENGINE.get(spec.engine, MAX_SESSIONS):
            old = sessions.pop(same_engine[0] if same_engine else next(iter(sessions)))
            with contextlib.suppress(Exception):
                old.close()
        session = sessions[spec] = _open_session(spec)
    return session.run(sql, timeout_s, max_rows)


def _exhausted(exc: BaseException) -> bool:
    """Whether an error says the worker's address space ran out (not the query's own fault alone)."""
    text = str(exc)
    return isinstance(exc, MemoryError) or "can't start new thread" in text or "Out of Memory" in text


def _open_session(spec: EngineSpec) -> Any:
    from pathlib import Path

    from t2s import engines

    if spec.engine == "sqlite":
        return engines.SqliteSession(Path(spec.location), spec.limits)
    if spec.engine == "duckdb":
        return engines.DuckdbSession(Path(spec.location), spec.limits)
    if spec.engine == "postgres":
        return engines.PostgresSession(spec.location, spec.schema, spec.limits)
    raise errors.ConfigError(f"unknown engine {spec.engine!r}; choose sqlite, duckdb or postgres")


def _serve(memory_mb: int) -> None:
    # Replies go to a private copy of stdout; the real fd 1 points at stderr so that nothing an engine
    # prints can corrupt the protocol.
    out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    inp = os.fdopen(0, "rb", buffering=0)
    _limit_resources(memory_mb)
    # Python threads here (the watchdog, each query's timeout timer) need little stack; the default 8 MB
    # each counts against the address-space limit above.
    threading.stack_size(256 * 1024)
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    for module in ("duckdb", "psycopg"):  # imported now, before the first query's clock starts
        with contextlib.suppress(ImportError):
            __import__(module)
    out.write(_HEADER.pack(0))  # ready
    sessions: dict[EngineSpec, Any] = {}

    def read_exact(n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            chunk = inp.read(n - len(buf))
            if not chunk:
                raise EOFError
            buf += chunk
        return buf

    while True:
        try:
            (size,) = _HEADER.unpack(read_exact(_HEADER.size))
            _, spec, sql, timeout_s, max_rows = pickle.loads(read_exact(size))
        except EOFError:
            return
        reply: tuple[Any, ...]
        try:
            try:
                res = _run_cached(sessions, spec, sql, timeout_s, max_rows)
            except Exception as exc:
                if not _exhausted(exc) or not any(key != spec for key in sessions):
                    raise
                # The address-space limit is shared by every cached session (a DuckDB instance keeps its
                # buffers and threads): close the others and run the read-only query once more.
                for other in [key for key in sessions if key != spec]:
                    with contextlib.suppress(Exception):
                        sessions.pop(other).close()
                gc.collect()
                res = _run_cached(sessions, spec, sql, timeout_s, max_rows)
            reply = ("ok", res.columns, res.rows, res.truncated, res.elapsed_s, res.cells_clipped)
        except errors.Text2SQLError as exc:
            reply = ("err", type(exc).__name__, exc.message)
        except MemoryError:
            reply = ("err", "SqlExecutionError", "the query ran out of memory and was stopped")
        except RecursionError:
            reply = ("err", "SqlRefused", "the query is nested too deeply to run")
        except Exception as exc:  # an engine raising something unexpected must not kill the worker
            reply = ("err", "SqlExecutionError", f"{type(exc).__name__}: {str(exc).strip()[:300]}")
        try:
            blob = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            blob = pickle.dumps(("err", "SqlExecutionError", f"result cannot be returned: {exc}"))
        if len(blob) > MAX_REPLY_BYTES:
            blob = pickle.dumps(("err", "SqlExecutionError",
                                 f"result is larger than {MAX_REPLY_BYTES >> 20} MB; ask for fewer rows"))
        out.write(_HEADER.pack(len(blob)) + blob)


if __name__ == "__main__":
    _serve(int(sys.argv[1]) if len(sys.argv) > 1 else 2048)
