"""The first-deploy path: a champion exported from one registry and imported into an empty one
(``t2s tracking export`` / ``import``), then served. The slow test runs it against the tracking server as it
runs on AWS (PostgreSQL, S3 artifacts, basic auth): the serving app answers liveness but not readiness while
there is no champion yet, the ``serving`` user cannot import, ``deploy`` can, and the app then serves."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from cli.main import app as cli_app

runner = CliRunner()


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory, shop_db: Path) -> Iterator[dict[str, Any]]:
    """A registry (sqlite) with champion = prompt demo@1 and challenger = demo@2, as `make demo` leaves.
    Tests only export from it."""
    from tests.serving_support import FakeOpenAI, answer, build_registry

    fake = FakeOpenAI()
    fake.responder = answer
    reg = build_registry(tmp_path_factory.mktemp("source"), shop_db, fake.url)
    reg["fake"] = fake
    yield reg
    fake.close()


def _use(uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from t2s.settings import get_settings

    monkeypatch.setenv("T2S_MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    get_settings.cache_clear()


def test_export_then_import_into_an_empty_registry(source: dict[str, Any], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow import MlflowClient

    from infra.registry_bundle import read_bundle
    from t2s.bundle import REGISTERED_MODEL
    from t2s.prompts import registry_spec

    _use(source["tracking_uri"], monkeypatch)
    out = tmp_path / "champion.json"
    exported = runner.invoke(cli_app, ["tracking", "export", "--out", str(out)], terminal_width=200)
    assert exported.exit_code == 0, exported.output
    bundle = read_bundle(out)
    assert bundle["config"]["prompt_uri"] == "prompts:/demo/1" and [v["version"] for v in bundle["prompt"]["versions"]] == [1]
    assert bundle["metrics"]["execution_accuracy"] == pytest.approx(0.6)

    target = f"sqlite:///{tmp_path / 'target.db'}"
    _use(target, monkeypatch)
    imported = runner.invoke(cli_app, ["tracking", "import", str(out)], terminal_width=200)
    assert imported.exit_code == 0, imported.output
    client = MlflowClient(target, target)
    champion = client.get_model_version_by_alias(REGISTERED_MODEL, "champion")
    assert registry_spec("prompts:/demo@champion").version == 1  # the prompt, hash-checked, under its number
    assert client.get_run(champion.tags["t2s.variant_run_id"]).data.metrics["execution_accuracy"] == pytest.approx(0.6)

    again = runner.invoke(cli_app, ["tracking", "import", str(out)], terminal_width=200)
    assert again.exit_code == 0 and "nothing to do" in again.output
    assert client.get_model_version_by_alias(REGISTERED_MODEL, "champion").version == champion.version

    # another bundle does not silently replace a champion
    _use(source["tracking_uri"], monkeypatch)
    other = tmp_path / "challenger.json"
    assert runner.invoke(cli_app, ["tracking", "export", "--alias", "challenger", "--out", str(other)]).exit_code == 0
    _use(target, monkeypatch)
    refused = runner.invoke(cli_app, ["tracking", "import", str(other), "--alias", "champion"], terminal_width=200)
    assert refused.exit_code == 2 and "--force" in refused.output
    forced = runner.invoke(cli_app, ["tracking", "import", str(other), "--alias", "champion", "--force"])
    assert forced.exit_code == 0, forced.output
    assert registry_spec("prompts:/demo@champion").version == 2  # versions 1 and 2 both present, in order


def test_a_tampered_or_foreign_file_is_refused(source: dict[str, Any], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    _use(source["tracking_uri"], monkeypatch)
    out = tmp_path / "champion.json"
    assert runner.invoke(cli_app, ["tracking", "export", "--out", str(out)]).exit_code == 0
    bundle = json.loads(out.read_text())
    bundle["config"]["llm"]["model"] = "someone-elses-model"
    out.write_text(json.dumps(bundle))
    _use(f"sqlite:///{tmp_path / 'target.db'}", monkeypatch)
    tampered = runner.invoke(cli_app, ["tracking", "import", str(out)], terminal_width=200)
    assert tampered.exit_code == 2 and "sha256" in tampered.output
    (tmp_path / "x.json").write_text("{}")
    foreign = runner.invoke(cli_app, ["tracking", "import", str(tmp_path / "x.json")], terminal_width=200)
    assert foreign.exit_code == 2 and "t2s tracking export" in foreign.output
    empty = runner.invoke(cli_app, ["tracking", "export", "--out", str(tmp_path / "none.json")], terminal_width=200)
    assert empty.exit_code == 2 and "nothing to export" in empty.output


@pytest.mark.slow
@pytest.mark.postgres
def test_first_deploy_serves_no_champion_yet_then_the_bootstrapped_one(
        source: dict[str, Any], postgres_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import uuid

    from fastapi.testclient import TestClient
    from psycopg.conninfo import conninfo_to_dict

    from infra.tracking_server import TrackingServer
    from serving.app import create_app
    from tests.serving_support import make_settings
    from tests.test_infra_db import PASSWORDS

    _use(source["tracking_uri"], monkeypatch)
    out = tmp_path / "champion.json"
    assert runner.invoke(cli_app, ["tracking", "export", "--out", str(out)]).exit_code == 0

    pg = conninfo_to_dict(postgres_dsn)
    backend = f"postgresql+psycopg://{pg['user']}@{pg['host']}:{pg['port']}/mlflow_first_{uuid.uuid4().hex[:6]}"
    with TrackingServer(backend, workers=1, auth_passwords=PASSWORDS, log_path=tmp_path / "mlflow.log") as srv:
        _use(srv.url, monkeypatch)
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "serving")  # what the API task runs as
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORDS["serving"])
        reg = {**source, "tracking_uri": srv.url}
        experiment = tmp_path / "champion.yaml"
        experiment.write_text(yaml.safe_dump({"name": "first", "salt": "s", "control": "champion", "variants": [
            {"name": "champion", "alias": "champion", "weight": 100}]}, sort_keys=False))
        settings = make_settings(reg, f"sqlite:///{tmp_path / 'store.db'}", experiment,
                                 llm_provider="compatible", llm_model="fake-model", llm_base_url=source["fake"].url)
        with TestClient(create_app(settings)) as http:
            # no champion yet: the load balancer's liveness check passes, readiness says why
            assert http.get("/health").status_code == 200
            ready = http.get("/health/ready")
            assert ready.status_code == 503 and "no alias @champion" in ready.text
            # the API's user may read the registry but not register a champion
            refused = runner.invoke(cli_app, ["tracking", "import", str(out)], terminal_width=200)
            assert refused.exit_code == 2 and "deploy or admin" in refused.output
            monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "deploy")
            monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORDS["deploy"])
            imported = runner.invoke(cli_app, ["tracking", "import", str(out)], terminal_width=200)
            assert imported.exit_code == 0, imported.output
            monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "serving")
            monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORDS["serving"])
            assert http.post("/admin/reload").status_code == 200
            assert http.get("/health/ready").status_code == 200
            r = http.post("/v1/sql", json={"question": "How many customers are there?", "database": "shop",
                                           "user_id": "u1"})
            assert r.status_code == 200, r.text
            assert r.json()["rows"] == [[5]] and r.json()["prompt_version"] == "demo@1"
