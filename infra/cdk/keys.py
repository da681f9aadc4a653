"""Customer-managed KMS keys whose key policies let an AWS service use them.

- :func:`logs_key`: CloudWatch Logs encrypts a log group with a customer key only if the key policy lets
  ``logs.<region>.amazonaws.com`` use it (scoped by the ``aws:logs:arn`` encryption context to this
  account's log groups in this region).
- :func:`alarm_topic_key`: an SNS topic encrypted with a key CloudWatch cannot use silently drops every
  alarm notification (the AWS-managed ``aws/sns`` key's policy cannot be changed, so it never can). The key
  policy lets ``cloudwatch.amazonaws.com`` generate data keys and decrypt, which is what publishing to an
  encrypted topic needs, only for this account's alarms named ``<alarm_prefix>*`` (``aws:SourceAccount`` and
  ``aws:SourceArn``, which CloudWatch sends, guard against the confused deputy).
"""

from __future__ import annotations

from typing import Any


def logs_key(stack: Any, construct_id: str, description: str) -> Any:
    import aws_cdk as cdk
    from aws_cdk import aws_iam as iam
    from aws_cdk import aws_kms as kms

    key = kms.Key(stack, construct_id, enable_key_rotation=True, description=description,
                  removal_policy=cdk.RemovalPolicy.RETAIN)
    key.add_to_resource_policy(iam.PolicyStatement(
        sid="CloudWatchLogsEncrypt",
        principals=[iam.ServicePrincipal(f"logs.{cdk.Aws.REGION}.amazonaws.com")],
        actions=["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
        resources=["*"],
        conditions={"ArnLike": {"kms:EncryptionContext:aws:logs:arn":
                                f"arn:{cdk.Aws.PARTITION}:logs:{cdk.Aws.REGION}:{cdk.Aws.ACCOUNT_ID}:log-group:*"}}))
    return key


def alarm_source(alarm_prefix: str) -> dict[str, Any]:
    """Conditions limiting a grant to CloudWatch to this account's alarms named ``<alarm_prefix>*``."""
    import aws_cdk as cdk

    alarms = f"arn:{cdk.Aws.PARTITION}:cloudwatch:{cdk.Aws.REGION}:{cdk.Aws.ACCOUNT_ID}:alarm:{alarm_prefix}*"
    return {"StringEquals": {"aws:SourceAccount": cdk.Aws.ACCOUNT_ID}, "ArnLike": {"aws:SourceArn": alarms}}


def alarm_topic_key(stack: Any, construct_id: str, alarm_prefix: str) -> Any:
    import aws_cdk as cdk
    from aws_cdk import aws_iam as iam
    from aws_cdk import aws_kms as kms

    key = kms.Key(stack, construct_id, enable_key_rotation=True, removal_policy=cdk.RemovalPolicy.RETAIN,
                  description="Alarm topic: CloudWatch alarms publish through it")
    key.add_to_resource_policy(iam.PolicyStatement(
        sid="CloudWatchAlarmsPublish", principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
        actions=["kms:Decrypt", "kms:GenerateDataKey*"], resources=["*"],
        conditions=alarm_source(alarm_prefix)))
    return key
