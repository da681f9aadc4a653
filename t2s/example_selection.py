"""Few-shot example selection by masked-question similarity (DAIL-SQL style), deterministic and offline.

BM25 over raw questions favours examples that share *content* words ("Alice", "2023", "branch"), which
says little about the SQL shape. Masking first removes what is specific to one database or one value:
schema words (table and column names, split on ``_``) become ``<schema>``, numbers, quoted strings and
capitalised words inside a sentence become ``<value>``. What is left is the question's skeleton ("how
many <schema> per <schema> in <value>"), and examples with a similar skeleton tend to need similar SQL.

Similarity is the cosine of TF-IDF vectors of the masked unigrams and bigrams (IDF from the pool); ties
keep the pool's order. Pure Python: no model download, the same answer on every machine.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from functools import lru_cache

_TOKEN = re.compile(r"'[^']*'|\"[^\"]*\"|\d+(?:\.\d+)?|\w+|[^\w\s]")
SCHEMA, VALUE = "<schema>", "<value>"


def schema_words(names: Iterable[str]) -> frozenset[str]:
    """Lower-case words of table and column names (``customer_id`` gives ``customer``, ``id``, itself)."""
    words: set[str] = set()
    for name in names:
        low = name.lower()
        words.add(low)
        words.update(w for w in re.split(r"[_\W]+", low) if len(w) > 1)
        words.update(w[:-1] for w in list(words) if w.endswith("s") and len(w) > 3)
    return frozenset(words)


def _singular(word: str) -> str:
    return word[:-1] if word.endswith("s") and len(word) > 3 else word


def mask_question(question: str, vocabulary: frozenset[str]) -> list[str]:
    """Tokens of ``question`` with schema words and values masked."""
    out: list[str] = []
    for i, tok in enumerate(_TOKEN.findall(question)):
        low = tok.lower()
        if tok[0] in "'\"" or tok[0].isdigit():
            out.append(VALUE)
        elif low in vocabulary or _singular(low) in vocabulary:
            out.append(SCHEMA)
        elif i > 0 and tok[0].isupper() and tok.isalpha():
            out.append(VALUE)
        elif tok.isalnum():
            out.append(low)
    return out


def _features(tokens: Sequence[str]) -> Counter[str]:
    return Counter([*tokens, *(f"{a} {b}" for a, b in itertools.pairwise(tokens))])


@lru_cache(maxsize=16)
def _index(documents: tuple[tuple[str, ...], ...]) -> tuple[list[dict[str, float]], dict[str, float]]:
    feats = [_features(d) for d in documents]
    df: Counter[str] = Counter()
    for f in feats:
        df.update(f.keys())
    n = len(documents)
    idf = {t: math.log((1 + n) / (1 + c)) + 1.0 for t, c in df.items()}
    return [_unit({t: c * idf[t] for t, c in f.items()}) for f in feats], idf


def _unit(vec: dict[str, float]) -> dict[str, float]:
    norm = math.sqrt(sum(v * v for v in vec.values())) or 1.0
    return {t: v / norm for t, v in vec.items()}


def masked_similarity_rank(keys: list[str], questions: list[str], query: str, vocabulary: frozenset[str],
                           top_k: int | None = None) -> list[str]:
    """``keys`` ordered by masked-question similarity of their ``questions`` to ``query`` (best first)."""
    if not keys:
        return []
    docs = tuple(tuple(mask_question(q, vocabulary)) for q in questions)
    vectors, idf = _index(docs)
    qf = _features(mask_question(query, vocabulary))
    qv = _unit({t: c * idf.get(t, math.log(1 + len(docs)) + 1.0) for t, c in qf.items()})
    scores = [sum(w * v.get(t, 0.0) for t, w in qv.items()) for v in vectors]
    order = sorted(range(len(keys)), key=lambda i: (-round(scores[i], 12), i))
    ranked = [keys[i] for i in order]
    return ranked[:top_k] if top_k is not None else ranked
