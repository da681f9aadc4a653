"""One decision over every dataset of a sweep.

A sweep that decides a version should carry a dataset the versions were not written against (a held-out
set): a version tuned on the bundled set can win there and lose everywhere else. :func:`pool_datasets`
joins each variant's runs on several datasets into one :class:`VariantRun` whose items are every item of
every dataset (ids prefixed ``<dataset>/``, each item's ``dataset`` set), so the leaderboard, the paired
tests and the promotion gate see all of them, and the gate can also compare dataset by dataset.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from evals.metrics import ItemVerdict, item_metrics, summarize
from evals.records import VariantRun

__all__ = ["POOL_SEPARATOR", "datasets_of", "pool_datasets", "pooled_metrics"]

POOL_SEPARATOR = "+"  # the pooled run's dataset name: "bank+freight"
_VERDICT_FIELDS = set(ItemVerdict.model_fields)


def datasets_of(run: VariantRun) -> list[str]:
    """The datasets a (pooled) run's items come from, in first-seen order; a plain run's own dataset."""
    seen = dict.fromkeys(i.dataset for i in run.items if i.dataset)
    return list(seen) or [run.dataset]


def pooled_metrics(parts: Sequence[VariantRun]) -> dict[str, float]:
    """Metrics of the union of ``parts``' items, computed as a cell's are, plus each dataset's accuracy."""
    items = [i for p in parts for i in p.items]
    verdicts = [ItemVerdict.model_validate(i.model_dump(include=_VERDICT_FIELDS)) for i in items]
    out = {k: v for k, v in summarize(verdicts).flat().items() if not k.startswith("error_rate/missing")}
    out |= item_metrics(items)
    if all("estimated_cost_usd" in p.metrics for p in parts):  # every part priced
        out["estimated_cost_usd"] = sum(float(p.metrics["estimated_cost_usd"]) for p in parts)
        out["cost_per_1k_answers_usd"] = 1000 * out["estimated_cost_usd"] / max(1, len(items))
    out |= {f"execution_accuracy/dataset/{p.dataset}": float(p.metrics.get(
        "execution_accuracy", sum(i.match for i in p.items) / max(1, len(p.items)))) for p in parts}
    return out


def pool_datasets(variants: Iterable[VariantRun], primary: str | None = None) -> list[VariantRun]:
    """One pooled run per variant that was evaluated on every dataset among ``variants``.

    ``primary`` names the dataset whose run the pooled one stands for (its MLflow run id and dataset
    directory: what a promotion registers and serves); default: the first dataset in name order. A variant
    missing from some dataset has no pooled run (it cannot be compared on the same items). With one dataset
    the runs come back unchanged.
    """
    runs = list(variants)
    names = sorted({v.dataset for v in runs})
    if len(names) <= 1:
        return runs
    primary = primary or names[0]
    if primary not in names:
        raise ValueError(f"dataset {primary!r} is not in the sweep ({', '.join(names)})")
    by_variant: dict[str, dict[str, VariantRun]] = {}
    for v in runs:
        seen = by_variant.setdefault(v.variant, {})
        if v.dataset in seen:
            raise ValueError(f"variant {v.variant!r} has two runs on dataset {v.dataset!r}")
        seen[v.dataset] = v
    pooled = []
    for variant, per_dataset in sorted(by_variant.items()):
        if set(per_dataset) != set(names):
            continue
        parts = [per_dataset[n] for n in names]
        head = per_dataset[primary]
        items = [i.model_copy(update={"id": f"{p.dataset}/{i.id}", "dataset": p.dataset})
                 for p in parts for i in p.items]
        pooled.append(head.model_copy(update={
            "variant": variant, "dataset": POOL_SEPARATOR.join(names),
            "dataset_version": POOL_SEPARATOR.join(p.dataset_version for p in parts),
            "metrics": pooled_metrics(parts), "items": items}))
    return pooled
