"""Champion/challenger aliases, the gated promotion and rollback, with an audit trail.

The champion is the registered model ``t2s-generator@champion`` (a pyfunc bundle of prompt version + model),
and the prompt's own ``@champion`` alias points at the same prompt version. :func:`promote` moves both only
when :func:`evals.gate.decide` passes on a paired comparison over the same items — or when forced with a
reason. Every alias move (promotion, forced promotion, rollback) is recorded: model-version tags in the
registry, one line appended to the audit log file, and that file logged as an artifact of a run in the
``t2s/promotions`` experiment.

Where MLflow 3 expects the model: a promotion is a run of ``t2s/promotions`` (named after what moved,
``v8 · bank+freight → champion (t2s-generator v3)``) that logs the bundle as its LoggedModel and registers
it; the variant's evaluation run gets that model as an *input* (the model it evaluated), never as an output,
so it stays an evaluation run in the experiment's Evaluation runs list instead of moving to Training runs.
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


def promotions_experiment() -> str:
    """The ``t2s/promotions`` experiment (created on first use, with a description saying what it holds)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import mlflow

    exp = mlflow.get_experiment_by_name(AUDIT_EXPERIMENT)
    if exp is None:
        try:
            exp_id = mlflow.create_experiment(AUDIT_EXPERIMENT)
        except mlflow.exceptions.MlflowException:  # created meanwhile by another process
            exp_id = mlflow.get_experiment_by_name(AUDIT_EXPERIMENT).experiment_id
    else:
        exp_id = exp.experiment_id
        if "(#/experiments/" in exp.tags.get("mlflow.note.content", ""):
            return exp_id
    # The experiment's description, shown above every tab (it opens on an overview of traces it has none of).
    _client().set_experiment_tag(exp_id, "mlflow.note.content", (
        f"Every move of the champion alias: [one run per promotion or rollback](#/experiments/{exp_id}/runs) "
        "(this overview stays empty: promotions log no traces). A promotion run logs and registers the promoted "
        "bundle and holds the audit record; its description says why, and links the evaluation it promoted."))
    return exp_id


def _short(prompt: str, model: str | None, dataset: str | None) -> str:
    """``v8 · bank+freight`` for ``sql-analyst@8`` on the embedded model and ``bank+freight``, named as the
    evaluation runs are (:func:`pipelines.mlflow_runs.run_label`)."""
    from pipelines.mlflow_runs import run_label

    return run_label(f"{prompt}/{model or ''}", dataset)


def audit_run_name(record: dict[str, Any]) -> str:
    """What moved, readable in a cut-off run list: ``v8 · bank+freight → champion (t2s-generator v3)``."""
    target = f"t2s-generator v{record['to_model_version']}"
    if record["action"] == "rollback":
        return f"rollback → {_short(record['to_prompt'], record.get('model'), None)} ({target})"
    forced = " (forced)" if record["action"] == "forced_promotion" else ""
    return f"{_short(record['to_prompt'], record.get('model'), record.get('dataset'))} → champion{forced} ({target})"


def _description(record: dict[str, Any]) -> str:
    """The run's description (Markdown): who moved what, why, and the evaluation behind it."""
    lines = [f"**{record['action'].replace('_', ' ')}** by {record['actor']}: {record['to_prompt']} on "
             f"{record.get('model') or '?'} is the champion (t2s-generator v{record['to_model_version']})"
             + (f", was v{record['from_model_version']}" if record.get("from_model_version") else "") + "."]
    if record.get("reason"):
        lines.append(f"Reason: {record['reason']}")
    lines += [f"- {r}" for r in (record.get("gate") or {}).get("reasons", [])]
    if record.get("run_id"):
        from mlflow.exceptions import MlflowException

        from pipelines.mlflow_runs import evaluation_runs_url

        try:
            exp_id = _client().get_run(record["run_id"]).info.experiment_id
            lines.append(f"\n[The evaluation run]({evaluation_runs_url('', exp_id, record['run_id'])})")
        except MlflowException:  # the evaluation run was deleted since
            pass
    return "\n".join(lines)[:5000]


