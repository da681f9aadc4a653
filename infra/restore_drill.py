"""Restore drill: prove the database can be restored, and measure how long it takes and how much is lost.

``t2s deploy restore-drill --env production`` (infra/README.md, "Disaster recovery"):

1. finds the newest available snapshot of ``t2s-<env>`` (RDS automated, manual or an AWS Backup recovery
   point, which RDS lists with type ``awsbackup``) — or the one given — and its age: the RPO a restore from
   backups would have now (point-in-time restore does better: ``LatestRestorableTime`` is reported too);
2. restores it as ``t2s-<env>-drill-<UTC time>`` into the same subnet group and security groups, private,
   single-AZ, and waits until it is available: the database part of the RTO;
3. checks the copy is what production would get: same engine and version, encrypted with the same key,
   not publicly accessible;
4. deletes the copy (``--keep`` leaves it for a manual look, e.g. running the application's checks from a
   task in the VPC) and prints the figures.

What a drill cannot show from outside the VPC (the rows themselves) is listed in the runbook.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from infra.deploy import DeployError, WaitConfig, _aws_errors
from infra.layout import ENVIRONMENTS, db_instance_id


@dataclass
class DrillReport:
    env: str
    source: str
    snapshot: str
    snapshot_type: str
    snapshot_age_s: float
    latest_restorable: str | None
    drill_instance: str
    restore_s: float = 0.0
    checks: dict[str, bool] = field(default_factory=dict)
    deleted: bool = False

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(self.checks.values())

    def summary(self) -> str:
        lines = [f"restore drill {self.env}: {'PASSED' if self.passed else 'FAILED'}",
                 f"  source {self.source}, snapshot {self.snapshot} ({self.snapshot_type}), "
                 f"{self.snapshot_age_s / 3600:.1f} h old (RPO from backups now)",
                 f"  point-in-time restore possible up to {self.latest_restorable or 'unknown'}",
                 f"  restored as {self.drill_instance} in {self.restore_s / 60:.1f} min (database part of the RTO)"]
        lines += [f"  {'ok  ' if ok else 'FAIL'} {name}" for name, ok in self.checks.items()]
        lines.append(f"  drill instance {'deleted' if self.deleted else 'kept (delete it when done)'}")
        return "\n".join(lines)


def newest_snapshot(rds: Any, instance: str) -> dict[str, Any]:
    snapshots = []
    for page in rds.get_paginator("describe_db_snapshots").paginate(DBInstanceIdentifier=instance):
        snapshots += [s for s in page["DBSnapshots"] if s.get("Status") == "available"]
    if not snapshots:
        raise DeployError(f"{instance} has no available snapshot: the backup plan has not run yet (AWS Backup "
                          "daily) or the instance name is wrong")
    return max(snapshots, key=lambda s: s["SnapshotCreateTime"])


def restore_drill(env: str, *, rds: Any | None = None, snapshot: str | None = None, keep: bool = False,
                  wait: WaitConfig = WaitConfig(delay_s=30, max_attempts=120),
                  now: datetime | None = None) -> DrillReport:
    import time

    import boto3

    if env not in ENVIRONMENTS:
        raise DeployError(f"unknown environment {env!r}: use --env staging or --env production")
    rds = rds or boto3.client("rds")
    instance = db_instance_id(env)
    now = now or datetime.now(UTC)
    with _aws_errors(f"the restore drill of {env}"):
        source = rds.describe_db_instances(DBInstanceIdentifier=instance)["DBInstances"][0]
        snap = (rds.describe_db_snapshots(DBSnapshotIdentifier=snapshot)["DBSnapshots"][0] if snapshot
                else newest_snapshot(rds, instance))
        drill = f"{instance}-drill-{now.strftime('%Y%m%d%H%M')}"
        latest = source.get("LatestRestorableTime")
        report = DrillReport(env, instance, snap["DBSnapshotIdentifier"], snap.get("SnapshotType", "?"),
                             (now - snap["SnapshotCreateTime"]).total_seconds(),
                             latest.isoformat() if latest else None, drill)
        started = time.monotonic()
        rds.restore_db_instance_from_db_snapshot(
            DBInstanceIdentifier=drill, DBSnapshotIdentifier=snap["DBSnapshotIdentifier"],
            DBInstanceClass=source["DBInstanceClass"], DBSubnetGroupName=source["DBSubnetGroup"]["DBSubnetGroupName"],
            VpcSecurityGroupIds=[g["VpcSecurityGroupId"] for g in source.get("VpcSecurityGroups", [])],
            PubliclyAccessible=False, MultiAZ=False, DeletionProtection=False,
            Tags=[{"Key": "t2s:purpose", "Value": "restore-drill"}, {"Key": "environment", "Value": env}])
        rds.get_waiter("db_instance_available").wait(
            DBInstanceIdentifier=drill, WaiterConfig={"Delay": wait.delay_s, "MaxAttempts": wait.max_attempts})
        report.restore_s = time.monotonic() - started
        copy = rds.describe_db_instances(DBInstanceIdentifier=drill)["DBInstances"][0]
        report.checks = {
            "same engine and version": (copy["Engine"], copy["EngineVersion"]) == (source["Engine"], source["EngineVersion"]),
            "encrypted with the data key": bool(copy.get("StorageEncrypted")) and copy.get("KmsKeyId") == source.get("KmsKeyId"),
            "not publicly accessible": copy.get("PubliclyAccessible") is False,
            "has an endpoint": bool((copy.get("Endpoint") or {}).get("Address")),
        }
        if not keep:
            rds.delete_db_instance(DBInstanceIdentifier=drill, SkipFinalSnapshot=True, DeleteAutomatedBackups=True)
            rds.get_waiter("db_instance_deleted").wait(
                DBInstanceIdentifier=drill, WaiterConfig={"Delay": wait.delay_s, "MaxAttempts": wait.max_attempts})
            report.deleted = True
    return report
