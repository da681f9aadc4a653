"""A private PostgreSQL server for the execution-target tests.

``T2S_TEST_POSTGRES_DSN`` points the tests at an existing server. Otherwise the session fixture runs
``initdb`` + ``pg_ctl`` from the installed PostgreSQL binaries into a temp directory, on a free loopback
port (as the ``postgres`` system user when running as root, since PostgreSQL refuses root), and stops it
at the end. Without binaries the tests are skipped, unless ``T2S_REQUIRE_POSTGRES`` is set (CI), where
that is a failure.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from t2s.local_llm import free_port


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), reverse=True)
    if found:
        return Path(found[0]).parent
    exe = shutil.which("pg_ctl")
    return Path(exe).resolve().parent if exe else None


def _run(cmd: list[str], log: Path | None = None) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = log.read_text()[-2000:] if log is not None and log.exists() else ""
        pytest.fail(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}{tail}")


def _unavailable(reason: str) -> None:
    if os.environ.get("T2S_REQUIRE_POSTGRES"):
        pytest.fail(f"PostgreSQL is required here (T2S_REQUIRE_POSTGRES) but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    if dsn := os.environ.get("T2S_TEST_POSTGRES_DSN"):
        yield dsn
        return
    bindir = _pg_bin()
    if bindir is None:
        _unavailable("no PostgreSQL binaries found (run infra/local/install_system_deps.sh)")
    # Not under pytest's basetemp: that is private to root (0700) and the server runs as 'postgres'.
    base = Path(tempfile.mkdtemp(prefix="t2s-pg-"))
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    as_root = os.geteuid() == 0
    prefix: list[str] = []
    if as_root:
        import pwd

        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            _unavailable("running as root and no 'postgres' system user to run the server as")
        os.chown(base, pw.pw_uid, pw.pw_gid)
        os.chown(sock, pw.pw_uid, pw.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    _run([*prefix, str(bindir / "initdb"), "-D", str(data), "-U", "t2s", "--auth=trust", "--no-sync",
          "-E", "UTF8"])
    opts = f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off"
    _run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(base / "log"), "-w",
          "-t", "60", "start"], log=base / "log")
    dsn = f"host=127.0.0.1 port={port} user=t2s dbname=postgres"
    try:
        import psycopg

        for _ in range(100):
            try:
                psycopg.connect(dsn, connect_timeout=2).close()
                break
            except psycopg.OperationalError:
                time.sleep(0.1)
        yield dsn
    finally:
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def reader_dsn(admin_dsn: str, schemas: tuple[str, ...], role: str = "t2s_reader") -> str:
    """Create (or tighten) the least-privilege reader role for ``schemas`` and return a DSN that logs in as it.

    The server also gets the extensions an attacker would reach for (dblink, adminpack) when they are
    installed, so the tests show the role, not their absence, is what stops them.
    """
    import psycopg

    from t2s.pg_roles import ReaderRole, apply_reader_role

    info = psycopg.conninfo.conninfo_to_dict(admin_dsn)
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        for ext in ("dblink", "adminpack"):
            with contextlib.suppress(psycopg.Error):  # contrib not installed: nothing to defend against
                conn.execute(f"CREATE EXTENSION IF NOT EXISTS {ext}")
    apply_reader_role(admin_dsn, ReaderRole(name=role, database=str(info.get("dbname", "postgres")),
                                            schemas=schemas))
    info["user"] = role
    return psycopg.conninfo.make_conninfo(**info)
