"""Champion/challenger aliases, the gated promotion and rollback, with an audit trail.

The champion is the registered model ``t2s-generator@champion`` (a pyfunc bundle of prompt version + model),
and the prompt's own ``@champion`` alias points at the same prompt version. :func:`promote` moves both only
when :func:`evals.gate.decide` passes on a paired comparison over the same items — or when forced with a
reason. Every alias move (promotion, forced promotion, rollback) is recorded: model-version tags in the
registry, one line appended to the audit log file, and that file logged as an artifact of a run in the
``t2s/promotions`` experiment.
"""

from __future__ import annotations

import getpass
import json
import os
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from evals.records import VariantRun
from pipelines.eval_config import GateConfig, ModelSpec
from t2s.bundle import REGISTERED_MODEL
from t2s.errors import ConfigError, GateRefused, Text2SQLError
from t2s.settings import Settings

ALIAS = "champion"
AUDIT_EXPERIMENT = "t2s/promotions"


@dataclass(frozen=True)
class Champion:
    prompt: str  # name@version
    model: ModelSpec
    model_version: int
    run_id: str | None


def _client() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from mlflow import MlflowClient
    return MlflowClient()


def current_champion() -> Champion | None:
    from mlflow.exceptions import MlflowException

    try:
        mv = _client().get_model_version_by_alias(REGISTERED_MODEL, ALIAS)
    except MlflowException:
        return None
    tags = mv.tags or {}
    if "t2s.prompt" not in tags:
        return None
    model = ModelSpec(name=tags["t2s.model"], provider=tags.get("t2s.provider", "local"))  # type: ignore[arg-type]
    return Champion(tags["t2s.prompt"], model, int(mv.version), tags.get("t2s.variant_run_id"))


def actor(settings: Settings) -> str:
    if settings.actor:
        return settings.actor
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return os.environ.get("USER", "unknown")


def append_audit(settings: Settings, record: dict[str, Any]) -> Path:
    """Append one JSON line (fsync'd) to the audit log and log the whole file to MLflow."""
    path = settings.audit_log
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, sort_keys=True) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import mlflow

    exp = mlflow.get_experiment_by_name(AUDIT_EXPERIMENT)
    exp_id = exp.experiment_id if exp else mlflow.create_experiment(AUDIT_EXPERIMENT)
    client = _client()
    run = client.create_run(exp_id, run_name=f"{record['action']} → v{record['to_model_version']}",
                            tags={"t2s.kind": "promotion", "t2s.action": record["action"],
                                  "t2s.actor": record["actor"], "mlflow.note.content": record.get("reason") or ""})
    client.log_artifact(run.info.run_id, str(path), artifact_path="audit")
    client.log_text(run.info.run_id, json.dumps(record, indent=2, sort_keys=True), "record.json")
    client.set_terminated(run.info.run_id)
    return path


def read_audit(settings: Settings) -> list[dict[str, Any]]:
    if not settings.audit_log.is_file():
        return []
    return [json.loads(line) for line in settings.audit_log.read_text(encoding="utf-8").splitlines() if line.strip()]


def _move_aliases(model_version: int, prompt: str, previous: Champion | None) -> None:
    """Point the model and prompt ``champion`` aliases at the new pair; undo the first if the second fails."""
    from t2s.prompts import parse_ref

    client = _client()
    name, version = parse_ref(prompt)
    client.set_registered_model_alias(REGISTERED_MODEL, ALIAS, model_version)
    try:
        client.set_prompt_alias(name, ALIAS, int(version or 0))
    except Exception:
        if previous is not None:
            client.set_registered_model_alias(REGISTERED_MODEL, ALIAS, previous.model_version)
        else:
            client.delete_registered_model_alias(REGISTERED_MODEL, ALIAS)
        raise


