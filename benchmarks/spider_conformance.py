"""Conformance of our scorer with Spider's official test-suite execution verdicts.

Imports a Spider sample (``dev.json`` + ``database/``; e.g. ../shared/spider-sample, which is
third-party data read in place and never copied into this repository) with
``pipelines.importers.import_spider`` into a work directory, writes each system's predictions as a
JSONL ``{id, sql}`` file, and scores it through the same code path as ``t2s score``
(``evals.predictions.load_predictions`` + ``evals.scoring.score_dataset``). Every verdict is then
compared with the official ``spider_testsuite_exec_match`` column of ``predictions.tsv``.

An informational section shows how the other rule sets (``t2s``, ``bird``) differ from the official
verdicts on the same predictions, and attributes each flip to the rule dimension that causes it.

This is a measurement, not a test: it prints figures. With ``--strict`` the exit code is 1 when the
agreement of ``--rules spider`` is below 100%.

Run from the repository root:

    .venv/bin/python benchmarks/spider_conformance.py --spider-dir ../shared/spider-sample
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import textwrap
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from evals.compare import RULES, SPIDER, MatchRules
from evals.execution import execution_match
from evals.metrics import ItemVerdict
from evals.predictions import load_predictions
from evals.scoring import ScoreConfig, score_dataset
from pipelines.importers import import_spider
from t2s.datasets import Dataset, GoldExample, load_dataset
from t2s.execution import Target, open_target

TSV_COLUMNS = ["system", "spider_dev_index", "db_id", "predicted_sql", "spider_testsuite_exec_match"]


# ---------------------------------------------------------------------------------------------------
# inputs


@dataclass(frozen=True)
class Prediction:
    system: str
    index: int
    db_id: str
    sql: str
    official: bool


def read_predictions_tsv(path: Path) -> dict[str, list[Prediction]]:
    """``system -> predictions`` from the sample's TSV (SQL never contains a TAB; quotes are literal)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    if header != TSV_COLUMNS:
        sys.exit(f"{path}: unexpected header {header}; expected {TSV_COLUMNS}")
    systems: dict[str, list[Prediction]] = {}
    for lineno, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != len(TSV_COLUMNS):
            sys.exit(f"{path}:{lineno}: expected {len(TSV_COLUMNS)} TAB-separated fields, got {len(fields)}")
        system, index, db_id, sql, official = fields
        if official not in {"0", "1"}:
            sys.exit(f"{path}:{lineno}: spider_testsuite_exec_match must be 0 or 1, got {official!r}")
        systems.setdefault(system, []).append(Prediction(system, int(index), db_id, sql, official == "1"))
    return systems


def import_sample(spider_dir: Path, work_dir: Path) -> tuple[Dataset, dict[int, str]]:
    """Import the sample into ``work_dir/spider-dev`` (replacing an earlier import there).

    Returns the dataset and ``spider_dev_index -> dataset id``. The mapping is read off the import
    itself (it keeps the source order), so it does not depend on the id format ``import_spider`` uses.
    """
    out = work_dir / "spider-dev"
    ds = import_spider(spider_dir, out, split="dev", overwrite=True, progress=False)
    items = json.loads((spider_dir / "dev.json").read_text(encoding="utf-8"))
    if len(items) != len(ds.examples):
        sys.exit(f"import produced {len(ds.examples)} items for {len(items)} in dev.json")
    index_to_id: dict[int, str] = {}
    for item, ex in zip(items, ds.examples, strict=True):
        if item["db_id"] != ex.db_id or item["query"].strip() != ex.gold_sql:
            sys.exit(f"import order differs from dev.json at {ex.id}")
        index_to_id[int(item["spider_dev_index"])] = ex.id
    return load_dataset(out), index_to_id


def write_jsonl(preds: list[Prediction], index_to_id: dict[int, str], ds: Dataset, path: Path) -> None:
    lines = []
    for p in preds:
        item_id = index_to_id.get(p.index)
        if item_id is None:
            sys.exit(f"{p.system}: spider_dev_index {p.index} is not in the imported dev.json")
        if ds.by_id[item_id].db_id != p.db_id:
            sys.exit(f"{p.system}: {item_id} has db_id {ds.by_id[item_id].db_id}, predictions.tsv says {p.db_id}")
        lines.append(json.dumps({"id": item_id, "sql": p.sql}))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


