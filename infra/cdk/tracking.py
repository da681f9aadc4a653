"""The shared MLflow tracking server: a second Fargate service on the RDS databases ``mlflow`` (runs, registry)
and ``mlflow_auth`` (users, permissions) and the artifact bucket's ``mlflow-artifacts/`` prefix, behind an
*internal* HTTPS load balancer, plus the one-off bootstrap task that registers a first champion.

- **Reach**: the internal ALB has no public address; its security group admits the VPC's CIDR (the API
  tasks load the champion through it) and, if configured, the reviewers' VPN CIDR
  (``-c t2s:reviewer_cidr=10.8.0.0/16``). Its name (``-c t2s:tracking_host=mlflow.staging.example.com``)
  resolves inside the VPC through a private hosted zone; ``TrackingCertificateArn`` must cover it.
- **Authentication and authorization**: MLflow's basic-auth app (:mod:`infra.tracking_auth`). Users
  ``admin`` and ``deploy`` are MLflow admins and the only ones who can move ``@champion``; ``serving`` (the
  API tasks) and every user an admin adds read, and write only what they create (their own experiments).
  Passwords come from Secrets Manager; the task re-applies them at every start.
- **Availability**: ``tracking_tasks`` (>= 2) tasks, rolling deploys with 100 % minimum healthy and 200 %
  maximum, the deployment circuit breaker; schema upgrades run once, under an advisory lock, at start.
- **Database**: its own login user ``mlflow`` (rotated, multi-user) owning the two databases through the
  NOLOGIN role ``mlflow_owner``, created by the task's init container (:mod:`infra.db_init`); the server
  never holds the RDS master password.

Artifacts are proxied by the server (``--serve-artifacts``), so only the tracking task role can touch the
bucket prefix.
"""

from __future__ import annotations

from typing import Any

from infra.cdk.config import EnvConfig, tracking_host
from infra.layout import (
    ARTIFACT_PREFIX,
    BOOTSTRAP_PREFIX,
    DB_USERS,
    TRACKING_AUTH_DB_NAME,
    TRACKING_DB_NAME,
    TRACKING_USERS,
    names,
)

TRACKING_PORT = 5000


def db_environment(service: str) -> dict[str, str]:
    """libpq settings of a service's main container: TLS, and the owner role its objects belong to."""
    return {"PGSSLMODE": "require", "PGOPTIONS": f"-c role={DB_USERS[service]['owner']}"}


def add_db_init(task: Any, service: str, *, data: Any, image: Any, log_group: Any) -> Any:
    """The init container that creates ``service``'s database user with the master secret (the main
    container, which must depend on it with condition SUCCESS, never receives that secret)."""
    from aws_cdk import aws_ecs as ecs

    db = data.database
    return task.add_container(
        "db-init", image=image, essential=False, readonly_root_filesystem=True,
        command=["python", "-m", "infra.db_init", "--service", service],
        environment={"PGHOST": db.db_instance_endpoint_address, "PGPORT": "5432", "PGSSLMODE": "require"},
        secrets={"PGUSER": ecs.Secret.from_secrets_manager(db.secret, "username"),
                 "PGPASSWORD": ecs.Secret.from_secrets_manager(db.secret, "password"),
                 "T2S_DB_LOGIN_USER": ecs.Secret.from_secrets_manager(data.db_users[service], "username"),
                 "T2S_DB_LOGIN_PASSWORD": ecs.Secret.from_secrets_manager(data.db_users[service], "password")},
        logging=ecs.LogDrivers.aws_logs(stream_prefix=f"{service}-db-init", log_group=log_group))


