"""Shared-state stack: RDS PostgreSQL (request/feedback store + MLflow backend, separate databases),
ElastiCache Redis (rate limits shared by all replicas), the S3 artifact bucket, and the model key secret.

Encryption at rest everywhere, TLS in transit, backups retained, deletion protection in production.
"""

from __future__ import annotations

from typing import Any

from infra.cdk.config import EnvConfig

DB_NAME = "t2s"
TRACKING_DB_NAME = "mlflow"
ARTIFACT_PREFIX = "mlflow-artifacts"
API_PREFIX = "serving"


def build_data_stack(scope: Any, stack_id: str, cfg: EnvConfig, network: Any, **kwargs: Any) -> Any:
    import aws_cdk as cdk
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

    database = rds.DatabaseInstance(
        stack, "Database",
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
    cdk.CfnOutput(stack, "ArtifactBucket", value=artifacts.bucket_name)
    cdk.CfnOutput(stack, "DatabaseEndpoint", value=database.db_instance_endpoint_address)
    stack.key = key  # type: ignore[attr-defined]
    stack.model_key = model_key  # type: ignore[attr-defined]
    stack.database = database  # type: ignore[attr-defined]
    stack.redis = redis  # type: ignore[attr-defined]
    stack.redis_token = redis_token  # type: ignore[attr-defined]
    stack.artifacts = artifacts  # type: ignore[attr-defined]
    stack.access_logs = access_logs  # type: ignore[attr-defined]
    return stack
