"""Per-environment settings, chosen by the CDK context key ``env`` (``staging`` or ``production``).

The code is the same for both environments; only these values differ. Any field can be overridden from
the context as ``-c t2s:<field>=<value>`` (e.g. ``-c t2s:vpc_id=vpc-0abc``), which is how an operator points
a stack at an existing VPC or changes a threshold without editing code.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from t2s.errors import ConfigError

EnvName = Literal["staging", "production"]


class EnvConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: EnvName
    region: str = Field("eu-west-1", description="Region of the stacks (needed for ALB access-log delivery).")
    vpc_id: str | None = Field(None, description="Import this VPC (needs a `cdk synth` with credentials) "
                                                 "instead of creating one.")
    max_azs: int = Field(2, ge=2, le=3)
    nat_gateways: int = Field(1, ge=1, le=3)
    # API service
    api_cpu: int = 512
    api_memory_mib: int = 1024
    api_workers: int = Field(2, ge=1)
    min_tasks: int = Field(2, ge=1)
    max_tasks: int = Field(10, ge=1)
    cpu_target_pct: int = Field(60, ge=10, le=90)
    requests_per_target: int = Field(200, ge=1, description="ALB requests per target per minute to aim for.")
    serve_databases: dict[str, str] = Field(
        default_factory=dict, description="T2S_SERVE_DATABASES of the API: NAME -> postgres:DSN[#schema] (the "
                                          "image holds no dataset directory).")
    # identity: the Cognito user pool (Identity stack) and its app clients
    public_host: str | None = Field(None, description="Host name the API certificate covers (t2s.example.com); "
                                                      "default: the load balancer's DNS name.")
    app_callback_urls: list[str] = Field(default_factory=list, description="Web front end's OAuth callback URLs "
                                         "(default https://<public host>/app/callback).")
    auth_domain_prefix: str | None = Field(None, description="Cognito hosted-UI domain prefix (globally unique "
                                                             "per region); default t2s-<env>-<account id>.")
    saml_metadata_url: str | None = Field(None, description="Microsoft Entra ID (or any SAML IdP) federation "
                                                            "metadata URL: adds a SAML identity provider.")
    saml_provider_name: str = Field("EntraID", pattern=r"^[\w.-]{1,32}$")
    # tracking service
    tracking_cpu: int = 512
    tracking_memory_mib: int = 1024
    tracking_tasks: int = Field(2, ge=2, description="Tracking server tasks (rolling deploys keep >= 1 serving).")
    tracking_host: str | None = Field(None, description="FQDN of the tracking server that TrackingCertificateArn "
                                                        "covers; default mlflow.<env>.t2s.internal.")
    reviewer_cidr: str | None = Field(None, description="Extra CIDR (reviewers' VPN) allowed to the internal "
                                                        "tracking endpoint; the VPC's own CIDR always is.")
    # shared state
    db_instance_class: str = "t4g.small"
    db_allocated_gb: int = 20
    db_backup_days: int = Field(7, ge=1, le=35)
    db_multi_az: bool = False
    deletion_protection: bool = False
    redis_node_type: str = "cache.t4g.micro"
    redis_replicas: int = Field(1, ge=0, le=5)
    log_retention_days: int = 30
    secret_rotation_days: int = Field(30, ge=1, le=365, description="Database secrets rotate this often.")
    # disaster recovery (AWS Backup)
    backup_retention_days: int = Field(35, ge=7, le=365)
    dr_region: str | None = Field(None, description="Region of the cross-region backup copy (production).")
    # observability
    variants: list[str] = Field(default_factory=lambda: ["champion", "challenger"], min_length=1)
    accuracy_min: float = Field(0.6, gt=0, lt=1, description="Alarm when online accuracy falls below this.")
    accuracy_min_labels: int = Field(50, ge=1, description="Labels an hour needs before accuracy is judged.")
    error_rate_max_pct: float = Field(2.0, gt=0)
    latency_p95_max_ms: int = Field(3000, gt=0)
    alarm_email: str | None = None


ENVIRONMENTS: dict[str, dict[str, Any]] = {
    "staging": {"name": "staging"},
    "production": {
        "name": "production", "nat_gateways": 2, "api_cpu": 1024, "api_memory_mib": 2048, "api_workers": 4,
        "db_instance_class": "m7g.large", "db_allocated_gb": 100, "db_backup_days": 14, "db_multi_az": True,
        "deletion_protection": True, "redis_node_type": "cache.m7g.large", "redis_replicas": 2,
        "log_retention_days": 90, "backup_retention_days": 35, "dr_region": "eu-central-1",
    },
}


def load_config(context: dict[str, Any]) -> EnvConfig:
    """The environment chosen by ``context['env']`` with ``t2s:*`` overrides applied.

    Context values from the CDK CLI arrive as strings; JSON-looking ones (numbers, lists, booleans) are
    decoded so ``-c t2s:max_tasks=6`` works.
    """
    env = context.get("env", "staging")
    if env not in ENVIRONMENTS:
        raise ConfigError(f"unknown environment {env!r}: pass -c env=staging or -c env=production")
    values = dict(ENVIRONMENTS[env])
    for key, raw in context.items():
        if not key.startswith("t2s:"):
            continue
        value = raw
        if isinstance(raw, str):
            try:
                value = json.loads(raw)
            except ValueError:
                value = raw
        values[key.removeprefix("t2s:")] = value
    try:
        cfg = EnvConfig(**values)
    except ValidationError as exc:
        raise ConfigError(f"bad infrastructure context for {env!r}: {exc}") from exc
    if cfg.dr_region is not None and cfg.dr_region == cfg.region:
        raise ConfigError(f"dr_region {cfg.dr_region} is the stacks' own region: pick another (-c t2s:dr_region=...)")
    if cfg.min_tasks > cfg.max_tasks:
        raise ConfigError(f"min_tasks {cfg.min_tasks} > max_tasks {cfg.max_tasks}: fix -c t2s:min_tasks/max_tasks")
    return cfg


def tracking_host(cfg: EnvConfig) -> str:
    return cfg.tracking_host or f"mlflow.{cfg.name}.t2s.internal"
