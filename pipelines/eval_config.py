"""The evaluation matrix: prompt versions × models × datasets, from ``params.yaml`` (section ``eval``) or flags.

Everything the matrix names is checked before any work starts: datasets load (and validate), prompt
references resolve to files, providers are known. A mistake is one clear error, not a half-run sweep.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from t2s.errors import ConfigError

PROVIDERS = ("local", "openai", "azure", "compatible")
DEFAULT_MODEL = "qwen2.5-coder-0.5b-instruct"  # the embedded local model
DEFAULT_PROMPT = "sql-analyst"  # the bundled prompt (its versions are the ones the demo compares)


class ModelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, description="Model name (or Azure deployment).")
    provider: Literal["local", "openai", "azure", "compatible"] = "local"
    base_url: str | None = None
    price_per_1k_input: float | None = Field(None, ge=0, description="USD per 1,000 prompt tokens, for the cost "
                                                                   "estimate (a local model costs nothing).")
    price_per_1k_output: float | None = Field(None, ge=0, description="USD per 1,000 completion tokens.")

    @property
    def label(self) -> str:
        return self.name if self.provider == "local" else f"{self.provider}:{self.name}"

    @property
    def prices(self) -> tuple[float, float] | None:
        """(input, output) USD per 1,000 tokens; a local model is free; None when a hosted one has no price."""
        if self.price_per_1k_input is not None and self.price_per_1k_output is not None:
            return self.price_per_1k_input, self.price_per_1k_output
        return (0.0, 0.0) if self.provider == "local" else None

    @classmethod
    def parse(cls, text: str) -> ModelSpec:
        """``name`` (local) or ``provider:name``."""
        provider, sep, name = text.partition(":")
        if not sep:
            return cls(name=text)
        if provider not in PROVIDERS:
            raise ConfigError(f"unknown provider {provider!r} in model {text!r}; use one of {', '.join(PROVIDERS)}")
        return cls(name=name, provider=provider)  # type: ignore[arg-type]


class BudgetConfig(BaseModel):
    """Serving limits per answer a promoted variant must fit (:mod:`evals.budget`); unset: unlimited."""

    model_config = ConfigDict(extra="forbid")

    p95_latency_s: float | None = Field(None, gt=0, description="95th percentile of the seconds per answer.")
    model_calls_per_answer: float | None = Field(None, gt=0, description="Mean model calls per answer.")
    tokens_per_answer: float | None = Field(None, gt=0, description="Mean prompt + completion tokens per answer.")
    cost_per_1k_answers_usd: float | None = Field(None, gt=0, description="USD per 1,000 answers, from the "
                                                                         "models' prices.")


class GateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    alpha: float = Field(0.05, gt=0, lt=1)
    min_gain: float = Field(0.0, ge=0, le=1)
    bucket_tolerance: float = Field(0.05, ge=0, le=1)
    dataset_tolerance: float = Field(0.05, ge=0, le=1, description="Largest accuracy drop on any one dataset "
                                                                   "of a sweep over several.")
    heldout: list[str] = Field(default_factory=list, description="Datasets the versions were not written "
                                                                 "against: a decision must cover one of them.")
    budget: BudgetConfig = Field(default_factory=BudgetConfig)

    def policy(self) -> Any:
        """The :class:`evals.gate.GatePolicy` these settings describe."""
        from evals.budget import Budget
        from evals.gate import GatePolicy

        budget = Budget(**self.budget.model_dump())
        return GatePolicy(alpha=self.alpha, min_gain=self.min_gain, bucket_tolerance=self.bucket_tolerance,
                          dataset_tolerance=self.dataset_tolerance, heldout=tuple(self.heldout),
                          budget=budget if budget.limits else None)


class EvalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    datasets: list[Path] = Field(default_factory=lambda: [Path("datasets/bank")], min_length=1)
    prompts: list[str] = Field(min_length=1, description="NAME@VERSION references.")
    models: list[ModelSpec] = Field(default_factory=lambda: [ModelSpec(name=DEFAULT_MODEL)], min_length=1)
    rules: Literal["t2s", "spider", "bird"] = "t2s"
    timeout_s: float = Field(10.0, gt=0)
    max_rows: int = Field(100_000, gt=0)
    limit: int | dict[str, int] | None = Field(
        None, description="Only N questions of each dataset (see limit_mode), or a mapping dataset name → N "
                          "(datasets it does not name are evaluated whole).")
    limit_mode: Literal["first", "spread"] = Field(
        "first", description="first: the first N questions; spread: every (len/N)-th one, so a set ordered by "
                             "difficulty keeps all its buckets.")
    workers: int | None = Field(
        None, ge=1, description="Questions in flight per cell; default: one per local server for the local model "
                                "(each answers one request at a time), else the client's llm_concurrency.")
    exact_match: bool = Field(False, description="Also compute sqlglot-normalized exact match (8-16 ms of CPU "
                                                 "per matched item: it would dominate a cell on a fast endpoint).")
    out_dir: Path = Path("reports/eval")
    gate: GateConfig = Field(default_factory=GateConfig)

    @field_validator("limit")
    @classmethod
    def _positive_limit(cls, value: int | dict[str, int] | None) -> int | dict[str, int] | None:
        for name, n in (value.items() if isinstance(value, dict) else [("", value)]):
            if n is not None and n <= 0:
                raise ValueError(f"limit{' of ' + name if name else ''} must be a positive number of questions, "
                                 f"got {n}")
        return value

    def limit_for(self, dataset: str) -> int | None:
        """Questions of ``dataset`` a cell evaluates (None: all of them)."""
        return self.limit.get(dataset) if isinstance(self.limit, dict) else self.limit

    @field_validator("models", mode="before")
    @classmethod
    def _model_strings(cls, value: object) -> object:
        if isinstance(value, list):
            return [ModelSpec.parse(v).model_dump() if isinstance(v, str) else v for v in value]
        return value

    @field_validator("prompts", mode="before")
    @classmethod
    def _mapping(cls, value: object) -> object:
        """A mapping ``label: NAME@VERSION`` (DVC names per-prompt stages by label) is read as its values."""
        return list(value.values()) if isinstance(value, dict) else value

    @field_validator("prompts")
    @classmethod
    def _refs(cls, value: list[str]) -> list[str]:
        for ref in value:
            name, _, version = ref.partition("@")
            if not name or not version.isdigit():
                raise ValueError(f"prompt {ref!r}: write NAME@VERSION (e.g. sql-analyst@2)")
        return value


def select_items(examples: list, limit: int | None, mode: str = "first") -> list:  # type: ignore[type-arg]
    """The questions a limited cell evaluates: deterministic, the same for every cell of a sweep."""
    if not limit or limit >= len(examples):
        return list(examples)
    if mode == "first":
        return list(examples[:limit])
    step = len(examples) / limit
    return [examples[int(i * step)] for i in range(limit)]


def load_params(path: Path) -> dict:  # type: ignore[type-arg]
    from t2s.fileio import read_yaml_mapping

    if not path.is_file():
        raise ConfigError("params file not found", file=path)
    return read_yaml_mapping(path, ConfigError, "an 'eval' section")


def build_config(params_path: Path | None, overrides: dict) -> EvalConfig:  # type: ignore[type-arg]
    """``params.yaml``'s ``eval`` and ``gate`` sections, with non-empty flag values on top."""
    from t2s.fileio import first_validation_error

    raw: dict = {}  # type: ignore[type-arg]
    if params_path is not None:
        params = load_params(params_path)
        raw = dict(params.get("eval") or {})
        if "gate" in params:
            raw["gate"] = params["gate"]
        if "dataset" in raw:
            raw["datasets"] = [raw.pop("dataset")]
    raw.update({k: v for k, v in overrides.items() if v not in (None, [], ())})
    try:
        return EvalConfig.model_validate(raw)
    except ValidationError as exc:
        field, msg = first_validation_error(exc)
        raise ConfigError(msg, file=params_path, field=f"eval.{field}") from exc


