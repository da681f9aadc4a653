"""Structured request logs: one JSON line per request on stderr (stdout carries the EMF metric lines).

Fields: ``ts``, ``level``, ``logger``, ``msg`` and, for the request line, ``request_id``, ``method``,
``path``, ``status``, ``latency_ms``, ``principal`` (``jwt:<sub>``/``key:<name>``, never a credential),
``query_id``, ``variant``, ``prompt_version``, ``model_version``, ``outcome``; ``question`` and ``sql``
only with ``T2S_SERVE_LOG_CONTENT=true``. No header, query string or body is logged, so tokens and keys
cannot reach a log line; exception messages are logged without tracebacks' local values.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

REQUEST_LOGGER = "t2s.serving.requests"
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {"ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
                               "level": record.levelname, "logger": record.name, "msg": record.getMessage()}
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                doc[key] = value
        if record.exc_info and record.exc_info[0] is not None:
            doc["error"] = f"{record.exc_info[0].__name__}: {record.exc_info[1]}"
            doc["stack"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str, separators=(",", ":"))


class _StderrHandler(logging.Handler):
    """Writes to whatever ``sys.stderr`` is at emit time (so a replaced stderr, e.g. under pytest, is used)."""

    def __init__(self, stream: Any = None) -> None:
        super().__init__()
        self._stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = self._stream or sys.stderr
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:
            self.handleError(record)


def configure(fmt: str, stream: Any = None) -> None:
    """Send the ``t2s.serving`` loggers to ``stream`` (stderr) as JSON or text; idempotent per process."""
    logger = logging.getLogger("t2s.serving")
    for handler in list(logger.handlers):
        if isinstance(handler, _StderrHandler):
            logger.removeHandler(handler)
    handler = _StderrHandler(stream)
    handler.setFormatter(JsonFormatter() if fmt == "json" else
                         logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def request_fields(request: Any, status: int, latency_ms: float, log_content: bool) -> dict[str, Any]:
    state = request.state
    principal = getattr(state, "principal", None)
    fields: dict[str, Any] = {"request_id": getattr(state, "request_id", None), "method": request.method,
                              "path": request.url.path, "status": status, "latency_ms": round(latency_ms, 2),
                              "principal": principal.id if principal else None}
    rec = getattr(state, "record", None)
    if rec is not None:
        fields.update(query_id=rec.query_id, variant=rec.variant, prompt_version=rec.prompt_version,
                      model_version=rec.model_version, outcome=rec.outcome)
        if log_content:
            fields.update(question=rec.question, sql=rec.sql)
    return fields
