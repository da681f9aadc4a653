"""Deploy a new image to an ECS service (the API or the tracking server), or roll it back to the revision
that ran before.

boto3 only. ``deploy`` copies the service's *current* task definition, swaps the main container's image,
registers that as a new revision, points the service at it, and waits with the ``services_stable`` waiter.
If the service then runs any other revision, ECS rolled the deployment back (deployment circuit breaker or a
rollback alarm) and this is reported as a failure. With ``ready_url`` it then polls the API's readiness and
rolls back itself if the new revision never becomes ready.

**Deployment history.** Every revision the service is pointed at is appended to a JSON list in the SSM
parameter ``/t2s/<env>/<service>/deployments`` (newest last, :data:`HISTORY_LIMIT` kept); a revision found
running that the history does not end with (a ``cdk deploy``, someone in the console) is recorded first as
``observed``. ``rollback`` goes to the most recent entry that is not the running revision — the one that ran
before — and records the rollback too, so deploy v2, roll back (v1), deploy v3, roll back returns to v1, not
to v2. ``--to`` names a revision explicitly.

**Image parameter.** After a deploy or rollback the image now running is written to
``/t2s/<env>/<service>/image``, which the serving stack reads at every ``cdk deploy``: infrastructure changes
keep the running image.

The cluster/service/family names come from :mod:`infra.layout`, which the stacks use too. Endpoints and
credentials follow boto3's usual configuration (profile, ``AWS_REGION``, ``AWS_ENDPOINT_URL_ECS`` /
``AWS_ENDPOINT_URL_SSM`` for a local stand-in).
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from infra.layout import ENVIRONMENTS, SERVICES
from t2s.errors import Text2SQLError

API_CONTAINER = "api"
HISTORY_LIMIT = 15  # entries kept (an SSM standard parameter holds 4 KB)
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
        """Poll every 15 s (at least 4 times for short timeouts) for at most ``timeout_s``."""
        delay = max(1, min(15, timeout_s // 4))
        return cls(delay_s=delay, max_attempts=max(1, -(-timeout_s // delay)))

    @property
    def total_s(self) -> int:
        return self.delay_s * self.max_attempts


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


@dataclass
class Clients:
    """The boto3 clients a deploy uses (tests pass moto-backed ones)."""

    ecs: Any
    ssm: Any

    @classmethod
    def create(cls, region: str | None = None) -> Clients:
        import boto3

        with _aws_errors("creating the AWS clients"):
            return cls(boto3.client("ecs", region_name=region), boto3.client("ssm", region_name=region))


def short(arn: str) -> str:
    """``family:revision`` from a task-definition ARN."""
    return arn.rsplit("/", 1)[-1]


def names_for(env: str, service: str = "api") -> dict[str, str]:
    from infra.layout import names

    if env not in ENVIRONMENTS:
        raise DeployError(f"unknown environment {env!r}: use --env staging or --env production")
    if service not in SERVICES:
        raise DeployError(f"unknown service {service!r}: use --service api or --service tracking")
    return names(env, service)


@contextlib.contextmanager
def _aws_errors(action: str) -> Iterator[None]:
    """AWS failures (credentials, permissions, throttling) as a DeployError that says what was attempted."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (BotoCoreError, ClientError) as exc:
        raise DeployError(f"{action} failed: {exc}. Check the AWS credentials, region (--region) and the "
                          "deploy role's permissions (ECS, SSM /t2s/*)") from exc


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
                          f"(infra/README.md, \"First deploy\") or check --env and the AWS region")
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
                          f"{wait.total_s} s ({exc}); see the ECS service events and the "
                          f"log group, or run `t2s deploy rollback`") from exc
    running = _service(client, cluster, service)["taskDefinition"]
    if running != target:
        raise DeployError(f"ECS rolled the deployment back to {short(running)} (circuit breaker or a rollback "
                          f"alarm): {short(target)} is not serving; see infra/README.md#when-an-alarm-fires")


# --- deployment history (SSM) ---------------------------------------------------------------------------


