"""``t2s compare``, ``t2s promote`` and ``t2s rollback``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from cli.console import cli_errors, console

SOURCE_HELP = "Variants of a sweep: its id (read from MLflow) …"
DIR_HELP = "… or a folder of variant folders written by `t2s eval` (e.g. reports/eval/bank)."


def load_variants(sweep: str | None, directory: Path | None):  # type: ignore[no-untyped-def]
    """VariantRuns from MLflow (``sweep``) or local folders (``directory``)."""
    from evals.records import VariantRun
    from t2s.errors import ConfigError

    if (sweep is None) == (directory is None):
        raise ConfigError("give exactly one of --sweep ID or --dir FOLDER")
    if directory is not None:
        folders = sorted(p.parent for p in directory.rglob("variant.json"))
        if not folders:
            raise ConfigError("no variant folders here (run `t2s eval` first)", file=directory)
        return [VariantRun.read(f) for f in folders]
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


def compare(
    sweep: Annotated[str | None, typer.Option(help=SOURCE_HELP)] = None,
    directory: Annotated[Path | None, typer.Option("--dir", help=DIR_HELP)] = None,
    out: Annotated[Path | None, typer.Option(help="Report folder (default: <dir>/compare or reports/eval/<dataset>/compare).")] = None,
    params: Annotated[Path | None, typer.Option(help="params.yaml whose 'gate' section sets the policy.")] = None,
    metrics_out: Annotated[Path | None, typer.Option(help="Write summary metrics (JSON) here, e.g. for `dvc metrics`.")] = None,
) -> None:
    """Rank a sweep's variants and test each against the current champion on the same items (exact McNemar,
    paired bootstrap interval, per difficulty). Writes a leaderboard (Markdown, JSON), a chart and an HTML
    report, and logs them to the sweep's MLflow run."""
    import warnings

    from evals.gate import GatePolicy
    from pipelines.comparison_report import (
        difficulty_chart,
        leaderboard,
        leaderboard_table,
        write_html_report,
        write_leaderboard_json,
        write_leaderboard_markdown,
    )
    from pipelines.eval_config import gate_config
    from t2s.fileio import write_text_atomic
    from t2s.settings import get_settings
    from t2s.tracking import configure_mlflow

    with cli_errors():
        settings = get_settings()
        configure_mlflow(settings)
        policy = GatePolicy(**gate_config(params).model_dump())
        variants = load_variants(sweep, directory)
        by_dataset: dict[str, list] = {}
        for v in variants:
            by_dataset.setdefault(v.dataset, []).append(v)
        for dataset, group in by_dataset.items():
            champ, champ_variant = champion_variant(group)
            if champ is not None and champ_variant is None:
                console.print(f"[yellow]the champion {champ.prompt}/{champ.model.label} is not in this sweep for "
                              f"{dataset}: no paired comparison (run `t2s eval`, which adds it)[/]")
            rows = leaderboard(group, champ_variant, policy)
            folder = out or ((directory / "compare") if directory else Path("reports/eval") / dataset / "compare")
            write_leaderboard_markdown(rows, folder / "leaderboard.md")
            write_leaderboard_json(rows, folder / "leaderboard.json")
            difficulty_chart(group, folder / "accuracy_by_difficulty.png")
            write_html_report(folder / "report.html", group, champ_variant, policy)
            best = rows[0]
            summary = {"variants": len(rows), "best_execution_accuracy": best["execution_accuracy"],
                       "best_valid_sql_rate": best["valid_sql_rate"]}
            if champ_variant is not None:
                summary["champion_execution_accuracy"] = champ_variant.metrics["execution_accuracy"]
            if metrics_out is not None:
                write_text_atomic(metrics_out, json.dumps(summary, indent=2))
            console.print(leaderboard_table(rows))
            console.print(f"leaderboard → {folder / 'leaderboard.md'} · report → {folder / 'report.html'}")
            sweep_ids = {v.sweep_id for v in group if v.sweep_id}
            if len(sweep_ids) == 1:
                from pipelines.mlflow_runs import experiment_id, sweep_run_id

                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    from mlflow import MlflowClient

                    parent = sweep_run_id(experiment_id(dataset), sweep_ids.pop(), {})
                    client = MlflowClient()
                    for name in ("leaderboard.md", "leaderboard.json", "report.html", "accuracy_by_difficulty.png"):
                        client.log_artifact(parent, str(folder / name), artifact_path="compare")
                    client.log_metric(parent, "best_execution_accuracy", float(best["execution_accuracy"]))
                    client.set_tag(parent, "t2s.best_variant", best["variant"])


