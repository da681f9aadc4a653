"""The AWS stacks, synthesized offline once per session: CDK assertions on the templates, cfn-lint,
cdk-nag (its AwsSolutions pack fails the synth on any unacknowledged finding) and checkov.

Synthesis needs node and the ``infra`` extra; it takes ~10 s, so each environment is synthesized once.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("aws_cdk", reason="install the infra extra: pip install -e '.[infra]'")
if shutil.which("node") is None:
    pytest.skip("AWS CDK needs node on PATH", allow_module_level=True)


def _synth(env: str, outdir: Path) -> dict[str, Any]:
    from infra.cdk.app import build_app, stack_names

    app, cfg = build_app({"env": env}, outdir=str(outdir))
    assembly = app.synth()
    return {"cfg": cfg, "dir": outdir,
            **{kind: assembly.get_stack_by_name(name).template for kind, name in stack_names(env).items()}}


@pytest.fixture(scope="session")
def staging(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _synth("staging", tmp_path_factory.mktemp("cdk-staging"))


@pytest.fixture(scope="session")
def production(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _synth("production", tmp_path_factory.mktemp("cdk-production"))


def template_of(template: dict[str, Any]) -> Any:
    from aws_cdk.assertions import Template

    return Template.from_json(template)


def resources(template: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == type_}


# AWS's own Elastic Load Balancing log-delivery account for eu-west-1 (the ALB access-log bucket policy
# must name it); it is not an account of ours.
ELB_LOG_DELIVERY_EU_WEST_1 = "156460612806"


def test_no_account_is_named_anywhere(staging: dict[str, Any]) -> None:
    import re

    for kind in ("network", "data", "serving"):
        text = json.dumps(staging[kind]).replace(r"\\d{12}", "")  # the certificate ARN's allowed pattern
        found = set(re.findall(r"(?<![\d.])\d{12}(?![\d.])", text))
        assert found <= {ELB_LOG_DELIVERY_EU_WEST_1}, (kind, found)


def test_network_spans_two_azs_with_private_subnets(staging: dict[str, Any]) -> None:
    subnets = resources(staging["network"], "AWS::EC2::Subnet")
    public = [s for s in subnets.values() if s["Properties"].get("MapPublicIpOnLaunch")]
    private = [s for s in subnets.values() if not s["Properties"].get("MapPublicIpOnLaunch")]
    assert len(public) == 2 and len(private) == 4
    azs = {json.dumps(s["Properties"]["AvailabilityZone"]) for s in subnets.values()}
    assert len(azs) == 2


def test_api_service_private_with_circuit_breaker_and_alarm_rollback(staging: dict[str, Any]) -> None:
    from aws_cdk.assertions import Match

    t = template_of(staging["serving"])
    t.has_resource_properties("AWS::ECS::Service", {
        "ServiceName": "t2s-staging-api",
        "NetworkConfiguration": {"AwsvpcConfiguration": {"AssignPublicIp": "DISABLED"}},
        "DeploymentConfiguration": {
            "DeploymentCircuitBreaker": {"Enable": True, "Rollback": True},
            "Alarms": {"Enable": True, "Rollback": True,
                       "AlarmNames": ["t2s-staging-5xx-rate", "t2s-staging-latency-p95"]},
        },
        "LaunchType": "FARGATE",
    })
    alarm_names = {a["Properties"]["AlarmName"] for a in resources(staging["serving"], "AWS::CloudWatch::Alarm").values()}
    assert {"t2s-staging-5xx-rate", "t2s-staging-latency-p95"} <= alarm_names
    t.has_resource_properties("AWS::ECS::TaskDefinition", {
        "Family": "t2s-staging-api",
        "ContainerDefinitions": [Match.object_like({
            "ReadonlyRootFilesystem": True,
            "Secrets": Match.array_with([Match.object_like({"Name": "T2S_LLM_API_KEY"})]),
            "Environment": Match.array_with([{"Name": "T2S_SERVE_AUTH", "Value": "required"}]),
            "LogConfiguration": Match.object_like({"LogDriver": "awslogs"}),
        })],
    })


def test_https_listener_uses_certificate_parameter_and_ready_health_check(staging: dict[str, Any]) -> None:
    s = staging["serving"]
    assert "CertificateArn" in s["Parameters"] and "ImageUri" in s["Parameters"]
    listeners = resources(s, "AWS::ElasticLoadBalancingV2::Listener")
    public = [v for v in listeners.values() if v["Properties"].get("Protocol") == "HTTPS"]
    assert len(public) == 1
    assert public[0]["Properties"]["Certificates"] == [{"CertificateArn": {"Ref": "CertificateArn"}}]
    assert all(v["Properties"]["Port"] != 80 or v["Properties"]["Protocol"] == "HTTP" for v in listeners.values())
    groups = resources(s, "AWS::ElasticLoadBalancingV2::TargetGroup")
    assert {g["Properties"]["HealthCheckPath"] for g in groups.values()} == {"/health/ready", "/health"}
    albs = resources(s, "AWS::ElasticLoadBalancingV2::LoadBalancer")
    schemes = sorted(a["Properties"]["Scheme"] for a in albs.values())
    assert schemes == ["internal", "internet-facing"]  # the tracking server is on the internal one


def test_waf_managed_rule_groups_on_the_public_alb(staging: dict[str, Any]) -> None:
    s = staging["serving"]
    (acl,) = resources(s, "AWS::WAFv2::WebACL").values()
    managed = {r["Statement"]["ManagedRuleGroupStatement"]["Name"] for r in acl["Properties"]["Rules"]
               if "ManagedRuleGroupStatement" in r["Statement"]}
    assert {"AWSManagedRulesCommonRuleSet", "AWSManagedRulesKnownBadInputsRuleSet"} <= managed
    (assoc,) = resources(s, "AWS::WAFv2::WebACLAssociation").values()
    public_alb = next(k for k, v in resources(s, "AWS::ElasticLoadBalancingV2::LoadBalancer").items()
                      if v["Properties"]["Scheme"] == "internet-facing")
    assert assoc["Properties"]["ResourceArn"] == {"Ref": public_alb}


def test_autoscaling_two_to_ten_on_cpu_and_requests(staging: dict[str, Any]) -> None:
    s = staging["serving"]
    targets = resources(s, "AWS::ApplicationAutoScaling::ScalableTarget")
    api = [t for t in targets.values() if "ApiService" in json.dumps(t["Properties"]["ResourceId"])]
    assert [(t["Properties"]["MinCapacity"], t["Properties"]["MaxCapacity"]) for t in api] == [(2, 10)]
    assert len(targets) == 1  # the tracking server does not scale
    metrics = sorted(p["Properties"]["TargetTrackingScalingPolicyConfiguration"]["PredefinedMetricSpecification"]
                     ["PredefinedMetricType"] for p in resources(s, "AWS::ApplicationAutoScaling::ScalingPolicy").values())
    assert metrics == ["ALBRequestCountPerTarget", "ECSServiceAverageCPUUtilization"]


def _statements(template: dict[str, Any], role_prefix: str) -> list[dict[str, Any]]:
    out = []
    for policy in resources(template, "AWS::IAM::Policy").values():
        if any(r["Ref"].startswith(role_prefix) for r in policy["Properties"]["Roles"]):
            out += policy["Properties"]["PolicyDocument"]["Statement"]
    return out


def test_api_task_role_is_least_privilege(staging: dict[str, Any]) -> None:
    stmts = {s["Sid"]: s for s in _statements(staging["serving"], "ApiTaskRole")}
    assert set(stmts) == {"MetricsInOwnNamespace", "ModelKeySecret", "OwnPrefixObjects", "OwnPrefixList", "DataKey"}
    metrics = stmts["MetricsInOwnNamespace"]
    assert metrics["Action"] == "cloudwatch:PutMetricData"
    assert metrics["Condition"] == {"StringEquals": {"cloudwatch:namespace": "TextToSQL"}}
    secret = stmts["ModelKeySecret"]
    assert secret["Resource"] == {"Fn::ImportValue": secret["Resource"]["Fn::ImportValue"]}
    assert "ModelApiKey" in secret["Resource"]["Fn::ImportValue"]
    objects = json.dumps(stmts["OwnPrefixObjects"]["Resource"])
    assert objects.endswith('"/serving/*"]]}') and "s3:DeleteObject" not in json.dumps(stmts["OwnPrefixObjects"])
    assert stmts["OwnPrefixList"]["Condition"]["StringLike"]["s3:prefix"][0] == "serving/*"
    for s in stmts.values():  # no action wildcards, no Resource "*" except the namespace-scoped metrics
        assert "*" not in json.dumps(s["Action"])
        if s["Resource"] == "*":
            assert s is metrics


def test_tracking_role_only_its_prefix(staging: dict[str, Any]) -> None:
    stmts = _statements(staging["serving"], "TrackingTaskRole")
    text = json.dumps(stmts)
    assert "mlflow-artifacts/*" in text and "cloudwatch" not in text and "secretsmanager" not in text


def test_data_stores_encrypted_backed_up_and_private(staging: dict[str, Any]) -> None:
    from aws_cdk.assertions import Match

    t = template_of(staging["data"])
    t.has_resource_properties("AWS::RDS::DBInstance", {
        "StorageEncrypted": True, "BackupRetentionPeriod": 7, "PubliclyAccessible": False,
        "DeletionProtection": False, "Engine": "postgres"})
    t.has_resource_properties("AWS::ElastiCache::ReplicationGroup", {
        "AtRestEncryptionEnabled": True, "TransitEncryptionEnabled": True})
    t.has_resource_properties("AWS::S3::Bucket", {
        "VersioningConfiguration": {"Status": "Enabled"},
        "BucketEncryption": {"ServerSideEncryptionConfiguration": [Match.object_like(
            {"ServerSideEncryptionByDefault": Match.object_like({"SSEAlgorithm": "aws:kms"})})]},
        "PublicAccessBlockConfiguration": {"BlockPublicAcls": True, "BlockPublicPolicy": True,
                                           "IgnorePublicAcls": True, "RestrictPublicBuckets": True}})
    tls_only = [p for p in resources(staging["data"], "AWS::S3::BucketPolicy").values()
                if '"aws:SecureTransport": "false"' in json.dumps(p)]
    assert len(tls_only) == 2  # artifacts and access-log buckets both deny plain HTTP


def test_nothing_public_but_the_api_load_balancer(staging: dict[str, Any]) -> None:
    open_world = []
    for kind in ("network", "data", "serving"):
        for name, sg in resources(staging[kind], "AWS::EC2::SecurityGroup").items():
            for rule in sg["Properties"].get("SecurityGroupIngress", []):
                if rule.get("CidrIp") == "0.0.0.0/0" or rule.get("CidrIpv6") == "::/0":
                    open_world.append((name, rule["FromPort"]))
    assert [(n[:5], p) for n, p in open_world] == [("AlbSg", 443)]


def test_dashboard_built_from_the_metric_catalogue(staging: dict[str, Any]) -> None:
    from t2s.metric_names import NAMESPACE, SERVING_METRICS

    (dash,) = resources(staging["serving"], "AWS::CloudWatch::Dashboard").values()
    body = json.dumps(dash["Properties"]["DashboardBody"])
    for m in SERVING_METRICS:
        assert f'\\"{NAMESPACE}\\",\\"{m.name}\\"' in body, m.name
    assert "correct0 / labeled0" in body and "correct1 / labeled1" in body


def test_accuracy_alarm_is_a_ratio_of_sums_gated_on_label_count(staging: dict[str, Any]) -> None:
    alarms = resources(staging["serving"], "AWS::CloudWatch::Alarm")
    acc = {v["Properties"]["AlarmName"]: v["Properties"] for v in alarms.values()
           if "accuracy" in v["Properties"]["AlarmName"]}
    assert set(acc) == {"t2s-staging-accuracy-champion", "t2s-staging-accuracy-challenger"}
    props = acc["t2s-staging-accuracy-champion"]
    expr = next(m for m in props["Metrics"] if "Expression" in m)
    assert expr["Expression"] == "IF(labeled0 >= 50, correct0 / labeled0)"
    stats = {m["Id"]: m["MetricStat"] for m in props["Metrics"] if "MetricStat" in m}
    assert {s["Stat"] for s in stats.values()} == {"Sum"}
    assert props["TreatMissingData"] == "notBreaching" and props["ComparisonOperator"] == "LessThanThreshold"
    topic = next(iter(resources(staging["serving"], "AWS::SNS::Topic")))
    for a in alarms.values():
        assert a["Properties"]["AlarmActions"] == [{"Ref": topic}]


def test_cfn_lint_reports_no_errors(staging: dict[str, Any]) -> None:
    templates = sorted(str(p) for p in Path(staging["dir"]).glob("*.template.json"))
    assert len(templates) == 3
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    proc = subprocess.run([str(cfn_lint), "--ignore-checks", "W3005", "--", *templates],
                          capture_output=True, text=True, timeout=300)
    # exit 0: clean; 2: errors; 4: warnings only. W3005 (a DependsOn CDK adds next to a Ref) is ignored.
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_cdk_nag_gate_fails_an_unacknowledged_finding(tmp_path: Path) -> None:
    """The synth is the cdk-nag gate: a public-SG finding without acknowledgement must fail it."""
    import aws_cdk as cdk
    from aws_cdk import aws_ec2 as ec2
    from cdk_nag import AwsSolutionsChecks

    app = cdk.App(outdir=str(tmp_path))
    stack = cdk.Stack(app, "Probe")
    vpc = ec2.Vpc(stack, "Vpc", max_azs=2, nat_gateways=0, restrict_default_security_group=False)
    sg = ec2.SecurityGroup(stack, "Sg", vpc=vpc)
    sg.add_ingress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(22))
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()
    report = json.loads((tmp_path / "validation-report.json").read_text())
    rules = {v["ruleName"] for p in report["pluginReports"] for v in p["violations"]}
    assert "AwsSolutions-EC23" in rules


def _checkov() -> Path:
    exe = ROOT / ".venv-checkov" / "bin" / "checkov"
    if not exe.exists():
        if os.environ.get("CI"):
            pytest.fail("checkov missing: run `make .venv-checkov`")
        pytest.skip("checkov's own virtualenv is missing: run `make .venv-checkov`")
    return exe


def test_checkov_passes_with_reasoned_skips(staging: dict[str, Any]) -> None:
    proc = subprocess.run([str(_checkov()), "--skip-download", "--framework", "cloudformation",
                           "--compact", "-o", "json", "-d", str(staging["dir"])],
                          capture_output=True, text=True, timeout=300)
    reports = json.loads(proc.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    failed = [(f["check_id"], f["resource"]) for r in reports for f in r["results"]["failed_checks"]]
    assert failed == []
    skipped = [f for r in reports for f in r["results"]["skipped_checks"]]
    assert skipped and all(len(f["check_result"].get("suppress_comment") or "") > 20 for f in skipped)


@pytest.mark.slow
def test_production_differs_only_by_context(production: dict[str, Any]) -> None:
    t = template_of(production["data"])
    t.has_resource_properties("AWS::RDS::DBInstance", {"DeletionProtection": True, "MultiAZ": True,
                                                       "BackupRetentionPeriod": 14})
    (db,) = resources(production["data"], "AWS::RDS::DBInstance").values()
    assert db["DeletionPolicy"] == "Retain"
    services = {s["Properties"]["ServiceName"] for s in resources(production["serving"], "AWS::ECS::Service").values()}
    assert services == {"t2s-production-api", "t2s-production-tracking"}
    proc = subprocess.run([str(Path(sys.executable).with_name("cfn-lint")), "--ignore-checks", "W3005", "--",
                           *map(str, Path(production["dir"]).glob("*.template.json"))],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout


def test_unknown_environment_is_refused() -> None:
    from infra.cdk.config import load_config
    from t2s.errors import ConfigError

    with pytest.raises(ConfigError, match="-c env=staging"):
        load_config({"env": "prod"})
    cfg = load_config({"env": "staging", "t2s:max_tasks": "6", "t2s:variants": '["a", "b", "c"]',
                       "t2s:jwt_client_ids": '["app1"]'})
    assert cfg.max_tasks == 6 and cfg.variants == ["a", "b", "c"] and cfg.jwt_client_ids == ["app1"]
    with pytest.raises(ConfigError, match="min_tasks"):
        load_config({"env": "staging", "t2s:min_tasks": "12"})
