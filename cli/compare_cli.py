"""``t2s compare``, ``t2s promote`` and ``t2s rollback``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cli.console import cli_errors, console

SOURCE_HELP = "Variants of a sweep: its id (read from MLflow) …"
DIR_HELP = ("… or a folder of variant folders written by `t2s eval` (e.g. reports/eval/bank); repeat for "
            "several datasets (--dir reports/eval/bank --dir reports/eval/freight).")


def load_variants(sweep: str | None, directories: list[Path] | None):  # type: ignore[no-untyped-def]
    """VariantRuns from MLflow (``sweep``) or local folders (``directories``)."""
    from evals.records import VariantRun
    from t2s.errors import ConfigError

    if (sweep is None) == (not directories):
        raise ConfigError("give exactly one of --sweep ID or --dir FOLDER")
    if directories:
        runs = []
        for directory in directories:
            folders = sorted(p.parent for p in directory.rglob("variant.json"))
            if not folders:
                raise ConfigError("no variant folders here (run `t2s eval` first)", file=directory)
            runs += [VariantRun.read(f) for f in folders]
        return runs
    from mlflow import MlflowClient

    from pipelines.mlflow_runs import VARIANT_KIND, download_variant

    client = MlflowClient()
    exps = [e.experiment_id for e in client.search_experiments() if e.name.startswith("t2s/")]
    runs = client.search_runs(exps, filter_string=f"tags.`t2s.kind` = '{VARIANT_KIND}' and "
                                                  f"tags.`t2s.sweep_id` = '{sweep}' and attributes.status = 'FINISHED'")
    if not runs:
        raise ConfigError(f"no finished variant runs in sweep {sweep!r}")
    return [download_variant(r.info.run_id) for r in runs]


def champion_variant(variants):  # type: ignore[no-untyped-def]
    """(current champion, its variant among ``variants`` or None)."""
    from pipelines.promotion import current_champion

    champ = current_champion()
    if champ is None:
        return None, None
    for v in variants:
        if v.prompt == champ.prompt and v.model == champ.model.name and v.provider == champ.model.provider:
            return champ, v
    return champ, None


def decision_runs(variants, heldout, primary: str | None = None):  # type: ignore[no-untyped-def]
    """The runs a decision ranks: the variants themselves on one dataset; over several datasets, one run
    per variant pooled over all of them (:func:`evals.pooling.pool_datasets`), standing for its run on
    ``primary`` (default: the one dataset not in ``heldout``)."""
    from evals.pooling import pool_datasets
    from t2s.errors import ConfigError

    names = sorted({v.dataset for v in variants})
    if len(names) == 1:
        return variants
    if primary is None:
        candidates = [n for n in names if n not in heldout]
        if len(candidates) != 1:
            raise ConfigError(f"the sweep covers {', '.join(names)}: name the dataset the promoted version serves "
                              "with --serve-dataset")
        primary = candidates[0]
    try:
        pooled = pool_datasets(variants, primary=primary)
    except ValueError as exc:  # the dataset to serve is not in the sweep, or a variant ran twice on one
        raise ConfigError(str(exc)) from None
    if not pooled:
        raise ConfigError(f"no variant was evaluated on every dataset of the sweep ({', '.join(names)})")
    return pooled


def best_within_budget(variants, policy):  # type: ignore[no-untyped-def]
    """The most accurate variant (then valid-SQL rate, then name) that fits the serving budget, and the more
    accurate ones passed over, each with its budget reason. When none fits, the most accurate one: the gate then
    refuses it, naming the budget."""
    from evals.budget import check_budget

    ranked = sorted(variants, key=lambda v: (v.metrics["execution_accuracy"], v.metrics["valid_sql_rate"],
                                             v.variant), reverse=True)
    passed_over = []
    for v in ranked:
        check = check_budget(v, policy.budget)
        if check is None or check.within:
            return v, passed_over
        passed_over.append((v.variant, check.reason))
    return ranked[0], []


def show_leaderboard(
    path: Annotated[Path, typer.Argument(help="leaderboard.json written by `t2s compare`.")],
    title: Annotated[str | None, typer.Option(help="Title line (default: the file's path).")] = None,
) -> None:
    """Print a leaderboard written by `t2s compare` as a table that fits 100 columns: rank, variant, accuracy
    (overall and per dataset), what an answer costs, the serving budget, the comparison with the champion.
    Every column is in leaderboard.md and the HTML report beside it."""
    from pipelines.comparison_report import leaderboard_table
    from t2s.errors import ConfigError

    with cli_errors():
        try:
            rows = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read the leaderboard: {exc}", file=path) from None
        console.print(leaderboard_table(rows, title=title or str(path)))


def _report(group, policy, folder: Path):  # type: ignore[no-untyped-def]
    """Leaderboard (Markdown, JSON, console), chart and HTML report of ``group`` in ``folder``; its rows."""
    from pipelines.comparison_report import (
        difficulty_chart,
        leaderboard,
        leaderboard_table,
        write_html_report,
        write_leaderboard_json,
        write_leaderboard_markdown,
    )

    champ, champ_variant = champion_variant(group)
    if champ is not None and champ_variant is None:
        console.print(f"[yellow]the champion {champ.prompt}/{champ.model.label} is not in this sweep for "
                      f"{group[0].dataset}: no paired comparison (run `t2s eval`, which adds it)[/]")
    rows = leaderboard(group, champ_variant, policy)
    write_leaderboard_markdown(rows, folder / "leaderboard.md")
    write_leaderboard_json(rows, folder / "leaderboard.json")
    difficulty_chart(group, folder / "accuracy_by_difficulty.png")
    write_html_report(folder / "report.html", group, champ_variant, policy)
    console.print(leaderboard_table(rows, title=f"Leaderboard: {group[0].dataset} (execution accuracy)"))
    console.print(f"leaderboard → {folder / 'leaderboard.md'} · report → {folder / 'report.html'}")
    # The results alone (DVC tracks this file): nothing that depends on which version the registry serves.
    summary = {"variants": len(rows), "best_execution_accuracy": rows[0]["execution_accuracy"],
               "best_valid_sql_rate": rows[0]["valid_sql_rate"]}
    return rows, summary


def _log_to_sweep(group, folder: Path, artifact_path: str, best: dict) -> None:  # type: ignore[no-untyped-def,type-arg]
    """The report files as artifacts of the sweep's parent run of each dataset in ``group``."""
    import warnings

    from evals.pooling import datasets_of
    from pipelines.mlflow_runs import experiment_id, readable_metric, sweep_run_id

    sweep_ids = {v.sweep_id for v in group if v.sweep_id}
    if len(sweep_ids) != 1:
        return
    sweep = sweep_ids.pop()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from mlflow import MlflowClient

        client = MlflowClient()
        for dataset in datasets_of(group[0]):
            parent = sweep_run_id(experiment_id(dataset), sweep, {})
            for name in ("leaderboard.md", "leaderboard.json", "report.html", "accuracy_by_difficulty.png"):
                client.log_artifact(parent, str(folder / name), artifact_path=artifact_path)
            if artifact_path == "compare":
                client.log_metric(parent, "best_execution_accuracy", readable_metric(best["execution_accuracy"]))
                client.set_tag(parent, "t2s.best_variant", best["variant"])
            else:
                client.set_tag(parent, "t2s.decision_best_variant", best["variant"])