def actor() -> str:
    """Who deploys: the CI's actor, else the OS user."""
    if who := os.environ.get("GITHUB_ACTOR"):
        return f"github:{who}"
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


class History:
    """The deployment history of one service in its SSM parameter (see the module docstring)."""

    def __init__(self, ssm: Any, parameter: str) -> None:
        self.ssm, self.parameter = ssm, parameter

    def entries(self) -> list[dict[str, Any]]:
        try:
            value = self.ssm.get_parameter(Name=self.parameter)["Parameter"]["Value"]
        except self.ssm.exceptions.ParameterNotFound:
            return []
        try:
            entries = json.loads(value)
        except ValueError as exc:
            raise DeployError(f"SSM parameter {self.parameter} does not hold a JSON list: fix or delete it") from exc
        return [e for e in entries if isinstance(e, dict) and e.get("task_definition")]

    def _write(self, entries: list[dict[str, Any]]) -> None:
        kept = entries[-HISTORY_LIMIT:]
        while len(json.dumps(kept)) > 4000 and len(kept) > 2:
            kept = kept[1:]
        self.ssm.put_parameter(Name=self.parameter, Value=json.dumps(kept), Type="String", Overwrite=True,
                               Description="t2s deploy: revisions this service ran, newest last")

    def record(self, task_definition: str, image: str, action: str) -> None:
        entries = self.entries()
        entries.append({"task_definition": task_definition, "image": image, "action": action,
                        "at": datetime.now(UTC).isoformat(timespec="seconds"), "by": actor()})
        self._write(entries)

    def observe(self, running: str, image: str) -> None:
        """Record the running revision first if the history does not end with it."""
        entries = self.entries()
        if not entries or entries[-1]["task_definition"] != running:
            self.record(running, image, "observed")


def _image_of(td: dict[str, Any], container: str) -> str:
    found = [c for c in td["containerDefinitions"] if c["name"] == container]
    if not found:
        raise DeployError(f"task definition {short(td['taskDefinitionArn'])} has no container {container!r}")
    return str(found[0]["image"])


def _set_image_parameter(ssm: Any, n: dict[str, str], image: str) -> None:
    ssm.put_parameter(Name=n["image_parameter"], Value=image, Type="String", Overwrite=True,
                      Description="t2s deploy: the image CloudFormation deploys for this service")


# --- deploy, rollback ------------------------------------------------------------------------------------


def deploy(env: str, image: str, *, service: str = "api", clients: Clients | None = None,
           wait: WaitConfig | None = WaitConfig(), ready_url: str | None = None) -> DeployResult:
    """Register a revision of the current task definition with ``image`` and roll the service onto it."""
    if not image or any(ch.isspace() for ch in image):
        raise DeployError(f"--image must be an image reference like <registry>/<repo>:<tag>, got {image!r}")
    n = names_for(env, service)
    clients = clients or Clients.create()
    with _aws_errors(f"deploying {image} to {env} {service}"):
        result = _deploy(clients, n, env, image, wait)
    if ready_url and wait is not None and result.before != result.after:
        _gate_on_readiness(clients, service, env, result, ready_url, wait)
    return result


def _deploy(clients: Clients, n: dict[str, str], env: str, image: str, wait: WaitConfig | None) -> DeployResult:
    client, container = clients.ecs, n["container"]
    svc = _service(client, n["cluster"], n["service"])
    current = client.describe_task_definition(taskDefinition=svc["taskDefinition"], include=["TAGS"])
    td = current["taskDefinition"]
    history = History(clients.ssm, n["history_parameter"])
    history.observe(td["taskDefinitionArn"], _image_of(td, container))
    if _image_of(td, container) == image:
        _set_image_parameter(clients.ssm, n, image)
        return DeployResult(env, n["cluster"], n["service"], td["taskDefinitionArn"], td["taskDefinitionArn"],
                            [f"container {container} already runs {image}"])
    request = {k: td[k] for k in _REGISTER_FIELDS if td.get(k) not in (None, [], {})}
    request["containerDefinitions"] = [{**c, "image": image} if c["name"] == container or c.get("image") ==
                                       _image_of(td, container) else c for c in td["containerDefinitions"]]
    if current.get("tags"):
        request["tags"] = current["tags"]
    new_arn = client.register_task_definition(**request)["taskDefinition"]["taskDefinitionArn"]
    client.update_service(cluster=n["cluster"], service=n["service"], taskDefinition=new_arn)
    history.record(new_arn, image, "deploy")
    if wait is not None:
        _wait_stable(client, n["cluster"], n["service"], new_arn, wait)
    _set_image_parameter(clients.ssm, n, image)
    return DeployResult(env, n["cluster"], n["service"], td["taskDefinitionArn"], new_arn,
                        _diff_containers(td["containerDefinitions"], request["containerDefinitions"]))


