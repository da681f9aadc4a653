"""The CDK app: four stacks per environment (five in production: the DR region's backup vault), chosen by context (``-c env=staging|production``).

``build_app(context)`` is what the tests and ``python -m infra.cdk.app`` (the ``app`` of cdk.json) call.
The stacks name no account: the templates deploy to whichever account the credentials point at. Only the
region is set (from ``-c t2s:region=...``), because ALB access-log delivery needs it.
"""

from __future__ import annotations

import json
import os
from typing import Any

from infra.cdk.config import EnvConfig, load_config

# CDK feature flags this app relies on (also in cdk.json for the CLI): S3 server access logs are granted by
# bucket policy instead of a legacy ACL.
FEATURE_FLAGS: dict[str, Any] = {"@aws-cdk/aws-s3:serverAccessLogsUseBucketPolicy": True}


def stack_names(env: str, dr: bool = False) -> dict[str, str]:
    """Stack names in deploy order (``dr``: the cross-region backup vault stack, production)."""
    names = {"network": f"T2S-{env}-Network", "identity": f"T2S-{env}-Identity", "data": f"T2S-{env}-Data",
             "serving": f"T2S-{env}-Serving"}
    return {"dr_vault": f"T2S-{env}-DrVault", **names} if dr else names


def build_app(context: dict[str, Any] | None = None, outdir: str | None = None) -> tuple[Any, EnvConfig]:
    """Build (not yet synthesize) the app for the environment in ``context``."""
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    import aws_cdk as cdk

    from infra.cdk.data import build_data_stack, build_dr_vault_stack
    from infra.cdk.identity import build_identity_stack
    from infra.cdk.nag import apply_checkov_skips, apply_nag
    from infra.cdk.network import build_network_stack
    from infra.cdk.serving import build_serving_stack

    # The CDK CLI hands `-c key=value` and cdk.json's context over in CDK_CONTEXT_JSON.
    merged = {**json.loads(os.environ.get("CDK_CONTEXT_JSON") or "{}"), **(context or {})}
    app = cdk.App(context={**FEATURE_FLAGS, **merged}, outdir=outdir)
    cfg = load_config(merged)
    env = cdk.Environment(region=cfg.region)
    names = stack_names(cfg.name, dr=cfg.dr_region is not None)
    tags = {"project": "text2sql-ops", "environment": cfg.name}
    stacks: dict[str, Any] = {}
    if cfg.dr_region:
        stacks["dr_vault"] = build_dr_vault_stack(app, names["dr_vault"], cfg,
                                                  env=cdk.Environment(region=cfg.dr_region), tags=tags)
    network = stacks["network"] = build_network_stack(app, names["network"], cfg, env=env, tags=tags)
    identity = stacks["identity"] = build_identity_stack(app, names["identity"], cfg, env=env, tags=tags)
    data = stacks["data"] = build_data_stack(app, names["data"], cfg, network, env=env, tags=tags)
    if cfg.dr_region:
        data.add_dependency(stacks["dr_vault"], "backups are copied into the DR region's vault")
    stacks["serving"] = build_serving_stack(app, names["serving"], cfg, network, data, identity, env=env, tags=tags)
    apply_nag(app, cfg, stacks)
    apply_checkov_skips(cfg, stacks)
    return app, cfg


def main(argv: list[str] | None = None) -> None:
    """``python -m infra.cdk.app [--env staging] [--out DIR] [-c t2s:key=value ...]``: synthesize offline.

    Without arguments (as the CDK CLI runs it) the context comes from CDK_CONTEXT_JSON.
    """
    import argparse

    parser = argparse.ArgumentParser(prog="python -m infra.cdk.app", description=main.__doc__)
    parser.add_argument("--env", choices=["staging", "production"])
    parser.add_argument("--out", help="cloud assembly directory (default: CDK_OUTDIR or cdk.out)")
    parser.add_argument("-c", "--context", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    context = dict(item.split("=", 1) for item in args.context)
    if args.env:
        context["env"] = args.env
    app, cfg = build_app(context or None, outdir=args.out)
    assembly = app.synth()
    print(f"synthesized {cfg.name}: {', '.join(s.stack_name for s in assembly.stacks)} -> {assembly.directory}")


if __name__ == "__main__":
    main()