def compare(
    sweep: Annotated[str | None, typer.Option(help=SOURCE_HELP)] = None,
    directory: Annotated[list[Path] | None, typer.Option("--dir", help=DIR_HELP)] = None,
    out: Annotated[Path | None, typer.Option(help="Report folder (default: <dir>/compare or reports/eval/<dataset>/compare); "
                                                  "over several datasets, the pooled decision here and each dataset in a subfolder.")] = None,
    params: Annotated[Path | None, typer.Option(help="params.yaml whose 'gate' section sets the policy.")] = None,
    metrics_out: Annotated[Path | None, typer.Option(help="Write summary metrics (JSON) here, e.g. for `dvc metrics`.")] = None,
    serve_dataset: Annotated[str | None, typer.Option(help="Over several datasets: the one a promoted version serves "
                                                           "(default: the one not listed in gate.heldout).")] = None,
) -> None:
    """Rank a sweep's variants and test each against the current champion on the same items (exact McNemar,
    paired bootstrap interval, per difficulty). Writes a leaderboard (Markdown, JSON), a chart and an HTML
    report, and logs them to the sweep's MLflow run. A sweep over several datasets gets one report per
    dataset and the deciding one over all their items, where the gate also checks each dataset."""
    from pipelines.eval_config import gate_config
    from t2s.fileio import write_text_atomic
    from t2s.settings import get_settings
    from t2s.tracking import configure_mlflow

    with cli_errors():
        settings = get_settings()
        configure_mlflow(settings)
        gate = gate_config(params)
        policy = gate.policy()
        variants = load_variants(sweep, directory)
        by_dataset: dict[str, list] = {}
        for v in variants:
            by_dataset.setdefault(v.dataset, []).append(v)
        several = len(by_dataset) > 1
        if out is not None:
            root = out
        elif directory:
            root = directory[0] / "compare" if len(directory) == 1 else Path("reports/eval/compare")
        else:
            root = Path("reports/eval") / ("compare" if several else f"{next(iter(by_dataset))}/compare")
        summaries: dict = {}
        for dataset, group in sorted(by_dataset.items()):
            folder = root / dataset if several else root
            rows, summaries[dataset] = _report(group, policy, folder)
            _log_to_sweep(group, folder, "compare", rows[0])
        summary = summaries[next(iter(by_dataset))]
        if several:
            pooled = decision_runs(variants, gate.heldout, serve_dataset)
            console.print(f"[bold]the decision: every item of {pooled[0].dataset}[/]")
            rows, summary = _report(pooled, policy, root)
            _log_to_sweep(pooled, root, "decision", rows[0])
            summary["datasets"] = summaries
        if metrics_out is not None:
            write_text_atomic(metrics_out, json.dumps(summary, indent=2))


