"""Serving stack: ECS cluster, the API as a Fargate service in private subnets behind a public HTTPS ALB
(HTTPS only) with a WAF web ACL, target-tracking autoscaling (CPU and requests per target), the deployment circuit
breaker and alarm-based rollback, plus the tracking service, the app clients of the Cognito pool, the one-off
bootstrap task and the dashboard/alarms.

Names are fixed per environment (cluster ``t2s-<env>``, service ``t2s-<env>-api``, task family
``t2s-<env>-api``) because ``t2s deploy`` finds them by these names.

Images: the task definitions take their image from SSM parameters (``/t2s/<env>/<service>/image``, read by
CloudFormation at every deploy), which ``t2s deploy`` updates after each successful rollout; so a later
``cdk deploy`` keeps the image that runs instead of resetting it.

Health: the load balancer checks ``/health`` (liveness: the process answers). A fresh stack has no champion
model yet; the API then answers and its tasks stay in service while ``/health/ready`` says why it cannot
serve ("no champion yet", see infra/README.md "First deploy"). ``t2s deploy --ready-url`` gates rollouts on
readiness instead.
"""

from __future__ import annotations

import json
from typing import Any

from infra.cdk.config import EnvConfig
from infra.cdk.identity import ADMIN_GROUPS, REVIEWER_GROUPS, add_app_clients
from infra.cdk.keys import logs_key
from infra.cdk.observability import build_observability
from infra.cdk.tracking import add_db_init, build_bootstrap_task, build_tracking, db_environment
from infra.layout import API_PREFIX, BOOTSTRAP_PREFIX, DB_NAME, db_instance_id, names
from t2s.metric_names import NAMESPACE

API_PORT = 8000
CERTIFICATE_PATTERN = r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/.+$"
MANAGED_RULE_GROUPS = ("AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet",
                       "AWSManagedRulesAmazonIpReputationList")


def _retention(days: int) -> Any:
    from aws_cdk import aws_logs as logs

    table = {7: logs.RetentionDays.ONE_WEEK, 14: logs.RetentionDays.TWO_WEEKS, 30: logs.RetentionDays.ONE_MONTH,
             90: logs.RetentionDays.THREE_MONTHS, 180: logs.RetentionDays.SIX_MONTHS,
             365: logs.RetentionDays.ONE_YEAR}
    return table[days]


