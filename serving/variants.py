"""Variants loaded from the MLflow model registry: the bundle behind each experiment arm.

For every variant of the experiment, :meth:`VariantSet.load` resolves its alias (or version) of
``t2s-generator``, loads the registered pyfunc bundle (the artifact ``t2s promote`` registered), and builds
the bundle's :class:`t2s.generator.SqlGenerator` — the code path evaluation scored — with an LLM client
sized for serving (``T2S_SERVE_LLM_CONCURRENCY`` requests in flight, not the evaluation default). Clients
are shared by variants that use the same provider, model and endpoint; the local provider starts one
llama.cpp server for the service.

A reload that cannot reach the registry (or fails for one variant) keeps the variants already loaded
and records the failure; readiness reports it.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from serving.config import ExperimentConfig, VariantConfig
from t2s.errors import ConfigError, Text2SQLError
from t2s.settings import Settings

REGISTERED_MODEL = "t2s-generator"


class NoChampion(Text2SQLError):
    """A variant's alias or version is not registered."""


@dataclass
class LoadedVariant:
    name: str
    ref: str  # "@champion" or "/3"
    model_version: str
    prompt_version: str  # name@version
    model: str
    run_id: str | None
    offline_accuracy: float | None
    generator: Any  # t2s.generator.SqlGenerator
    dataset: str
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))


def mlflow_client(settings: Settings) -> Any:
    from t2s.tracking import configure_mlflow

    configure_mlflow(settings)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from mlflow import MlflowClient
    return MlflowClient()


def resolve_version(client: Any, variant: VariantConfig) -> Any:
    """The registry's model version for a variant; :class:`NoChampion` naming the fix when absent."""
    from mlflow.exceptions import MlflowException

    try:
        if variant.alias:
            return client.get_model_version_by_alias(REGISTERED_MODEL, variant.alias)
        return client.get_model_version(REGISTERED_MODEL, str(variant.version))
    except MlflowException as exc:
        code = getattr(exc, "error_code", "")
        if code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            what = f"alias @{variant.alias}" if variant.alias else f"version {variant.version}"
            fix = ("run `make demo` (it evaluates and promotes a champion) or `t2s promote RUN_ID`"
                   if variant.alias == "champion" else
                   f"register it (`t2s promote`) or point variant {variant.name!r} elsewhere in the experiment file")
            raise NoChampion(f"{REGISTERED_MODEL} has no {what}: {fix}") from None
        raise


class VariantSet:
    """The loaded variants of one experiment, replaced as a whole on reload."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.variants: dict[str, LoadedVariant] = {}
        self.last_error: str | None = None
        self.last_attempt: datetime | None = None
        self._clients: dict[tuple[str, str, str | None], Any] = {}
        self._exit = contextlib.ExitStack()
        self._lock = threading.Lock()

    def _llm_client(self, llm: dict[str, Any]) -> Any:
        from t2s.local_llm import client_for

        key = (llm["provider"], llm["model"], llm.get("base_url"))
        if key not in self._clients:
            update: dict[str, Any] = {"llm_provider": llm["provider"], "llm_model": llm["model"],
                                      "llm_concurrency": self.settings.serve_llm_concurrency}
            if llm.get("base_url"):
                update["llm_base_url"] = llm["base_url"]
            settings = self.settings.model_copy(update=update)
            self._clients[key] = self._exit.enter_context(client_for(settings, lazy=True))
        return self._clients[key]

    def _load_one(self, client: Any, variant: VariantConfig) -> LoadedVariant:
        from t2s.bundle import load_bundle
        from t2s.datasets import load_split
        from t2s.generator import SqlGenerator
        from t2s.prompts import registry_spec

        mv = resolve_version(client, variant)
        bundle = load_bundle(f"models:/{REGISTERED_MODEL}/{mv.version}")
        config = dict(bundle.unwrap_python_model().config)
        spec = registry_spec(config["prompt_uri"])
        pool = load_split(config["dataset"], spec.few_shot.split) if spec.few_shot.k else None
        generator = SqlGenerator(spec, self._llm_client(config["llm"]), few_shot_pool=pool)
        tags = mv.tags or {}
        run_id = tags.get("t2s.variant_run_id") or mv.run_id
        offline = None
        if run_id:
            with contextlib.suppress(Exception):
                offline = client.get_run(run_id).data.metrics.get("execution_accuracy")
        llm = config["llm"]
        model = llm["model"] if llm["provider"] == "local" else f"{llm['provider']}:{llm['model']}"
        return LoadedVariant(name=variant.name, ref=variant.model_ref, model_version=str(mv.version),
                             prompt_version=spec.ref, model=model, run_id=run_id, offline_accuracy=offline,
                             generator=generator, dataset=str(config["dataset"]))

    def load(self, experiment: ExperimentConfig) -> list[str]:
        """(Re)load every variant. Returns the errors; variants that failed keep their previous load."""
        with self._lock:
            self.last_attempt = datetime.now(UTC)
            errors: list[str] = []
            try:
                client = mlflow_client(self.settings)
            except Exception as exc:  # registry misconfigured or unreachable
                errors.append(f"registry {self.settings.mlflow_tracking_uri}: {exc}")
                client = None
            loaded = dict(self.variants)
            for variant in experiment.variants:
                if client is None:
                    break
                try:
                    loaded[variant.name] = self._load_one(client, variant)
                except Exception as exc:
                    errors.append(f"variant {variant.name!r} ({REGISTERED_MODEL}{variant.model_ref}): "
                                  f"{type(exc).__name__}: {exc}")
            names = {v.name for v in experiment.variants}
            self.variants = {k: v for k, v in loaded.items() if k in names}
            self.last_error = "; ".join(errors) or None
            return errors

    def get(self, name: str) -> LoadedVariant | None:
        return self.variants.get(name)

    def require_all(self, experiment: ExperimentConfig) -> None:
        missing = [v.name for v in experiment.variants if v.name not in self.variants]
        if missing:
            raise ConfigError(f"cannot serve experiment {experiment.name!r}: variant(s) {', '.join(missing)} "
                              f"not loaded: {self.last_error}")

    def llm_endpoints(self) -> list[str]:
        return sorted({c.where for c in self._clients.values()})

    def close(self) -> None:
        self._exit.close()
        self._clients.clear()
