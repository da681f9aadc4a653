"""Deploy a new image to the ECS API service, or roll back to the previous task-definition revision.

boto3 only. ``deploy`` copies the service's *current* task definition, swaps the API container's image,
registers that as a new revision, points the service at it, and waits with the ``services_stable`` waiter.
If the service then runs any other revision, ECS rolled the deployment back (deployment circuit breaker
or a rollback alarm) and this is reported as a failure. ``rollback`` points the service at the highest
active revision of the family below the current one and waits the same way.

The cluster/service/family names come from the CDK app (``infra.cdk.serving.names``), so the stacks and
this command cannot disagree. Endpoints and credentials follow boto3's usual configuration (profile,
``AWS_REGION``, ``AWS_ENDPOINT_URL_ECS`` for a local stand-in).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from t2s.errors import Text2SQLError

API_CONTAINER = "api"
# Fields of describe_task_definition's answer that register_task_definition accepts back.
_REGISTER_FIELDS = (
    "family", "taskRoleArn", "executionRoleArn", "networkMode", "containerDefinitions", "volumes",
    "placementConstraints", "requiresCompatibilities", "cpu", "memory", "pidMode", "ipcMode",
    "proxyConfiguration", "inferenceAccelerators", "ephemeralStorage", "runtimePlatform",
)


class DeployError(Text2SQLError):
    """A deploy or rollback could not start, or ECS did not end on the requested revision."""


@dataclass(frozen=True)
class WaitConfig:
    delay_s: int = 15
    max_attempts: int = 60  # 15 min: above the ALB health-check + deregistration time of a rolling deploy

    @classmethod
    def within(cls, timeout_s: int) -> WaitConfig:
        """Poll every 15 s (or faster for short timeouts) for at most ``timeout_s``."""
        delay = max(1, min(15, timeout_s))
        return cls(delay_s=delay, max_attempts=max(1, -(-timeout_s // delay)))


@dataclass
class DeployResult:
    env: str
    cluster: str
    service: str
    before: str  # task definition ARN before
    after: str  # task definition ARN after
    changes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"{self.env}: service {self.service} in cluster {self.cluster}",
                 f"  task definition {short(self.before)} -> {short(self.after)}"]
        lines += [f"  {c}" for c in self.changes] or ["  no change"]
        return "\n".join(lines)


def short(arn: str) -> str:
    """``family:revision`` from a task-definition ARN."""
    return arn.rsplit("/", 1)[-1]


def names_for(env: str) -> dict[str, str]:
    from infra.layout import names

    if env not in ("staging", "production"):
        raise DeployError(f"unknown environment {env!r}: use --env staging or --env production")
    return names(env)


def ecs_client(region: str | None = None) -> Any:
    import boto3

    with _aws_errors("creating the ECS client"):
        return boto3.client("ecs", region_name=region)


@contextlib.contextmanager
def _aws_errors(action: str) -> Iterator[None]:
    """AWS failures (credentials, permissions, throttling) as a DeployError that says what was attempted."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (BotoCoreError, ClientError) as exc:
        raise DeployError(f"{action} failed: {exc}. Check the AWS credentials, region (--region) and the "
                          "deploy role's ECS permissions") from exc


def _service(client: Any, cluster: str, service: str) -> dict[str, Any]:
    from botocore.exceptions import ClientError

    try:
        found = client.describe_services(cluster=cluster, services=[service])
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ClusterNotFoundException":
            raise
        found = {}
    services = [s for s in found.get("services", []) if s.get("status") == "ACTIVE"]
    if not services:
        raise DeployError(f"service {service!r} not found in cluster {cluster!r}: deploy the stacks first "
                          f"(infra/README.md, `cdk deploy`) or check --env and the AWS region")
    return services[0]