def build_tracking(stack: Any, cfg: EnvConfig, *, cluster: Any, network: Any, data: Any, image: Any,
                   log_group: Any) -> dict[str, Any]:
    import aws_cdk as cdk
    from aws_cdk import aws_ec2 as ec2
    from aws_cdk import aws_ecs as ecs
    from aws_cdk import aws_elasticloadbalancingv2 as elbv2
    from aws_cdk import aws_iam as iam
    from aws_cdk import aws_route53 as route53
    from aws_cdk import aws_route53_targets as targets

    from infra.cdk.serving import CERTIFICATE_PATTERN
    from infra.tracking_auth import password_env, server_command

    host = tracking_host(cfg)
    certificate = cdk.CfnParameter(stack, "TrackingCertificateArn", type="String", allowed_pattern=CERTIFICATE_PATTERN,
                                   description=f"ACM certificate covering {host} (the internal tracking server)")
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
    zone = route53.PrivateHostedZone(stack, "TrackingZone", zone_name=host, vpc=network.vpc,
                                     comment="the tracking server's name inside the VPC")
    route53.ARecord(stack, "TrackingRecord", zone=zone,
                    target=route53.RecordTarget.from_alias(targets.LoadBalancerTarget(alb)))

    task = ecs.FargateTaskDefinition(stack, "TrackingTask", family=names(cfg.name, "tracking")["family"],
                                     cpu=cfg.tracking_cpu, memory_limit_mib=cfg.tracking_memory_mib,
                                     task_role=role)
    task.add_volume(name="tmp")
    db_init = add_db_init(task, "tracking", data=data, image=image, log_group=log_group)
    endpoint = data.database.db_instance_endpoint_address

    def db_uri(database: str) -> str:  # the user comes from PGUSER/PGPASSWORD (libpq)
        return f"postgresql+psycopg://{endpoint}:5432/{database}?sslmode=require"

    container = task.add_container(
        "mlflow", image=image, essential=True, readonly_root_filesystem=True,
        command=server_command(
            db_uri(TRACKING_DB_NAME), db_uri(TRACKING_AUTH_DB_NAME),
            f"s3://{data.artifacts.bucket_name}/{ARTIFACT_PREFIX}",
            # Host headers MLflow accepts (DNS-rebinding guard): its name, and private addresses for the load
            # balancer's health checks.
            f"{host},{host}:443,10.*,172.*,192.168.*,localhost*,127.0.0.1*", port=TRACKING_PORT),
        environment={**db_environment("tracking"), "HOME": "/tmp", "TMPDIR": "/tmp"},
        secrets={"PGUSER": ecs.Secret.from_secrets_manager(data.db_users["tracking"], "username"),
                 "PGPASSWORD": ecs.Secret.from_secrets_manager(data.db_users["tracking"], "password"),
                 "MLFLOW_FLASK_SERVER_SECRET_KEY": ecs.Secret.from_secrets_manager(data.tracking_flask_key),
                 **{password_env(user): ecs.Secret.from_secrets_manager(data.tracking_secrets[user])
                    for user in TRACKING_USERS}},
        port_mappings=[ecs.PortMapping(container_port=TRACKING_PORT)],
        logging=ecs.LogDrivers.aws_logs(stream_prefix="tracking", log_group=log_group),
        health_check=ecs.HealthCheck(
            command=["CMD", "python", "-c",
                     f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{TRACKING_PORT}/health', timeout=4)"],
            start_period=cdk.Duration.seconds(90)),
    )
    container.add_mount_points(ecs.MountPoint(container_path="/tmp", source_volume="tmp", read_only=False))
    container.add_container_dependencies(ecs.ContainerDependency(
        container=db_init, condition=ecs.ContainerDependencyCondition.SUCCESS))

    service = ecs.FargateService(
        stack, "TrackingService", cluster=cluster, task_definition=task,
        service_name=names(cfg.name, "tracking")["service"], desired_count=cfg.tracking_tasks,
        min_healthy_percent=100, max_healthy_percent=200, assign_public_ip=False,
        security_groups=[network.groups["tracking"]],
        vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
        health_check_grace_period=cdk.Duration.seconds(120),
        circuit_breaker=ecs.DeploymentCircuitBreaker(enable=True, rollback=True))

    listener = alb.add_listener(
        "TrackingHttps", port=443, protocol=elbv2.ApplicationProtocol.HTTPS, open=False,
        certificates=[elbv2.ListenerCertificate.from_arn(certificate.value_as_string)],
        ssl_policy=elbv2.SslPolicy.RECOMMENDED_TLS)
    listener.add_targets("Tracking", port=TRACKING_PORT, protocol=elbv2.ApplicationProtocol.HTTP,
                         targets=[service], deregistration_delay=cdk.Duration.seconds(30),
                         health_check=elbv2.HealthCheck(path="/health", healthy_http_codes="200"))
    url = f"https://{host}"
    cdk.CfnOutput(stack, "TrackingUrl", value=url)
    return {"service": service, "alb": alb, "role": role, "url": url, "zone": zone}


def build_bootstrap_task(stack: Any, cfg: EnvConfig, *, data: Any, image: Any, log_group: Any,
                         tracking_url: str) -> Any:
    """A task definition ``t2s deploy bootstrap`` runs once inside the VPC: it registers a champion bundle
    exported elsewhere (``s3://<artifacts>/serving/bootstrap/<file>``) as the ``deploy`` user. Its role
    reads that prefix only."""
    from aws_cdk import aws_ecs as ecs
    from aws_cdk import aws_iam as iam

    role = iam.Role(stack, "BootstrapTaskRole", assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
                    description="t2s bootstrap: read the exported champion bundle")
    role.add_to_policy(iam.PolicyStatement(
        sid="BundleObjects", actions=["s3:GetObject"],
        resources=[data.artifacts.arn_for_objects(f"{BOOTSTRAP_PREFIX}/*")]))
    role.add_to_policy(iam.PolicyStatement(sid="BundleKey", actions=["kms:Decrypt"], resources=[data.key.key_arn]))
    task = ecs.FargateTaskDefinition(stack, "BootstrapTask", family=names(cfg.name)["bootstrap_family"],
                                     cpu=256, memory_limit_mib=1024, task_role=role)
    task.add_volume(name="tmp")
    container = task.add_container(
        "bootstrap", image=image, essential=True, readonly_root_filesystem=True,
        command=["t2s", "tracking", "import", "--help"],  # `t2s deploy bootstrap` overrides the command
        environment={"MLFLOW_TRACKING_URI": tracking_url, "MLFLOW_TRACKING_USERNAME": "deploy",
                     "HOME": "/tmp", "TMPDIR": "/tmp", "T2S_CACHE_DIR": "/tmp/t2s-cache"},
        secrets={"MLFLOW_TRACKING_PASSWORD": ecs.Secret.from_secrets_manager(data.tracking_secrets["deploy"])},
        logging=ecs.LogDrivers.aws_logs(stream_prefix="bootstrap", log_group=log_group))
    container.add_mount_points(ecs.MountPoint(container_path="/tmp", source_volume="tmp", read_only=False))
    return task
