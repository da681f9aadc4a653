"""The two steps of a first deploy that are not ``cdk deploy`` (infra/README.md, "First deploy"):

- :func:`init_images`: write the SSM image parameters the serving stack reads; they must exist before it.
- :func:`run_bootstrap`: register a first champion on the new, private tracking server. The bundle file
  (``t2s tracking export``) is uploaded to ``s3://<artifact bucket>/serving/bootstrap/<sha256>.json`` and the
  ``t2s-<env>-bootstrap`` task definition runs once inside the VPC, on the API service's subnets and security
  group, as the tracking user ``deploy``: ``t2s tracking import s3://...``. Nobody needs a VPN for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infra.deploy import DeployError, WaitConfig, _aws_errors, _service, names_for, short
from infra.layout import BOOTSTRAP_PREFIX

BOOTSTRAP_CONTAINER = "bootstrap"


def init_images(env: str, image: str, tracking_image: str | None = None, *, ssm: Any | None = None) -> list[str]:
    """Write ``/t2s/<env>/{api,tracking}/image`` (the tracking server runs the same image by default)."""
    import boto3

    from infra.deploy import _set_image_parameter

    ssm = ssm or boto3.client("ssm")
    done = []
    with _aws_errors(f"writing the image parameters of {env}"):
        for service, value in (("api", image), ("tracking", tracking_image or image)):
            n = names_for(env, service)
            _set_image_parameter(ssm, n, value)
            done.append(f"{n['image_parameter']} = {value}")
    return done


def stack_output(cfn: Any, stack: str, key: str) -> str:
    """An output of a deployed stack (e.g. the artifact bucket of ``T2S-<env>-Data``)."""
    try:
        found = cfn.describe_stacks(StackName=stack)["Stacks"]
    except cfn.exceptions.ClientError as exc:
        raise DeployError(f"stack {stack} not found: deploy it first (infra/README.md, \"First deploy\")") from exc
    for output in found[0].get("Outputs", []):
        if output["OutputKey"] == key:
            return str(output["OutputValue"])
    raise DeployError(f"stack {stack} has no output {key}")


@dataclass
class BootstrapRun:
    task_arn: str
    bundle_uri: str
    exit_code: int | None = None
    reason: str = ""

    def summary(self) -> str:
        state = "started" if self.exit_code is None and not self.reason else (
            "imported" if self.exit_code == 0 else f"failed (exit {self.exit_code}) {self.reason}".rstrip())
        return f"bootstrap task {short(self.task_arn)}: {state}\n  bundle {self.bundle_uri}"


def run_bootstrap(env: str, bundle_file: Path, *, force: bool = False, bucket: str | None = None,
                  clients: dict[str, Any] | None = None, wait: WaitConfig | None = WaitConfig()) -> BootstrapRun:
    """Upload ``bundle_file`` and run the bootstrap task; with ``wait``, fail unless it exits 0."""
    import boto3

    from infra.registry_bundle import read_bundle

    bundle = read_bundle(bundle_file)  # a bad file fails here, not in a task minutes later
    n = names_for(env)
    c = clients or {k: boto3.client(k) for k in ("ecs", "s3", "cloudformation")}
    with _aws_errors(f"running the bootstrap task of {env}"):
        bucket = bucket or stack_output(c["cloudformation"], f"T2S-{env}-Data", "ArtifactBucket")
        key = f"{BOOTSTRAP_PREFIX}/{bundle['sha256']}.json"
        c["s3"].upload_file(str(bundle_file), bucket, key)
        uri = f"s3://{bucket}/{key}"
        network = _service(c["ecs"], n["cluster"], n["service"])["networkConfiguration"]
        network["awsvpcConfiguration"]["assignPublicIp"] = "DISABLED"
        command = ["t2s", "tracking", "import", uri, *(["--force"] if force else [])]
        started = c["ecs"].run_task(
            cluster=n["cluster"], taskDefinition=n["bootstrap_family"], launchType="FARGATE", count=1,
            networkConfiguration=network, startedBy="t2s-deploy-bootstrap",
            overrides={"containerOverrides": [{"name": BOOTSTRAP_CONTAINER, "command": command}]})
        if not started.get("tasks"):
            raise DeployError(f"ECS did not start the bootstrap task: {started.get('failures')}")
        run = BootstrapRun(started["tasks"][0]["taskArn"], uri)
        if wait is None:
            return run
        c["ecs"].get_waiter("tasks_stopped").wait(cluster=n["cluster"], tasks=[run.task_arn],
                                                  WaiterConfig={"Delay": wait.delay_s, "MaxAttempts": wait.max_attempts})
        task = c["ecs"].describe_tasks(cluster=n["cluster"], tasks=[run.task_arn])["tasks"][0]
    container = next((x for x in task.get("containers", []) if x.get("name") == BOOTSTRAP_CONTAINER), {})
    run.exit_code = container.get("exitCode")
    run.reason = container.get("reason") or task.get("stoppedReason") or ""
    if run.exit_code != 0:
        raise DeployError(f"{run.summary()}\n  see the log group /t2s/{env}/services, stream prefix bootstrap/")
    return run
