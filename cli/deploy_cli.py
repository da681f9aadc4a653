"""``t2s deploy``: roll a new image onto an ECS service (API or tracking server), ``t2s deploy rollback`` to the
revision that ran before, and the first-deploy and disaster-recovery helpers (see infra/deploy.py,
infra/first_deploy.py, infra/restore_drill.py and infra/README.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.console import cli_errors, console

app = typer.Typer(help="Deploy an image to an ECS service of an environment, roll it back, bootstrap a first "
                       "champion, or run a restore drill.", invoke_without_command=True)

EnvOpt = Annotated[str | None, typer.Option("--env", help="staging or production.")]
ServiceOpt = Annotated[str, typer.Option("--service", help="api or tracking.")]
RegionOpt = Annotated[str | None, typer.Option("--region", help="AWS region (default: the AWS configuration).")]
TimeoutOpt = Annotated[int, typer.Option("--timeout", min=1, help="Seconds to wait for the service to be stable.")]
NoWaitOpt = Annotated[bool, typer.Option("--no-wait", help="Return after updating the service.")]


def _clients(region: str | None):  # type: ignore[no-untyped-def]
    from infra.deploy import Clients

    return Clients.create(region)


@app.callback()
def deploy(
    ctx: typer.Context,
    env: EnvOpt = None,
    image: Annotated[str | None, typer.Option("--image", help="Image reference, e.g. <repo-uri>:<git-sha>.")] = None,
    service: ServiceOpt = "api",
    ready_url: Annotated[str | None, typer.Option(
        "--ready-url", help="After the rollout, poll this readiness URL (e.g. https://HOST/health/ready) until it "
                            "answers 200; roll back if it never does.")] = None,
    region: RegionOpt = None,
    timeout: TimeoutOpt = 900,
    no_wait: NoWaitOpt = False,
) -> None:
    """Register a new task-definition revision with IMAGE, update the service, wait until it is stable,
    record it in the deployment history and the image parameter, and print what changed. Fails if ECS rolls
    the deployment back (circuit breaker or alarm) or, with --ready-url, if it never becomes ready."""
    if ctx.invoked_subcommand is not None:
        return
    from infra.deploy import DeployError, WaitConfig
    from infra.deploy import deploy as run_deploy

    with cli_errors():
        if not env or not image:
            raise DeployError("give both --env (staging|production) and --image, or use `t2s deploy rollback`")
        result = run_deploy(env, image, service=service, clients=_clients(region), ready_url=ready_url,
                            wait=None if no_wait else WaitConfig.within(timeout))
    console.print(result.summary(), highlight=False)


@app.command("rollback")
def rollback(env: Annotated[str, typer.Option("--env", help="staging or production.")],
             service: ServiceOpt = "api",
             to: Annotated[str | None, typer.Option("--to", help="A revision (family:revision) instead of the one "
                                                                 "that ran before.")] = None,
             region: RegionOpt = None, timeout: TimeoutOpt = 900, no_wait: NoWaitOpt = False) -> None:
    """Return the service to the revision that ran before the current one (the deployment history in SSM),
    and wait until it is stable. Rolling back twice returns to where you started."""
    from infra.deploy import WaitConfig
    from infra.deploy import rollback as run_rollback

    with cli_errors():
        result = run_rollback(env, service=service, clients=_clients(region), to=to,
                              wait=None if no_wait else WaitConfig.within(timeout))
    console.print(result.summary(), highlight=False)


@app.command("init")
def init(env: Annotated[str, typer.Option("--env", help="staging or production.")],
         image: Annotated[str, typer.Option("--image", help="The first image, <repo-uri>:<git-sha>.")],
         tracking_image: Annotated[str | None, typer.Option(help="Tracking server image (default: --image).")] = None,
         region: RegionOpt = None) -> None:
    """First deploy: write the image parameters (/t2s/ENV/{api,tracking}/image) the serving stack reads.
    Run it after pushing the first image and before deploying T2S-ENV-Serving."""
    from infra.first_deploy import init_images

    with cli_errors():
        for line in init_images(env, image, tracking_image, ssm=_clients(region).ssm):
            console.print(line, highlight=False)


@app.command("bootstrap")
def bootstrap(env: Annotated[str, typer.Option("--env", help="staging or production.")],
              bundle: Annotated[Path, typer.Option("--bundle", exists=True, dir_okay=False,
                                                   help="File from `t2s tracking export`.")],
              force: Annotated[bool, typer.Option("--force", help="Replace an existing @champion.")] = False,
              bucket: Annotated[str | None, typer.Option(help="Artifact bucket (default: the Data stack's "
                                                               "output).")] = None,
              region: RegionOpt = None, timeout: TimeoutOpt = 900, no_wait: NoWaitOpt = False) -> None:
    """Register a first champion on the environment's private tracking server: upload the bundle and run the
    bootstrap task inside the VPC as the tracking user `deploy`; fails unless the import succeeds."""
    import boto3

    from infra.deploy import WaitConfig
    from infra.first_deploy import run_bootstrap

    with cli_errors():
        clients = {k: boto3.client(k, region_name=region) for k in ("ecs", "s3", "cloudformation")}
        run = run_bootstrap(env, bundle, force=force, bucket=bucket, clients=clients,
                            wait=None if no_wait else WaitConfig.within(timeout))
    console.print(run.summary(), highlight=False)


@app.command("restore-drill")
def restore_drill(env: Annotated[str, typer.Option("--env", help="staging or production.")],
                  snapshot: Annotated[str | None, typer.Option(help="Snapshot id (default: the newest).")] = None,
                  keep: Annotated[bool, typer.Option("--keep", help="Leave the restored copy running.")] = False,
                  region: RegionOpt = None) -> None:
    """Restore the newest database snapshot into a throw-away instance, check it, delete it, and print the
    RPO (snapshot age) and the time the restore took. Exits 1 if a check fails."""
    import boto3

    from infra.restore_drill import restore_drill as run_drill

    with cli_errors():
        report = run_drill(env, rds=boto3.client("rds", region_name=region), snapshot=snapshot, keep=keep)
    console.print(report.summary(), highlight=False)
    if not report.passed:
        raise typer.Exit(code=1)
