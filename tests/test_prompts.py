"""Versioned prompt files, rendering, immutability and the MLflow Prompt Registry (a real sqlite store)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cli.main import app
from t2s.errors import PromptError
from t2s.prompts import PromptLibrary, load_prompt_file, push, read_lock, registry_spec
from t2s.settings import get_settings
from t2s.tracking import configure_mlflow
from tests.conftest import ROOT

SHIPPED = ROOT / "prompts"
GOOD = {
    "name": "demo", "version": 1, "description": "first", "dialect": "sqlite",
    "variables": ["schema", "question"],
    "messages": [{"role": "system", "content": "Write SQL."}, {"role": "user", "content": "{{schema}}\nQ: {{question}}"}],
}


def write(folder: Path, number: int, **changes: object) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    data = {**GOOD, "name": folder.name, "version": number, **changes}
    path = folder / f"v{number}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture
def library(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PromptLibrary:
    root = tmp_path / "prompts"
    write(root / "demo", 1)
    write(root / "demo", 2, description="second", messages=[
        {"role": "user", "content": "Schema:\n{{schema}}\nQuestion: {{question}}\nAnswer in SQL."}])
    monkeypatch.setenv("T2S_PROMPTS_DIR", str(root))
    get_settings.cache_clear()
    configure_mlflow(get_settings())
    return PromptLibrary(root)


def test_shipped_prompts_are_valid_and_distinct() -> None:
    files = PromptLibrary(SHIPPED).versions("sql-analyst")
    assert [pf.spec.version for pf in files] == list(range(1, len(files) + 1)) and len(files) >= 7
    assert len({pf.spec.content_hash() for pf in files}) == len(files)
    assert [pf.spec.strategy.kind for pf in files[:7]] == ["single"] * 3 + ["repair"] * 2 + ["self_consistency"] * 2
    assert files[0].spec.schema_context.sample_values == 0 and files[1].spec.schema_context.sample_values > 0
    assert files[2].spec.few_shot.k > 0 and "examples" in files[2].spec.variables
    assert read_lock(SHIPPED / "sql-analyst"), "shipped versions are registered: versions.lock.json is committed"


@pytest.mark.parametrize(("changes", "field", "message"), [
    ({"variables": ["schema", "question", "colour"]}, "", "unknown variable 'colour'"),
    ({"variables": ["schema"]}, "", "not declared"),
    ({"variables": ["schema", "question", "dialect"]}, "", "declared but no message uses"),
    ({"messages": [{"role": "user", "content": "{{ schema }} {{question}}"}]}, "", "malformed placeholder"),
    ({"messages": [{"role": "robot", "content": "{{schema}} {{question}}"}]}, "messages.0.role", "'system', 'user'"),
    ({"temperature": 0.3}, "temperature", "Extra inputs"),
    ({"model": {"temperature": 5}}, "model.temperature", "less than or equal"),
    ({"dialect": "klingon"}, "", "unknown SQL dialect"),
    ({"description": ""}, "description", "at least 1"),
    ({"few_shot": {"k": 2}}, "", "few_shot.k > 0 needs an {{examples}}"),
    ({"name": "other"}, "name", "does not match its folder"),
    ({"version": 7}, "version", "does not match the file name"),
    ({"schema_context": {"style": "ddl-ish"}}, "schema_context.style", "'create_table', 'compact' or 'ddl'"),
    ({"schema_context": {"example_rows": 11}}, "schema_context.example_rows", "less than or equal to 10"),
    ({"schema_context": {"example_rows": -1}}, "schema_context.example_rows", "greater than or equal to 0"),
])
def test_malformed_prompt_files_name_file_and_field(tmp_path: Path, changes: dict, field: str, message: str) -> None:
    path = write(tmp_path / "demo", 1, **changes)
    with pytest.raises(PromptError, match=message) as err:
        load_prompt_file(path)
    assert str(path) in str(err.value)
    if field:
        assert err.value.field == field


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "demo" / "v1.yaml"
    path.parent.mkdir()
    path.write_text("name: demo\nversion: 1\nmessages: [\n  - broken\n")
    with pytest.raises(PromptError, match="invalid YAML") as err:
        load_prompt_file(path)
    assert err.value.line is not None


def test_render_fills_placeholders_and_refuses_missing_values(library: PromptLibrary) -> None:
    spec = library.get("demo", 2).spec
    messages = spec.render({"schema": "CREATE TABLE t (a INT);", "question": "How many?", "unused": "x"})
    assert messages == [{"role": "user", "content": "Schema:\nCREATE TABLE t (a INT);\nQuestion: How many?\n"
                                                   "Answer in SQL."}]
    with pytest.raises(PromptError, match="missing value for variable"):
        spec.render({"schema": "x"})


def test_push_is_idempotent_and_round_trips(library: PromptLibrary) -> None:
    assert push(library) == [("demo", 1, "registered"), ("demo", 2, "registered")]
    assert push(library) == [("demo", 1, "unchanged"), ("demo", 2, "unchanged")]
    lock = read_lock(library.root / "demo")
    assert set(lock) == {1, 2}
    spec = library.get("demo", 2).spec
    assert registry_spec("prompts:/demo/2") == spec


def test_editing_a_registered_version_is_refused(library: PromptLibrary) -> None:
    push(library)
    path = library.root / "demo" / "v1.yaml"
    path.write_text(path.read_text().replace("Write SQL.", "Write better SQL."))
    with pytest.raises(PromptError, match=r"changed after it was registered.*new version file"):
        library.versions("demo")
    # Even with the lock file gone, the registry itself refuses the edit.
    (library.root / "demo" / "versions.lock.json").unlink()
    with pytest.raises(PromptError, match="registered versions are immutable"):
        push(library)


def test_a_bad_new_version_registers_nothing(library: PromptLibrary) -> None:
    from mlflow import MlflowClient

    write(library.root / "demo", 3, variables=["schema", "question", "nonsense"])
    with pytest.raises(PromptError, match="nonsense"):
        push(library)
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException):
        MlflowClient().get_prompt_version("demo", 1)
    assert not (library.root / "demo" / "versions.lock.json").exists()


def test_registry_ahead_of_files_is_detected(library: PromptLibrary) -> None:
    push(library)
    shutil.rmtree(library.root / "demo")
    write(library.root / "demo", 1)
    with pytest.raises(PromptError, match=r"with no file v2\.yaml"):
        push(library)


def test_cli_list_show_diff_push_and_alias(library: PromptLibrary) -> None:
    runner = CliRunner()
    pushed = runner.invoke(app, ["prompts", "push"], terminal_width=200)
    assert pushed.exit_code == 0, pushed.output
    assert pushed.output.count("registered") == 2
    from mlflow import MlflowClient

    MlflowClient().set_prompt_alias("demo", "champion", 1)
    listed = runner.invoke(app, ["prompts", "list"], terminal_width=200)
    assert "champion→v1" in listed.output and "2/2" in listed.output
    shown = runner.invoke(app, ["prompts", "show", "demo@champion"], terminal_width=200)
    assert shown.exit_code == 0 and "demo@1" in shown.output
    diffed = runner.invoke(app, ["prompts", "diff", "demo", "champion", "2"], terminal_width=200)
    assert "+description: second" in diffed.output and "-description: first" in diffed.output
    missing = runner.invoke(app, ["prompts", "show", "demo@challenger"])
    assert missing.exit_code == 2 and "alias 'challenger'" in missing.output
    unknown = runner.invoke(app, ["prompts", "show", "nope"])
    assert unknown.exit_code == 2 and "no prompt named 'nope'" in unknown.output
