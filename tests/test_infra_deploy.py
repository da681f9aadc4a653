"""`t2s deploy` end to end against a local moto server (ECS, SSM, S3, CloudFormation and RDS through the same
boto3 code): deploys, the deployment history and rollback to the revision that ran before, the image
parameter a later cdk deploy reads, the readiness gate, the tracking service, the first-deploy helpers and
the restore drill. What moto cannot do — run a container, fail a container, take minutes — is in
infra/README.md ("What the tests cannot show")."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from cli.main import app as cli_app

runner = CliRunner()
CLUSTER, SERVICE, FAMILY = "t2s-staging", "t2s-staging-api", "t2s-staging-api"
ACCOUNT = "123456789012"  # moto's account


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def _task_definition(client: Any, family: str, container: str, image: str) -> str:
    return client.register_task_definition(
        family=family, networkMode="awsvpc", requiresCompatibilities=["FARGATE"], cpu="512", memory="1024",
        executionRoleArn=f"arn:aws:iam::{ACCOUNT}:role/exec", taskRoleArn=f"arn:aws:iam::{ACCOUNT}:role/task",
        containerDefinitions=[
            # moto needs a container-level memory to run a task; the stacks set it per task
            {"name": "db-init", "image": image, "essential": False, "memory": 256,
             "command": ["python", "-m", "infra.db_init", "--service", "api"]},
            {"name": container, "image": image, "essential": True, "memory": 768,
             "portMappings": [{"containerPort": 8000}],
             "environment": [{"name": "T2S_SERVE_WORKERS", "value": "2"}],
             "secrets": [{"name": "T2S_LLM_API_KEY", "valueFrom": f"arn:aws:secretsmanager:us-east-1:{ACCOUNT}:secret:k"}],
             "dependsOn": [{"containerName": "db-init", "condition": "SUCCESS"}]}],
        tags=[{"key": "environment", "value": "staging"}])["taskDefinition"]["taskDefinitionArn"]


@pytest.fixture
def aws(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A fresh moto account with the staging API and tracking services on revision 1 (image :v1)."""
    import boto3
    import httpx

    httpx.post(f"{moto_url}/moto-api/reset", trust_env=False)
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": moto_url,
                       # moto's ECS reports this many running tasks for a new service (default 0: never stable)
                       "MOTO_ECS_SERVICE_RUNNING": "2"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    ec2 = boto3.client("ec2")
    subnet = ec2.describe_subnets()["Subnets"][0]["SubnetId"]  # moto's default VPC
    group = ec2.describe_security_groups()["SecurityGroups"][0]["GroupId"]
    ecs = boto3.client("ecs")
    ecs.create_cluster(clusterName=CLUSTER)
    network = {"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": [group], "assignPublicIp": "DISABLED"}}
    for service, container in (("api", "api"), ("tracking", "mlflow")):
        td = _task_definition(ecs, f"t2s-staging-{service}", container, f"registry.example/t2s:{service}-v1")
        ecs.create_service(cluster=CLUSTER, serviceName=f"t2s-staging-{service}", taskDefinition=td, desiredCount=2,
                           launchType="FARGATE", networkConfiguration=network)
    return {"ecs": ecs, "ssm": boto3.client("ssm"), "subnet": subnet, "group": group, "url": moto_url}


def running(ecs: Any, service: str = SERVICE) -> str:
    arn = ecs.describe_services(cluster=CLUSTER, services=[service])["services"][0]["taskDefinition"]
    return arn.rsplit("/", 1)[-1]


def image_parameter(ssm: Any, service: str = "api") -> str:
    return ssm.get_parameter(Name=f"/t2s/staging/{service}/image")["Parameter"]["Value"]


def t2s(*args: str) -> Any:
    result = runner.invoke(cli_app, list(args), terminal_width=200)
    return result


