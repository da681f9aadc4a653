"""``t2s``: the command line of Text2SQL Ops.

Each command imports what it needs inside its body, so ``t2s --help`` and scoring stay fast and do not
pay for mlflow, great-expectations or llama-index.
"""

from __future__ import annotations

import os
from typing import Annotated

import typer

from cli import (
    compare_cli,
    datasets_cli,
    db_cli,
    deploy_cli,
    eval_cli,
    feedback_cli,
    generate_cli,
    llm_cli,
    metrics_cli,
    prompts_cli,
    score_cli,
    serve_cli,
    tracking_cli,
    validate_cli,
)
from cli.console import cli_errors

app = typer.Typer(
    name="t2s",
    help="Text2SQL Ops: golden datasets, execution-accuracy scoring, prompt evaluation and promotion.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root(
    tracking_uri: Annotated[str | None, typer.Option(
        "--tracking-uri", help="MLflow tracking/registry URI (default: T2S_MLFLOW_TRACKING_URI, MLFLOW_TRACKING_URI, "
                               "or sqlite:///mlflow.db), e.g. http://mlflow.internal:5000")] = None,
) -> None:
    if tracking_uri:
        os.environ["T2S_MLFLOW_TRACKING_URI"] = tracking_uri
        from t2s.settings import get_settings

        get_settings.cache_clear()


datasets_cli.app.command("validate")(validate_cli.validate)
app.add_typer(datasets_cli.app, name="datasets")
app.command("score")(score_cli.score)
app.add_typer(metrics_cli.app, name="metrics")
app.add_typer(llm_cli.app, name="llm")
app.add_typer(prompts_cli.app, name="prompts")
app.command("generate")(generate_cli.generate)
app.command("eval")(eval_cli.eval_cmd)
app.command("compare")(compare_cli.compare)
app.command("promote")(compare_cli.promote)
app.command("leaderboard")(compare_cli.show_leaderboard)
app.command("rollback")(compare_cli.rollback)
app.command("serve")(serve_cli.serve)
app.add_typer(serve_cli.experiments_app, name="experiments")
app.add_typer(feedback_cli.app, name="feedback")
app.add_typer(deploy_cli.app, name="deploy")
app.add_typer(tracking_cli.app, name="tracking")
app.add_typer(db_cli.app, name="db")


def main() -> None:
    try:
        with cli_errors():  # errors raised before a command's own handler, e.g. a bad T2S_* setting
            app()
    except typer.Exit as exc:
        raise SystemExit(exc.exit_code) from None


if __name__ == "__main__":
    main()