def build_serving_stack(scope: Any, stack_id: str, cfg: EnvConfig, network: Any, data: Any, identity: Any,
                        **kwargs: Any) -> Any:
    import aws_cdk as cdk
    from aws_cdk import aws_ec2 as ec2
    from aws_cdk import aws_ecs as ecs
    from aws_cdk import aws_elasticloadbalancingv2 as elbv2
    from aws_cdk import aws_iam as iam
    from aws_cdk import aws_logs as logs

    stack = cdk.Stack(scope, stack_id, **kwargs)
    n = names(cfg.name)
    images = {service: ecs.ContainerImage.from_registry(cdk.CfnParameter(
        stack, param, type="AWS::SSM::Parameter::Value<String>", default=names(cfg.name, service)["image_parameter"],
        description=f"SSM parameter holding the {service} image (<repository-uri>:<git-sha>); `t2s deploy` "
                    "keeps it current, so a later cdk deploy keeps the running image").value_as_string)
        for service, param in (("api", "ImageUri"), ("tracking", "TrackingImageUri"))}
    image = images["api"]
    certificate_arn = cdk.CfnParameter(stack, "CertificateArn", type="String", allowed_pattern=CERTIFICATE_PATTERN,
                                       description="ACM certificate for the public HTTPS listener")
    logs_cmk = logs_key(stack, "LogsKey", "t2s service and WAF logs")
    log_group = logs.LogGroup(stack, "Logs", log_group_name=f"/t2s/{cfg.name}/services",
                              retention=_retention(cfg.log_retention_days), encryption_key=logs_cmk,
                              removal_policy=cdk.RemovalPolicy.RETAIN)
    cluster = ecs.Cluster(stack, "Cluster", cluster_name=n["cluster"], vpc=network.vpc,
                          container_insights_v2=ecs.ContainerInsights.ENABLED)

    # --- task role: least privilege ---
    role = iam.Role(stack, "ApiTaskRole", assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
                    description="t2s API tasks: metrics in its namespace, its secret, its bucket prefix")
    role.add_to_policy(iam.PolicyStatement(
        sid="MetricsInOwnNamespace", actions=["cloudwatch:PutMetricData"], resources=["*"],
        conditions={"StringEquals": {"cloudwatch:namespace": NAMESPACE}}))
    role.add_to_policy(iam.PolicyStatement(
        sid="ModelKeySecret", actions=["secretsmanager:GetSecretValue", "secretsmanager:DescribeSecret"],
        resources=[data.model_key.secret_arn]))
    role.add_to_policy(iam.PolicyStatement(
        sid="OwnPrefixObjects", actions=["s3:GetObject", "s3:PutObject"],
        resources=[data.artifacts.arn_for_objects(f"{API_PREFIX}/*")]))
    role.add_to_policy(iam.PolicyStatement(
        sid="OwnPrefixList", actions=["s3:ListBucket"], resources=[data.artifacts.bucket_arn],
        conditions={"StringLike": {"s3:prefix": [f"{API_PREFIX}/*", API_PREFIX]}}))
    role.add_to_policy(iam.PolicyStatement(
        sid="DataKey", actions=["kms:Decrypt", "kms:GenerateDataKey"], resources=[data.key.key_arn]))

    tracking = build_tracking(stack, cfg, cluster=cluster, network=network, data=data, image=images["tracking"],
                              log_group=log_group)

    # --- the public ALB first: the web client's default callback URL is on it ---
    alb = elbv2.ApplicationLoadBalancer(
        stack, "Alb", vpc=network.vpc, internet_facing=True, security_group=network.groups["alb"],
        vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC), drop_invalid_header_fields=True,
        deletion_protection=cfg.deletion_protection)
    public = f"https://{cfg.public_host or alb.load_balancer_dns_name}"
    callbacks, logout = cfg.app_callback_urls or [f"{public}/app/callback"], f"{public}/app"
    clients = add_app_clients(stack, cfg, identity, callback_urls=callbacks, logout_urls=[logout])

    # --- API task definition ---
    db = data.database
    task = ecs.FargateTaskDefinition(stack, "ApiTask", family=n["family"], cpu=cfg.api_cpu,
                                     memory_limit_mib=cfg.api_memory_mib, task_role=role)
    task.add_volume(name="tmp")
    db_init = add_db_init(task, "api", data=data, image=image, log_group=log_group)
    client_ids = [clients["api"].user_pool_client_id, clients["web"].user_pool_client_id]
    auth = {"T2S_SERVE_AUTH": "required", "T2S_SERVE_JWT_ISSUER": identity.issuer,
            "T2S_SERVE_JWKS_URL": f"{identity.issuer}/.well-known/jwks.json",
            "T2S_SERVE_JWT_CLIENT_IDS": json.dumps(client_ids),
            "T2S_SERVE_JWT_ADMIN_GROUPS": json.dumps(ADMIN_GROUPS),
            "T2S_SERVE_JWT_REVIEWER_GROUPS": json.dumps(REVIEWER_GROUPS),
            # the analyst web app's sign-in (serving/oauth.py): hosted UI, the web client, its URLs
            "T2S_SERVE_OAUTH_DOMAIN": identity.domain.base_url(), "T2S_SERVE_OAUTH_CLIENT_ID": client_ids[1],
            "T2S_SERVE_OAUTH_REDIRECT_URL": callbacks[0], "T2S_SERVE_OAUTH_LOGOUT_URL": logout}
    container = task.add_container(
        "api", image=image, essential=True, readonly_root_filesystem=True,
        environment={
            **auth,
            "T2S_SERVE_HOST": "0.0.0.0", "T2S_SERVE_PORT": str(API_PORT), "T2S_SERVE_WORKERS": str(cfg.api_workers),
            # no user in the URL: libpq reads PGUSER/PGPASSWORD (the API's own user) and PGOPTIONS (its role)
            "T2S_SERVE_STORE_URL": f"postgresql+psycopg://{db.db_instance_endpoint_address}:5432/{DB_NAME}"
                                   "?sslmode=require",
            **db_environment("api"),
            "T2S_SERVE_DATABASES": json.dumps(cfg.serve_databases),
            # only the load balancer reaches the tasks (security group): its X-Forwarded-For/-Proto, from
            # inside the VPC, name the real client (per-address limits) and the https scheme (HSTS)
            "T2S_SERVE_FORWARDED_ALLOW_IPS": cdk.Fn.join("", ['["', network.vpc.vpc_cidr_block, '"]']),
            "T2S_REDIS_URL": f"rediss://{data.redis.attr_primary_end_point_address}:6379/0",
            "MLFLOW_TRACKING_URI": tracking["url"], "MLFLOW_TRACKING_USERNAME": "serving",
            "T2S_LLM_PROVIDER": "openai",
            "T2S_METRICS_NAMESPACE": NAMESPACE, "AWS_EMF_ENVIRONMENT": "Local",
            "T2S_CACHE_DIR": "/tmp/t2s-cache", "HOME": "/tmp", "TMPDIR": "/tmp",
        },
        secrets={
            "T2S_LLM_API_KEY": ecs.Secret.from_secrets_manager(data.model_key),
            "PGUSER": ecs.Secret.from_secrets_manager(data.db_users["api"], "username"),
            "PGPASSWORD": ecs.Secret.from_secrets_manager(data.db_users["api"], "password"),
            "T2S_REDIS_PASSWORD": ecs.Secret.from_secrets_manager(data.redis_token),
            "T2S_SERVE_USER_HASH_KEY": ecs.Secret.from_secrets_manager(data.user_hash_key),
            "MLFLOW_TRACKING_PASSWORD": ecs.Secret.from_secrets_manager(data.tracking_secrets["serving"]),
        },
        port_mappings=[ecs.PortMapping(container_port=API_PORT)],
        logging=ecs.LogDrivers.aws_logs(stream_prefix="api", log_group=log_group),
        health_check=ecs.HealthCheck(
            command=["CMD", "python", "-c",
                     f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{API_PORT}/health', timeout=4)"],
            start_period=cdk.Duration.seconds(40)),
    )
    container.add_mount_points(ecs.MountPoint(container_path="/tmp", source_volume="tmp", read_only=False))
    container.add_container_dependencies(ecs.ContainerDependency(
        container=db_init, condition=ecs.ContainerDependencyCondition.SUCCESS))
    bootstrap = build_bootstrap_task(stack, cfg, data=data, image=image, log_group=log_group,
                                     tracking_url=tracking["url"])
    for task_definition in (task, tracking["service"].task_definition, bootstrap):
        network.repository.grant_pull(task_definition.obtain_execution_role())

    # --- public ALB: HTTPS only (no port 80 listener at all) ---
    alb.log_access_logs(data.access_logs, prefix="api-alb")
    listener = alb.add_listener(
        "Https", port=443, protocol=elbv2.ApplicationProtocol.HTTPS, open=False,
        certificates=[elbv2.ListenerCertificate.from_arn(certificate_arn.value_as_string)],
        ssl_policy=elbv2.SslPolicy.RECOMMENDED_TLS)

    rollback_alarm_names = [f"t2s-{cfg.name}-5xx-rate", f"t2s-{cfg.name}-latency-p95"]
    service = ecs.FargateService(
        stack, "ApiService", cluster=cluster, task_definition=task, service_name=n["service"],
        desired_count=cfg.min_tasks, min_healthy_percent=100, max_healthy_percent=200,
        assign_public_ip=False, security_groups=[network.groups["api"]],
        vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
        health_check_grace_period=cdk.Duration.seconds(60),
        circuit_breaker=ecs.DeploymentCircuitBreaker(enable=True, rollback=True),
        deployment_alarms=ecs.DeploymentAlarmConfig(alarm_names=rollback_alarm_names,
                                                    behavior=ecs.AlarmBehavior.ROLLBACK_ON_ALARM))
    target_group = listener.add_targets(
        "Api", port=API_PORT, protocol=elbv2.ApplicationProtocol.HTTP, targets=[service],
        deregistration_delay=cdk.Duration.seconds(30),
        # liveness: a stack with no champion yet stays up while /health/ready says why (see the docstring)
        health_check=elbv2.HealthCheck(path="/health", healthy_http_codes="200",
                                       interval=cdk.Duration.seconds(15), healthy_threshold_count=2,
                                       unhealthy_threshold_count=3))

    scaling = service.auto_scale_task_count(min_capacity=cfg.min_tasks, max_capacity=cfg.max_tasks)
    scaling.scale_on_cpu_utilization("CpuScaling", target_utilization_percent=cfg.cpu_target_pct,
                                     scale_in_cooldown=cdk.Duration.seconds(300),
                                     scale_out_cooldown=cdk.Duration.seconds(60))
    scaling.scale_on_request_count("RequestScaling", requests_per_target=cfg.requests_per_target,
                                   target_group=target_group, scale_in_cooldown=cdk.Duration.seconds(300),
                                   scale_out_cooldown=cdk.Duration.seconds(60))

    _web_acl(stack, cfg, alb, logs_cmk)
    obs = build_observability(stack, cfg, load_balancer=alb, target_group=target_group, service=service)
    for alarm in obs["rollback_alarms"]:
        service.node.add_dependency(alarm)
    deploy_policy = _deploy_policy(stack, cfg, data, [task, tracking["service"].task_definition, bootstrap])
    cdk.CfnOutput(stack, "ApiUrl", value=public)
    cdk.CfnOutput(stack, "BootstrapTaskFamily", value=n["bootstrap_family"])
    cdk.CfnOutput(stack, "DeployPolicyArn", value=deploy_policy.managed_policy_arn)
    cdk.CfnOutput(stack, "AlarmTopicArn", value=obs["topic"].topic_arn)
    stack.service = service  # type: ignore[attr-defined]
    stack.observability = obs  # type: ignore[attr-defined]
    stack.tracking = tracking  # type: ignore[attr-defined]
    stack.clients = clients  # type: ignore[attr-defined]
    stack.deploy_policy = deploy_policy  # type: ignore[attr-defined]
    stack.bootstrap = bootstrap  # type: ignore[attr-defined]
    return stack


def _deploy_policy(stack: Any, cfg: EnvConfig, data: Any, task_definitions: list[Any]) -> Any:
    """What ``t2s deploy`` (deploy, rollback, init, bootstrap, restore-drill) and ``t2s promote`` against the
    tracking server need, as a managed policy to attach to the CI's deploy role (created outside the stacks:
    it is trusted through GitHub OIDC)."""
    import aws_cdk as cdk
    from aws_cdk import aws_iam as iam

    region, account, partition = cdk.Aws.REGION, cdk.Aws.ACCOUNT_ID, cdk.Aws.PARTITION
    n = names(cfg.name)
    cluster = f"arn:{partition}:ecs:{region}:{account}:cluster/{n['cluster']}"
    services = [f"arn:{partition}:ecs:{region}:{account}:service/{n['cluster']}/{names(cfg.name, s)['service']}"
                for s in ("api", "tracking")]
    roles = [r.role_arn for td in task_definitions for r in (td.task_role, td.obtain_execution_role())]
    db = f"arn:{partition}:rds:{region}:{account}"
    drill = f"{db}:db:t2s-{cfg.name}-drill-*"
    return iam.ManagedPolicy(stack, "DeployPolicy", managed_policy_name=f"t2s-{cfg.name}-deploy",
                             description="t2s deploy / rollback / bootstrap / restore-drill and promotion", statements=[
        iam.PolicyStatement(sid="Services", actions=["ecs:DescribeServices", "ecs:UpdateService"], resources=services),
        # RegisterTaskDefinition, DescribeTaskDefinition and ListTaskDefinitions have no resource-level permissions
        iam.PolicyStatement(sid="TaskDefinitions", resources=["*"], actions=[
            "ecs:RegisterTaskDefinition", "ecs:DescribeTaskDefinition", "ecs:ListTaskDefinitions"]),
        iam.PolicyStatement(sid="BootstrapTask", actions=["ecs:RunTask"], conditions={"ArnEquals": {"ecs:cluster": cluster}},
                            resources=[f"arn:{partition}:ecs:{region}:{account}:task-definition/{n['bootstrap_family']}:*"]),
        iam.PolicyStatement(sid="BootstrapTaskStatus", actions=["ecs:DescribeTasks", "ecs:ListTasks"],
                            resources=[f"arn:{partition}:ecs:{region}:{account}:task/{n['cluster']}/*",
                                       f"arn:{partition}:ecs:{region}:{account}:container-instance/{n['cluster']}/*"]),
        iam.PolicyStatement(sid="PassTaskRoles", actions=["iam:PassRole"], resources=roles,
                            conditions={"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}),
        iam.PolicyStatement(sid="ImageAndHistoryParameters", actions=["ssm:GetParameter", "ssm:PutParameter"],
                            resources=[f"arn:{partition}:ssm:{region}:{account}:parameter/t2s/{cfg.name}/*"]),
        iam.PolicyStatement(sid="BootstrapBundle", actions=["s3:PutObject"],
                            resources=[data.artifacts.arn_for_objects(f"{BOOTSTRAP_PREFIX}/*")]),
        iam.PolicyStatement(sid="BootstrapBundleKey", actions=["kms:GenerateDataKey"], resources=[data.key.key_arn]),
        iam.PolicyStatement(sid="StackOutputs", actions=["cloudformation:DescribeStacks"], resources=[
            f"arn:{partition}:cloudformation:{region}:{account}:stack/T2S-{cfg.name}-{kind}/*" for kind in ("Data", "Serving")]),
        iam.PolicyStatement(sid="TrackingDeployUser", actions=["secretsmanager:GetSecretValue"],
                            resources=[data.tracking_secrets["deploy"].secret_arn]),
        iam.PolicyStatement(sid="DrillRead", actions=["rds:DescribeDBInstances", "rds:DescribeDBSnapshots"],
                            resources=[f"{db}:db:{db_instance_id(cfg.name)}", drill, f"{db}:snapshot:*"]),
        iam.PolicyStatement(sid="DrillRestore", actions=["rds:RestoreDBInstanceFromDBSnapshot", "rds:AddTagsToResource"],
                            resources=[drill, f"{db}:snapshot:*", f"{db}:subgrp:*", f"{db}:og:*", f"{db}:pg:*"]),
        iam.PolicyStatement(sid="DrillDelete", actions=["rds:DeleteDBInstance"], resources=[drill]),
        iam.PolicyStatement(sid="DrillKey", actions=["kms:CreateGrant", "kms:DescribeKey", "kms:Decrypt"],
                            resources=[data.key.key_arn]),
    ])


# Request headers that carry credentials: WAF logs them in clear unless redacted (lower case: WAF matches
# header names case-insensitively and stores them so).
REDACTED_HEADERS = ("authorization", "x-api-key", "cookie")


def _web_acl(stack: Any, cfg: EnvConfig, alb: Any, logs_cmk: Any) -> Any:
    """Regional web ACL on the public ALB: AWS managed rule groups plus a per-IP rate limit, logged to a
    KMS-encrypted log group with the credential headers (:data:`REDACTED_HEADERS`) redacted."""
    import aws_cdk as cdk
    from aws_cdk import aws_logs as logs
    from aws_cdk import aws_wafv2 as waf

    def visibility(name: str) -> waf.CfnWebACL.VisibilityConfigProperty:
        return waf.CfnWebACL.VisibilityConfigProperty(cloud_watch_metrics_enabled=True, metric_name=name,
                                                      sampled_requests_enabled=True)

    rules = [waf.CfnWebACL.RuleProperty(
        name="RateLimitPerIp", priority=0, action=waf.CfnWebACL.RuleActionProperty(block={}),
        statement=waf.CfnWebACL.StatementProperty(rate_based_statement=waf.CfnWebACL.RateBasedStatementProperty(
            aggregate_key_type="IP", limit=2000)),
        visibility_config=visibility("RateLimitPerIp"))]
    for priority, group in enumerate(MANAGED_RULE_GROUPS, start=1):
        rules.append(waf.CfnWebACL.RuleProperty(
            name=group, priority=priority, override_action=waf.CfnWebACL.OverrideActionProperty(none={}),
            statement=waf.CfnWebACL.StatementProperty(managed_rule_group_statement=(
                waf.CfnWebACL.ManagedRuleGroupStatementProperty(vendor_name="AWS", name=group))),
            visibility_config=visibility(group)))
    acl = waf.CfnWebACL(stack, "WebAcl", scope="REGIONAL", default_action=waf.CfnWebACL.DefaultActionProperty(allow={}),
                        visibility_config=visibility(f"t2s-{cfg.name}-web-acl"), rules=rules)
    waf.CfnWebACLAssociation(stack, "WebAclAssociation", resource_arn=alb.load_balancer_arn,
                             web_acl_arn=acl.attr_arn)
    waf_logs = logs.LogGroup(stack, "WafLogs", log_group_name=f"aws-waf-logs-t2s-{cfg.name}",
                             retention=_retention(cfg.log_retention_days), encryption_key=logs_cmk,
                             removal_policy=cdk.RemovalPolicy.RETAIN)
    waf.CfnLoggingConfiguration(
        stack, "WafLogging", resource_arn=acl.attr_arn, log_destination_configs=[waf_logs.log_group_arn],
        redacted_fields=[waf.CfnLoggingConfiguration.FieldToMatchProperty(single_header={"Name": h})
                         for h in REDACTED_HEADERS])
    return acl