def test_rollback_returns_to_the_revision_that_ran_before(aws: dict[str, Any]) -> None:
    ecs, ssm = aws["ecs"], aws["ssm"]
    v = {n: f"registry.example/t2s:api-v{n}" for n in (1, 2, 3)}

    deployed = t2s("deploy", "--env", "staging", "--image", v[2], "--timeout", "20")
    assert deployed.exit_code == 0, deployed.output
    assert "t2s-staging-api:1 -> t2s-staging-api:2" in deployed.output
    assert f"image {v[1]} -> {v[2]}" in deployed.output
    assert running(ecs) == "t2s-staging-api:2" and image_parameter(ssm) == v[2]
    new = ecs.describe_task_definition(taskDefinition="t2s-staging-api:2", include=["TAGS"])
    containers = {c["name"]: c for c in new["taskDefinition"]["containerDefinitions"]}
    assert {c["image"] for c in containers.values()} == {v[2]}  # the init container runs the same code
    assert containers["api"]["secrets"][0]["name"] == "T2S_LLM_API_KEY"  # everything else is carried over
    assert containers["api"]["environment"] == [{"name": "T2S_SERVE_WORKERS", "value": "2"}]
    assert new["taskDefinition"]["cpu"] == "512" and new["taskDefinition"]["taskRoleArn"].endswith("role/task")
    assert new["tags"] == [{"key": "environment", "value": "staging"}]

    again = t2s("deploy", "--env", "staging", "--image", v[2])
    assert again.exit_code == 0 and "already runs" in again.output and running(ecs) == "t2s-staging-api:2"

    back = t2s("deploy", "rollback", "--env", "staging", "--timeout", "20")
    assert back.exit_code == 0, back.output
    assert "t2s-staging-api:2 -> t2s-staging-api:1" in back.output and f"image {v[2]} -> {v[1]}" in back.output
    assert running(ecs) == "t2s-staging-api:1" and image_parameter(ssm) == v[1]

    assert t2s("deploy", "--env", "staging", "--image", v[3], "--timeout", "20").exit_code == 0
    assert running(ecs) == "t2s-staging-api:3"
    back = t2s("deploy", "rollback", "--env", "staging", "--timeout", "20")
    assert back.exit_code == 0, back.output
    assert running(ecs) == "t2s-staging-api:1"  # the revision that ran before v3 -- not revision 2
    assert image_parameter(ssm) == v[1]

    # rolling back a rollback undoes it; --to names any revision of the family
    assert t2s("deploy", "rollback", "--env", "staging", "--timeout", "20").exit_code == 0
    assert running(ecs) == "t2s-staging-api:3"
    assert t2s("deploy", "rollback", "--env", "staging", "--to", "t2s-staging-api:2", "--timeout", "20").exit_code == 0
    assert running(ecs) == "t2s-staging-api:2" and image_parameter(ssm) == v[2]
    history = json.loads(ssm.get_parameter(Name="/t2s/staging/api/deployments")["Parameter"]["Value"])
    assert [(e["task_definition"].rsplit(":", 1)[1], e["action"]) for e in history] == [
        ("1", "observed"), ("2", "deploy"), ("1", "rollback"), ("3", "deploy"), ("1", "rollback"),
        ("3", "rollback"), ("2", "rollback")]
    other = t2s("deploy", "rollback", "--env", "staging", "--to", "t2s-staging-tracking:1")
    assert other.exit_code == 2 and "not a revision of t2s-staging-api" in other.output


def test_a_revision_set_outside_t2s_deploy_counts_as_what_ran_before(aws: dict[str, Any]) -> None:
    """A cdk deploy registers and rolls its own revision; rolling back from it returns to it afterwards."""
    ecs = aws["ecs"]
    assert t2s("deploy", "--env", "staging", "--image", "registry.example/t2s:api-v2", "--timeout", "20").exit_code == 0
    cdk_rev = _task_definition(ecs, FAMILY, "api", "registry.example/t2s:api-v2")  # revision 3, as a cdk deploy
    ecs.update_service(cluster=CLUSTER, service=SERVICE, taskDefinition=cdk_rev)
    assert t2s("deploy", "--env", "staging", "--image", "registry.example/t2s:api-v4", "--timeout", "20").exit_code == 0
    assert running(ecs) == "t2s-staging-api:4"
    assert t2s("deploy", "rollback", "--env", "staging", "--timeout", "20").exit_code == 0
    assert running(ecs) == "t2s-staging-api:3"


def test_the_oldest_revision_has_nothing_to_roll_back_to(aws: dict[str, Any]) -> None:
    oldest = t2s("deploy", "rollback", "--env", "staging")
    assert oldest.exit_code == 2 and "nothing to roll back to" in oldest.output
    assert running(aws["ecs"]) == "t2s-staging-api:1"


