"""``t2s serve``: the FastAPI serving layer under uvicorn, and ``t2s experiments`` to inspect/stop it."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from cli.console import cli_errors, console, err_console

experiments_app = typer.Typer(help="The served A/B experiment: show, stop on one variant, resume.",
                              no_args_is_help=True)


def _check_registry() -> list[str]:
    """Resolve every variant of the configured experiment in the registry; return the problems."""
    from serving.config import load_experiment
    from serving.variants import mlflow_client, resolve_version
    from t2s.settings import get_settings

    settings = get_settings()
    experiment = load_experiment(settings.serve_experiment_file)
    client = mlflow_client(settings)
    problems = []
    for variant in experiment.variants:
        try:
            mv = resolve_version(client, variant)
            console.print(f"  {variant.name}: t2s-generator{variant.model_ref} → version {mv.version} "
                          f"({(mv.tags or {}).get('t2s.prompt', '?')}), weight {variant.weight:g}")
        except Exception as exc:
            problems.append(f"{variant.name}: {exc}")
    return problems


def serve(
    host: Annotated[str | None, typer.Option(help="Address to bind (default T2S_SERVE_HOST, 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default T2S_SERVE_PORT, 8000).")] = None,
    workers: Annotated[int | None, typer.Option(help="Worker processes (default T2S_SERVE_WORKERS, 1).")] = None,
) -> None:
    """Serve the experiment's bundles (default: t2s-generator@champion) over HTTP: POST /v1/sql,
    POST /v1/feedback, the experiment report, health checks; OpenAPI docs at /docs."""
    import uvicorn

    from t2s.settings import get_settings

    with cli_errors():
        settings = get_settings()
        console.print(f"registry {settings.mlflow_tracking_uri}, experiment file {settings.serve_experiment_file}")
        problems = _check_registry()
        if problems:
            for p in problems:
                err_console.print(f"[bold red]error:[/] {p}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=1)
        h, p = host or settings.serve_host, port if port is not None else settings.serve_port
        from serving.auth import check_exposure, check_user_hash_key

        check_exposure(settings, h)  # no auth on a reachable address only when forced
        check_user_hash_key(settings)  # before the workers start: one clear error, not one per worker
        os.environ["T2S_SERVE_HOST"] = h  # the workers' own check sees the address actually bound
        n_workers = workers or settings.serve_workers
        if settings.llm_provider == "local" and not settings.local_llm_servers and n_workers > 1:
            # each worker runs its own local model servers: share the cores instead of one per core each
            from t2s.local_llm import server_count

            os.environ["T2S_LOCAL_LLM_SERVERS"] = str(max(1, server_count(settings) // n_workers))
        console.print(f"serving on http://{h}:{p}  (docs: http://{h}:{p}/docs)")
    # The app resolves X-Forwarded-* itself (T2S_SERVE_FORWARDED_ALLOW_IPS); uvicorn's access log would
    # record query strings, so requests are logged only by the app's own JSON lines (serving/logs.py).
    uvicorn.run("serving.app:app_from_env", factory=True, host=h, port=p, workers=n_workers, log_level="info",
                proxy_headers=False, access_log=False)


def _store_and_experiment():  # type: ignore[no-untyped-def]
    from serving.config import load_experiment
    from serving.store import Store
    from t2s.settings import get_settings

    settings = get_settings()
    return Store.open(settings.serve_store_url), load_experiment(settings.serve_experiment_file)


@experiments_app.command("show")
def show() -> None:
    """The configured experiment: variants, weights, control and status (running / stopped)."""
    with cli_errors():
        store, exp = _store_and_experiment()
        stopped = store.stopped_variant(exp.name)
        console.print(f"experiment {exp.name} (control {exp.control}): "
                      + (f"stopped, all traffic to {stopped}" if stopped else "running"))
        for v in exp.variants:
            console.print(f"  {v.name}: t2s-generator{v.model_ref}, weight {v.weight:g}")


@experiments_app.command("stop")
def stop(variant: Annotated[str, typer.Option("--variant", help="Variant that gets all traffic.")] = "champion",
         reason: Annotated[str | None, typer.Option(help="Why (stored).")] = None) -> None:
    """Send all traffic to one variant. Running servers follow within T2S_SERVE_STATUS_TTL_S, no restart."""
    with cli_errors():
        store, exp = _store_and_experiment()
        exp.variant(variant)  # raises naming the variants when unknown
        store.set_stopped(exp.name, variant, reason)
        console.print(f"experiment {exp.name} stopped: all traffic to {variant}")


@experiments_app.command("resume")
def resume() -> None:
    """Resume the configured split (each user returns to the variant they had)."""
    with cli_errors():
        store, exp = _store_and_experiment()
        store.set_stopped(exp.name, None, "resumed")
        console.print(f"experiment {exp.name} running: {', '.join(f'{n} {w:g}' for n, w in exp.weights)}")
