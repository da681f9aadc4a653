"""Shared-state stack: RDS PostgreSQL (request/feedback store + MLflow backend, separate databases),
ElastiCache Redis (rate limits shared by all replicas), the S3 artifact bucket, the secrets, and the
AWS Backup plan.

Encryption at rest everywhere, TLS in transit, backups retained, deletion protection in production.

Database users: nobody runs on the RDS master user. Each service has its own login user whose secret
rotates with Secrets Manager's multi-user scheme (the old password stays valid for one more period while
tasks still hold it), and a NOLOGIN owner role that owns its database (:data:`DB_USERS`); an init container
in each task creates them with the master secret (``infra/db_init.py``), and the main container only gets
its own user's secret. The master secret rotates too (single-user: only init containers read it, at start).
"""

from __future__ import annotations

from typing import Any

from infra.cdk.config import EnvConfig
from infra.layout import (
    DB_NAME,
    DB_USERS,
    TRACKING_USERS,
    db_instance_id,
)


def build_data_stack(scope: Any, stack_id: str, cfg: EnvConfig, network: Any, **kwargs: Any) -> Any:
    import aws_cdk as cdk
    from aws_cdk import aws_backup as backup
    from aws_cdk import aws_ec2 as ec2
    from aws_cdk import aws_elasticache as elasticache
    from aws_cdk import aws_kms as kms
    from aws_cdk import aws_rds as rds
    from aws_cdk import aws_s3 as s3
    from aws_cdk import aws_secretsmanager as sm

    stack = cdk.Stack(scope, stack_id, **kwargs)
    vpc = network.vpc
    snapshot = cdk.RemovalPolicy.RETAIN if cfg.deletion_protection else cdk.RemovalPolicy.SNAPSHOT
    retain = cdk.RemovalPolicy.RETAIN
    # Secrets use Secrets Manager's AWS-managed key: with this customer key, every grant to a task's
    # execution role (serving stack) would edit the key policy here and make the stacks depend both ways.
    key = kms.Key(stack, "DataKey", enable_key_rotation=True, description="t2s data at rest",
                  removal_policy=cdk.RemovalPolicy.RETAIN)

    model_key = sm.Secret(stack, "ModelApiKey", description="Model provider API key (set the value after the "
                          "first deploy: aws secretsmanager put-secret-value)")

    user_hash_key = sm.Secret(stack, "UserHashKey", description="Key of the stored user-id hash (HMAC; "
                              "T2S_SERVE_USER_HASH_KEY): rotating it breaks sticky assignment history",
                              generate_secret_string=sm.SecretStringGenerator(
                                  exclude_punctuation=True, password_length=64))
    tracking_secrets = {
        user: sm.Secret(stack, f"Tracking{user.title()}Password",
                        description=f"MLflow tracking server user {user!r} (basic auth)",
                        generate_secret_string=sm.SecretStringGenerator(exclude_punctuation=True, password_length=40))
        for user in TRACKING_USERS}
    tracking_flask_key = sm.Secret(stack, "TrackingFlaskKey", description="MLflow server session/CSRF key, "
                                   "shared by all tracking tasks", generate_secret_string=sm.SecretStringGenerator(
                                       exclude_punctuation=True, password_length=64))

    database = rds.DatabaseInstance(
        stack, "Database", instance_identifier=db_instance_id(cfg.name),
        engine=rds.DatabaseInstanceEngine.postgres(version=rds.PostgresEngineVersion.VER_17_9),
        instance_type=ec2.InstanceType(cfg.db_instance_class),
        vpc=vpc, vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
        security_groups=[network.groups["db"]],
        credentials=rds.Credentials.from_generated_secret("t2s"),
        database_name=DB_NAME, port=5432,
        allocated_storage=cfg.db_allocated_gb, max_allocated_storage=cfg.db_allocated_gb * 5,
        storage_type=rds.StorageType.GP3, storage_encrypted=True, storage_encryption_key=key,
        backup_retention=cdk.Duration.days(cfg.db_backup_days), copy_tags_to_snapshot=True,
        deletion_protection=cfg.deletion_protection, removal_policy=snapshot,
        multi_az=cfg.db_multi_az, auto_minor_version_upgrade=True,
        iam_authentication=True, enable_performance_insights=True, performance_insight_encryption_key=key,
        cloudwatch_logs_exports=["postgresql", "upgrade"], monitoring_interval=cdk.Duration.seconds(60),
        parameters={"rds.force_ssl": "1"},
    )
    assert database.secret is not None
    rotation_placement: dict[str, Any] = dict(
        vpc=vpc, vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
        security_groups=[network.groups["rotation"]])
    every = cdk.Duration.days(cfg.secret_rotation_days)
    database.secret.add_rotation_schedule(
        "Rotation", automatically_after=every,
        hosted_rotation=sm.HostedRotation.postgre_sql_single_user(
            function_name=f"t2s-{cfg.name}-db-master-rotation", **rotation_placement))
    db_users = {}
    for service, user in DB_USERS.items():
        secret = rds.DatabaseSecret(stack, f"{service.title()}DbUser", username=user["login"],
                                    master_secret=database.secret).attach(database)
        secret.add_rotation_schedule(
            "Rotation", automatically_after=every,
            hosted_rotation=sm.HostedRotation.postgre_sql_multi_user(
                master_secret=database.secret, function_name=f"t2s-{cfg.name}-db-{service}-rotation",
                **rotation_placement))
        db_users[service] = secret

    redis_token = sm.Secret(stack, "RedisAuthToken", description="Redis AUTH token",
                            generate_secret_string=sm.SecretStringGenerator(
                                exclude_punctuation=True, password_length=48))
    redis_subnets = elasticache.CfnSubnetGroup(
        stack, "RedisSubnets", description="t2s redis",
        subnet_ids=vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED).subnet_ids)
    redis = elasticache.CfnReplicationGroup(
        stack, "Redis", replication_group_description="t2s rate limits", engine="redis",
        engine_version="7.1", cache_node_type=cfg.redis_node_type, num_cache_clusters=1 + cfg.redis_replicas,
        automatic_failover_enabled=cfg.redis_replicas > 0, multi_az_enabled=cfg.redis_replicas > 0,
        at_rest_encryption_enabled=True, kms_key_id=key.key_id, transit_encryption_enabled=True,
        auth_token=redis_token.secret_value.unsafe_unwrap(),  # a dynamic reference, resolved by CloudFormation
        cache_subnet_group_name=redis_subnets.ref, security_group_ids=[network.groups["redis"].security_group_id],
        snapshot_retention_limit=cfg.db_backup_days, auto_minor_version_upgrade=True,
    )

    access_logs = s3.Bucket(
        stack, "AccessLogs", encryption=s3.BucketEncryption.S3_MANAGED, enforce_ssl=True, versioned=True,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        lifecycle_rules=[s3.LifecycleRule(expiration=cdk.Duration.days(365))], removal_policy=retain,
    )
    artifacts = s3.Bucket(
        stack, "Artifacts", encryption=s3.BucketEncryption.KMS, encryption_key=key, bucket_key_enabled=True,
        versioned=True, enforce_ssl=True, block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
        server_access_logs_bucket=access_logs, server_access_logs_prefix="artifacts/",
        lifecycle_rules=[s3.LifecycleRule(noncurrent_version_expiration=cdk.Duration.days(90))],
        removal_policy=retain,
    )
    backup_plan = _backup_plan(stack, cfg, key, [
        backup.BackupResource.from_rds_database_instance(database), backup.BackupResource.from_arn(artifacts.bucket_arn)])
    cdk.CfnOutput(stack, "ArtifactBucket", value=artifacts.bucket_name)
    cdk.CfnOutput(stack, "DatabaseEndpoint", value=database.db_instance_endpoint_address)
    stack.key = key  # type: ignore[attr-defined]
    stack.model_key = model_key  # type: ignore[attr-defined]
    stack.database = database  # type: ignore[attr-defined]
    stack.redis = redis  # type: ignore[attr-defined]
    stack.redis_token = redis_token  # type: ignore[attr-defined]
    stack.artifacts = artifacts  # type: ignore[attr-defined]
    stack.user_hash_key = user_hash_key  # type: ignore[attr-defined]
    stack.db_users = db_users  # type: ignore[attr-defined]
    stack.tracking_secrets = tracking_secrets  # type: ignore[attr-defined]
    stack.tracking_flask_key = tracking_flask_key  # type: ignore[attr-defined]
    stack.backup_plan = backup_plan  # type: ignore[attr-defined]
    stack.access_logs = access_logs  # type: ignore[attr-defined]
    return stack