def _gate_on_readiness(clients: Clients, service: str, env: str, result: DeployResult, ready_url: str,
                       wait: WaitConfig) -> None:
    """Poll ``ready_url`` until it answers 200; if it never does, roll back to the revision before."""
    import httpx

    deadline, last = time.monotonic() + wait.total_s, "no answer"
    while time.monotonic() < deadline:
        try:
            r = httpx.get(ready_url, timeout=5)
            if r.status_code == 200:
                return
            last = f"HTTP {r.status_code}: {r.text[:200]}"
        except httpx.HTTPError as exc:
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(min(wait.delay_s, 5))
    back = rollback(env, service=service, clients=clients, wait=wait, to=result.before)
    raise DeployError(f"{short(result.after)} never became ready at {ready_url} ({last}); rolled back to "
                      f"{short(back.after)}")


def rollback(env: str, *, service: str = "api", clients: Clients | None = None,
             wait: WaitConfig | None = WaitConfig(), to: str | None = None) -> DeployResult:
    """Point the service at the revision that ran before the current one (from the deployment history), or
    at ``to`` (``family:revision`` or an ARN), and wait until it is stable."""
    n = names_for(env, service)
    clients = clients or Clients.create()
    with _aws_errors(f"rolling back {env} {service}"):
        return _rollback(clients, n, env, wait, to)


def _rollback(clients: Clients, n: dict[str, str], env: str, wait: WaitConfig | None,
              to: str | None) -> DeployResult:
    client = clients.ecs
    current_arn = _service(client, n["cluster"], n["service"])["taskDefinition"]
    before = client.describe_task_definition(taskDefinition=current_arn)["taskDefinition"]
    history = History(clients.ssm, n["history_parameter"])
    history.observe(current_arn, _image_of(before, n["container"]))
    target = _previous(client, history.entries(), current_arn, n) if to is None else to
    try:
        after = client.describe_task_definition(taskDefinition=target)["taskDefinition"]
    except client.exceptions.ClientException as exc:
        raise DeployError(f"task definition {target!r} not found: give family:revision, e.g. {short(current_arn)}") \
            from exc
    if after["family"] != before["family"]:
        raise DeployError(f"{short(after['taskDefinitionArn'])} is not a revision of {before['family']}")
    target_arn = after["taskDefinitionArn"]
    client.update_service(cluster=n["cluster"], service=n["service"], taskDefinition=target_arn)
    image = _image_of(after, n["container"])
    history.record(target_arn, image, "rollback")
    if wait is not None:
        _wait_stable(client, n["cluster"], n["service"], target_arn, wait)
    _set_image_parameter(clients.ssm, n, image)
    return DeployResult(env, n["cluster"], n["service"], current_arn, target_arn,
                        _diff_containers(before["containerDefinitions"], after["containerDefinitions"]))


def _previous(client: Any, entries: list[dict[str, Any]], running: str, n: dict[str, str]) -> str:
    """The most recent history entry that is not the running revision and can still run (ACTIVE)."""
    for entry in reversed(entries):
        arn = entry["task_definition"]
        if arn == running:
            continue
        status = client.describe_task_definition(taskDefinition=arn)["taskDefinition"].get("status", "ACTIVE")
        if status == "ACTIVE":
            return str(arn)
    raise DeployError(f"the deployment history of {n['service']} ({n['history_parameter']}) has no revision "
                      f"before {short(running)}: nothing to roll back to (name one with --to)")