# ---------------------------------------------------------------------------------------------------
# scoring


def score(ds: Dataset, pred_file: Path, rules: str, cache_path: Path, timeout_s: float) -> list[ItemVerdict]:
    """Exactly what ``t2s score --rules <rules> --no-exact-match`` does, minus the printing."""
    preds = load_predictions(pred_file, ds)
    config = ScoreConfig(rules=rules, timeout_s=timeout_s, exact_match=False, cache_path=cache_path)
    return score_dataset(ds, preds, config)


class Targets:
    """Open SQLite targets per db_id for re-judging single items."""

    def __init__(self, ds: Dataset) -> None:
        self.ds = ds
        self.open: dict[str, list[Target]] = {}

    def __call__(self, db_id: str) -> list[Target]:
        if db_id not in self.open:
            self.open[db_id] = [open_target("sqlite", p) for p in self.ds.database_paths(db_id)]
        return self.open[db_id]

    def close(self) -> None:
        for ts in self.open.values():
            for t in ts:
                t.close()


def preview(rows: list[tuple] | None, n: int = 3) -> str:
    if rows is None:
        return "-"
    shown = ", ".join(repr(r) for r in rows[:n])
    more = f", … ({len(rows)} rows)" if len(rows) > n else f" ({len(rows)} rows)"
    return f"[{shown}]" + more if rows else "[] (0 rows)"


# Rule dimensions, in the order they are switched from `spider` to the other rule set, the MatchRules fields
# each covers, and how to describe a flip it causes. `columns` comes before `rows` because rows="set" is
# compared as set(gold) == set(pred), which is positional in the columns as well.
DIMENSIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "text": (("strip_distinct", "spider_text_fixes"),
             "SQL text prep: official removes every DISTINCT (also in COUNT(DISTINCT x)) and applies "
             "Spider's text fixes; t2s/bird keep DISTINCT"),
    "order": (("order",),
              "row order: official compares as a list when 'order by' appears anywhere in the gold text "
              "(even in a subquery); t2s/bird only when the outermost query orders"),
    "numbers": (("numbers",), "t2s: numbers equal to 10 significant digits (official: exact)"),
    "columns": (("columns",), "bird: column order significant (official: any column permutation)"),
    "rows": (("rows",), "bird: set(gold) == set(pred): duplicates (and row order) ignored"),
}


def attribute(ex: GoldExample, pred: str, targets: list[Target], rules: MatchRules, timeout_s: float,
              start_match: bool) -> list[str]:
    """Walk from ``spider`` to ``rules`` one dimension at a time (cumulatively, in DIMENSIONS order) and
    return the dimensions at which the verdict flips."""
    reasons = []
    current, verdict = SPIDER, start_match
    for dim, (fields, _) in DIMENSIONS.items():
        if all(getattr(current, f) == getattr(rules, f) for f in fields):
            continue
        current = replace(current, name=f"{current.name}+{dim}", **{f: getattr(rules, f) for f in fields})
        out = execution_match(ex.gold_sql, pred, targets, rules=current, gold_dialect=ex.dialect,
                              timeout_s=timeout_s)
        if out.match != verdict:
            reasons.append(dim)
            verdict = out.match
    return reasons


# ---------------------------------------------------------------------------------------------------
# report


def pct(k: int, n: int) -> str:
    return f"{100 * k / n:.1f}%" if n else "n/a"


def indent(text: str, prefix: str = "      ") -> str:
    return textwrap.indent(text.strip(), prefix)


