"""One root for every error the platform raises on purpose.

Each error carries the structured fields a person needs to act (file, line, item id, field) and a
message that names the fix. CLI commands and HTTP handlers convert these at the boundary; library
code raises them and never returns ``None`` for a failure.
"""

from __future__ import annotations

from pathlib import Path


class Text2SQLError(Exception):
    """Root of all platform errors."""

    def __init__(self, message: str, *, file: str | Path | None = None, line: int | None = None,
                 item_id: str | None = None, field: str | None = None) -> None:
        self.message = message
        self.file = str(file) if file is not None else None
        self.line = line
        self.item_id = item_id
        self.field = field
        super().__init__(self.__str__())

    def location(self) -> str:
        parts = []
        if self.file:
            parts.append(self.file + (f":{self.line}" if self.line is not None else ""))
        if self.item_id:
            parts.append(f"item {self.item_id!r}")
        if self.field:
            parts.append(f"field {self.field!r}")
        return ", ".join(parts)

    def __str__(self) -> str:
        where = self.location()
        return f"{where}: {self.message}" if where else self.message


class ConfigError(Text2SQLError):
    """A settings value, flag or config file is wrong."""


class DatasetError(Text2SQLError):
    """A dataset file or row is malformed, or a dataset fails validation."""


class PredictionsError(Text2SQLError):
    """A predictions file does not line up with its dataset or is malformed."""


class SqlError(Text2SQLError):
    """Base for problems with one SQL string. ``error_class`` is the scorer's taxonomy label."""

    error_class = "execution_error"


class SqlParseError(SqlError):
    error_class = "parse_error"


class SqlRefused(SqlError):
    """The guard refused the statement (not a single read-only SELECT/WITH)."""

    error_class = "refused"


class SqlTimeout(SqlError):
    error_class = "timeout"


class SqlUnknownTable(SqlError):
    error_class = "unknown_table"


class SqlUnknownColumn(SqlError):
    error_class = "unknown_column"


class SqlExecutionError(SqlError):
    error_class = "execution_error"


class PromptError(Text2SQLError):
    """A prompt file, version, variable or registry entry is wrong."""


class LLMError(Text2SQLError):
    """The model provider failed: unreachable, rejected credentials, or kept failing after retries."""


class LLMUnavailable(LLMError):
    """The endpoint cannot be reached (connection refused, DNS, timeouts after all retries)."""


class LLMAuthError(LLMError):
    """The provider rejected the credentials (HTTP 401/403)."""


class LLMRefused(LLMError):
    """The provider refused this one request (a non-retryable 4xx: too long for the context, a content
    filter…): the request's fault, not a sign that the endpoint is failing."""


class SqlExtractionError(SqlError):
    """The model's answer contains no SQL query."""

    error_class = "no_sql"


class DeadlineExceeded(Text2SQLError):
    """A served request used up its deadline (``T2S_SERVE_REQUEST_DEADLINE_S``): outcome ``timeout``.

    Not a :class:`SqlError` or :class:`LLMError` on purpose: a strategy must stop, not try its next
    candidate. ``model_slow``: the time ran out waiting for the model (its circuit breaker counts that as a
    failure, as it does a model call that times out), not in SQL or before a call could start."""

    error_class = "timeout"

    def __init__(self, message: str, *, model_slow: bool = False) -> None:
        super().__init__(message)
        self.model_slow = model_slow


class GateRefused(Text2SQLError):
    """The promotion gate did not pass (and the promotion was not forced)."""