def check_config(config: EvalConfig, prompts_dir: Path) -> None:
    """Fail before any work if a dataset, prompt or model in the matrix is unknown."""
    from t2s.datasets import load_dataset
    from t2s.prompts import PromptLibrary, parse_ref

    for path in config.datasets:
        load_dataset(path)
    library = PromptLibrary(prompts_dir)
    for ref in config.prompts:
        name, version = parse_ref(ref)
        library.get(name, int(version or 0))
    labels = [m.label for m in config.models]
    if len(set(labels)) != len(labels):
        raise ConfigError(f"the same model is listed twice: {labels}")


def params_or_default(params: Path | None) -> Path | None:
    """``params``, else ./params.yaml when it exists."""
    if params is None and Path("params.yaml").is_file():
        return Path("params.yaml")
    return params


def gate_config(params: Path | None) -> GateConfig:
    """The ``gate`` section of params.yaml (defaults without one)."""
    params = params_or_default(params)
    if params is None:
        return GateConfig()
    raw = load_params(params).get("gate") or {}
    try:
        return GateConfig.model_validate(raw)
    except ValidationError as exc:
        from t2s.fileio import first_validation_error

        field, msg = first_validation_error(exc)
        raise ConfigError(msg, file=params, field=f"gate.{field}") from exc
