"""Pull the SQL query out of a model's answer, in time linear in the answer's length.

Models wrap SQL in code fences, put prose before or after it, start it with a comment, end it with
semicolons, or answer with prose only. Whatever a question makes a model write reaches this code, so it is
built for hostile text:

- **Linear time.** Every regular expression here is possessive or bounded to one line (nothing can
  backtrack), string searches run in C (``str.find``/``count``), and the Python-level steps are bounded by
  constants: the query must start within :data:`START_WINDOW` characters, at most :data:`MAX_FENCES` code
  fences are looked at, the statement scanner stops after :data:`~t2s.sql_text.MAX_SQL_CHARS` characters of
  query (the guard refuses longer ones anyway), and as many characters of comments may follow it. A 1 MB
  hostile answer extracts in at most tens of milliseconds (``benchmarks/safe_execution.py --extract-only``).
- **Where the query is.** The first code fence tagged SQL (or untagged) that holds a query wins; otherwise
  the first line that starts one. A query starts with ``SELECT`` or ``WITH`` (and ``FROM`` in DuckDB, whose
  FROM-first syntax allows ``FROM t SELECT …``), possibly after ``(`` or same-line ``/* … */`` comments.
  Upper- or lower-case keywords are preferred to Title-case ones ("With the schema above, …" is prose).
- **Where it ends.** At the first ``;`` outside strings, quoted names, comments and (PostgreSQL, DuckDB)
  ``$tag$ … $tag$`` strings; at a closing fence; at a blank line followed by prose; or at the end.
- **One statement.** When what follows the query is another statement (``SELECT 1; DROP TABLE t``, or
  ``DELETE FROM t`` on a new line), the answer is refused with :class:`SeveralStatements`: it is not cut to
  its first statement, and the record says why. Comments, semicolons and prose after the query are fine.

:func:`extract_sql` returns the query's text, raises :class:`~t2s.errors.SqlExtractionError` when the
answer holds none and :class:`~t2s.errors.SqlRefused` (or its subclass :class:`SeveralStatements`) when it
holds more than one or is too large. Nothing else escapes, for any ``str`` including lone surrogates.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from t2s.errors import SqlExtractionError, SqlRefused
from t2s.sql_text import MAX_SQL_CHARS

#: Longer answers are refused before anything reads them (a model's max_tokens keeps real ones far below).
MAX_ANSWER_CHARS = 1_000_000
#: A query must start (and a code fence holding it open) within this many characters of the answer's start.
START_WINDOW = 100_000
#: Code fences looked at; a longer run of fences without SQL is read as no SQL.
MAX_FENCES = 64
#: Fence info strings that mean "this block is SQL" ("" is an untagged fence).
SQL_FENCE_LANGS = frozenset({"", "sql", "sqlite", "sqlite3", "tsql", "postgresql", "postgres", "psql", "pgsql",
                             "duckdb", "mysql", "ansi"})
FENCE = "```"


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


#: Words that begin a statement other than a query: after a query (following ``;`` or on a line of their
#: own) they mean a second statement.
_STATEMENT_WORDS = _words("""
    INSERT UPDATE DELETE MERGE REPLACE UPSERT DROP CREATE ALTER TRUNCATE RENAME ATTACH DETACH PRAGMA COPY
    EXPORT IMPORT INSTALL LOAD FORCE SET RESET BEGIN START COMMIT END ABORT ROLLBACK SAVEPOINT RELEASE GRANT
    REVOKE VACUUM ANALYZE ANALYSE EXPLAIN CALL DO EXECUTE EXEC PREPARE DEALLOCATE LISTEN NOTIFY UNLISTEN LOCK
    DECLARE FETCH CLOSE MOVE DISCARD CHECKPOINT REINDEX CLUSTER COMMENT SECURITY REASSIGN REFRESH SHOW
    DESCRIBE DESC SUMMARIZE USE
    SELECT WITH VALUES TABLE FROM
""")
#: Of those, the words that cannot continue a query when a line starts with them (``END`` closes a CASE,
#: ``SELECT`` follows a UNION, ``FROM``/``WITH``/``VALUES``/``TABLE``/``SET``… appear inside queries).
_NEW_STATEMENT_AT_LINE_START = _words("""
    INSERT UPDATE DELETE MERGE UPSERT DROP CREATE ALTER TRUNCATE ATTACH DETACH PRAGMA COPY EXPORT IMPORT
    INSTALL RESET BEGIN COMMIT ROLLBACK SAVEPOINT GRANT REVOKE VACUUM CALL EXECUTE PREPARE DEALLOCATE LISTEN
    NOTIFY UNLISTEN DISCARD CHECKPOINT REINDEX
