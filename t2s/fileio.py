"""Atomic file writes (a reader, or a crash, never sees half a file) and cached file digests."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path
from typing import Any


def write_text_atomic(path: Path, text: str) -> None:
    """Write via a temp file in the same directory, then rename over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file ordinary permissions
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_jsonl_atomic(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def read_yaml_mapping(path: Path, error: type, expected: str, text: str | None = None) -> dict[str, Any]:
    """Parse ``path`` (or ``text`` read from it) as a YAML mapping; raise ``error`` naming file and line."""
    import yaml

    try:
        raw = yaml.safe_load(text if text is not None else path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise error(f"invalid YAML: {getattr(exc, 'problem', None) or exc}", file=path,
                    line=mark.line + 1 if mark is not None else None) from exc
    if not isinstance(raw, dict):
        raise error(f"expected a mapping with {expected}", file=path)
    return raw


def first_validation_error(exc: Any) -> tuple[str, str]:
    """(dotted field path, message) of a pydantic ValidationError's first error."""
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err["loc"]) or "(file)"
    return field, str(err["msg"]).removeprefix("Value error, ")


def file_digest(path: Path) -> str:
    """md5 of a file, computed once while its size and modification time stay the same."""
    st = path.stat()
    return _file_digest(str(path), st.st_size, st.st_mtime_ns)


@lru_cache(maxsize=1024)
def _file_digest(path: str, _size: int, _mtime_ns: int) -> str:
    return file_md5(Path(path))


def file_md5(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
