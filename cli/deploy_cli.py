"""``t2s deploy``: roll a new image onto the ECS API service, and ``t2s deploy rollback`` (see infra/deploy.py)."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.console import cli_errors, console

app = typer.Typer(help="Deploy an image to the ECS API service of an environment, or roll it back.",
                  invoke_without_command=True)

EnvOpt = Annotated[str | None, typer.Option("--env", help="staging or production.")]
RegionOpt = Annotated[str | None, typer.Option("--region", help="AWS region (default: the AWS configuration).")]
TimeoutOpt = Annotated[int, typer.Option("--timeout", min=1, help="Seconds to wait for the service to be stable.")]
NoWaitOpt = Annotated[bool, typer.Option("--no-wait", help="Return after updating the service.")]


@app.callback()
def deploy(
    ctx: typer.Context,
    env: EnvOpt = None,
    image: Annotated[str | None, typer.Option("--image", help="Image reference, e.g. <repo-uri>:<git-sha>.")] = None,
    region: RegionOpt = None,
    timeout: TimeoutOpt = 900,
    no_wait: NoWaitOpt = False,
) -> None:
    """Register a new task-definition revision with IMAGE, update the service, wait until it is stable,
    and print what changed. Fails if ECS rolls the deployment back (circuit breaker or alarm)."""
    if ctx.invoked_subcommand is not None:
        return
    from infra.deploy import DeployError, WaitConfig, ecs_client
    from infra.deploy import deploy as run_deploy

    with cli_errors():
        if not env or not image:
            raise DeployError("give both --env (staging|production) and --image, or use `t2s deploy rollback`")
        result = run_deploy(env, image, client=ecs_client(region), wait=None if no_wait else WaitConfig.within(timeout))
    console.print(result.summary(), highlight=False)


@app.command("rollback")
def rollback(env: Annotated[str, typer.Option("--env", help="staging or production.")],
             region: RegionOpt = None, timeout: TimeoutOpt = 900, no_wait: NoWaitOpt = False) -> None:
    """Return the service to the previous task-definition revision and wait until it is stable."""
    from infra.deploy import WaitConfig, ecs_client
    from infra.deploy import rollback as run_rollback

    with cli_errors():
        result = run_rollback(env, client=ecs_client(region), wait=None if no_wait else WaitConfig.within(timeout))
    console.print(result.summary(), highlight=False)
