"""The AWS stacks, synthesized offline once per session: CDK assertions on the templates (staging and
production), cfn-lint, cdk-nag (its AwsSolutions pack fails the synth on any unacknowledged finding) and
checkov.

Synthesis needs node and the ``infra`` extra; it takes 10-25 s, so each environment is synthesized once per
session (``staging``/``production`` fixtures; ``env`` runs a test on both).
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
    return {"cfg": cfg, "dir": outdir, "name": env,
            **{kind: assembly.get_stack_by_name(name).template
               for kind, name in stack_names(env, dr=cfg.dr_region is not None).items()}}


@pytest.fixture(scope="session")
def staging(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _synth("staging", tmp_path_factory.mktemp("cdk-staging"))


@pytest.fixture(scope="session")
def production(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _synth("production", tmp_path_factory.mktemp("cdk-production"))


@pytest.fixture(params=["staging", "production"])
def env(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Each test using this runs on both environments' templates."""
    return request.getfixturevalue(request.param)


def template_of(template: dict[str, Any]) -> Any:
    from aws_cdk.assertions import Template

    return Template.from_json(template)


def resources(template: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == type_}


# AWS's own Elastic Load Balancing log-delivery account for eu-west-1 (the ALB access-log bucket policy
# must name it); it is not an account of ours.
ELB_LOG_DELIVERY_EU_WEST_1 = "156460612806"


STACKS = ("dr_vault", "network", "identity", "data", "serving")


def test_no_account_is_named_anywhere(env: dict[str, Any]) -> None:
    import re

    kinds = [k for k in STACKS if k in env]
    assert len(kinds) == (5 if env["name"] == "production" else 4)
    for kind in kinds:
        text = json.dumps(env[kind]).replace(r"\\d{12}", "")  # the certificate ARN's allowed pattern
        found = set(re.findall(r"(?<![\w.])\d{12}(?![\w.])", text))  # not inside a logical id
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
        "ContainerDefinitions": Match.array_with([Match.object_like({
            "Name": "api", "ReadonlyRootFilesystem": True,
            "Secrets": Match.array_with([Match.object_like({"Name": "T2S_LLM_API_KEY"})]),
            "Environment": Match.array_with([{"Name": "T2S_SERVE_AUTH", "Value": "required"}]),
            "LogConfiguration": Match.object_like({"LogDriver": "awslogs"}),
        })]),
    })


def test_https_only_listeners_with_certificate_parameters_and_liveness_checks(env: dict[str, Any]) -> None:
    s = env["serving"]
    assert {"CertificateArn", "TrackingCertificateArn", "ImageUri", "TrackingImageUri"} <= set(s["Parameters"])
    listeners = resources(s, "AWS::ElasticLoadBalancingV2::Listener")
    assert {(v["Properties"]["Protocol"], v["Properties"]["Port"]) for v in listeners.values()} == {("HTTPS", 443)}
    certs = sorted(v["Properties"]["Certificates"][0]["CertificateArn"]["Ref"] for v in listeners.values())
    assert certs == ["CertificateArn", "TrackingCertificateArn"]
    # Liveness: a fresh stack with no champion yet keeps its tasks in service (infra/README "First deploy")
    groups = resources(s, "AWS::ElasticLoadBalancingV2::TargetGroup")
    assert {g["Properties"]["HealthCheckPath"] for g in groups.values()} == {"/health"}
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


def test_cfn_lint_reports_no_errors(staging: dict[str, Any], production: dict[str, Any]) -> None:
    templates = sorted(str(p) for e in (staging, production) for p in Path(e["dir"]).glob("*.template.json"))
    assert len(templates) == 9
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