def promote(
    run_id: Annotated[str | None, typer.Argument(help="MLflow run id of the variant to promote.")] = None,
    best: Annotated[bool, typer.Option(help="Promote the best variant of --dir / --sweep instead of RUN_ID.")] = False,
    sweep: Annotated[str | None, typer.Option(help=SOURCE_HELP)] = None,
    directory: Annotated[Path | None, typer.Option("--dir", help=DIR_HELP)] = None,
    force: Annotated[bool, typer.Option(help="Override a failing gate (needs --reason).")] = False,
    reason: Annotated[str | None, typer.Option(help="Why; recorded in the audit log and registry.")] = None,
    params: Annotated[Path | None, typer.Option(help="params.yaml whose 'gate' section sets the policy.")] = None,
    decision_out: Annotated[Path | None, typer.Option(help="Write the decision (JSON) here.")] = None,
    allow_refusal: Annotated[bool, typer.Option(help="Exit 0 when the gate refuses (for pipelines).")] = False,
) -> None:
    """Move the champion aliases (model bundle and prompt) to a variant — only if it beats the current
    champion on the same items: significantly (McNemar p < alpha), by at least min_gain, with no difficulty
    bucket regressing beyond tolerance. The first promotion needs no gate. Every move is audited."""
    from evals.gate import GatePolicy, decide
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
        if run_id:
            challenger = download_variant(run_id)
            siblings = load_variants(challenger.sweep_id, None) if challenger.sweep_id else [challenger]
        elif best:
            siblings = load_variants(sweep, directory)
            if len({v.dataset for v in siblings}) > 1:
                raise ConfigError("--best needs variants of one dataset")
            challenger = max(siblings, key=lambda v: (v.metrics["execution_accuracy"], v.metrics["valid_sql_rate"],
                                                      v.variant))
        else:
            raise ConfigError("give the RUN_ID of a variant, or --best with --dir/--sweep")
        champ, champ_variant = champion_variant(siblings)
        result: dict = {"challenger": challenger.variant, "run_id": challenger.run_id,
                        "champion": f"{champ.prompt}/{champ.model.label}" if champ else None}
        if champ_variant is not None and champ_variant.variant == challenger.variant:
            result |= {"promoted": False, "reasons": [f"{challenger.variant} is the champion and the best variant: "
                                                      "nothing to promote"]}
            console.print(result["reasons"][0])
        else:
            try:
                record = do_promote(challenger, champ_variant, gate, settings,
                                    dataset_root=Path(challenger.dataset_path or "."), force=force, reason=reason)
                result |= {"promoted": True, "record": record, "reasons": record["gate"]["reasons"]}
                console.print(f"[green]{record['action']}[/]: {challenger.variant} is now @champion "
                              f"(t2s-generator v{record['to_model_version']})")
                for r in record["gate"]["reasons"]:
                    console.print(f"  {r}")
            except GateRefused as exc:
                decision = decide(challenger, champ_variant, GatePolicy(**gate.model_dump()))
                result |= {"promoted": False, "reasons": decision.reasons, "gate": decision.to_dict()}
                if decision_out:
                    write_text_atomic(decision_out, json.dumps(result, indent=2, default=str))
                if allow_refusal:
                    console.print(f"[yellow]not promoted[/]: {exc}")
                    return
                raise
        if decision_out:
            write_text_atomic(decision_out, json.dumps(result, indent=2, default=str))


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
