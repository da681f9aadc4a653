"""``t2s tracking serve``: the shared MLflow tracking server on PostgreSQL with S3 artifacts (see
infra/tracking_server.py); a local moto S3 server stands in for AWS S3 unless an endpoint is given.
``t2s tracking export`` / ``import``: a champion moved between registries as one JSON file
(infra/registry_bundle.py), which is how a new environment gets its first champion."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from cli.console import cli_errors, console

app = typer.Typer(help="The team's shared MLflow tracking server.", no_args_is_help=True)


@app.command("serve")
def serve(
    backend_store_uri: Annotated[str, typer.Option(
        "--backend-store-uri", help="PostgreSQL URI, e.g. postgresql+psycopg://t2s@127.0.0.1:5432/mlflow "
                                    "(the database is created if missing).")],
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0 picks a free one).")] = 5000,
    workers: Annotated[int, typer.Option(min=1, help="Server worker processes.")] = 2,
    bucket: Annotated[str, typer.Option(help="Artifact bucket.")] = "t2s-artifacts",
    s3_endpoint_url: Annotated[str | None, typer.Option(help="S3-compatible endpoint (default: a local "
                                                             "moto S3 server, or AWS with --no-local-s3).")] = None,
    local_s3: Annotated[bool, typer.Option("--local-s3/--no-local-s3", help="Start a local moto S3 server "
                                           "when no endpoint is given.")] = True,
    auth: Annotated[bool, typer.Option("--auth", help="MLflow basic auth as on AWS: users admin, deploy, serving "
                                                      "with passwords from T2S_TRACKING_<USER>_PASSWORD.")] = False,
) -> None:
    """Run until interrupted; engineers point MLFLOW_TRACKING_URI (or --tracking-uri) at the printed URL."""
    from infra.tracking_auth import passwords_from_env
    from infra.tracking_server import TrackingServer

    with cli_errors():
        server = TrackingServer(backend_store_uri, host=host, port=port, workers=workers, bucket=bucket,
                                s3_endpoint_url=s3_endpoint_url, local_s3=local_s3,
                                auth_passwords=passwords_from_env() if auth else None).start()
    console.print(f"tracking server {server.url}  (artifacts {server.artifacts_destination}"
                  + (f" on {server.s3_endpoint_url}" if server.s3_endpoint_url else "") + ")", highlight=False)
    console.print(f"use it:  export MLFLOW_TRACKING_URI={server.url}", highlight=False)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


@app.command("export")
def export(
    out: Annotated[Path, typer.Option("--out", "-o", help="Bundle file to write (JSON).")] = Path("champion.json"),
    alias: Annotated[str, typer.Option(help="Alias of t2s-generator to export.")] = "champion",
) -> None:
    """Write the bundle behind t2s-generator@ALIAS (prompt versions, model config, tags, offline metrics) on
    the current tracking URI to one JSON file: the artifact a new environment's first champion comes from."""
    from infra.registry_bundle import export_bundle, write_bundle
    from t2s.settings import get_settings
    from t2s.tracking import configure_mlflow

    with cli_errors():
        configure_mlflow(get_settings())
        bundle = export_bundle(alias)
        write_bundle(bundle, out)
    console.print(f"exported @{alias} ({bundle['config']['prompt_uri']}, {bundle['config']['llm']['model']}) "
                  f"to {out}  sha256 {bundle['sha256'][:12]}", highlight=False)


@app.command("import")
def import_(
    bundle_file: Annotated[str, typer.Argument(help="Bundle file from `t2s tracking export` (a path or s3://...).")],
    alias: Annotated[str | None, typer.Option(help="Alias to set (default: the exported one).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an alias that points at another version.")] = False,
) -> None:
    """Register the bundle on the current tracking URI and point the alias at it. Re-importing the same file
    does nothing; an alias already on another version is kept unless --force. Needs a user allowed to move
    aliases (on AWS: deploy or admin)."""
    from infra.registry_bundle import import_bundle, read_bundle
    from t2s.settings import get_settings
    from t2s.tracking import configure_mlflow

    with cli_errors():
        configure_mlflow(get_settings())
        for line in import_bundle(read_bundle(_local_copy(bundle_file)), alias=alias, force=force):
            console.print(line, highlight=False)


def _local_copy(location: str) -> Path:
    """``s3://bucket/key`` downloaded to a temporary file (the bootstrap task's case); a path as is."""
    if not location.startswith("s3://"):
        return Path(location)
    import tempfile

    import boto3

    from infra.registry_bundle import BundleError

    bucket, _, key = location.removeprefix("s3://").partition("/")
    target = Path(tempfile.mkdtemp(prefix="t2s-bundle-")) / "bundle.json"
    try:
        boto3.client("s3").download_file(bucket, key, str(target))
    except Exception as exc:
        raise BundleError(f"cannot read {location}: {exc}") from exc
    return target
