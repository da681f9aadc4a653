"""Names the stacks and the code that runs in or against them share (no AWS CDK import: the container image
and ``t2s deploy`` use this module too).

- ECS: cluster ``t2s-<env>``, services and task families ``t2s-<env>-api`` / ``t2s-<env>-tracking``, the
  one-off ``t2s-<env>-bootstrap`` family; the main container of each service (:data:`SERVICES`).
- SSM: ``/t2s/<env>/<service>/image`` (the image CloudFormation deploys; ``t2s deploy`` keeps it current) and
  ``/t2s/<env>/<service>/deployments`` (the deployment history ``t2s deploy rollback`` reads).
- PostgreSQL: each service's login user, the NOLOGIN role owning its databases, and those databases
  (:data:`DB_USERS`); MLflow's basic-auth users (:data:`TRACKING_USERS`).
"""

from __future__ import annotations

from typing import Any

ENVIRONMENTS = ("staging", "production")
# service -> its main container; both services run the same image.
SERVICES = {"api": "api", "tracking": "mlflow"}

DB_NAME = "t2s"
TRACKING_DB_NAME = "mlflow"
TRACKING_AUTH_DB_NAME = "mlflow_auth"
ARTIFACT_PREFIX = "mlflow-artifacts"
API_PREFIX = "serving"
BOOTSTRAP_PREFIX = f"{API_PREFIX}/bootstrap"
# service -> its login user (the secret's first username; rotation alternates with <login>_clone), the
# NOLOGIN role owning its databases, and those databases.
DB_USERS: dict[str, dict[str, Any]] = {
    "api": {"login": "t2s_app", "owner": "t2s_owner", "databases": [DB_NAME]},
    "tracking": {"login": "mlflow", "owner": "mlflow_owner", "databases": [TRACKING_DB_NAME, TRACKING_AUTH_DB_NAME]},
}
# MLflow basic-auth users the tracking task keeps in step with their secrets (infra/tracking_auth.py):
# admin (break-glass, humans), deploy (CI's deploy role: moves aliases), serving (the API tasks: read only).
TRACKING_USERS = ("admin", "deploy", "serving")


def names(env: str, service: str = "api") -> dict[str, str]:
    """The physical names of ``service`` (``api`` or ``tracking``) in ``env``."""
    return {"cluster": f"t2s-{env}", "service": f"t2s-{env}-{service}", "family": f"t2s-{env}-{service}",
            "container": SERVICES[service], "image_parameter": f"/t2s/{env}/{service}/image",
            "history_parameter": f"/t2s/{env}/{service}/deployments",
            "tracking_service": f"t2s-{env}-tracking", "bootstrap_family": f"t2s-{env}-bootstrap"}


def db_instance_id(env: str) -> str:
    """The RDS instance identifier (fixed: the restore drill and the runbook name it)."""
    return f"t2s-{env}"