def append_audit(settings: Settings, record: dict[str, Any], run_id: str | None = None) -> Path:
    """Append one JSON line (fsync'd) to the audit log and log the whole file to MLflow: to ``run_id`` (the
    promotion's run) or a new run of ``t2s/promotions``; the run is then ended."""
    path = settings.audit_log
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record, sort_keys=True) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    client = _client()
    if run_id is None:
        run_id = client.create_run(promotions_experiment(), tags={"t2s.kind": "promotion"}).info.run_id
    client.set_tag(run_id, "mlflow.runName", audit_run_name(record))
    for key, value in {"t2s.action": record["action"], "t2s.actor": record["actor"],
                       "t2s.prompt": record["to_prompt"], "t2s.model_version": str(record["to_model_version"]),
                       "mlflow.note.content": _description(record)}.items():
        client.set_tag(run_id, key, value)
    client.log_artifact(run_id, str(path), artifact_path="audit")
    client.log_text(run_id, json.dumps(record, indent=2, sort_keys=True), "record.json")
    client.set_terminated(run_id)
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
    from evals.gate import decide
    from t2s.bundle import bundle_config, log_bundle

    if force and not (reason and reason.strip()):
        raise ConfigError("--force needs --reason: say why the gate is overridden (it is recorded)")
    if challenger.run_id is None:
        raise ConfigError("the challenger has no MLflow run id; evaluate it with `t2s eval` first")
    previous = current_champion()
    if previous is not None and champion_run is None:
        raise ConfigError(f"the current champion {previous.prompt}/{previous.model.label} has no evaluation on "
                          f"these items; run `t2s eval` (it adds the champion to the sweep) and compare again")
    decision = decide(challenger, champion_run, gate.policy())
    if previous is not None and champion_run is not None and champion_run.variant == challenger.variant:
        raise GateRefused(f"{challenger.variant} is already the champion")
    if not decision.passed and not force:
        raise GateRefused("promotion refused by the gate: " + " ".join(decision.reasons))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import mlflow

    config = bundle_config(f"prompts:/{challenger.prompt_name}/{challenger.prompt_version}", challenger.provider,
                           challenger.model, dataset_root)
    client = _client()
    run = client.create_run(promotions_experiment(), run_name=f"{_short(challenger.prompt, challenger.model, challenger.dataset)} → champion",
                            tags={"t2s.kind": "promotion", "t2s.variant_run_id": challenger.run_id})
    try:
        with mlflow.start_run(run_id=run.info.run_id):
            info = log_bundle(config)
        link_evaluated_model(challenger.run_id, info.model_id)
        _log_measurements(run.info.run_id, challenger)
        record = _register(challenger, decision, previous, info, settings, force=force, reason=reason,
                           promotion_run_id=run.info.run_id)
    except BaseException:
        client.set_terminated(run.info.run_id, status="FAILED")
        raise
    append_audit(settings, record, run_id=run.info.run_id)
    return record


def _log_measurements(run_id: str, challenger: VariantRun) -> None:
    """The promoted variant's headline figures on the promotion run (accuracy, what an answer costs)."""
    from evals.budget import serving_cost
    from pipelines.mlflow_runs import readable_metrics

    cost = serving_cost(challenger)
    figures = {"execution_accuracy": challenger.metrics.get("execution_accuracy"),
               "valid_sql_rate": challenger.metrics.get("valid_sql_rate"), "p95_latency_s": cost.p95_latency_s,
               "model_calls_per_answer": cost.model_calls_per_answer, "tokens_per_answer": cost.tokens_per_answer,
               "cost_per_1k_answers_usd": cost.cost_per_1k_answers_usd}
    client = _client()
    for key, value in readable_metrics({k: v for k, v in figures.items() if v is not None}).items():
        client.log_metric(run_id, key, value)


def link_evaluated_model(eval_run_id: str, model_id: str) -> None:
    """The promoted model as an input of the evaluation run that measured it (an output would turn the run
    into a training run in MLflow's UI)."""
    from mlflow.entities import LoggedModelInput

    _client().log_inputs(eval_run_id, models=[LoggedModelInput(model_id=model_id)])


def _register(challenger: VariantRun, decision: Any, previous: Champion | None, info: Any, settings: Settings, *,
              force: bool, reason: str | None, promotion_run_id: str) -> dict[str, Any]:
    """Tag the registered version, move the aliases, and return the audit record."""
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
            "t2s.previous_version": str(previous.model_version) if previous else "",
            "t2s.promotion_run_id": promotion_run_id}
    for key, value in tags.items():
        client.set_model_version_tag(REGISTERED_MODEL, str(version), key, value)
    _move_aliases(version, challenger.prompt, previous)
    return {"action": action, "actor": who, "at": now, "reason": reason,
            "from_model_version": previous.model_version if previous else None,
            "from_prompt": previous.prompt if previous else None,
            "to_model_version": version, "to_prompt": challenger.prompt, "model": challenger.model,
            "run_id": challenger.run_id, "sweep_id": challenger.sweep_id, "dataset": challenger.dataset,
            "dataset_version": challenger.dataset_version, "gate": decision.to_dict(),
            "promotion_run_id": promotion_run_id, "model_id": info.model_id}


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
