"""The experiment file and the served databases: typed, checked at load, errors that name the fix.

An experiment file (default ``experiments/default.yaml``, setting ``T2S_SERVE_EXPERIMENT_FILE``)::

    name: champion-vs-challenger
    salt: ccv-2026-11          # change it to reshuffle users for a new experiment
    control: champion          # the variant lifts are measured against
    variants:
      - {name: champion, alias: champion, weight: 50}
      - {name: challenger, alias: challenger, weight: 50}   # or `version: 7`
    guardrails:                # optional; how much worse than the control a variant may be
      latency_p95_increase: 0.20       # p95 latency 20% above the control's
      sql_error_rate_increase: 0.02    # 2 points more SQL errors (also timeout_, llm_error_, ...)

Each variant names a registered ``t2s-generator`` by alias or explicit version. A missing file means the
implicit experiment ``default``: the champion alone.

Served databases (``T2S_SERVE_DATABASES``, JSON): ``NAME -> spec`` where spec is a dataset directory
(optionally ``#db_id``), ``sqlite:PATH``, ``duckdb:PATH`` or ``postgres:DSN`` (optionally ``#schema``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from serving.experiment_report import GuardrailThresholds
from t2s.errors import ConfigError

NAME_PATTERN = r"^[A-Za-z0-9_.-]+$"


class VariantConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=NAME_PATTERN)
    alias: str | None = Field(None, min_length=1, pattern=NAME_PATTERN)
    version: int | None = Field(None, ge=1)
    weight: float = Field(gt=0)

    @model_validator(mode="after")
    def _one_reference(self) -> VariantConfig:
        if (self.alias is None) == (self.version is None):
            raise ValueError(f"variant {self.name!r}: give exactly one of `alias` (e.g. champion) or `version`")
        return self

    @property
    def model_ref(self) -> str:
        return f"@{self.alias}" if self.alias else f"/{self.version}"


class ExperimentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=NAME_PATTERN)
    salt: str = Field(min_length=1)
    control: str | None = None
    variants: list[VariantConfig] = Field(min_length=1)
    guardrails: GuardrailThresholds = Field(default_factory=GuardrailThresholds)

    @model_validator(mode="after")
    def _consistent(self) -> ExperimentConfig:
        names = [v.name for v in self.variants]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate variant names: {', '.join(dupes)}")
        if self.control is None:
            self.control = names[0]
        elif self.control not in names:
            raise ValueError(f"control {self.control!r} is not a variant (variants: {', '.join(names)})")
        return self

    @property
    def weights(self) -> list[tuple[str, float]]:
        return [(v.name, v.weight) for v in self.variants]

    def variant(self, name: str) -> VariantConfig:
        for v in self.variants:
            if v.name == name:
                return v
        raise ConfigError(f"experiment {self.name!r} has no variant {name!r}; variants: "
                          f"{', '.join(v.name for v in self.variants)}")


DEFAULT_EXPERIMENT = ExperimentConfig(name="default", salt="default", control="champion",
                                      variants=[VariantConfig(name="champion", alias="champion", weight=1)])


def load_experiment(path: Path) -> ExperimentConfig:
    """Read and check an experiment file; a missing file means :data:`DEFAULT_EXPERIMENT`."""
    from t2s.fileio import first_validation_error, read_yaml_mapping

    if not path.exists():
        return DEFAULT_EXPERIMENT
    raw = read_yaml_mapping(path, ConfigError, "name, salt and variants")
    try:
        return ExperimentConfig.model_validate(raw)
    except ValidationError as exc:
        field, msg = first_validation_error(exc)
        raise ConfigError(msg, file=path, field=field) from exc


@dataclass(frozen=True)
class DatabaseSpec:
    name: str
    engine: str
    location: str  # file path or DSN
    schema: str | None = None


def parse_database(name: str, spec: str) -> DatabaseSpec:
    """One ``T2S_SERVE_DATABASES`` entry → where it lives. Dataset directories are resolved now."""
    from t2s.datasets import db_locations, load_manifest

    for engine in ("sqlite", "duckdb", "postgres"):
        if spec.startswith(engine + ":"):
            rest = spec[len(engine) + 1:]
            if engine == "postgres":
                dsn, _, schema = rest.partition("#")
                return DatabaseSpec(name, engine, dsn, schema or None)
            return DatabaseSpec(name, engine, str(Path(rest).resolve()))
    root, _, db_id = spec.partition("#")
    try:
        manifest = load_manifest(Path(root))
    except Exception as exc:
        raise ConfigError(f"served database {name!r}: {spec!r} is neither sqlite:/duckdb:/postgres: nor a "
                          f"dataset directory ({exc}); fix T2S_SERVE_DATABASES", field="serve_databases") from exc
    from t2s.datasets import Dataset

    ds = Dataset(Path(root), manifest, [])
    if not db_id:
        if len(manifest.databases) != 1:
            raise ConfigError(f"served database {name!r}: dataset {root} has several databases; name one as "
                              f"{root}#DB_ID ({', '.join(sorted(manifest.databases))})", field="serve_databases")
        db_id = next(iter(manifest.databases))
    location = db_locations(ds, db_id)[0]
    if manifest.engine == "postgres":
        return DatabaseSpec(name, "postgres", "", location)
    return DatabaseSpec(name, manifest.engine, location)
