"""What the bundled database generators share: writing a generated SQLite file in one step, the small
value helpers, and the command line.

A generator supplies its schema, its tables in insert order and ``_generate(rng) -> {table: rows}``;
:func:`write_database` creates the file next to its destination with foreign keys enforced, checks
``PRAGMA foreign_key_check``, compacts it and renames it into place, so a failed build never leaves a
half-written database and the same rows give a byte-identical file on the same SQLite version.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import date, timedelta
from pathlib import Path

__all__ = ["iso", "main", "money", "rand_date", "table_counts", "write_database"]


def iso(value: date) -> str:
    return value.isoformat()


def rand_date(rng: random.Random, lo: date, hi: date) -> date:
    return lo + timedelta(days=rng.randint(0, (hi - lo).days))


def money(value: float) -> float:
    return round(value + 0.0, 2)


def write_database(out: Path, schema: str, insert_order: Sequence[str], rows: dict[str, list[tuple]]) -> Path:  # type: ignore[type-arg]
    """Write ``rows`` under ``schema`` to ``out`` atomically; returns ``out``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()  # sqlite creates the file itself
    try:
        con = sqlite3.connect(tmp)
        try:
            for pragma in ("foreign_keys = ON", "journal_mode = OFF", "synchronous = OFF"):
                con.execute(f"PRAGMA {pragma}")
            con.executescript(schema)
            with con:
                for table in insert_order:
                    width = len(rows[table][0])
                    con.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * width)})", rows[table])
            if broken := con.execute("PRAGMA foreign_key_check").fetchall():
                raise RuntimeError(f"foreign key violations in generated data: {broken[:5]}")
            con.execute("VACUUM")
        finally:
            con.close()
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)  # only left behind when something failed
    return out


def table_counts(path: Path, tables: Sequence[str]) -> dict[str, int]:
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {t: con.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in tables}
    finally:
        con.close()


def main(argv: list[str] | None, *, prog: str, doc: str, default_out: Path, default_seed: int,
         build: Callable[[Path, int], Path], tables: Sequence[str]) -> int:
    """``python -m pipelines.build_<name> [--out PATH] [--seed N]``: build and print the row counts."""
    parser = argparse.ArgumentParser(prog=prog, description=doc.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=default_out,
                        help="where to write the SQLite file (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=default_seed, help="random seed (default: %(default)s)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    path = build(args.out, args.seed)
    summary = ", ".join(f"{t}={n}" for t, n in table_counts(path, tables).items())
    print(f"built {path} (seed {args.seed}, {path.stat().st_size / 1e6:.1f} MB, "
          f"{time.perf_counter() - started:.1f}s): {summary}")
    return 0