def conformance(ds: Dataset, system: str, preds: list[Prediction], verdicts: list[ItemVerdict],
                index_to_id: dict[int, str], rules: str, targets: Targets, timeout_s: float) -> int:
    by_id = {v.id: v for v in verdicts}
    official = {index_to_id[p.index]: p for p in preds}
    n = len(official)
    agree = sum(by_id[i].match == p.official for i, p in official.items())
    ours = sum(by_id[i].match for i in official)
    theirs = sum(p.official for p in official.values())
    print(f"\n== {system}: --rules {rules} vs official test-suite verdicts ==")
    print(f"  items:               {n}")
    print(f"  agreement:           {agree}/{n} = {pct(agree, n)}")
    print(f"  accuracy (ours):     {ours}/{n} = {pct(ours, n)}")
    print(f"  accuracy (official): {theirs}/{n} = {pct(theirs, n)}")
    classes = Counter(v.error_class or "match" for v in verdicts)
    print("  our verdicts:        " + ", ".join(f"{k} {c}" for k, c in classes.most_common()))
    disagreements = [(i, p) for i, p in official.items() if by_id[i].match != p.official]
    if not disagreements:
        print("  disagreements:       none")
        return agree
    print(f"  disagreements ({len(disagreements)}):")
    for item_id, p in sorted(disagreements):
        v = by_id[item_id]
        ex = ds.by_id[item_id]
        out = execution_match(ex.gold_sql, p.sql, targets(ex.db_id), rules=RULES[rules],
                              gold_dialect=ex.dialect, timeout_s=timeout_s)
        print(f"  - {item_id} (spider_dev_index {p.index}, {ex.db_id}): official {int(p.official)}, "
              f"ours {int(v.match)}; error_class={v.error_class}")
        if v.detail:
            print(f"    detail:    {v.detail}")
        print(f"    gold SQL:  {ex.gold_sql}")
        print(f"    pred SQL:  {p.sql}")
        print(f"    gold rows: {preview(out.gold.rows if out.gold else None)}")
        print(f"    pred rows: {preview(out.pred.rows if out.pred else None)}")
    return agree


