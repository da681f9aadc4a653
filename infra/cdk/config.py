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
    # API authentication (the app refuses to serve a reachable address without it): an OIDC issuer such as
    # a Cognito user pool, https://cognito-idp.<region>.amazonaws.com/<pool-id>, and the accepted app clients
    jwt_issuer: str | None = None
    jwt_client_ids: list[str] = Field(default_factory=list)
    # tracking service
    tracking_cpu: int = 512
    tracking_memory_mib: int = 1024
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
        "log_retention_days": 90,
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
    if cfg.min_tasks > cfg.max_tasks:
        raise ConfigError(f"min_tasks {cfg.min_tasks} > max_tasks {cfg.max_tasks}: fix -c t2s:min_tasks/max_tasks")
    return cfg