def promote(
    run_id: Annotated[str | None, typer.Argument(help="MLflow run id of the variant to promote.")] = None,
    best: Annotated[bool, typer.Option(help="Promote the best variant of --dir / --sweep instead of RUN_ID.")] = False,
    sweep: Annotated[str | None, typer.Option(help=SOURCE_HELP)] = None,
    directory: Annotated[list[Path] | None, typer.Option("--dir", help=DIR_HELP)] = None,
    force: Annotated[bool, typer.Option(help="Override a failing gate (needs --reason).")] = False,
    reason: Annotated[str | None, typer.Option(help="Why; recorded in the audit log and registry.")] = None,
    params: Annotated[Path | None, typer.Option(help="params.yaml whose 'gate' section sets the policy.")] = None,
    decision_out: Annotated[Path | None, typer.Option(help="Write the decision (JSON) here.")] = None,
    outcome_out: Annotated[Path | None, typer.Option(help="Write what the results and the gate settings decide "
                                                          "(JSON: the variant chosen, the ones passed over for the "
                                                          "budget), without this run's ids, times, figures or the "
                                                          "registry's state: what DVC tracks.")] = None,
    allow_refusal: Annotated[bool, typer.Option(help="Exit 0 when the gate refuses (for pipelines).")] = False,
    serve_dataset: Annotated[str | None, typer.Option(help="Over several datasets: the one the promoted version "
                                                           "serves (default: the one not in gate.heldout).")] = None,
) -> None:
    """Move the champion aliases (model bundle and prompt) to a variant — only if it beats the current
    champion on the same items: significantly (McNemar p < alpha), by at least min_gain, with no difficulty
    bucket regressing beyond tolerance. The first promotion needs no gate. Every move is audited."""
    from evals.gate import decide
    from pipelines.eval_config import gate_config
    from pipelines.mlflow_runs import download_variant
    from pipelines.promotion import promote as do_promote
    from t2s.errors import ConfigError, GateRefused
    from t2s.fileio import write_text_atomic
    from t2s.settings import get_settings
    from t2s.tracking import configure_mlflow

    with cli_errors():
        settings = get_settings()
        configure_mlflow(settings)
        gate = gate_config(params)
        if run_id and best:
            raise ConfigError("give RUN_ID or --best, not both")
        passed_over: list[tuple[str, str]] = []
        if run_id:
            picked = download_variant(run_id)
            siblings = load_variants(picked.sweep_id, None) if picked.sweep_id else [picked]
            # The picked run's dataset serves, unless it is a held-out one (then the default applies).
            serves = serve_dataset or (None if picked.dataset in gate.heldout else picked.dataset)
            siblings = decision_runs(siblings, gate.heldout, serves)
            challenger = next(v for v in siblings if v.variant == picked.variant)
        elif best:
            siblings = decision_runs(load_variants(sweep, directory), gate.heldout, serve_dataset)
            challenger, passed_over = best_within_budget(siblings, gate.policy())
        else:
            raise ConfigError("give the RUN_ID of a variant, or --best with --dir/--sweep")
        champ, champ_variant = champion_variant(siblings)
        result: dict = {"challenger": challenger.variant, "run_id": challenger.run_id,
                        "champion": f"{champ.prompt}/{champ.model.label}" if champ else None,
                        "passed_over": [reason for _, reason in passed_over]}
        skipped = [f"Passed over: {reason}" for _, reason in passed_over]
        for line in skipped:
            console.print(f"[yellow]{line}[/]", highlight=False)

        def write_outputs() -> None:
            if decision_out:
                write_text_atomic(decision_out, json.dumps(result, indent=2, default=str))
            if outcome_out:  # whether it was promoted depends on the registry too: that is in decision_out
                write_text_atomic(outcome_out, json.dumps({
                    "challenger": challenger.variant, "passed_over": [v for v, _ in passed_over]}, indent=2) + "\n")

        if champ_variant is not None and champ_variant.variant == challenger.variant:
            result |= {"promoted": False, "reasons": [f"{challenger.variant} is the champion and the best variant: "
                                                      "nothing to promote"]}
            console.print(result["reasons"][0])
        else:
            try:
                record = do_promote(challenger, champ_variant, gate, settings,
                                    dataset_root=Path(challenger.dataset_path or "."), force=force, reason=reason)
                result |= {"promoted": True, "record": record, "reasons": [*skipped, *record["gate"]["reasons"]]}
                console.print(f"[green]{record['action']}[/]: {challenger.variant} is now @champion "
                              f"(t2s-generator v{record['to_model_version']})")
                for r in record["gate"]["reasons"]:
                    console.print(f"  {r}")
                result["links"] = promotion_links(record, settings)
                for what, url in result["links"].items():
                    console.print(f"  MLflow {what}: {url}", soft_wrap=True, highlight=False)
            except GateRefused as exc:
                decision = decide(challenger, champ_variant, gate.policy())
                result |= {"promoted": False, "gate": decision.to_dict(), "reasons": [*skipped, *decision.reasons]}
                write_outputs()
                if allow_refusal:
                    console.print(f"[yellow]not promoted[/]: {exc}")
                    return
                raise
        write_outputs()


