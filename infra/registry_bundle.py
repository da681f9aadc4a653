"""A champion moved between registries as one reviewable JSON file: how a new environment gets its first
champion (``t2s tracking export`` where one exists, ``t2s tracking import`` on the new tracking server, or
``t2s deploy bootstrap`` which runs the import inside the VPC).

The file holds what the bundle *is*, not its pickled artifacts: the registered prompt versions 1..N of the
bundle's prompt (template, t2s tags with the content hash, model config), the bundle's ``model_config``
(``prompts:/name/N``, model, dataset), the model version's ``t2s.*`` tags, and the offline metrics of the run
that produced it. Importing re-registers the prompt versions (same numbers: the registry refuses a gap,
as ``t2s prompts push`` does), logs the bundle again through :func:`t2s.bundle.log_bundle` (the code that
runs is the image's), and points ``@<alias>`` at it. A ``sha256`` of the content makes a re-import of the
same file a no-op and a different one refuse to replace the alias without ``--force``.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

from t2s.errors import ConfigError, Text2SQLError

FORMAT = "t2s-registry-bundle/1"
DIGEST_TAG = "t2s.bundle_sha256"
BOOTSTRAP_EXPERIMENT = "t2s/bootstrap"


class BundleError(Text2SQLError):
    """The bundle file cannot be exported or imported as asked."""


def _client() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from mlflow import MlflowClient
    return MlflowClient()


def content_digest(bundle: dict[str, Any]) -> str:
    body = {k: v for k, v in bundle.items() if k not in ("sha256", "source")}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def export_bundle(alias: str = "champion") -> dict[str, Any]:
    """The bundle behind ``t2s-generator@alias`` on the current tracking URI, as a JSON-ready dict."""
    import mlflow

    from t2s.bundle import REGISTERED_MODEL, load_bundle
    from t2s.prompts import parse_ref

    client = _client()
    try:
        mv = client.get_model_version_by_alias(REGISTERED_MODEL, alias)
    except Exception as exc:
        raise BundleError(f"{REGISTERED_MODEL} has no @{alias} on {mlflow.get_tracking_uri()}: nothing to "
                          "export") from exc
    config = dict(load_bundle(f"models:/{REGISTERED_MODEL}/{mv.version}").model_config or {})
    prompt_uri = str(config.get("prompt_uri", ""))
    if not prompt_uri.startswith("prompts:/"):
        raise BundleError(f"{REGISTERED_MODEL} version {mv.version} has no prompts:/ prompt_uri in its config")
    name, version = parse_ref(prompt_uri.removeprefix("prompts:/").replace("/", "@", 1))
    prompts = []
    for v in range(1, int(version or 0) + 1):
        pv = client.get_prompt_version(name, v)
        if pv is None:
            raise BundleError(f"prompt {name} version {v} is missing on the source registry")
        prompts.append({"version": v, "template": pv.template, "commit_message": pv.commit_message,
                        "tags": {k: val for k, val in (pv.tags or {}).items() if k.startswith("t2s.")},
                        "model_config": pv.model_config or None})
    tags = {k: v for k, v in (mv.tags or {}).items() if k.startswith("t2s.") and k != DIGEST_TAG}
    run_id = tags.pop("t2s.variant_run_id", None) or mv.run_id
    metrics: dict[str, float] = {}
    if run_id:
        try:
            metrics = dict(client.get_run(run_id).data.metrics)
        except Exception:  # the run may have been deleted: the bundle is still complete without its metrics
            metrics = {}
    bundle = {"format": FORMAT, "alias": alias, "prompt": {"name": name, "versions": prompts},
              "config": config, "tags": tags, "metrics": metrics,
              "source": {"tracking_uri": mlflow.get_tracking_uri(), "model_version": str(mv.version)}}
    bundle["sha256"] = content_digest(bundle)
    return bundle


def read_bundle(path: Path) -> dict[str, Any]:
    try:
        bundle = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BundleError(f"{path}: not a readable bundle file ({exc})") from exc
    if not isinstance(bundle, dict) or bundle.get("format") != FORMAT:
        raise BundleError(f"{path}: not a {FORMAT} file (make one with `t2s tracking export`)")
    if bundle.get("sha256") != content_digest(bundle):
        raise BundleError(f"{path}: content does not match its sha256 (edited or truncated)")
    return bundle


def _register_prompts(client: Any, prompt: dict[str, Any]) -> list[str]:
    from mlflow.exceptions import MlflowException

    from t2s.prompts import HASH_TAG

    done = []
    for pv in prompt["versions"]:
        try:
            existing = client.get_prompt_version(prompt["name"], pv["version"])
        except MlflowException:
            existing = None
        if existing is not None:
            if (existing.tags or {}).get(HASH_TAG) != pv["tags"].get(HASH_TAG):
                raise BundleError(f"prompt {prompt['name']} version {pv['version']} exists here with other content: "
                                  "the registries disagree; fix the target registry first")
            continue
        registered = client.register_prompt(name=prompt["name"], template=pv["template"],
                                            commit_message=pv.get("commit_message"), tags=pv["tags"],
                                            model_config=pv.get("model_config"))
        if int(registered.version) != pv["version"]:
            raise BundleError(f"the registry assigned version {registered.version} to prompt {prompt['name']} "
                              f"version {pv['version']}: an earlier version is missing here")
        done.append(f"registered prompt {prompt['name']} version {pv['version']}")
    return done


def import_bundle(bundle: dict[str, Any], *, alias: str | None = None, force: bool = False) -> list[str]:
    """Register ``bundle`` on the current tracking URI and point ``@alias`` (default: the exported alias)
    at it. Returns what was done."""
    from mlflow.exceptions import MlflowException

    try:
        return _import(bundle, alias or bundle["alias"], force)
    except MlflowException as exc:
        if "PERMISSION_DENIED" in str(getattr(exc, "error_code", "")) or "403" in str(exc):
            raise BundleError("the tracking server refused: import as a user allowed to register models and move "
                              "aliases (on AWS: deploy or admin)") from exc
        raise


def _import(bundle: dict[str, Any], alias: str, force: bool) -> list[str]:
    import mlflow
    from mlflow.exceptions import MlflowException

    from t2s.bundle import REGISTERED_MODEL, log_bundle
    from t2s.prompts import parse_ref

    client = _client()
    try:
        current = client.get_model_version_by_alias(REGISTERED_MODEL, alias)
    except MlflowException:
        current = None
    if current is not None:
        if (current.tags or {}).get(DIGEST_TAG) == bundle["sha256"]:
            return [f"{REGISTERED_MODEL}@{alias} is already this bundle (version {current.version}): nothing to do"]
        if not force:
            raise BundleError(f"{REGISTERED_MODEL}@{alias} already points at version {current.version}: pass --force "
                              "to replace it (moving @champion is normally `t2s promote`'s job)")
    done = _register_prompts(client, bundle["prompt"])
    experiment = mlflow.get_experiment_by_name(BOOTSTRAP_EXPERIMENT)
    experiment_id = experiment.experiment_id if experiment else mlflow.create_experiment(BOOTSTRAP_EXPERIMENT)
    source = bundle.get("source") or {}
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"import @{alias}",
                          tags={"t2s.kind": "bootstrap", "t2s.source": json.dumps(source, sort_keys=True)}) as run:
        if bundle["metrics"]:
            mlflow.log_metrics(bundle["metrics"])
        info = log_bundle(bundle["config"])
    version = str(info.registered_model_version)
    for key, value in {**bundle["tags"], "t2s.variant_run_id": run.info.run_id, DIGEST_TAG: bundle["sha256"]}.items():
        client.set_model_version_tag(REGISTERED_MODEL, version, key, str(value))
    client.set_registered_model_alias(REGISTERED_MODEL, alias, version)
    name, prompt_version = parse_ref(bundle["config"]["prompt_uri"].removeprefix("prompts:/").replace("/", "@", 1))
    client.set_prompt_alias(name, alias, int(prompt_version or 0))
    return [*done, f"registered {REGISTERED_MODEL} version {version} and set @{alias} (prompt {name}@{alias} -> "
                   f"{prompt_version})"]


def write_bundle(bundle: dict[str, Any], path: Path) -> Path:
    if not bundle.get("sha256"):
        raise ConfigError("bundle has no sha256")
    path.write_text(json.dumps(bundle, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path