def test_the_tracking_service_deploys_and_rolls_back_on_its_own(aws: dict[str, Any]) -> None:
    ecs, ssm = aws["ecs"], aws["ssm"]
    out = t2s("deploy", "--env", "staging", "--service", "tracking", "--image", "registry.example/t2s:tr-v2",
              "--timeout", "20")
    assert out.exit_code == 0, out.output
    assert "t2s-staging-tracking:1 -> t2s-staging-tracking:2" in out.output
    assert running(ecs, "t2s-staging-tracking") == "t2s-staging-tracking:2"
    assert running(ecs) == "t2s-staging-api:1"  # the API is untouched
    assert image_parameter(ssm, "tracking") == "registry.example/t2s:tr-v2"
    assert t2s("deploy", "rollback", "--env", "staging", "--service", "tracking", "--timeout", "20").exit_code == 0
    assert running(ecs, "t2s-staging-tracking") == "t2s-staging-tracking:1"


class _NotReady(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"status": "not_ready"}'
        self.send_response(503)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_a_deploy_that_never_becomes_ready_is_rolled_back(aws: dict[str, Any]) -> None:
    from infra.deploy import Clients, DeployError, WaitConfig, deploy

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _NotReady)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/health/ready"
        with pytest.raises(DeployError, match=r"never became ready.*HTTP 503.*rolled back to t2s-staging-api:1"):
            deploy("staging", "registry.example/t2s:api-bad", clients=Clients(aws["ecs"], aws["ssm"]),
                   wait=WaitConfig(delay_s=1, max_attempts=3), ready_url=url)
    finally:
        server.shutdown()
    assert running(aws["ecs"]) == "t2s-staging-api:1"
    assert image_parameter(aws["ssm"]) == "registry.example/t2s:api-v1"


def test_errors_name_the_fix(aws: dict[str, Any]) -> None:
    wrong_env = t2s("deploy", "--env", "prod", "--image", "x:1")
    assert wrong_env.exit_code == 2 and "--env staging or --env production" in wrong_env.output
    missing = t2s("deploy", "--env", "production", "--image", "x:1")
    assert missing.exit_code == 2 and "deploy the stacks first" in missing.output
    no_image = t2s("deploy", "--env", "staging")
    assert no_image.exit_code == 2 and "--image" in no_image.output
    wrong_service = t2s("deploy", "--env", "staging", "--service", "web", "--image", "x:1")
    assert wrong_service.exit_code == 2 and "--service api or --service tracking" in wrong_service.output
    assert running(aws["ecs"]) == "t2s-staging-api:1"


def test_a_deployment_ecs_rolled_back_is_a_failure(aws: dict[str, Any]) -> None:
    """If the service ends on another revision than the one deployed, the command fails and says why."""
    from infra.deploy import Clients, DeployError, WaitConfig, _wait_stable, deploy

    ecs = aws["ecs"]
    result = deploy("staging", "registry.example/t2s:api-v3", clients=Clients(ecs, aws["ssm"]), wait=None)
    assert result.after.endswith("t2s-staging-api:2")
    ecs.update_service(cluster=CLUSTER, service=SERVICE, taskDefinition="t2s-staging-api:1")  # as ECS would
    with pytest.raises(DeployError, match="rolled the deployment back to t2s-staging-api:1"):
        _wait_stable(ecs, CLUSTER, SERVICE, result.after, WaitConfig(delay_s=1, max_attempts=3))


# --- first deploy -------------------------------------------------------------------------------------------


def test_init_writes_the_image_parameters_the_stack_reads(aws: dict[str, Any]) -> None:
    out = t2s("deploy", "init", "--env", "production", "--image", "registry.example/t2s-production:abc")
    assert out.exit_code == 0, out.output
    ssm = aws["ssm"]
    for service in ("api", "tracking"):
        value = ssm.get_parameter(Name=f"/t2s/production/{service}/image")["Parameter"]["Value"]
        assert value == "registry.example/t2s-production:abc"


def _bundle_file(tmp_path: Path) -> Path:
    from infra.registry_bundle import FORMAT, content_digest, write_bundle

    bundle: dict[str, Any] = {
        "format": FORMAT, "alias": "champion", "prompt": {"name": "demo", "versions": []},
        "config": {"prompt_uri": "prompts:/demo/1", "llm": {"provider": "openai", "model": "m"}, "dataset": "d"},
        "tags": {}, "metrics": {}, "source": {}}
    bundle["sha256"] = content_digest(bundle)
    return write_bundle(bundle, tmp_path / "champion.json")


