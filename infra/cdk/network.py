"""Network stack: the VPC (created over >= 2 AZs, or imported by id), every security group and the rules
between them, VPC flow logs, and the ECR repository the CI pushes images to.

All security groups live here so that the data and serving stacks only reference them: rules between
groups owned by different stacks would make the stacks depend on each other in both directions.
"""

from __future__ import annotations

from typing import Any

from infra.cdk.config import EnvConfig
from infra.cdk.keys import logs_key


def build_network_stack(scope: Any, stack_id: str, cfg: EnvConfig, **kwargs: Any) -> Any:
    import aws_cdk as cdk
    from aws_cdk import aws_ec2 as ec2
    from aws_cdk import aws_ecr as ecr
    from aws_cdk import aws_logs as logs

    stack = cdk.Stack(scope, stack_id, **kwargs)
    if cfg.vpc_id:
        vpc = ec2.Vpc.from_lookup(stack, "Vpc", vpc_id=cfg.vpc_id)
    else:
        vpc = ec2.Vpc(
            stack, "Vpc", max_azs=cfg.max_azs, nat_gateways=cfg.nat_gateways,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24),
                ec2.SubnetConfiguration(name="app", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=22),
                ec2.SubnetConfiguration(name="data", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=24),
            ],
        )
        flow_logs = logs.LogGroup(stack, "FlowLogs", retention=logs.RetentionDays.ONE_MONTH,
                                  encryption_key=logs_key(stack, "FlowLogsKey", "t2s VPC flow logs"),
                                  removal_policy=cdk.RemovalPolicy.DESTROY)
        vpc.add_flow_log("FlowLog", destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs),
                         traffic_type=ec2.FlowLogTrafficType.REJECT)

    def sg(name: str, description: str) -> ec2.SecurityGroup:
        return ec2.SecurityGroup(stack, name, vpc=vpc, description=description, allow_all_outbound=False)

    groups = {
        "alb": sg("AlbSg", "Public ALB: HTTPS from the internet"),
        "api": sg("ApiSg", "API tasks: from the public ALB only"),
        "tracking_alb": sg("TrackingAlbSg", "Internal ALB of the MLflow tracking server"),
        "tracking": sg("TrackingSg", "MLflow tracking tasks: from the internal ALB only"),
        "db": sg("DbSg", "RDS PostgreSQL: from the API and tracking tasks"),
        "redis": sg("RedisSg", "ElastiCache Redis: from the API tasks"),
        "rotation": sg("RotationSg", "Secrets Manager rotation functions: to the database and AWS APIs"),
    }
    https = ec2.Port.tcp(443)
    groups["alb"].add_ingress_rule(ec2.Peer.any_ipv4(), https, "HTTPS from users")
    groups["alb"].add_egress_rule(groups["api"], ec2.Port.tcp(8000), "to API tasks")
    groups["api"].add_ingress_rule(groups["alb"], ec2.Port.tcp(8000), "from the public ALB")
    groups["api"].add_egress_rule(ec2.Peer.any_ipv4(), https, "model provider, AWS APIs (HTTPS)")
    groups["api"].add_egress_rule(groups["db"], ec2.Port.tcp(5432), "request/feedback store")
    groups["api"].add_egress_rule(groups["redis"], ec2.Port.tcp(6379), "rate-limit counters")
    groups["api"].add_egress_rule(groups["tracking_alb"], https, "MLflow registry (champion model)")
    groups["tracking_alb"].add_ingress_rule(ec2.Peer.ipv4(vpc.vpc_cidr_block), https, "from inside the VPC")
    if cfg.reviewer_cidr:
        groups["tracking_alb"].add_ingress_rule(ec2.Peer.ipv4(cfg.reviewer_cidr), https, "reviewers' VPN")
    groups["tracking_alb"].add_egress_rule(groups["tracking"], ec2.Port.tcp(5000), "to tracking tasks")
    groups["tracking"].add_ingress_rule(groups["tracking_alb"], ec2.Port.tcp(5000), "from the internal ALB")
    groups["tracking"].add_egress_rule(ec2.Peer.any_ipv4(), https, "S3 artifacts, AWS APIs (HTTPS)")
    groups["tracking"].add_egress_rule(groups["db"], ec2.Port.tcp(5432), "MLflow backend store")
    groups["db"].add_ingress_rule(groups["api"], ec2.Port.tcp(5432), "from API tasks")
    groups["db"].add_ingress_rule(groups["tracking"], ec2.Port.tcp(5432), "from tracking tasks")
    groups["redis"].add_ingress_rule(groups["api"], ec2.Port.tcp(6379), "from API tasks")
    groups["rotation"].add_egress_rule(groups["db"], ec2.Port.tcp(5432), "rotate database users")
    groups["rotation"].add_egress_rule(ec2.Peer.any_ipv4(), https, "Secrets Manager API (HTTPS)")
    groups["db"].add_ingress_rule(groups["rotation"], ec2.Port.tcp(5432), "from the rotation functions")

    repository = ecr.Repository(
        stack, "Repository", repository_name=f"t2s-{cfg.name}", image_scan_on_push=True, image_tag_mutability=ecr.TagMutability.IMMUTABLE,
        encryption=ecr.RepositoryEncryption.KMS,
        lifecycle_rules=[ecr.LifecycleRule(max_image_count=50, description="keep the last 50 images")],
        removal_policy=cdk.RemovalPolicy.RETAIN,
    )
    if cfg.dr_region:  # images are needed to restore in the DR region: ECR replicates every push there
        ecr.CfnReplicationConfiguration(stack, "ImageReplication", replication_configuration=(
            ecr.CfnReplicationConfiguration.ReplicationConfigurationProperty(rules=[
                ecr.CfnReplicationConfiguration.ReplicationRuleProperty(
                    destinations=[ecr.CfnReplicationConfiguration.ReplicationDestinationProperty(
                        region=cfg.dr_region, registry_id=cdk.Aws.ACCOUNT_ID)],
                    repository_filters=[ecr.CfnReplicationConfiguration.RepositoryFilterProperty(
                        filter=f"t2s-{cfg.name}", filter_type="PREFIX_MATCH")])])))
    cdk.CfnOutput(stack, "RepositoryUri", value=repository.repository_uri)
    stack.vpc = vpc  # type: ignore[attr-defined]
    stack.groups = groups  # type: ignore[attr-defined]
    stack.repository = repository  # type: ignore[attr-defined]
    return stack