def test_checkov_passes_with_reasoned_skips(staging: dict[str, Any], production: dict[str, Any]) -> None:
    proc = subprocess.run([str(_checkov()), "--skip-download", "--framework", "cloudformation", "--compact",
                           "-o", "json", "-d", str(staging["dir"]), "-d", str(production["dir"])],
                          capture_output=True, text=True, timeout=300)
    reports, text, decoder = [], proc.stdout.strip(), json.JSONDecoder()
    while text:  # one JSON document per directory
        doc, end = decoder.raw_decode(text)
        reports += doc if isinstance(doc, list) else [doc]
        text = text[end:].strip()
    failed = [(f["check_id"], f["resource"]) for r in reports for f in r["results"]["failed_checks"]]
    assert failed == []
    assert sum(r["summary"]["passed"] for r in reports) > 400  # both environments were scanned
    skipped = [f for r in reports for f in r["results"]["skipped_checks"]]
    assert skipped and all(len(f["check_result"].get("suppress_comment") or "") > 20 for f in skipped)
    # every log group is encrypted with a customer key: no "logs hold no secrets" excuse is needed
    assert not [f for f in skipped if f["check_id"] == "CKV_AWS_158"]


def test_production_differs_only_by_context(production: dict[str, Any]) -> None:
    t = template_of(production["data"])
    t.has_resource_properties("AWS::RDS::DBInstance", {"DeletionProtection": True, "MultiAZ": True,
                                                       "BackupRetentionPeriod": 14})
    (db,) = resources(production["data"], "AWS::RDS::DBInstance").values()
    assert db["DeletionPolicy"] == "Retain"
    services = {s["Properties"]["ServiceName"] for s in resources(production["serving"], "AWS::ECS::Service").values()}
    assert services == {"t2s-production-api", "t2s-production-tracking"}


def test_unknown_environment_is_refused() -> None:
    from infra.cdk.config import load_config
    from t2s.errors import ConfigError

    with pytest.raises(ConfigError, match="-c env=staging"):
        load_config({"env": "prod"})
    cfg = load_config({"env": "staging", "t2s:max_tasks": "6", "t2s:variants": '["a", "b", "c"]',
                       "t2s:app_callback_urls": '["https://t2s.example.com/app/callback"]'})
    assert cfg.max_tasks == 6 and cfg.variants == ["a", "b", "c"]
    assert cfg.app_callback_urls == ["https://t2s.example.com/app/callback"]
    with pytest.raises(ConfigError, match="min_tasks"):
        load_config({"env": "staging", "t2s:min_tasks": "12"})
    with pytest.raises(ConfigError, match="dr_region"):
        load_config({"env": "production", "t2s:dr_region": "eu-west-1"})
    with pytest.raises(ConfigError, match="tracking_tasks"):  # one task would make every deploy an outage
        load_config({"env": "staging", "t2s:tracking_tasks": "1"})


# --- identity: the Cognito user pool and the API's wiring to it --------------------------------------------


def test_user_pool_requires_totp_mfa_and_a_strong_password(env: dict[str, Any]) -> None:
    (pool,) = resources(env["identity"], "AWS::Cognito::UserPool").values()
    props = pool["Properties"]
    assert props["MfaConfiguration"] == "ON" and props["EnabledMfas"] == ["SOFTWARE_TOKEN_MFA"]  # TOTP, no SMS
    policy = props["Policies"]["PasswordPolicy"]
    assert policy["MinimumLength"] >= 14
    assert all(policy[k] for k in ("RequireLowercase", "RequireUppercase", "RequireNumbers", "RequireSymbols"))
    assert props["AdminCreateUserConfig"]["AllowAdminCreateUserOnly"] is True  # no self sign-up
    assert props["UserPoolAddOns"] == {"AdvancedSecurityMode": "ENFORCED"}
    assert props["DeletionProtection"] == "ACTIVE" and pool["DeletionPolicy"] == "Retain"
    groups = {g["Properties"]["GroupName"] for g in resources(env["identity"], "AWS::Cognito::UserPoolGroup").values()}
    assert groups == {"caller", "reviewer", "admin"}
    assert not resources(env["identity"], "AWS::Cognito::UserPoolIdentityProvider")  # SAML only from context


