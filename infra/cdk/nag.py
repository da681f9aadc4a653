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


@dataclass(frozen=True)
class Ack:
    stack: str  # "network" | "data" | "serving"
    path: str  # construct path inside the stack
    rule: str
    reason: str


# How the serving stack's policies print the artifact bucket's ARN (a cross-stack export; the suffix is a
# hash of the construct path, so it only changes if the bucket construct moves — synth then fails loudly).
_BUCKET_EXPORT = "T2S-{env}-Data:ExportsOutputFnGetAttArtifacts82DD59A1Arn3B515032"


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
        Ack("data", "Database/Secret", "AwsSolutions-SMG4",
            "Tasks receive the password at start (ECS secret); rotation is a planned change with a redeploy."),
        Ack("data", "RedisAuthToken", "AwsSolutions-SMG4",
            "Changing a Redis AUTH token needs a coordinated ElastiCache modify and redeploy, done by hand."),
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
        Ack("serving", "TrackingTask/ExecutionRole", "AwsSolutions-IAM5[Resource::*]",
            "ecr:GetAuthorizationToken has no resource ARNs; image pulls are limited to this environment's "
            "repository in a separate statement."),
        Ack("serving", "ApiTask", "AwsSolutions-ECS2",
            "Environment holds non-secret configuration (hosts, ports, worker count); secrets come from "
            "Secrets Manager."),
        Ack("serving", "TrackingTask", "AwsSolutions-ECS2",
            "Environment holds non-secret configuration; the database password comes from Secrets Manager."),
    ]
    if not cfg.db_multi_az:
        acks.append(Ack("data", "Database", "AwsSolutions-RDS3",
                        "Single-AZ outside production to halve the database cost; production is multi-AZ."))
    if not cfg.deletion_protection:
        acks.append(Ack("data", "Database", "AwsSolutions-RDS10",
                        "Staging is disposable; production sets deletion protection."))
    return acks


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
    logs_kms = "CloudWatch Logs encrypts at rest with its service key; the logs hold no secrets or SQL by default."
    skips = [
        Ack("data", "ModelApiKey", "CKV_AWS_149", cmk),
        Ack("data", "Database/Secret", "CKV_AWS_149", cmk),
        Ack("data", "RedisAuthToken", "CKV_AWS_149", cmk),
        Ack("data", "AccessLogs", "CKV_AWS_18", "This is the access-log bucket itself; logging it into itself loops."),
        Ack("network", "FlowLogs", "CKV_AWS_158", logs_kms),
        Ack("serving", "Logs", "CKV_AWS_158", logs_kms),
        Ack("serving", "WafLogs", "CKV_AWS_158", logs_kms),
        Ack("serving", "TrackingAlb/TrackingHttp", "CKV_AWS_2",
            "Private path: the internal tracking ALB is reachable only from the VPC and the reviewers' VPN."),
        Ack("serving", "TrackingAlb/TrackingHttp", "CKV_AWS_103",
            "Private path: the internal tracking ALB is reachable only from the VPC and the reviewers' VPN."),
    ]
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
