"""Versioned prompts: one YAML file per version under ``prompts/<name>/v<N>.yaml``.

A prompt version is data reviewed in git and mirrored in the MLflow Prompt Registry. Its template uses
``{{var}}`` placeholders (the registry's syntax); the variables it uses must be declared, and only the
variables the generator provides exist (:data:`KNOWN_VARIABLES`). Once a version is registered it is
immutable: ``versions.lock.json`` beside the files records each registered version's content hash, and
loading an edited registered version is refused with a message telling the engineer to add a new version.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from t2s.errors import PromptError
from t2s.fileio import first_validation_error, read_yaml_mapping
from t2s.strategy import StrategySettings

KNOWN_VARIABLES: dict[str, str] = {
    "question": "the user's question",
    "schema": "the schema context built from the live database (t2s.schema_context)",
    "dialect": "the SQL dialect the model must write",
    "examples": "few-shot question/SQL pairs retrieved from the training split",
    "evidence": "external knowledge attached to the question (BIRD-style), or empty",
    "conversation": "the earlier turns of a follow-up question's conversation (question and SQL each), or "
                    "'(none)' for a first question",
}
PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}")
FILE_NAME = re.compile(r"^v(\d+)\.ya?ml$")
LOCK_FILE = "versions.lock.json"


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str = Field(min_length=1)


class ModelParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(0.0, ge=0.0, le=2.0)
    max_tokens: int = Field(512, ge=1, le=16384)
    stop: list[str] = Field(default_factory=list)
    seed: int | None = 0


class SchemaSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    style: Literal["create_table", "compact", "ddl"] = Field(
        "create_table", description="create_table: rendered from introspection, tables by name; compact: one line "
                                    "per table; ddl: the database's own CREATE statements, in its own table order "
                                    "(SQLite; other engines get create_table in database order).")
    include_keys: bool = True
    sample_values: int = Field(0, ge=0, le=20, description="Distinct example values shown per column.")
    example_rows: int = Field(0, ge=0, le=10, description="First rows shown under each table (SELECT * … LIMIT n).")
    row_counts: bool = False
    max_tokens: int = Field(2000, ge=50, le=100_000, description="Budget; larger schemas are narrowed by retrieval.")


class FewShotSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    k: int = Field(0, ge=0, le=20)
    split: str = Field("train", pattern=r"^[A-Za-z0-9_-]+$", description="<split>.jsonl beside the dataset.")
    selector: Literal["bm25", "masked_similarity"] = Field(
        "bm25", description="bm25 over raw questions, or masked-question similarity (t2s.example_selection).")


class PromptSpec(BaseModel):
    """One prompt version, exactly as its YAML file says."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    version: int = Field(ge=1)
    description: str = Field(min_length=1, description="What this version changes, for reviewers.")
    dialect: str = "sqlite"
    variables: list[str]
    messages: list[Message] = Field(min_length=1)
    model: ModelParams = Field(default_factory=ModelParams)
    schema_context: SchemaSettings = Field(default_factory=SchemaSettings)
    few_shot: FewShotSettings = Field(default_factory=FewShotSettings)
    strategy: StrategySettings = Field(default_factory=StrategySettings,
                                       description="What the generator does around the model call (t2s.strategy).")

    @model_validator(mode="after")
    def _placeholders_match_variables(self) -> PromptSpec:
        used: dict[str, str] = {}
        for i, msg in enumerate(self.messages):
            for raw in PLACEHOLDER.findall(msg.content):
                if not re.fullmatch(r"[A-Za-z_]\w*", raw):
                    raise ValueError(f"messages[{i}].content: malformed placeholder {{{{{raw}}}}} "
                                     "(write {{name}} with no spaces)")
                used.setdefault(raw, f"messages[{i}].content")
        for var in self.variables:
            if var not in KNOWN_VARIABLES:
                raise ValueError(f"unknown variable {var!r} in 'variables'; available: {', '.join(KNOWN_VARIABLES)}")
        for var, where in used.items():
            if var not in self.variables:
                raise ValueError(f"{where} uses {{{{{var}}}}} which is not declared in 'variables'")
        for var in self.variables:
            if var not in used:
                raise ValueError(f"variable {var!r} is declared but no message uses {{{{{var}}}}}")
        if ("examples" in used) != (self.few_shot.k > 0):
            raise ValueError("few_shot.k > 0 needs an {{examples}} placeholder, and {{examples}} needs few_shot.k > 0")
        from sqlglot.dialects.dialect import Dialect

        try:
            Dialect.get_or_raise(self.dialect)
        except ValueError as exc:
            raise ValueError(f"unknown SQL dialect {self.dialect!r}") from exc
        return self

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def uri(self) -> str:
        return f"prompts:/{self.name}/{self.version}"

    def canonical(self) -> dict[str, Any]:
        """The spec as JSON data. Settings added after versions were registered (``strategy``,
        ``few_shot.selector``, ``schema_context.example_rows``) are left out while at their defaults, so
        those versions keep their hash."""
        data = self.model_dump(mode="json")
        if not self.schema_context.example_rows:
            data["schema_context"].pop("example_rows")
        if self.strategy == StrategySettings():
            data.pop("strategy")
        if self.few_shot.selector == "bm25":
            data["few_shot"].pop("selector")
        return data

    def content_hash(self) -> str:
        """sha256 of the canonical JSON of the whole spec (strategy included): any change of meaning changes it."""
        blob = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    def render(self, values: dict[str, str]) -> list[dict[str, str]]:
        """Chat messages with every placeholder filled; a declared variable without a value is an error."""
        missing = [v for v in self.variables if values.get(v) is None]
        if missing:
            raise PromptError(f"missing value for variable(s) {', '.join(missing)} when rendering {self.ref}")
        return [{"role": m.role, "content": PLACEHOLDER.sub(lambda mt: str(values[mt.group(1)]), m.content)}
                for m in self.messages]

    def registry_template(self) -> list[dict[str, str]]:
        return [{"role": m.role, "content": m.content} for m in self.messages]


