"""The shared MLflow tracking server: a second Fargate service on the RDS database ``mlflow`` and the
artifact bucket's ``mlflow-artifacts/`` prefix, behind an *internal* load balancer.

Access choice (private path): the internal ALB has no public address; its security group admits the VPC's
CIDR (the API tasks load the champion model through it) and, if configured, the reviewers' VPN CIDR
(``-c t2s:reviewer_cidr=10.8.0.0/16``). Reviewers reach the UI over the VPN or an SSM port-forward; nothing
on the internet can. Artifacts are proxied by the server (``--serve-artifacts``), so only the tracking
task role can touch the bucket prefix.
"""

from __future__ import annotations

from typing import Any

from infra.cdk.config import EnvConfig
from infra.cdk.data import ARTIFACT_PREFIX, DB_NAME, TRACKING_DB_NAME

TRACKING_PORT = 5000

# Creates the MLflow database on first start (CloudFormation cannot create a second database in RDS).
_CREATE_DB = (
    "import os, psycopg; "
    f"c = psycopg.connect(host=os.environ['PGHOST'], dbname='{DB_NAME}', user=os.environ['PGUSER'], "
    "sslmode='require', autocommit=True); "
    f"exists = c.execute(\"SELECT 1 FROM pg_database WHERE datname = '{TRACKING_DB_NAME}'\").fetchone(); "
    f"exists or c.execute('CREATE DATABASE {TRACKING_DB_NAME}')"
)


def build_tracking(stack: Any, cfg: EnvConfig, *, cluster: Any, network: Any, data: Any, image: Any,
                   log_group: Any) -> dict[str, Any]:
    import aws_cdk as cdk
    from aws_cdk import aws_ec2 as ec2
    from aws_cdk import aws_ecs as ecs
    from aws_cdk import aws_elasticloadbalancingv2 as elbv2
    from aws_cdk import aws_iam as iam

    role = iam.Role(stack, "TrackingTaskRole", assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
                    description="MLflow tracking server: read/write its artifact prefix only")
    role.add_to_policy(iam.PolicyStatement(
        sid="ArtifactObjects", actions=["s3:GetObject", "s3:PutObject", "s3:DeleteObject"],
        resources=[data.artifacts.arn_for_objects(f"{ARTIFACT_PREFIX}/*")]))
    role.add_to_policy(iam.PolicyStatement(
        sid="ArtifactList", actions=["s3:ListBucket"], resources=[data.artifacts.bucket_arn],
        conditions={"StringLike": {"s3:prefix": [f"{ARTIFACT_PREFIX}/*", ARTIFACT_PREFIX]}}))
    role.add_to_policy(iam.PolicyStatement(
        sid="ArtifactKey", actions=["kms:Decrypt", "kms:GenerateDataKey"], resources=[data.key.key_arn]))

    alb = elbv2.ApplicationLoadBalancer(
        stack, "TrackingAlb", vpc=network.vpc, internet_facing=False, security_group=network.groups["tracking_alb"],
        vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
        drop_invalid_header_fields=True, deletion_protection=cfg.deletion_protection)
    alb.log_access_logs(data.access_logs, prefix="tracking-alb")
    task = ecs.FargateTaskDefinition(stack, "TrackingTask", family=f"t2s-{cfg.name}-tracking",
                                     cpu=cfg.tracking_cpu, memory_limit_mib=cfg.tracking_memory_mib,
                                     task_role=role)
    task.add_volume(name="tmp")
    db = data.database
    backend = (f"postgresql+psycopg://t2s@{db.db_instance_endpoint_address}:5432/{TRACKING_DB_NAME}"
               "?sslmode=require")
    server = (f"exec mlflow server --host 0.0.0.0 --port {TRACKING_PORT} --workers 2 "
              f"--backend-store-uri '{backend}' --serve-artifacts "
              f"--artifacts-destination s3://{data.artifacts.bucket_name}/{ARTIFACT_PREFIX} "
              # Host headers MLflow accepts (DNS-rebinding guard): the internal ALB's name, and private
              # addresses for the ALB health checks and in-VPC callers.
              f"--allowed-hosts '{alb.load_balancer_dns_name},10.*,172.*,192.168.*,localhost*,127.0.0.1*'")
    container = task.add_container(
        "mlflow", image=image, essential=True, readonly_root_filesystem=True,
        command=["/bin/sh", "-c", f'python -c "{_CREATE_DB}" && {server}'],
        environment={"PGHOST": db.db_instance_endpoint_address, "PGUSER": "t2s", "HOME": "/tmp",
                     "TMPDIR": "/tmp"},
        secrets={"PGPASSWORD": ecs.Secret.from_secrets_manager(db.secret, "password")},
        port_mappings=[ecs.PortMapping(container_port=TRACKING_PORT)],
        logging=ecs.LogDrivers.aws_logs(stream_prefix="tracking", log_group=log_group),
        health_check=ecs.HealthCheck(
            command=["CMD", "python", "-c",
                     f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{TRACKING_PORT}/health', timeout=4)"],
            start_period=cdk.Duration.seconds(60)),
    )
    container.add_mount_points(ecs.MountPoint(container_path="/tmp", source_volume="tmp", read_only=False))

    service = ecs.FargateService(
        stack, "TrackingService", cluster=cluster, task_definition=task, service_name=f"t2s-{cfg.name}-tracking",
        desired_count=1, min_healthy_percent=0, max_healthy_percent=100, assign_public_ip=False,
        security_groups=[network.groups["tracking"]],
        vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
        circuit_breaker=ecs.DeploymentCircuitBreaker(enable=True, rollback=True))

    listener = alb.add_listener("TrackingHttp", port=80, protocol=elbv2.ApplicationProtocol.HTTP, open=False)
    listener.add_targets("Tracking", port=TRACKING_PORT, protocol=elbv2.ApplicationProtocol.HTTP,
                         targets=[service], deregistration_delay=cdk.Duration.seconds(30),
                         health_check=elbv2.HealthCheck(path="/health", healthy_http_codes="200"))
    cdk.CfnOutput(stack, "TrackingUrl", value=f"http://{alb.load_balancer_dns_name}")
    return {"service": service, "alb": alb, "role": role, "url": f"http://{alb.load_balancer_dns_name}"}