def _container(template: dict[str, Any], family: str, name: str) -> dict[str, Any]:
    (td,) = [v for v in resources(template, "AWS::ECS::TaskDefinition").values()
             if v["Properties"]["Family"] == family]
    (c,) = [c for c in td["Properties"]["ContainerDefinitions"] if c["Name"] == name]
    return c


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["Name"]: e["Value"] for e in container.get("Environment", [])}


def _secrets(container: dict[str, Any]) -> dict[str, str]:
    """Secret env name -> the construct the secret's ARN comes from (its export or Ref, with the JSON key)."""
    return {x["Name"]: json.dumps(x["ValueFrom"]) for x in container.get("Secrets", [])}


def test_api_task_is_wired_to_the_pool_its_clients_and_its_secrets(env: dict[str, Any]) -> None:
    name = env["name"]
    api = _container(env["serving"], f"t2s-{name}-api", "api")
    e, sec = _env(api), _secrets(api)
    pool_export = f"T2S-{name}-Identity:ExportsOutputRefUserPool"
    issuer = json.dumps(e["T2S_SERVE_JWT_ISSUER"])
    assert "https://cognito-idp.eu-west-1.amazonaws.com/" in issuer and pool_export in issuer
    assert json.dumps(e["T2S_SERVE_JWKS_URL"]).endswith('"/.well-known/jwks.json"]]}') and pool_export in json.dumps(
        e["T2S_SERVE_JWKS_URL"])
    clients = {k: v["Properties"] for k, v in resources(env["serving"], "AWS::Cognito::UserPoolClient").items()}
    assert sorted(p["ClientName"] for p in clients.values()) == [f"t2s-{name}-api", f"t2s-{name}-web"]
    refs = {ref["Ref"] for ref in e["T2S_SERVE_JWT_CLIENT_IDS"]["Fn::Join"][1] if isinstance(ref, dict)}
    assert refs == set(clients)  # both clients' access tokens are accepted
    assert json.loads(e["T2S_SERVE_JWT_ADMIN_GROUPS"]) == ["admin"]
    assert json.loads(e["T2S_SERVE_JWT_REVIEWER_GROUPS"]) == ["reviewer"]
    groups = {g["Properties"]["GroupName"] for g in resources(env["identity"], "AWS::Cognito::UserPoolGroup").values()}
    assert {"admin", "reviewer"} <= groups  # the groups the API maps exist in the pool
    from t2s.settings import Settings

    assert {"serve_jwt_admin_groups", "serve_jwt_reviewer_groups", "serve_user_hash_key"} <= set(Settings.model_fields)
    # the user-hash key is a generated secret (the service refuses the built-in default with auth required)
    assert "UserHashKey" in sec["T2S_SERVE_USER_HASH_KEY"]
    # client addresses behind the ALB: X-Forwarded-* are believed from the VPC's own range only
    forwarded = e["T2S_SERVE_FORWARDED_ALLOW_IPS"]["Fn::Join"][1]
    assert forwarded[0] == '["' and forwarded[2] == '"]' and "CidrBlock" in json.dumps(forwarded[1])
    (hash_key,) = [v for k, v in resources(env["data"], "AWS::SecretsManager::Secret").items() if k.startswith("UserHashKey")]
    assert hash_key["Properties"]["GenerateSecretString"]["PasswordLength"] >= 32
    # the API's own database user, never the master; the master only reaches the init container
    assert "ApiDbUser" in sec["PGUSER"] and "ApiDbUser" in sec["PGPASSWORD"]
    assert not any("DatabaseSecret" in v for v in sec.values())
    assert e["PGOPTIONS"] == "-c role=t2s_owner" and "@" not in json.dumps(e["T2S_SERVE_STORE_URL"])
    init = _container(env["serving"], f"t2s-{name}-api", "db-init")
    assert init["Essential"] is False and init["Command"][-2:] == ["--service", "api"]
    assert "DatabaseSecret" in _secrets(init)["PGPASSWORD"] and "ApiDbUser" in _secrets(init)["T2S_DB_LOGIN_PASSWORD"]
    assert api["DependsOn"] == [{"ContainerName": "db-init", "Condition": "SUCCESS"}]
    assert "TrackingServingPassword" in sec["MLFLOW_TRACKING_PASSWORD"] and e["MLFLOW_TRACKING_USERNAME"] == "serving"
    assert e["MLFLOW_TRACKING_URI"].startswith("https://")
    # the analyst web app signs in through the pool's hosted UI with the web client, on its callback URL
    web = next(k for k, p in clients.items() if p["ClientName"].endswith("-web"))
    assert e["T2S_SERVE_OAUTH_CLIENT_ID"] == {"Ref": web}
    assert [e["T2S_SERVE_OAUTH_REDIRECT_URL"]] == clients[web]["CallbackURLs"]
    assert [e["T2S_SERVE_OAUTH_LOGOUT_URL"]] == clients[web]["LogoutURLs"]
    assert ".auth.eu-west-1.amazoncognito.com" in json.dumps(e["T2S_SERVE_OAUTH_DOMAIN"])