class PromptFile(BaseModel):
    spec: PromptSpec
    path: Path
    text: str


def load_prompt_file(path: Path) -> PromptFile:
    m = FILE_NAME.match(path.name)
    if not m:
        raise PromptError("prompt files are named v<N>.yaml", file=path)
    text = path.read_text(encoding="utf-8")
    raw = read_yaml_mapping(path, PromptError, "name, version, description, variables and messages", text)
    try:
        spec = PromptSpec.model_validate(raw)
    except ValidationError as exc:
        field, msg = first_validation_error(exc)
        raise PromptError(msg, file=path, field=field) from exc
    if spec.name != path.parent.name:
        raise PromptError(f"name {spec.name!r} does not match its folder {path.parent.name!r}", file=path, field="name")
    if spec.version != int(m.group(1)):
        raise PromptError(f"version {spec.version} does not match the file name {path.name}", file=path,
                          field="version")
    return PromptFile(spec=spec, path=path, text=text)


def read_lock(folder: Path) -> dict[int, str]:
    path = folder / LOCK_FILE
    if not path.is_file():
        return {}
    try:
        return {int(k): str(v) for k, v in json.loads(path.read_text(encoding="utf-8")).items()}
    except (ValueError, AttributeError) as exc:
        raise PromptError(f"unreadable lock file: {exc}", file=path) from exc


def write_lock(folder: Path, lock: dict[int, str]) -> None:
    from t2s.fileio import write_text_atomic

    write_text_atomic(folder / LOCK_FILE, json.dumps({str(k): v for k, v in sorted(lock.items())}, indent=2) + "\n")


def check_unchanged(pf: PromptFile, lock: dict[int, str]) -> None:
    registered = lock.get(pf.spec.version)
    if registered is not None and registered != pf.spec.content_hash():
        raise PromptError(
            f"version {pf.spec.version} was changed after it was registered (registered hash {registered[:12]}, "
            f"file now {pf.spec.content_hash()[:12]}). Registered versions are immutable: revert this edit "
            f"and put the change in a new version file (v{max(lock) + 1}.yaml or later)",
            file=pf.path)


