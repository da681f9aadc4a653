"""The promoted artifact: an MLflow pyfunc model bundling a prompt version, model config and schema settings.

Serving and evaluation both load it (``models:/t2s-generator@champion``) and call :meth:`predict`, which
runs :class:`t2s.generator.SqlGenerator` — the same code path everywhere. The bundle stores references,
not copies: the prompt as a registry URI (``prompts:/name/version``, whose content hash is checked on
load), the model by provider and name. Credentials never enter the bundle; they come from the serving
environment's settings at predict time.

``model_config`` keys:

- ``prompt_uri``: ``prompts:/<name>/<version>``
- ``llm``: ``{"provider": ..., "model": ...}`` (plus ``base_url`` for provider ``compatible``)
- ``dataset``: the dataset directory whose databases (and training split) questions refer to

The prompt version carries its generation strategy (``strategy:``, see :mod:`t2s.strategy`), so the bundle
runs exactly the strategy that was evaluated; the output's ``strategy``, ``model_calls`` and ``trace`` (JSON)
columns say what it did per question.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import mlflow
    import pandas as pd

from t2s.errors import ConfigError

REGISTERED_MODEL = "t2s-generator"
INPUT_COLUMNS = ("question", "db_id", "id", "evidence")
OUTPUT_COLUMNS = ("id", "question", "sql", "error", "detail", "latency_s", "prompt_tokens", "completion_tokens",
                  "cached", "prompt", "model", "strategy", "model_calls", "trace")


class GeneratorBundle(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper around :class:`t2s.generator.SqlGenerator`."""

    def load_context(self, context: Any) -> None:
        self.config: dict[str, Any] = dict(context.model_config or {})
        for key in ("prompt_uri", "llm", "dataset"):
            if key not in self.config:
                raise ConfigError(f"bundle model_config lacks {key!r}")
        self._generators: dict[tuple[str | None, str], Any] = {}

    def _generator(self, base_url: str | None, dataset: str):  # type: ignore[no-untyped-def]
        key = (base_url, dataset)
        if key not in self._generators:
            from t2s.datasets import load_dataset, load_split
            from t2s.generator import SqlGenerator
            from t2s.llm import LLMClient
            from t2s.prompts import registry_spec
            from t2s.settings import get_settings

            spec = registry_spec(self.config["prompt_uri"])
            llm = self.config["llm"]
            settings = get_settings().model_copy(update={
                "llm_provider": llm["provider"], "llm_model": llm["model"],
                **({"llm_base_url": llm["base_url"]} if llm.get("base_url") else {})})
            client = LLMClient.from_settings(settings, base_url_override=base_url)
            ds = load_dataset(dataset)
            pool = load_split(dataset, spec.few_shot.split) if spec.few_shot.k else None
            self._generators[key] = (SqlGenerator(spec, client, few_shot_pool=pool), ds)
        return self._generators[key]

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """Questions in, SQL out. ``params``: ``base_url`` of a running model server (for provider
        ``local``; default ``T2S_LLM_BASE_URL``) and ``dataset`` to override the bundled dataset path."""
        from t2s.datasets import open_db
        from t2s.settings import get_settings

        params = params or {}
        if "question" not in model_input.columns:
            raise ConfigError(f"input needs a 'question' column; got {list(model_input.columns)}")
        base_url = params.get("base_url") or os.environ.get("T2S_LLM_BASE_URL")
        generator, ds = self._generator(base_url, str(params.get("dataset") or self.config["dataset"]))
        targets: dict[str | None, Any] = {}
        rows = []
        for i, row in enumerate(model_input.to_dict("records")):
            db_id = row.get("db_id") or None
            if db_id not in targets:
                targets[db_id] = open_db(ds, db_id, get_settings().postgres_dsn)
            gen = generator.generate(str(row["question"]), targets[db_id], evidence=row.get("evidence"),
                                     question_id=str(row.get("id") or i), context=_context(row.get("context")))
            out = {"id": gen.question_id, **{c: getattr(gen, c) for c in OUTPUT_COLUMNS if c not in ("id", "trace")}}
            out["trace"] = json.dumps(gen.trace, default=str) if gen.trace is not None else ""
            rows.append(out)
        for t in targets.values():
            t.close()
        return pd.DataFrame(rows, columns=list(OUTPUT_COLUMNS))


def _context(raw: Any) -> tuple[Any, ...]:
    """The optional ``context`` input: a JSON list of earlier turns (``{"question", "sql"}``), oldest first."""
    from pydantic import TypeAdapter, ValidationError

    from t2s.datasets import Turn

    if raw is None or raw == "" or (isinstance(raw, float) and raw != raw):  # absent, or NaN from pandas
        return ()
    try:
        return tuple(TypeAdapter(list[Turn]).validate_json(str(raw)))
    except ValidationError as exc:
        raise ConfigError(f"input column 'context' must be a JSON list of {{question, sql}} turns: "
                          f"{exc.errors()[0]['msg']}") from None


def bundle_config(prompt_uri: str, provider: str, model: str, dataset: str | Path,
                  base_url: str | None = None) -> dict[str, Any]:
    llm: dict[str, Any] = {"provider": provider, "model": model}
    if base_url and provider == "compatible":
        llm["base_url"] = base_url
    return {"prompt_uri": prompt_uri, "llm": llm, "dataset": str(dataset)}


def bundle_signature() -> Any:
    """question required; db_id, id, evidence and context (the conversation before a follow-up, JSON)
    optional; params base_url and dataset."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

    inputs = Schema([ColSpec("string", "question"), *(ColSpec("string", c, required=False)
                                                        for c in ("db_id", "id", "evidence", "context"))])
    types = {"latency_s": "double", "prompt_tokens": "long", "completion_tokens": "long", "cached": "boolean",
             "model_calls": "long"}
    outputs = Schema([ColSpec(types.get(c, "string"), c) for c in OUTPUT_COLUMNS])
    params = ParamSchema([ParamSpec("base_url", "string", ""), ParamSpec("dataset", "string", "")])
    return ModelSignature(inputs=inputs, outputs=outputs, params=params)


def log_bundle(config: dict[str, Any], *, registered_model_name: str | None = REGISTERED_MODEL,
               name: str = "generator") -> Any:
    """Log the bundle in the active run (one is started if none is) and register it.

    Returns MLflow's ``ModelInfo``; ``registered_model_version`` is set when registered.
    """
    from t2s.prompts import registry_spec

    registry_spec(config["prompt_uri"])  # fail before logging anything if the prompt is not registered intact
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mlflow.pyfunc.log_model(
            name=name, python_model=GeneratorBundle(), model_config=config, signature=bundle_signature(),
            registered_model_name=registered_model_name,
            pip_requirements=["text2sql-ops"],  # the platform package itself; avoids slow requirement inference
        )


def load_bundle(uri: str) -> Any:
    """``models:/t2s-generator@champion``, ``models:/t2s-generator/3`` or ``runs:/…/generator``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mlflow.pyfunc.load_model(uri)