def test_web_client_is_authorization_code_with_pkce_on_app_callback(staging: dict[str, Any]) -> None:
    clients = {v["Properties"]["ClientName"]: v["Properties"]
               for v in resources(staging["serving"], "AWS::Cognito::UserPoolClient").values()}
    web, api = clients["t2s-staging-web"], clients["t2s-staging-api"]
    for client in (web, api):  # public clients: neither a browser nor a CLI can keep a secret; PKCE instead
        assert client["GenerateSecret"] is False and client["AllowedOAuthFlows"] == ["code"]
        assert client["PreventUserExistenceErrors"] == "ENABLED" and client["EnableTokenRevocation"] is True
    public_alb = next(k for k, v in resources(staging["serving"], "AWS::ElasticLoadBalancingV2::LoadBalancer").items()
                      if v["Properties"]["Scheme"] == "internet-facing")
    assert web["CallbackURLs"] == [{"Fn::Join": ["", ["https://", {"Fn::GetAtt": [public_alb, "DNSName"]},
                                                      "/app/callback"]]}]
    assert "ExplicitAuthFlows" not in web or web["ExplicitAuthFlows"] == ["ALLOW_REFRESH_TOKEN_AUTH"]
    assert "ALLOW_USER_SRP_AUTH" in api["ExplicitAuthFlows"] and "ALLOW_USER_PASSWORD_AUTH" not in api["ExplicitAuthFlows"]


def test_context_adds_entra_id_saml_and_moves_the_callback(tmp_path: Path) -> None:
    """A small app with just the identity stack and the clients (fast): what the context options change."""
    import aws_cdk as cdk

    from infra.cdk.config import load_config
    from infra.cdk.identity import add_app_clients, build_identity_stack

    metadata = "https://login.microsoftonline.com/tenant-id/federationmetadata/2007-06/federationmetadata.xml?appid=x"
    cfg = load_config({"env": "staging", "t2s:saml_metadata_url": metadata, "t2s:public_host": "t2s.example.com",
                       "t2s:auth_domain_prefix": "t2s-staging-acme"})
    app = cdk.App(outdir=str(tmp_path))
    identity = build_identity_stack(app, "Identity", cfg)
    clients_stack = cdk.Stack(app, "Clients")
    add_app_clients(clients_stack, cfg, identity, callback_urls=["https://t2s.example.com/app/callback"],
                    logout_urls=["https://t2s.example.com/app/"])
    assembly = app.synth()
    ident, clients = (assembly.get_stack_by_name(n).template for n in ("Identity", "Clients"))
    (saml,) = resources(ident, "AWS::Cognito::UserPoolIdentityProvider").values()
    assert saml["Properties"]["ProviderType"] == "SAML" and saml["Properties"]["ProviderName"] == "EntraID"
    assert saml["Properties"]["ProviderDetails"]["MetadataURL"] == metadata
    assert "emailaddress" in saml["Properties"]["AttributeMapping"]["email"]
    (domain,) = resources(ident, "AWS::Cognito::UserPoolDomain").values()
    assert domain["Properties"]["Domain"] == "t2s-staging-acme"
    for client in resources(clients, "AWS::Cognito::UserPoolClient").values():
        assert client["Properties"]["SupportedIdentityProviders"] == ["COGNITO", "EntraID"]
    web = next(c["Properties"] for c in resources(clients, "AWS::Cognito::UserPoolClient").values()
               if c["Properties"]["ClientName"].endswith("-web"))
    assert web["CallbackURLs"] == ["https://t2s.example.com/app/callback"]


