"""Offline BM25 retrieval with llama-index (llama-index-retrievers-bm25), used for schema linking and
for picking few-shot examples. Deterministic: ties are broken by the documents' order."""

from __future__ import annotations

from functools import lru_cache


def bm25_rank(keys: list[str], documents: list[str], query: str, top_k: int | None = None) -> list[str]:
    """``keys`` ordered by BM25 relevance of their ``documents`` to ``query`` (all keys, best first)."""
    if not keys:
        return []
    retriever = _retriever(tuple(keys), tuple(documents))
    retriever.similarity_top_k = len(keys)
    scores = {n.node.metadata["key"]: n.score or 0.0 for n in retriever.retrieve(query or " ")}
    position = {k: i for i, k in enumerate(keys)}
    ranked = sorted(keys, key=lambda k: (-scores.get(k, 0.0), position[k]))
    return ranked[:top_k] if top_k is not None else ranked


@lru_cache(maxsize=16)
def _retriever(keys: tuple[str, ...], documents: tuple[str, ...]):  # type: ignore[no-untyped-def]
    import logging

    from llama_index.core.schema import TextNode
    from llama_index.retrievers.bm25 import BM25Retriever

    logging.getLogger("bm25s").setLevel(logging.WARNING)
    nodes = [TextNode(text=doc or key, id_=f"n{i}", metadata={"key": key}) for i, (key, doc) in
             enumerate(zip(keys, documents, strict=True))]
    return BM25Retriever.from_defaults(nodes=nodes, similarity_top_k=len(nodes))