def promote(challenger: VariantRun, champion_run: VariantRun | None, gate: GateConfig, settings: Settings, *,
            dataset_root: Path, force: bool = False, reason: str | None = None) -> dict[str, Any]:
    """Gate, then register the challenger's bundle and move the aliases. Returns the audit record."""
    from evals.gate import GatePolicy, decide
    from t2s.bundle import bundle_config, log_bundle

    if force and not (reason and reason.strip()):
        raise ConfigError("--force needs --reason: say why the gate is overridden (it is recorded)")
    if challenger.run_id is None:
        raise ConfigError("the challenger has no MLflow run id; evaluate it with `t2s eval` first")
    previous = current_champion()
    if previous is not None and champion_run is None:
        raise ConfigError(f"the current champion {previous.prompt}/{previous.model.label} has no evaluation on "
                          f"these items; run `t2s eval` (it adds the champion to the sweep) and compare again")
    decision = decide(challenger, champion_run, GatePolicy(**gate.model_dump()))
    if previous is not None and champion_run is not None and champion_run.variant == challenger.variant:
        raise GateRefused(f"{challenger.variant} is already the champion")
    if not decision.passed and not force:
        raise GateRefused("promotion refused by the gate: " + " ".join(decision.reasons))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import mlflow

    config = bundle_config(f"prompts:/{challenger.prompt_name}/{challenger.prompt_version}", challenger.provider,
                           challenger.model, dataset_root)
    with mlflow.start_run(run_id=challenger.run_id):
        info = log_bundle(config)
    version = int(info.registered_model_version)
    now = datetime.now(UTC).isoformat(timespec="seconds")
    who = actor(settings)
    action = "forced_promotion" if (force and not decision.passed) else (
        "first_promotion" if decision.first_promotion else "promotion")
    client = _client()
    tags = {"t2s.prompt": challenger.prompt, "t2s.model": challenger.model, "t2s.provider": challenger.provider,
            "t2s.variant_run_id": challenger.run_id, "t2s.dataset": challenger.dataset,
            "t2s.dataset_version": challenger.dataset_version, "t2s.promoted_by": who, "t2s.promoted_at": now,
            "t2s.action": action, "t2s.reason": reason or "", "t2s.gate": json.dumps(decision.to_dict())[:5000],
            "t2s.previous_version": str(previous.model_version) if previous else ""}
    for key, value in tags.items():
        client.set_model_version_tag(REGISTERED_MODEL, str(version), key, value)
    _move_aliases(version, challenger.prompt, previous)
    record = {"action": action, "actor": who, "at": now, "reason": reason,
              "from_model_version": previous.model_version if previous else None,
              "from_prompt": previous.prompt if previous else None,
              "to_model_version": version, "to_prompt": challenger.prompt, "model": challenger.model,
              "run_id": challenger.run_id, "sweep_id": challenger.sweep_id, "dataset": challenger.dataset,
              "dataset_version": challenger.dataset_version, "gate": decision.to_dict()}
    append_audit(settings, record)
    return record


def rollback(settings: Settings, reason: str) -> dict[str, Any]:
    """Move the aliases back to the champion before the current one (from the audit log)."""
    if not reason.strip():
        raise ConfigError("rollback needs --reason (it is recorded)")
    current = current_champion()
    if current is None:
        raise Text2SQLError("there is no champion to roll back")
    history = [r for r in read_audit(settings) if r["to_model_version"] == current.model_version]
    if not history or history[-1]["from_model_version"] is None:
        raise Text2SQLError(f"no earlier champion recorded before model version {current.model_version} in "
                            f"{settings.audit_log}; nothing to roll back to")
    target_version = int(history[-1]["from_model_version"])
    mv = _client().get_model_version(REGISTERED_MODEL, str(target_version))
    prompt = (mv.tags or {}).get("t2s.prompt") or history[-1]["from_prompt"]
    _move_aliases(target_version, prompt, current)
    record = {"action": "rollback", "actor": actor(settings), "at": datetime.now(UTC).isoformat(timespec="seconds"),
              "reason": reason, "from_model_version": current.model_version, "from_prompt": current.prompt,
              "to_model_version": target_version, "to_prompt": prompt, "model": (mv.tags or {}).get("t2s.model"),
              "run_id": (mv.tags or {}).get("t2s.variant_run_id"), "sweep_id": None, "dataset": None,
              "dataset_version": None, "gate": None}
    append_audit(settings, record)
    return record
