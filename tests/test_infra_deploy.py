"""`t2s deploy` and `t2s deploy rollback` end to end against a local moto server (ECS through the same
boto3 code: cluster, task definitions, service, the services_stable waiter)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.main import app as cli_app

runner = CliRunner()
CLUSTER, SERVICE, FAMILY = "t2s-staging", "t2s-staging-api", "t2s-staging-api"


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def ecs(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A fresh moto account with the staging API service on revision 1 (image t2s-api:v1)."""
    import boto3
    import httpx

    httpx.post(f"{moto_url}/moto-api/reset", trust_env=False)
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1",
                       "AWS_ENDPOINT_URL_ECS": moto_url,
                       # moto's ECS reports this many running tasks for a new service (default 0: never stable)
                       "MOTO_ECS_SERVICE_RUNNING": "2"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    ec2 = boto3.client("ec2", endpoint_url=moto_url)
    subnet = ec2.describe_subnets()["Subnets"][0]["SubnetId"]  # moto's default VPC
    group = ec2.describe_security_groups()["SecurityGroups"][0]["GroupId"]
    client = boto3.client("ecs")
    client.create_cluster(clusterName=CLUSTER)
    td = client.register_task_definition(
        family=FAMILY, networkMode="awsvpc", requiresCompatibilities=["FARGATE"], cpu="512", memory="1024",
        executionRoleArn="arn:aws:iam::123456789012:role/exec", taskRoleArn="arn:aws:iam::123456789012:role/task",
        containerDefinitions=[{
            "name": "api", "image": "registry.example/t2s-api:v1", "essential": True,
            "portMappings": [{"containerPort": 8000}],
            "environment": [{"name": "T2S_SERVE_WORKERS", "value": "2"}],
            "secrets": [{"name": "T2S_LLM_API_KEY", "valueFrom": "arn:aws:secretsmanager:us-east-1:123456789012:secret:k"}],
        }],
        tags=[{"key": "environment", "value": "staging"}])
    client.create_service(
        cluster=CLUSTER, serviceName=SERVICE, taskDefinition=td["taskDefinition"]["taskDefinitionArn"],
        desiredCount=2, launchType="FARGATE",
        networkConfiguration={"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": [group],
                                                      "assignPublicIp": "DISABLED"}})
    return client


def running(client: Any) -> str:
    arn = client.describe_services(cluster=CLUSTER, services=[SERVICE])["services"][0]["taskDefinition"]
    return arn.rsplit("/", 1)[-1]


def test_deploy_registers_a_revision_updates_and_rollback_returns(ecs: Any) -> None:
    result = runner.invoke(cli_app, ["deploy", "--env", "staging", "--image", "registry.example/t2s-api:v2",
                                     "--timeout", "20"],
                           terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "t2s-staging-api:1 -> t2s-staging-api:2" in result.output
    assert "image registry.example/t2s-api:v1 -> registry.example/t2s-api:v2" in result.output
    assert running(ecs) == "t2s-staging-api:2"
    new = ecs.describe_task_definition(taskDefinition="t2s-staging-api:2", include=["TAGS"])
    (container,) = new["taskDefinition"]["containerDefinitions"]
    assert container["image"] == "registry.example/t2s-api:v2"
    assert container["secrets"][0]["name"] == "T2S_LLM_API_KEY"  # everything else is carried over
    assert container["environment"] == [{"name": "T2S_SERVE_WORKERS", "value": "2"}]
    assert new["taskDefinition"]["cpu"] == "512" and new["taskDefinition"]["taskRoleArn"].endswith("role/task")
    assert new["tags"] == [{"key": "environment", "value": "staging"}]

    again = runner.invoke(cli_app, ["deploy", "--env", "staging", "--image", "registry.example/t2s-api:v2"])
    assert again.exit_code == 0 and "already runs" in again.output
    assert running(ecs) == "t2s-staging-api:2"

    back = runner.invoke(cli_app, ["deploy", "rollback", "--env", "staging", "--timeout", "20"], terminal_width=200)
    assert back.exit_code == 0, back.output
    assert "t2s-staging-api:2 -> t2s-staging-api:1" in back.output
    assert "image registry.example/t2s-api:v2 -> registry.example/t2s-api:v1" in back.output
    assert running(ecs) == "t2s-staging-api:1"

    oldest = runner.invoke(cli_app, ["deploy", "rollback", "--env", "staging", "--timeout", "20"], terminal_width=200)
    assert oldest.exit_code == 2 and "nothing to roll back to" in oldest.output


def test_errors_name_the_fix(ecs: Any) -> None:
    wrong_env = runner.invoke(cli_app, ["deploy", "--env", "prod", "--image", "x:1"], terminal_width=200)
    assert wrong_env.exit_code == 2 and "--env staging or --env production" in wrong_env.output
    missing = runner.invoke(cli_app, ["deploy", "--env", "production", "--image", "x:1"], terminal_width=200)
    assert missing.exit_code == 2 and "deploy the stacks first" in missing.output
    no_image = runner.invoke(cli_app, ["deploy", "--env", "staging"], terminal_width=200)
    assert no_image.exit_code == 2 and "--image" in no_image.output
    assert running(ecs) == "t2s-staging-api:1"


def test_a_deployment_ecs_rolled_back_is_a_failure(ecs: Any) -> None:
    """If the service ends on another revision than the one deployed, the command fails and says why."""
    from infra.deploy import DeployError, WaitConfig, _wait_stable, deploy

    result = deploy("staging", "registry.example/t2s-api:v3", client=ecs, wait=None)
    assert result.after.endswith("t2s-staging-api:2")
    ecs.update_service(cluster=CLUSTER, service=SERVICE, taskDefinition="t2s-staging-api:1")  # as ECS would
    with pytest.raises(DeployError, match="rolled the deployment back to t2s-staging-api:1"):
        _wait_stable(ecs, CLUSTER, SERVICE, result.after, WaitConfig(delay_s=1, max_attempts=3))