def _diff_containers(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[str]:
    changes = []
    before = {c["name"]: c for c in old}
    for c in new:
        prev = before.get(c["name"], {})
        for key in sorted(set(prev) | set(c)):
            if prev.get(key) != c.get(key):
                if key == "image":
                    changes.append(f"container {c['name']}: image {prev.get(key)} -> {c.get(key)}")
                else:
                    changes.append(f"container {c['name']}: {key} changed")
    return changes


def _wait_stable(client: Any, cluster: str, service: str, target: str, wait: WaitConfig) -> None:
    from botocore.exceptions import WaiterError

    try:
        client.get_waiter("services_stable").wait(
            cluster=cluster, services=[service],
            WaiterConfig={"Delay": wait.delay_s, "MaxAttempts": wait.max_attempts})
    except WaiterError as exc:
        raise DeployError(f"service {service} did not become stable on {short(target)} in "
                          f"{wait.delay_s * wait.max_attempts} s ({exc}); see the ECS service events and the "
                          f"API log group, or run `t2s deploy rollback`") from exc
    running = _service(client, cluster, service)["taskDefinition"]
    if running != target:
        raise DeployError(f"ECS rolled the deployment back to {short(running)} (circuit breaker or a rollback "
                          f"alarm): {short(target)} is not serving; see infra/README.md#when-an-alarm-fires")


def deploy(env: str, image: str, *, client: Any | None = None, container: str = API_CONTAINER,
           wait: WaitConfig | None = WaitConfig()) -> DeployResult:
    """Register a revision of the current task definition with ``image`` and roll the service onto it."""
    if not image or any(ch.isspace() for ch in image):
        raise DeployError(f"--image must be an image reference like <registry>/<repo>:<tag>, got {image!r}")
    n = names_for(env)
    client = client or ecs_client()
    with _aws_errors(f"deploying {image} to {env}"):
        return _deploy(client, n, env, image, container, wait)


def _deploy(client: Any, n: dict[str, str], env: str, image: str, container: str,
            wait: WaitConfig | None) -> DeployResult:
    svc = _service(client, n["cluster"], n["service"])
    current = client.describe_task_definition(taskDefinition=svc["taskDefinition"], include=["TAGS"])
    td = current["taskDefinition"]
    if container not in [c["name"] for c in td["containerDefinitions"]]:
        raise DeployError(f"task definition {short(td['taskDefinitionArn'])} has no container {container!r}")
    if next(c for c in td["containerDefinitions"] if c["name"] == container)["image"] == image:
        return DeployResult(env, n["cluster"], n["service"], td["taskDefinitionArn"], td["taskDefinitionArn"],
                            [f"container {container} already runs {image}"])
    request = {k: td[k] for k in _REGISTER_FIELDS if td.get(k) not in (None, [], {})}
    request["containerDefinitions"] = [{**c, "image": image} if c["name"] == container else c
                                       for c in td["containerDefinitions"]]
    if current.get("tags"):
        request["tags"] = current["tags"]
    new_arn = client.register_task_definition(**request)["taskDefinition"]["taskDefinitionArn"]
    client.update_service(cluster=n["cluster"], service=n["service"], taskDefinition=new_arn)
    if wait is not None:
        _wait_stable(client, n["cluster"], n["service"], new_arn, wait)
    return DeployResult(env, n["cluster"], n["service"], td["taskDefinitionArn"], new_arn,
                        _diff_containers(td["containerDefinitions"], request["containerDefinitions"]))


def rollback(env: str, *, client: Any | None = None, wait: WaitConfig | None = WaitConfig()) -> DeployResult:
    """Point the service at the highest active revision of its family below the one it runs now."""
    n = names_for(env)
    client = client or ecs_client()
    with _aws_errors(f"rolling back {env}"):
        return _rollback(client, n, env, wait)


def _rollback(client: Any, n: dict[str, str], env: str, wait: WaitConfig | None) -> DeployResult:
    svc = _service(client, n["cluster"], n["service"])
    current_arn = svc["taskDefinition"]
    family, revision = short(current_arn).rsplit(":", 1)
    arns: list[str] = []
    for page in client.get_paginator("list_task_definitions").paginate(familyPrefix=family, status="ACTIVE"):
        arns += page["taskDefinitionArns"]
    older = [a for a in arns if short(a).rsplit(":", 1)[0] == family and int(short(a).rsplit(":", 1)[1]) < int(revision)]
    if not older:
        raise DeployError(f"{short(current_arn)} is the oldest active revision of {family}: nothing to roll back to")
    previous = max(older, key=lambda a: int(short(a).rsplit(":", 1)[1]))
    before = client.describe_task_definition(taskDefinition=current_arn)["taskDefinition"]
    after = client.describe_task_definition(taskDefinition=previous)["taskDefinition"]
    client.update_service(cluster=n["cluster"], service=n["service"], taskDefinition=previous)
    if wait is not None:
        _wait_stable(client, n["cluster"], n["service"], previous, wait)
    return DeployResult(env, n["cluster"], n["service"], current_arn, previous,
                        _diff_containers(before["containerDefinitions"], after["containerDefinitions"]))
