"""Security scanners' accepted findings, each with its reason: cdk-nag's AwsSolutions pack (acknowledged in
the construct tree) and checkov (``Metadata.checkov.skip`` on the resource, which checkov honours).

cdk-nag 3 runs as a CDK policy-validation plugin: ``app.synth()`` fails with ``ValidationFailed`` (and
writes ``validation-report.json`` into the assembly) when any finding is left unacknowledged, so the
test that synthesizes the app is also the cdk-nag gate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from infra.cdk.config import EnvConfig
from infra.layout import TRACKING_USERS


@dataclass(frozen=True)
class Ack:
    stack: str  # "network" | "data" | "serving"
    path: str  # construct path inside the stack
    rule: str
    reason: str


# How the serving stack's policies print the artifact bucket's ARN (a cross-stack export; the suffix is a
# hash of the construct path, so it only changes if the bucket construct moves — synth then fails loudly).
_BUCKET_EXPORT = "T2S-{env}-Data:ExportsOutputFnGetAttArtifacts82DD59A1Arn3B515032"


_BACKUP_ROLE = ("AWS Backup's service-role managed policies (backup and restore; RDS, and S3 for the artifact "
                "bucket) are what AWS documents for a backup selection's role; AWS maintains them per service.")


def acknowledgements(cfg: EnvConfig) -> list[Ack]:
    """The accepted findings for ``cfg``'s environment (staging accepts two more than production)."""
    bucket = _BUCKET_EXPORT.format(env=cfg.name)
    acks = [
        Ack("network", "AlbSg", "AwsSolutions-EC23",
            "The public ALB serves the API to the internet on 443 only; a WAF web ACL sits in front."),
        Ack("network", "TrackingAlbSg", "AwsSolutions-EC23",
            "Ingress is the VPC's own CIDR (and the reviewers' VPN CIDR): a token cdk-nag cannot resolve."),
        Ack("data", "ModelApiKey", "AwsSolutions-SMG4",
            "The provider key is issued by the model provider; it is rotated there and put here by hand."),
        Ack("data", "RedisAuthToken", "AwsSolutions-SMG4",
            "No Secrets Manager rotation function exists for ElastiCache AUTH tokens: rotation is ElastiCache's "
            "two-token ROTATE/SET sequence around an API redeploy (infra/README.md, 'Secrets and rotation')."),
        Ack("data", "UserHashKey", "AwsSolutions-SMG4",
            "Key of the stored user-id HMAC: a new key splits every user's history in the A/B store (sticky "
            "assignment, per-user statistics), so it is changed deliberately, never on a schedule."),
        Ack("data", "TrackingFlaskKey", "AwsSolutions-SMG4",
            "MLflow's session/CSRF key: rotated by put-secret-value and a tracking deploy (signs UI users out)."),
        *(Ack("data", f"Tracking{u.title()}Password", "AwsSolutions-SMG4",
              "MLflow basic-auth password: no rotation function exists for MLflow; the tracking task applies the "
              "secret's value at every start (infra/tracking_auth.py), so rotation is put-secret-value and a "
              "tracking deploy (infra/README.md, 'Secrets and rotation').") for u in TRACKING_USERS),
        Ack("data", "BackupRole", "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                                  "AWSBackupServiceRolePolicyForBackup]", _BACKUP_ROLE),
        Ack("data", "BackupRole", "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                                  "AWSBackupServiceRolePolicyForRestores]", _BACKUP_ROLE),
        Ack("data", "BackupRole", "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/"
                                  "AWSBackupServiceRolePolicyForS3Backup]", _BACKUP_ROLE),
        Ack("data", "BackupRole", "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/"
                                  "AWSBackupServiceRolePolicyForS3Restore]", _BACKUP_ROLE),
        Ack("data", "Database/MonitoringRole", "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/"
                                               "service-role/AmazonRDSEnhancedMonitoringRole]",
            "RDS enhanced monitoring requires the AWS-managed AmazonRDSEnhancedMonitoringRole policy."),
        Ack("data", "Database", "AwsSolutions-RDS11",
            "Default port: only the API/tracking security groups can reach it; a custom port adds nothing."),
        Ack("data", "Redis", "AwsSolutions-AEC5",
            "Default port: only the API security group can reach it; TLS and AUTH are on."),
        Ack("serving", "ApiTaskRole", "AwsSolutions-IAM5[Resource::*]",
            "cloudwatch:PutMetricData has no resource ARNs; the statement is limited by a "
            "cloudwatch:namespace condition to the TextToSQL namespace."),
        Ack("serving", "ApiTaskRole", f"AwsSolutions-IAM5[Resource::{bucket}/serving/*]",
            "The only other wildcard is the API's own object prefix (serving/*) in the artifact bucket."),
        Ack("serving", "TrackingTaskRole", f"AwsSolutions-IAM5[Resource::{bucket}/mlflow-artifacts/*]",
            "The tracking server reads/writes any run's artifacts, all under its prefix mlflow-artifacts/*."),
        Ack("serving", "ApiTask/ExecutionRole", "AwsSolutions-IAM5[Resource::*]",
            "ecr:GetAuthorizationToken has no resource ARNs; image pulls are limited to this environment's "
            "repository in a separate statement."),
        *(Ack("serving", f"{t}/ExecutionRole", "AwsSolutions-IAM5[Resource::*]",
              "ecr:GetAuthorizationToken has no resource ARNs; image pulls are limited to this environment's "
              "repository in a separate statement.") for t in ("TrackingTask", "BootstrapTask")),
        Ack("serving", "BootstrapTaskRole", f"AwsSolutions-IAM5[Resource::{bucket}/serving/bootstrap/*]",
            "The bootstrap task reads the exported bundles under its own prefix serving/bootstrap/*."),
        Ack("serving", "BootstrapTask", "AwsSolutions-ECS2",
            "Environment holds the tracking URL and user name; the password comes from Secrets Manager."),
        Ack("serving", "ApiTask", "AwsSolutions-ECS2",
            "Environment holds non-secret configuration (hosts, ports, worker count); secrets come from "
            "Secrets Manager."),
        Ack("serving", "TrackingTask", "AwsSolutions-ECS2",
            "Environment holds non-secret configuration; the database password comes from Secrets Manager."),
        *_deploy_policy_acks(cfg, bucket),
    ]
    if not cfg.db_multi_az:
        acks.append(Ack("data", "Database", "AwsSolutions-RDS3",
                        "Single-AZ outside production to halve the database cost; production is multi-AZ."))
    if not cfg.deletion_protection:
        acks.append(Ack("data", "Database", "AwsSolutions-RDS10",
                        "Staging is disposable; production sets deletion protection."))
    return acks


