"""What counts as "the same question": the key the experiment report clusters outcomes by.

Serving answers at temperature 0 and caches answers per (variant, question), so everyone who asks a variant
the same question gets the same answer, and their outcomes are one observation, not many. The report
groups requests by :func:`normalized_question` so that "Top 5 branches by deposits?" and
"top 5 branches  by deposits" count as one question.
"""

from __future__ import annotations

import re
import unicodedata

_NOT_WORD = re.compile(r"[\W_]+")


def normalized_question(text: str) -> str:
    """``text`` with Unicode compatibility forms folded (NFKC), case folded, every run of punctuation,
    symbols and whitespace turned into one space, and the ends stripped.

    Idempotent; numbers and words are kept as they are, so "top 5" and "top 10" stay different questions.
    """
    folded = unicodedata.normalize("NFKC", text).casefold()
    return _NOT_WORD.sub(" ", folded).strip()