class PromptLibrary:
    """All prompt files under a directory, validated, with registered versions checked for edits."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def names(self) -> list[str]:
        if not self.root.is_dir():
            raise PromptError("prompts directory not found (set T2S_PROMPTS_DIR)", file=self.root)
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and any(p.glob("v*.yaml")))

    def versions(self, name: str) -> list[PromptFile]:
        folder = self.root / name
        if not folder.is_dir():
            raise PromptError(f"no prompt named {name!r}; known: {', '.join(self.names()) or 'none'}", file=folder)
        files = sorted((p for p in folder.glob("v*.y*ml") if FILE_NAME.match(p.name)),
                       key=lambda p: int(FILE_NAME.match(p.name).group(1)))  # type: ignore[union-attr]
        loaded = [load_prompt_file(p) for p in files]
        numbers = [pf.spec.version for pf in loaded]
        if numbers != list(range(1, len(numbers) + 1)):
            raise PromptError(f"versions must be numbered 1..N without gaps, found {numbers}", file=folder)
        lock = read_lock(folder)
        for pf in loaded:
            check_unchanged(pf, lock)
        return loaded

    def get(self, name: str, version: int) -> PromptFile:
        for pf in self.versions(name):
            if pf.spec.version == version:
                return pf
        raise PromptError(f"{name} has no version {version}", file=self.root / name)


def parse_ref(ref: str) -> tuple[str, str | None]:
    """``name``, ``name@3``, ``name@champion`` → (name, selector or None)."""
    name, _, selector = ref.partition("@")
    if not name:
        raise PromptError(f"bad prompt reference {ref!r}: use NAME, NAME@VERSION or NAME@ALIAS")
    return name, selector or None


def unified_diff(a: PromptFile, b: PromptFile) -> str:
    return "".join(difflib.unified_diff(a.text.splitlines(keepends=True), b.text.splitlines(keepends=True),
                                        fromfile=str(a.path), tofile=str(b.path)))


# --- the MLflow Prompt Registry -------------------------------------------------------------------------

HASH_TAG = "t2s.content_hash"


def _registry_version(client: Any, name: str, version: int) -> Any | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_prompt_version(name, version)
    except MlflowException:
        return None


def resolve_version(name: str, selector: str | None, library: PromptLibrary) -> int:
    """A version number from ``None`` (latest file), a number, or a registry alias."""
    if selector is None:
        return library.versions(name)[-1].spec.version
    if selector.isdigit():
        return int(selector)
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        return int(MlflowClient().get_prompt_version_by_alias(name, selector).version)
    except MlflowException as exc:
        raise PromptError(f"alias {selector!r} of prompt {name!r} is not set in the registry") from exc


def push(library: PromptLibrary, names: list[str] | None = None) -> list[tuple[str, int, str]]:
    """Register every file version the registry does not have yet; idempotent.

    All files are validated and every already-registered version is compared with its file before
    anything is registered, so a bad file leaves the registry untouched. Returns (name, version, action)
    with action ``registered`` or ``unchanged``.
    """
    from mlflow import MlflowClient

    client = MlflowClient()
    plan: list[tuple[PromptFile, bool]] = []
    for name in names or library.names():
        files = library.versions(name)
        first_missing: int | None = None
        for pf in files:
            existing = _registry_version(client, name, pf.spec.version)
            if existing is None:
                first_missing = first_missing or pf.spec.version
                plan.append((pf, True))
                continue
            if first_missing is not None:
                raise PromptError(f"registry has version {pf.spec.version} of {name} but not version "
                                  f"{first_missing}; the registry and the files disagree", file=pf.path)
            if (existing.tags or {}).get(HASH_TAG) != pf.spec.content_hash():
                raise PromptError(
                    f"registry version {pf.spec.version} of {name} has different content (hash "
                    f"{(existing.tags or {}).get(HASH_TAG, '?')[:12]}); registered versions are immutable: "
                    "add a new version file instead of editing this one", file=pf.path)
            plan.append((pf, False))
        if _registry_version(client, name, len(files) + 1) is not None:
            raise PromptError(f"registry has a version {len(files) + 1} of {name} with no file "
                              f"v{len(files) + 1}.yaml; the registry and the files disagree", file=library.root / name)
    done = []
    for pf, new in plan:
        spec = pf.spec
        if new:
            version = client.register_prompt(
                name=spec.name, template=spec.registry_template(), commit_message=spec.description,
                tags={HASH_TAG: spec.content_hash(), "t2s.file": str(pf.path), "t2s.dialect": spec.dialect,
                      "t2s.spec": json.dumps({k: v for k, v in spec.canonical().items() if k != "messages"},
                                           sort_keys=True)},
                model_config={"temperature": spec.model.temperature, "max_tokens": spec.model.max_tokens,
                              **({"stop_sequences": spec.model.stop} if spec.model.stop else {})},
            )
            if int(version.version) != spec.version:
                raise PromptError(f"registry assigned version {version.version} to {pf.path.name}; "
                                  "the registry and the files disagree", file=pf.path)
        lock = read_lock(pf.path.parent)
        if lock.get(spec.version) != spec.content_hash():
            lock[spec.version] = spec.content_hash()
            write_lock(pf.path.parent, lock)
        done.append((spec.name, spec.version, "registered" if new else "unchanged"))
    return done


def registry_spec(uri: str) -> PromptSpec:
    """Rebuild a spec from the registry alone (``prompts:/name/3`` or ``prompts:/name@champion``)."""
    import mlflow.genai

    version = mlflow.genai.load_prompt(uri, cache_ttl_seconds=0)
    tags = version.tags or {}
    if "t2s.spec" not in tags:
        raise PromptError(f"{uri} was not registered by t2s (no t2s.spec tag)")
    data = json.loads(tags["t2s.spec"])
    data["messages"] = version.template
    spec = PromptSpec.model_validate(data)
    if spec.content_hash() != tags.get(HASH_TAG):
        raise PromptError(f"{uri}: registry content does not match its recorded hash")
    return spec