def test_bootstrap_uploads_the_bundle_and_runs_the_import_inside_the_vpc(aws: dict[str, Any], tmp_path: Path) -> None:
    import boto3

    ecs = aws["ecs"]
    ecs.register_task_definition(
        family="t2s-staging-bootstrap", networkMode="awsvpc", requiresCompatibilities=["FARGATE"], cpu="256",
        memory="1024", containerDefinitions=[{"name": "bootstrap", "image": "registry.example/t2s:api-v1",
                                              "essential": True, "memory": 1024}])
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="t2s-staging-artifacts")
    cfn = boto3.client("cloudformation")
    cfn.create_stack(StackName="T2S-staging-Data", TemplateBody=json.dumps({
        "Resources": {"Handle": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
        "Outputs": {"ArtifactBucket": {"Value": "t2s-staging-artifacts"}}}))
    bundle = _bundle_file(tmp_path)
    sha = json.loads(bundle.read_text())["sha256"]

    stopper = threading.Timer(1.5, lambda: [ecs.stop_task(cluster=CLUSTER, task=t, reason="Essential container exited")
                                            for t in ecs.list_tasks(cluster=CLUSTER, startedBy="t2s-deploy-bootstrap")["taskArns"]])
    stopper.start()  # moto's tasks never stop by themselves
    out = t2s("deploy", "bootstrap", "--env", "staging", "--bundle", str(bundle), "--timeout", "12")
    stopper.join()
    assert out.exit_code == 0, out.output
    assert "imported" in out.output
    key = f"serving/bootstrap/{sha}.json"
    assert s3.get_object(Bucket="t2s-staging-artifacts", Key=key)["Body"].read() == bundle.read_bytes()
    (task,) = ecs.describe_tasks(cluster=CLUSTER, tasks=ecs.list_tasks(
        cluster=CLUSTER, startedBy="t2s-deploy-bootstrap", desiredStatus="STOPPED")["taskArns"])["tasks"]
    assert task["taskDefinitionArn"].endswith("t2s-staging-bootstrap:1")
    assert task["overrides"]["containerOverrides"] == [
        {"name": "bootstrap", "command": ["t2s", "tracking", "import", f"s3://t2s-staging-artifacts/{key}"]}]

    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    refused = t2s("deploy", "bootstrap", "--env", "staging", "--bundle", str(bad), "--no-wait")
    assert refused.exit_code == 2 and "t2s tracking export" in refused.output  # checked before anything runs


# --- restore drill ------------------------------------------------------------------------------------------


def test_restore_drill_restores_the_newest_snapshot_checks_and_deletes_it(aws: dict[str, Any]) -> None:
    import boto3

    rds = boto3.client("rds")
    rds.create_db_subnet_group(DBSubnetGroupName="t2s-data", DBSubnetGroupDescription="data",
                               SubnetIds=[aws["subnet"]])
    rds.create_db_instance(DBInstanceIdentifier="t2s-staging", Engine="postgres", EngineVersion="17.9",
                           DBInstanceClass="db.t4g.small", AllocatedStorage=20, MasterUsername="t2s",
                           MasterUserPassword="password-1234", DBSubnetGroupName="t2s-data",
                           VpcSecurityGroupIds=[aws["group"]], StorageEncrypted=True,
                           KmsKeyId=f"arn:aws:kms:us-east-1:{ACCOUNT}:key/data", PubliclyAccessible=False)
    rds.create_db_snapshot(DBInstanceIdentifier="t2s-staging", DBSnapshotIdentifier="older")
    rds.create_db_snapshot(DBInstanceIdentifier="t2s-staging", DBSnapshotIdentifier="newest")

    drill = t2s("deploy", "restore-drill", "--env", "staging")
    assert drill.exit_code == 0, drill.output
    assert "PASSED" in drill.output and "snapshot newest" in drill.output
    assert "encrypted with the data key" in drill.output and "deleted" in drill.output
    left = [i["DBInstanceIdentifier"] for i in rds.describe_db_instances()["DBInstances"]]
    assert left == ["t2s-staging"]  # the drill copy is gone

    kept = t2s("deploy", "restore-drill", "--env", "staging", "--snapshot", "older", "--keep")
    assert kept.exit_code == 0 and "kept" in kept.output
    (copy,) = [i for i in rds.describe_db_instances()["DBInstances"] if "-drill-" in i["DBInstanceIdentifier"]]
    assert copy["PubliclyAccessible"] is False and copy["DBSubnetGroup"]["DBSubnetGroupName"] == "t2s-data"