def promotion_links(record: dict, settings) -> dict[str, str]:  # type: ignore[no-untyped-def,type-arg]
    """Where to look in the MLflow UI (the experiments open on an overview): the promotion run, the
    evaluation run it promoted (selected in its experiment's evaluation runs), the registered model version."""
    from mlflow import MlflowClient

    from pipelines.mlflow_runs import evaluation_runs_url, model_version_url, run_url, ui_base
    from t2s.bundle import REGISTERED_MODEL

    base = ui_base(settings.mlflow_tracking_uri)
    client = MlflowClient()
    promotion = client.get_run(record["promotion_run_id"]).info
    evaluated = client.get_run(record["run_id"]).info
    return {"promotion": run_url(base, promotion.experiment_id, promotion.run_id),
            "evaluation": evaluation_runs_url(base, evaluated.experiment_id, evaluated.run_id),
            "model": model_version_url(base, REGISTERED_MODEL, record["to_model_version"])}


def rollback(
    reason: Annotated[str, typer.Option(help="Why; recorded in the audit log.")],
) -> None:
    """Move the champion aliases back to the previous champion recorded in the audit log."""
    from pipelines.promotion import rollback as do_rollback
    from t2s.settings import get_settings
    from t2s.tracking import configure_mlflow

    with cli_errors():
        settings = get_settings()
        configure_mlflow(settings)
        record = do_rollback(settings, reason)
        console.print(f"rolled back: @champion is t2s-generator v{record['to_model_version']} ({record['to_prompt']}) "
                      f"again, was v{record['from_model_version']}")