def dr_vault_name(env: str) -> str:
    return f"t2s-{env}-dr"


def _backup_plan(stack: Any, cfg: EnvConfig, key: Any, resources: list[Any]) -> Any:
    """Daily backups of the database and the artifact bucket into a vault encrypted with the data key,
    kept ``backup_retention_days``; with ``dr_region`` each recovery point is also copied into that
    region's vault (the ``T2S-<env>-DrVault`` stack), so a lost region can be restored elsewhere."""
    import aws_cdk as cdk
    from aws_cdk import aws_backup as backup
    from aws_cdk import aws_events as events
    from aws_cdk import aws_iam as iam

    vault = backup.BackupVault(stack, "BackupVault", backup_vault_name=f"t2s-{cfg.name}", encryption_key=key,
                               removal_policy=cdk.RemovalPolicy.RETAIN)
    keep = cdk.Duration.days(cfg.backup_retention_days)
    copies = []
    if cfg.dr_region:
        arn = cdk.Arn.format(cdk.ArnComponents(service="backup", region=cfg.dr_region, resource="backup-vault",
                                               resource_name=dr_vault_name(cfg.name),
                                               arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME), stack)
        copies.append(backup.BackupPlanCopyActionProps(
            destination_backup_vault=backup.BackupVault.from_backup_vault_arn(stack, "DrVault", arn),
            delete_after=keep))
    plan = backup.BackupPlan(stack, "BackupPlan", backup_plan_name=f"t2s-{cfg.name}", backup_vault=vault)
    plan.add_rule(backup.BackupPlanRule(
        rule_name="daily", schedule_expression=events.Schedule.cron(hour="2", minute="30"),
        start_window=cdk.Duration.hours(1), completion_window=cdk.Duration.hours(4), delete_after=keep,
        copy_actions=copies or None))
    role = iam.Role(stack, "BackupRole", assumed_by=iam.ServicePrincipal("backup.amazonaws.com"),
                    description="AWS Backup: back up and restore the database and the artifact bucket",
                    managed_policies=[iam.ManagedPolicy.from_aws_managed_policy_name(name) for name in (
                        "service-role/AWSBackupServiceRolePolicyForBackup",
                        "service-role/AWSBackupServiceRolePolicyForRestores",
                        "AWSBackupServiceRolePolicyForS3Backup", "AWSBackupServiceRolePolicyForS3Restore")])
    role.add_to_policy(iam.PolicyStatement(  # the bucket's objects and the vault are under the data key
        sid="DataKey", actions=["kms:Decrypt", "kms:GenerateDataKey", "kms:DescribeKey"], resources=[key.key_arn]))
    plan.add_selection("Resources", resources=resources, role=role)
    return plan


def build_dr_vault_stack(scope: Any, stack_id: str, cfg: EnvConfig, **kwargs: Any) -> Any:
    """The cross-region copy's destination: a vault (and its key) in ``cfg.dr_region``."""
    import aws_cdk as cdk
    from aws_cdk import aws_backup as backup
    from aws_cdk import aws_kms as kms

    stack = cdk.Stack(scope, stack_id, **kwargs)
    key = kms.Key(stack, "DrKey", enable_key_rotation=True, description="t2s cross-region backup copies",
                  removal_policy=cdk.RemovalPolicy.RETAIN)
    vault = backup.BackupVault(stack, "Vault", backup_vault_name=dr_vault_name(cfg.name), encryption_key=key,
                               removal_policy=cdk.RemovalPolicy.RETAIN)
    cdk.CfnOutput(stack, "VaultArn", value=vault.backup_vault_arn)
    return stack