def rule_differences(ds: Dataset, systems: dict[str, list[Prediction]], index_to_id: dict[int, str],
                     verdicts: dict[tuple[str, str], dict[str, ItemVerdict]], rule_names: list[str],
                     targets: Targets, timeout_s: float, examples: int) -> None:
    print("\n" + "=" * 100)
    print("Informational: how the other rule sets differ from the official verdicts (deliberate differences)")
    print("=" * 100)
    print("Each flip is attributed by re-judging the item while switching the `spider` rules to the other rule")
    print("set one dimension at a time, cumulatively, in the order below; the dimensions at which the verdict")
    print("flips are listed.")
    for dim, (fields, text) in DIMENSIONS.items():
        print(f"  {dim:8s} ({', '.join(fields)}): {text}")
    for rules in rule_names:
        r = RULES[rules]
        print(f"\n-- rules {rules}: rows={r.rows}, order={r.order}, columns={r.columns}, numbers={r.numbers}, "
              f"strip_distinct={r.strip_distinct}, spider_text_fixes={r.spider_text_fixes}")
        for system, preds in systems.items():
            ours = verdicts[(rules, system)]
            spider_ours = verdicts.get(("spider", system))
            up: list[tuple[str, Prediction]] = []    # official 0 -> ours 1
            down: list[tuple[str, Prediction]] = []  # official 1 -> ours 0
            for p in preds:
                item_id = index_to_id[p.index]
                if ours[item_id].match and not p.official:
                    up.append((item_id, p))
                elif not ours[item_id].match and p.official:
                    down.append((item_id, p))
            n = len(preds)
            acc = sum(v.match for v in ours.values())
            off = sum(p.official for p in preds)
            print(f"   {system}: accuracy {pct(acc, n)} vs official {pct(off, n)}; flips: official 1 -> ours 0: "
                  f"{len(down)}, official 0 -> ours 1: {len(up)}")
            reason_counts: Counter[str] = Counter()
            described: list[tuple[str, Prediction, list[str]]] = []
            for item_id, p in sorted(down + up):
                ex = ds.by_id[item_id]
                if spider_ours is not None and spider_ours[item_id].match != p.official:
                    reasons = ["(our spider replica disagrees with official here; see above)"]
                else:
                    reasons = attribute(ex, p.sql, targets(ex.db_id), r, timeout_s, p.official) or [
                        "unexplained"]
                reason_counts.update(reasons)
                described.append((item_id, p, reasons))
            differing = [d for d, (fields, _) in DIMENSIONS.items()
                         if any(getattr(SPIDER, f) != getattr(r, f) for f in fields)]
            for key in differing:
                reason_counts.setdefault(key, 0)
            print("     flips by reason: " + ", ".join(f"{k} {c}" for k, c in reason_counts.most_common()))
            for item_id, p, reasons in described[:examples]:
                v = ours[item_id]
                ex = ds.by_id[item_id]
                print(f"     - {item_id}: official {int(p.official)} -> {rules} {int(v.match)} "
                      f"[{', '.join(reasons)}] error_class={v.error_class}")
                if v.detail:
                    print(f"         detail: {v.detail}")
                print(f"         gold:   {ex.gold_sql}")
                print(f"         pred:   {p.sql}")
            if len(described) > examples:
                print(f"     ... {len(described) - examples} more (raise --examples to see them)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Compare our scorer's verdicts with Spider's official test-suite execution verdicts on "
                    "a Spider sample (dev.json, database/, predictions.tsv).",
        epilog="Example: .venv/bin/python benchmarks/spider_conformance.py --spider-dir ../shared/spider-sample",
    )
    parser.add_argument("--spider-dir", type=Path, required=True,
                        help="Spider sample folder with dev.json, database/<db_id>/<db_id>.sqlite and "
                             "predictions.tsv (read in place, never copied into the repository).")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="Where to import the dataset and write prediction files and the gold cache "
                             "(must be outside --spider-dir; an earlier import there is replaced). "
                             "Default: a temporary directory, removed afterwards.")
    parser.add_argument("--rules", choices=sorted(RULES), default="spider",
                        help="Rule set whose verdicts are compared item by item (default: spider).")
    parser.add_argument("--strict", action="store_true",
                        help="Exit 1 when --rules spider agrees with the official verdicts on fewer than 100%% "
                             "of the items.")
    parser.add_argument("--no-differences", action="store_true",
                        help="Skip the informational section on the other rule sets.")
    parser.add_argument("--examples", type=int, default=4,
                        help="Examples printed per system and rule set in the informational section (default 4).")
    parser.add_argument("--timeout", type=float, default=10.0, help="Seconds per query (default 10).")
    args = parser.parse_args(argv)

    spider_dir: Path = args.spider_dir
    tsv = spider_dir / "predictions.tsv"
    if not (spider_dir / "dev.json").is_file() or not tsv.is_file():
        parser.error(f"{spider_dir} must contain dev.json and predictions.tsv")

    with tempfile.TemporaryDirectory(prefix="t2s-spider-conformance-") as tmp:
        work = args.work_dir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        ds, index_to_id = import_sample(spider_dir, work)
        systems = read_predictions_tsv(tsv)
        print(f"dataset {ds.name}: {len(ds)} items over {len(ds.manifest.databases)} databases "
              f"({', '.join(sorted(ds.manifest.databases))}), ids {ds.examples[0].id} … {ds.examples[-1].id}")
        print(f"work dir: {work}{' (temporary)' if args.work_dir is None else ''}")
        print(f"systems: {', '.join(f'{s} ({len(p)})' for s, p in systems.items())}")

        pred_files = {}
        for system, preds in systems.items():
            pred_files[system] = work / f"predictions-{system}.jsonl"
            write_jsonl(preds, index_to_id, ds, pred_files[system])

        cache = work / "cache" / "gold_results.sqlite"
        extra = ["spider"] if args.strict else []
        if not args.no_differences:
            extra = ["spider", "t2s", "bird"]
        rule_names = [args.rules] + [r for r in extra if r != args.rules]
        verdicts: dict[tuple[str, str], dict[str, ItemVerdict]] = {}
        for rules in rule_names:
            for system in systems:
                verdicts[(rules, system)] = {v.id: v for v in score(ds, pred_files[system], rules, cache,
                                                                     args.timeout)}

        targets = Targets(ds)
        try:
            total = agreed = 0
            for system, preds in systems.items():
                agreed += conformance(ds, system, preds, list(verdicts[(args.rules, system)].values()),
                                      index_to_id, args.rules, targets, args.timeout)
                total += len(preds)
            print(f"\nOVERALL --rules {args.rules}: agreement {agreed}/{total} = {pct(agreed, total)}")
            if not args.no_differences:
                others = [r for r in rule_names if r != "spider"]
                rule_differences(ds, systems, index_to_id, verdicts, others, targets, args.timeout,
                                 args.examples)
        finally:
            targets.close()

    if args.strict:
        spider_agreed = sum(verdicts[("spider", p.system)][index_to_id[p.index]].match == p.official
                            for preds in systems.values() for p in preds)
        if spider_agreed < total:
            print(f"\n--strict: --rules spider agreement {pct(spider_agreed, total)} < 100%", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
