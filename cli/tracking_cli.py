"""``t2s tracking serve``: the shared MLflow tracking server on PostgreSQL with S3 artifacts (see
infra/tracking_server.py); a local moto S3 server stands in for AWS S3 unless an endpoint is given."""

from __future__ import annotations

import time
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
) -> None:
    """Run until interrupted; engineers point MLFLOW_TRACKING_URI (or --tracking-uri) at the printed URL."""
    from infra.tracking_server import TrackingServer

    with cli_errors():
        server = TrackingServer(backend_store_uri, host=host, port=port, workers=workers, bucket=bucket,
                                s3_endpoint_url=s3_endpoint_url, local_s3=local_s3).start()
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