# --- paging, logs, WAF ------------------------------------------------------------------------------------


def test_alarm_topic_key_policy_lets_cloudwatch_publish(env: dict[str, Any]) -> None:
    s, prefix = env["serving"], f"t2s-{env['name']}-"
    (topic_id, topic), = resources(s, "AWS::SNS::Topic").items()
    key_ref = topic["Properties"]["KmsMasterKeyId"]
    assert key_ref != "alias/aws/sns" and key_ref["Fn::GetAtt"][1] == "Arn"
    key = s["Resources"][key_ref["Fn::GetAtt"][0]]
    assert key["Type"] == "AWS::KMS::Key" and key["Properties"]["EnableKeyRotation"] is True
    (grant,) = [st for st in key["Properties"]["KeyPolicy"]["Statement"]
                if st.get("Principal") == {"Service": "cloudwatch.amazonaws.com"}]
    assert grant["Effect"] == "Allow" and set(grant["Action"]) == {"kms:Decrypt", "kms:GenerateDataKey*"}
    assert grant["Condition"]["StringEquals"] == {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
    source = json.dumps(grant["Condition"]["ArnLike"]["aws:SourceArn"])
    assert f":alarm:{prefix}*" in source
    alarm_names = [a["Properties"]["AlarmName"] for a in resources(s, "AWS::CloudWatch::Alarm").values()]
    assert alarm_names and all(n.startswith(prefix) for n in alarm_names)  # every alarm matches the grant
    (policy,) = resources(s, "AWS::SNS::TopicPolicy").values()
    publish = [st for st in policy["Properties"]["PolicyDocument"]["Statement"] if st["Effect"] == "Allow"]
    assert publish == [{**publish[0], "Principal": {"Service": "cloudwatch.amazonaws.com"}, "Action": "sns:Publish",
                        "Resource": {"Ref": topic_id}}]


def test_waf_logs_redact_credentials_and_every_log_group_uses_a_customer_key(env: dict[str, Any]) -> None:
    (logging,) = resources(env["serving"], "AWS::WAFv2::LoggingConfiguration").values()
    redacted = {f["SingleHeader"]["Name"] for f in logging["Properties"]["RedactedFields"]}
    assert redacted == {"authorization", "x-api-key", "cookie"}
    for kind in ("network", "serving"):
        groups = resources(env[kind], "AWS::Logs::LogGroup")
        assert groups and all("KmsKeyId" in g["Properties"] for g in groups.values()), kind
        for key in resources(env[kind], "AWS::KMS::Key").values():
            logs = [st for st in key["Properties"]["KeyPolicy"]["Statement"] if st.get("Sid") == "CloudWatchLogsEncrypt"]
            for st in logs:
                assert "kms:EncryptionContext:aws:logs:arn" in st["Condition"]["ArnLike"]


# --- images, tracking server, database users and rotation, backups -------------------------------------------


def test_images_come_from_ssm_parameters_that_t2s_deploy_keeps(env: dict[str, Any]) -> None:
    from infra.cdk.serving import names

    s, name = env["serving"], env["name"]
    for param, service in (("ImageUri", "api"), ("TrackingImageUri", "tracking")):
        assert s["Parameters"][param]["Type"] == "AWS::SSM::Parameter::Value<String>"
        assert s["Parameters"][param]["Default"] == names(name, service)["image_parameter"]
    assert _container(s, f"t2s-{name}-api", "api")["Image"] == {"Ref": "ImageUri"}
    assert _container(s, f"t2s-{name}-tracking", "mlflow")["Image"] == {"Ref": "TrackingImageUri"}


def test_tracking_server_https_authenticated_two_tasks_own_database_user(env: dict[str, Any]) -> None:
    s, name = env["serving"], env["name"]
    (svc,) = [v["Properties"] for v in resources(s, "AWS::ECS::Service").values()
              if v["Properties"]["ServiceName"] == f"t2s-{name}-tracking"]
    assert svc["DesiredCount"] == 2
    assert svc["DeploymentConfiguration"]["MinimumHealthyPercent"] == 100
    assert svc["DeploymentConfiguration"]["MaximumPercent"] == 200
    assert svc["DeploymentConfiguration"]["DeploymentCircuitBreaker"] == {"Enable": True, "Rollback": True}
    mlflow = _container(s, f"t2s-{name}-tracking", "mlflow")
    assert mlflow["Command"][:3] == ["python", "-m", "infra.tracking_auth"]  # basic auth, users from secrets
    sec = _secrets(mlflow)
    assert {"T2S_TRACKING_ADMIN_PASSWORD", "T2S_TRACKING_DEPLOY_PASSWORD", "T2S_TRACKING_SERVING_PASSWORD",
            "MLFLOW_FLASK_SERVER_SECRET_KEY"} <= set(sec)
    assert "TrackingDbUser" in sec["PGUSER"] and not any("DatabaseSecret" in v for v in sec.values())
    assert _env(mlflow)["PGOPTIONS"] == "-c role=mlflow_owner"
    init = _container(s, f"t2s-{name}-tracking", "db-init")
    assert init["Command"][-1] == "tracking" and mlflow["DependsOn"] == [{"ContainerName": "db-init", "Condition": "SUCCESS"}]
    (zone,) = resources(s, "AWS::Route53::HostedZone").values()
    host = zone["Properties"]["Name"].rstrip(".")
    assert _env(_container(s, f"t2s-{name}-api", "api"))["MLFLOW_TRACKING_URI"] == f"https://{host}"
    assert host in mlflow["Command"][mlflow["Command"].index("--allowed-hosts") + 1]
    # nothing reaches the tracking ALB on plain HTTP
    rules = [r for g in resources(env["network"], "AWS::EC2::SecurityGroup").values()
             for r in g["Properties"].get("SecurityGroupIngress", [])]
    rules += [g["Properties"] for g in resources(env["network"], "AWS::EC2::SecurityGroupIngress").values()]
    assert not [r for r in rules if r.get("FromPort") in (80, 5000) and "CidrIp" in r]


def test_database_secrets_rotate_and_each_service_has_its_user(env: dict[str, Any]) -> None:
    d = env["data"]
    assert "AWS::SecretsManager-2024-09-16" in d["Transform"]
    rotations = {json.dumps(r["Properties"]["SecretId"]): r["Properties"]
                 for r in resources(d, "AWS::SecretsManager::RotationSchedule").values()}
    kinds = sorted((r["HostedRotationLambda"]["RotationType"], r["RotationRules"]["ScheduleExpression"])
                   for r in rotations.values())
    assert kinds == [("PostgreSQLMultiUser", "rate(30 days)")] * 2 + [("PostgreSQLSingleUser", "rate(30 days)")]
    assert {k.split('"')[3][:10] for k in rotations} == {"DatabaseSe", "ApiDbUserA", "TrackingDb"}
    import re

    users = {re.search(r'username\\?":\\?"(\w+)', json.dumps(v["Properties"]["GenerateSecretString"])).group(1)
             for k, v in resources(d, "AWS::SecretsManager::Secret").items() if "DbUser" in k}
    assert users == {"t2s_app", "mlflow"}


def test_backup_plan_daily_with_cross_region_copy_in_production(env: dict[str, Any]) -> None:
    d, name = env["data"], env["name"]
    (plan,) = resources(d, "AWS::Backup::BackupPlan").values()
    (rule,) = plan["Properties"]["BackupPlan"]["BackupPlanRule"]
    assert rule["ScheduleExpression"].startswith("cron(") and rule["Lifecycle"]["DeleteAfterDays"] == 35
    (selection,) = resources(d, "AWS::Backup::BackupSelection").values()
    chosen = json.dumps(selection["Properties"]["BackupSelection"]["Resources"])
    assert ":db:" in chosen and "Artifacts" in chosen
    (vault,) = resources(d, "AWS::Backup::BackupVault").values()
    assert "EncryptionKeyArn" in vault["Properties"] and vault["DeletionPolicy"] == "Retain"
    if name == "staging":
        assert "CopyActions" not in rule
        return
    (copy,) = rule["CopyActions"]
    assert ":backup:eu-central-1:" in json.dumps(copy["DestinationBackupVaultArn"])
    (dr_vault,) = resources(env["dr_vault"], "AWS::Backup::BackupVault").values()
    assert dr_vault["Properties"]["BackupVaultName"] == "t2s-production-dr"
    assert json.dumps(copy["DestinationBackupVaultArn"]).endswith(':backup-vault:t2s-production-dr"]]}')
    (replication,) = resources(env["network"], "AWS::ECR::ReplicationConfiguration").values()
    (dest,) = replication["Properties"]["ReplicationConfiguration"]["Rules"][0]["Destinations"]
    assert dest["Region"] == "eu-central-1"  # images are there when the DR region must serve


def test_deploy_policy_grants_t2s_deploy_exactly_its_calls(env: dict[str, Any]) -> None:
    """The managed policy for the CI's deploy role: no action wildcards, this environment's names only."""
    name = env["name"]
    (policy,) = [v["Properties"] for v in resources(env["serving"], "AWS::IAM::ManagedPolicy").values()
                 if v["Properties"]["ManagedPolicyName"] == f"t2s-{name}-deploy"]
    stmts = {st["Sid"]: st for st in policy["PolicyDocument"]["Statement"]}
    for st in stmts.values():
        assert "*" not in json.dumps(st["Action"]).replace("ecs:ListTaskDefinitions", ""), st["Sid"]
        if st["Resource"] == "*":
            assert st["Sid"] == "TaskDefinitions"
    services = json.dumps(stmts["Services"]["Resource"])
    assert f"service/t2s-{name}/t2s-{name}-api" in services and f"service/t2s-{name}/t2s-{name}-tracking" in services
    assert stmts["PassTaskRoles"]["Condition"] == {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}
    assert len(stmts["PassTaskRoles"]["Resource"]) == 6  # task and execution roles of api, tracking, bootstrap
    assert f"cluster/t2s-{name}" in json.dumps(stmts["BootstrapTask"]["Condition"])
    assert json.dumps(stmts["ImageAndHistoryParameters"]["Resource"]).endswith(f':parameter/t2s/{name}/*"]]}}')
    assert "TrackingDeployPassword" in json.dumps(stmts["TrackingDeployUser"]["Resource"])
    assert json.dumps(stmts["DrillDelete"]["Resource"]).endswith(f':db:t2s-{name}-drill-*"]]}}')
    from infra.layout import db_instance_id

    assert f":db:{db_instance_id(name)}" in json.dumps(stmts["DrillRead"]["Resource"])