""")

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*+")
_LINE_START = re.compile(r"(?P<space>\s*+)(?:(?P<fence>```)|(?P<word>[A-Za-z_][A-Za-z0-9_]*+))?")
_NAME_CHARS = re.compile(r"[A-Za-z0-9_$]*+")
# Whitespace, semicolons and terminated comments after a query (possessive: no backtracking).
_GAP = re.compile(r"[\s;]*+")
_TRAILER = re.compile(r"[\s;]*+(?:(?:--[^\n]*+|/\*(?:[^*]++|\*(?!/))*+\*/)[\s;]*+)*+")
_NAME_AFTER = re.compile(r"[ \t]++[A-Za-z_\"`\[]")
_DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*+)?\$")
# A line that reads as prose, after a blank line ends an unfenced query: a Title-case word that is not a
# qualified name or call, or a markdown heading, emphasis, quote or list item.
_PROSE_LINE = re.compile(r"[A-Z][a-z]++\b(?![.(])|#|\*\*|> |\d+\. [A-Za-z]")


def _start_pattern(keywords: str, flags: int) -> re.Pattern[str]:
    """A line that starts a query: indentation, same-line ``/* … */`` comments, ``(``, then a keyword.

    ``[^\\n]*?`` is bounded by the line and the repetitions are possessive, so each line costs at most its
    own length."""
    return re.compile(r"(?:^|\n)[ \t]*+(?:/\*[^\n]*?\*/[ \t]*+)*+(?P<sql>\(*+[ \t]*+(?P<kw>" + keywords
                      + r")\b)", flags)


# (any case, upper or lower case only) per dialect family: FROM starts a query in DuckDB only
_STARTS = {
    duck: (_start_pattern(kw, re.I), _start_pattern(kw + "|" + kw.lower(), 0))
    for duck, kw in ((False, "SELECT|WITH"), (True, "SELECT|WITH|FROM"))
}
_INTERESTING: dict[str, re.Pattern[str]] = {}


class SeveralStatements(SqlRefused):
    """The answer holds more than one statement: none of them is run."""


@dataclass(frozen=True)
class _Dialect:
    name: str
    dollar_quotes: bool  # $$ … $$ and $tag$ … $tag$ strings (PostgreSQL, DuckDB)
    escape_strings: bool  # E'…\'…' strings (PostgreSQL, DuckDB)
    bracket_names: bool  # [quoted name] (SQLite, T-SQL); elsewhere [ is a list or subscript

    @property
    def from_first(self) -> bool:
        return self.name == "duckdb"

    def interesting(self) -> re.Pattern[str]:
        """Characters where the scanner's state can change."""
        chars = ";'\"`-/\n" + ("$" if self.dollar_quotes else "") + ("[" if self.bracket_names else "")
        if chars not in _INTERESTING:
            _INTERESTING[chars] = re.compile("[" + re.escape(chars) + "]")
        return _INTERESTING[chars]


def _dialect(name: str) -> _Dialect:
    pg_like = name in ("postgres", "duckdb")
    return _Dialect(name, dollar_quotes=pg_like, escape_strings=pg_like, bracket_names=name in ("sqlite", "tsql"))


def answer_statement(text: str) -> str:
    """The part of an answer that would be the statement: the first fence's body, else the whole text.

    Used to say why an answer without a query was refused (e.g. it holds only ``DROP TABLE …``).
    """
    text = text or ""
    for _lang, _offset, body in _fences(text):
        return body.strip()
    return text.strip()


@dataclass(frozen=True)
class Extraction:
    sql: str
    fenced: bool  # found in a code fence
    steps: int  # Python-level scanner steps (bounded by MAX_SQL_CHARS whatever the answer's length)


def extract_sql(text: str, dialect: str = "sqlite") -> str:
    """The one query in a model's answer (without its ``;``); see the module docstring for the rules.

    ``dialect`` is the dialect the model was asked to write (it decides what quotes a ``;`` can hide in
    and whether ``FROM`` starts a query).
    """
    return extract(text, dialect).sql


def extract(text: str, dialect: str = "sqlite") -> Extraction:
    """:func:`extract_sql` with how the query was found."""
    text = text if isinstance(text, str) else ""
    if len(text) > MAX_ANSWER_CHARS:
        raise SqlRefused(f"the model's answer is {len(text):,} characters; at most {MAX_ANSWER_CHARS:,} are read")
    d = _dialect(dialect)
    for lang, offset, body in _fences(text):
        if lang.lower() in SQL_FENCE_LANGS:
            start = _find_start(body, d, max(0, START_WINDOW - offset))
            if start is not None:
                return _statement(body, start, d, fenced=True)
    start = _find_start(text, d, START_WINDOW)
    if start is None:
        snippet = " ".join(text[:2000].split())[:120]
        where = "" if len(text) <= START_WINDOW else f" (its first {START_WINDOW:,} characters)"
        raise SqlExtractionError(f"no SELECT/WITH query in the model's answer{where}: {snippet!r}")
    return _statement(text, start, d, fenced=False)


def _fences(text: str) -> list[tuple[str, int, str]]:
    """(info word, offset, body) of the code fences that open in the first :data:`START_WINDOW` characters
    (at most :data:`MAX_FENCES`); an unclosed fence runs to the end."""
    out: list[tuple[str, int, str]] = []
    pos = 0
    while len(out) < MAX_FENCES:
        i = text.find(FENCE, pos, START_WINDOW)
        if i < 0:
            break
        head = i + len(FENCE)
        close = text.find(FENCE, head)
        end = len(text) if close < 0 else close
        line_end = text.find("\n", head, end)
        if line_end < 0:  # one line: ```sql SELECT 1``` or ```SELECT 1```
            content = text[head:end].strip()
            word = content.split(None, 1)
            if word and word[0].lower() in SQL_FENCE_LANGS and len(word) == 2:
                out.append((word[0], head, word[1]))
            else:
                out.append(("", head, content))
        else:
            info = text[head:line_end].split(None, 1)
            out.append((info[0] if info else "", line_end + 1, text[line_end + 1:end]))
        pos = end + len(FENCE)
    return out


def _find_start(text: str, d: _Dialect, window: int) -> int | None:
    """Where the first query starts in ``text[:window]`` (at a line start). A Title-case keyword ("With the
    schema above, …") counts only when no upper- or lower-case one follows it."""
    any_case, exact_case = _STARTS[d.from_first]
    m = any_case.search(text, 0, window)
    if m is None:
        return None
    if _title_case(m.group("kw")):
        better = exact_case.search(text, m.end(), window)
        if better is not None:
            return better.start("sql")
    return m.start("sql")


def _statement(text: str, start: int, d: _Dialect, *, fenced: bool) -> Extraction:
    """The statement that starts at ``start``; raise when another one follows it."""
    end, rest, steps = _scan(text, start, d, fenced)
    sql = text[start:end].strip()
    if rest is not None:
        word = _next_statement(text, rest, d)
        if word is not None:
            raise SeveralStatements(
                f"the model's answer holds several SQL statements (another one starts with {word!r} after "
                f"{sql[:60]!r}); only an answer with exactly one query is run")
    return Extraction(sql, fenced, steps)


def _scan(text: str, start: int, d: _Dialect, fenced: bool) -> tuple[int, int | None, int]:
    """(end of the statement, where to look for a following statement or None, steps) from ``start``.

    One Python step per quote, comment, semicolon, dash, slash or line within the first
    :data:`MAX_SQL_CHARS` characters; quoted text and comments are skipped with ``str.find``."""
    n = len(text)
    interesting = d.interesting()
    pos = start
    steps = 0
    while True:
        steps += 1
        if pos - start > MAX_SQL_CHARS:
            raise SqlRefused(f"the query in the model's answer is longer than {MAX_SQL_CHARS:,} characters")
        m = interesting.search(text, pos)
        if m is None:
            return n, None, steps
        p = m.start()
        ch = text[p]
        if ch == ";":
            return p, p + 1, steps
        if ch == "\n":
            line = _LINE_START.match(text, p)  # the whitespace run, then a fence or the line's first word
            q = line.end("space")  # type: ignore[union-attr]
            if q >= n or line.group("fence"):  # type: ignore[union-attr]
                return p, None, steps
            word = line.group("word")  # type: ignore[union-attr]
            if (word and word.upper() in _NEW_STATEMENT_AT_LINE_START and not _title_case(word)
                    and _NAME_AFTER.match(text, q + len(word))):
                return p, q, steps
            if (not fenced and (not word or word[0].isupper()) and text.count("\n", p, q) >= 2
                    and _PROSE_LINE.match(text, q)):
                return p, None, steps
            pos = q
        elif ch == "`":
            if text.startswith(FENCE, p):
                return p, None, steps
            pos = _after_close(text, "`", p + 1)
        elif ch == "'":
            if d.escape_strings and p > 0 and text[p - 1] in "eE" and (p < 2 or not _ident_char(text[p - 2])):
                pos = _after_escape_string(text, p + 1, start + MAX_SQL_CHARS + 1)
            else:
                pos = _after_close(text, "'", p + 1)
        elif ch == '"':
            pos = _after_close(text, '"', p + 1)
        elif ch == "[":
            pos = _after_close(text, "]", p + 1)
        elif ch == "-":
            if text.startswith("--", p):
                j = text.find("\n", p)
                pos = n if j < 0 else j
            else:
                pos = p + 1
        elif ch == "/":
            if text.startswith("/*", p):
                j = text.find("*/", p + 2)
                pos = n if j < 0 else j + 2
            else:
                pos = p + 1
        elif ch == "$":
            tag = _DOLLAR_TAG.match(text, p)
            if tag is not None and not (p > 0 and _ident_char(text[p - 1])):
                j = text.find(tag.group(), tag.end())
                pos = n if j < 0 else j + len(tag.group())
            else:  # a parameter ($1) or a name's inner $: skip the rest of the name
                pos = _NAME_CHARS.match(text, p + 1, start + MAX_SQL_CHARS + 1).end()  # type: ignore[union-attr]
        if pos >= n:
            return n, None, steps


def _next_statement(text: str, pos: int, d: _Dialect) -> str | None:
    """The first word of a statement that starts at ``pos`` (after semicolons and comments), if any."""
    q = _GAP.match(text, pos).end()  # type: ignore[union-attr]
    if text.startswith(("--", "/*"), q):  # comments (and the gaps between them) are bounded, gaps alone not
        limit = q + MAX_SQL_CHARS
        q = _TRAILER.match(text, q, limit).end()  # type: ignore[union-attr]
        if q == limit < len(text):
            raise SqlRefused(f"more than {MAX_SQL_CHARS:,} characters of comments follow the query")
    if q >= len(text) or text.startswith("/*", q) or text.startswith(FENCE, q):
        return None  # the end, an unterminated comment, or the closing fence
    word = _WORD.match(text, q)
    if word is None or word.group().upper() not in _STATEMENT_WORDS:
        return None  # prose, or punctuation
    if not _title_case(word.group()) or _parses_as_statement(text, q, d):
        return word.group()
    return None  # "With this query you get …": prose


def _parses_as_statement(text: str, pos: int, d: _Dialect) -> bool:
    """Whether the Title-case text at ``pos`` (up to the next ``;`` or blank line) parses as a statement."""
    from sqlglot import exp

    from t2s.errors import SqlParseError
    from t2s.guard import parse_one_statement

    end = min(len(text), pos + MAX_SQL_CHARS)
    for stop in (";", "\n\n"):
        j = text.find(stop, pos, end)
        if j >= 0:
            end = j
    try:
        tree = parse_one_statement(text[pos:end], d.name if d.name in ("sqlite", "duckdb", "postgres") else "sqlite")
    except SqlParseError:
        return False
    except SqlRefused:
        return True
    return not isinstance(tree, exp.Column | exp.Alias | exp.Literal | exp.Identifier | exp.Condition)


def _title_case(word: str) -> bool:
    return word[:1].isupper() and any(ch.islower() for ch in word)


def _ident_char(ch: str) -> bool:
    return ch.isalnum() or ch in "_$"


def _after_close(text: str, close: str, pos: int) -> int:
    j = text.find(close, pos)
    return len(text) if j < 0 else j + 1


def _after_escape_string(text: str, pos: int, limit: int) -> int:
    """After an E'…' string, where a backslash escapes the next character (gives up past ``limit``)."""
    while pos < limit:
        j = text.find("'", pos, limit)
        if j < 0:
            return limit
        k = j
        while k > pos and text[k - 1] == "\\":
            k -= 1
        if (j - k) % 2 == 0:
            return j + 1
        pos = j + 1
    return limit