def _deploy_policy_acks(cfg: EnvConfig, bucket: str) -> list[Ack]:
    """The deploy policy's wildcards: each is a family, prefix or name pattern of this environment, or an API
    without resource-level permissions."""
    arn = "arn:<AWS::Partition>:{service}:<AWS::Region>:<AWS::AccountId>:{resource}"
    env = cfg.name
    reasons = {
        "*": "ecs:RegisterTaskDefinition, DescribeTaskDefinition and ListTaskDefinitions have no resource-level "
             "permissions (the services they are used on are limited in another statement).",
        arn.format(service="ecs", resource=f"task-definition/t2s-{env}-bootstrap:*"):
            "Every revision of this environment's bootstrap task family, only on its cluster (ecs:cluster).",
        arn.format(service="ecs", resource=f"task/t2s-{env}/*"): "Tasks of this environment's cluster only.",
        arn.format(service="ecs", resource=f"container-instance/t2s-{env}/*"):
            "ecs:ListTasks is authorised on container instances; this environment's cluster only.",
        arn.format(service="ssm", resource=f"parameter/t2s/{env}/*"):
            "The image and deployment-history parameters of this environment (/t2s/<env>/<service>/...).",
        f"{bucket}/serving/bootstrap/*": "Bundle uploads go to the bootstrap prefix of the artifact bucket only.",
        **{arn.format(service="cloudformation", resource=f"stack/T2S-{env}-{kind}/*"):
           f"The {kind.lower()} stack of this environment (its outputs: the artifact bucket, the API's URL); the "
           "suffix is the stack id." for kind in ("Data", "Serving")},
        arn.format(service="rds", resource=f"db:t2s-{env}-drill-*"):
            "Restore drills create and delete only instances named t2s-<env>-drill-<time>.",
        arn.format(service="rds", resource="snapshot:*"):
            "Restore drills read the instance's snapshots, whose names AWS chooses (rds:..., awsbackup:...).",
        arn.format(service="rds", resource="subgrp:*"):
            "A restore names the source's subnet group, whose name CloudFormation generates.",
        arn.format(service="rds", resource="og:*"): "A restore uses the engine's default option group.",
        arn.format(service="rds", resource="pg:*"):
            "A restore uses the source's parameter group, whose name CloudFormation generates.",
    }
    return [Ack("serving", "DeployPolicy", f"AwsSolutions-IAM5[Resource::{resource}]", reason)
            for resource, reason in reasons.items()]


def apply_nag(app: Any, cfg: EnvConfig, stacks: dict[str, Any]) -> None:
    import aws_cdk as cdk
    from cdk_nag import AwsSolutionsChecks

    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    for ack in acknowledgements(cfg):
        construct = stacks[ack.stack]
        for part in ack.path.split("/"):
            construct = construct.node.find_child(part)
        cdk.Validations.of(construct).acknowledge(cdk.Acknowledgment(id=ack.rule, reason=ack.reason))


def checkov_skips(cfg: EnvConfig) -> list[Ack]:
    """Accepted checkov findings (``rule`` is the check id)."""
    cmk = ("AWS-managed key: with the data stack's customer key every grant to a task execution role in the "
           "serving stack would edit that key's policy and make the two stacks depend on each other.")
    secrets = ["ModelApiKey", "Database/Secret", "RedisAuthToken", "UserHashKey", "TrackingFlaskKey",
               "ApiDbUser", "TrackingDbUser", *(f"Tracking{u.title()}Password" for u in TRACKING_USERS)]
    skips = [Ack("data", path, "CKV_AWS_149", cmk) for path in secrets]
    skips.append(Ack("data", "AccessLogs", "CKV_AWS_18",
                     "This is the access-log bucket itself; logging it into itself loops."))
    if not cfg.db_multi_az:
        skips.append(Ack("data", "Database", "CKV_AWS_157", "Single-AZ outside production; production is multi-AZ."))
    return skips


def apply_checkov_skips(cfg: EnvConfig, stacks: dict[str, Any]) -> None:
    by_resource: dict[str, tuple[Any, list[dict[str, str]]]] = {}
    for skip in checkov_skips(cfg):
        construct = stacks[skip.stack]
        for part in skip.path.split("/"):
            construct = construct.node.find_child(part)
        resource = construct.node.default_child or construct
        entry = by_resource.setdefault(resource.node.path, (resource, []))
        entry[1].append({"id": skip.rule, "comment": skip.reason})
    for resource, items in by_resource.values():
        resource.add_metadata("checkov", {"skip": items})
