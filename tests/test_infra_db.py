"""What the tasks' start-up code does to a real PostgreSQL server (as on RDS, where the master user is not a
superuser): ``infra.db_init`` gives each service its own least-privilege user and database, and
``infra.tracking_auth`` runs the tracking server with basic auth where only admins and ``deploy`` move
aliases."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

pytestmark = pytest.mark.postgres


@pytest.fixture
def master(postgres_dsn: str) -> Iterator[str]:
    """A CREATEROLE CREATEDB user that is not a superuser: what RDS's master user is."""
    import psycopg

    name = f"master_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_dsn, autocommit=True) as c:
        c.execute(f"CREATE ROLE {name} LOGIN CREATEROLE CREATEDB")
    yield f"{postgres_dsn} user={name}"


def _q(dsn: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as c:
        cur = c.execute(sql, args)
        return cur.fetchall() if cur.description else []


def test_each_service_gets_its_own_least_privilege_user(master: str, postgres_dsn: str) -> None:
    import psycopg

    from infra.db_init import ServiceDb, ensure_service_db, service_db

    assert service_db("tracking") == ServiceDb("mlflow", "mlflow_owner", ("mlflow", "mlflow_auth"))
    assert service_db("api").login == "t2s_app"
    tag = uuid.uuid4().hex[:6]
    api = ServiceDb(f"app_{tag}", f"app_owner_{tag}", (f"store_{tag}",))
    tracking = ServiceDb(f"ml_{tag}", f"ml_owner_{tag}", (f"ml_{tag}", f"ml_{tag}_auth"))

    errors: list[BaseException] = []

    def run(spec: ServiceDb) -> None:
        try:
            ensure_service_db(master, spec, spec.login, "pw-" + spec.login)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in (api, tracking, api, tracking)]  # tasks starting together
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert ensure_service_db(master, api, api.login, "other") == []  # idempotent: nothing left to do

    for spec in (api, tracking):
        ((sup, createdb, createrole, login),) = _q(
            postgres_dsn, "SELECT rolsuper, rolcreatedb, rolcreaterole, rolcanlogin FROM pg_roles WHERE rolname=%s",
            spec.login)
        assert (sup, createdb, createrole, login) == (False, False, False, True)
        assert _q(postgres_dsn, "SELECT rolcanlogin FROM pg_roles WHERE rolname=%s", spec.owner) == [(False,)]
        for db in spec.databases:
            assert _q(postgres_dsn, "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname=%s", db) == [(spec.owner,)]
    # one service's user cannot open the other's database
    assert _q(postgres_dsn, "SELECT has_database_privilege(%s, %s, 'CONNECT')", tracking.login, api.databases[0]) == [(False,)]
    assert _q(postgres_dsn, "SELECT has_database_privilege(%s, %s, 'CONNECT')", api.login, tracking.databases[0]) == [(False,)]
    with pytest.raises(psycopg.OperationalError, match="permission denied"):
        psycopg.connect(f"{postgres_dsn} user={tracking.login} dbname={api.databases[0]}").close()

    # The service connects with PGOPTIONS=-c role=<owner>: its tables belong to the owner role, so the
    # rotation's clone user (granted the original's memberships) can use and migrate them.
    app = f"{postgres_dsn} user={api.login} dbname={api.databases[0]} options='-c role={api.owner}'"
    _q(app, "CREATE TABLE requests (id int)")
    assert _q(postgres_dsn.replace("dbname=postgres", f"dbname={api.databases[0]}"),
              "SELECT tableowner FROM pg_tables WHERE tablename='requests'") == [(api.owner,)]
    _q(postgres_dsn, f"CREATE ROLE {api.login}_clone LOGIN")
    _q(postgres_dsn, f"GRANT {api.owner} TO {api.login}_clone")
    clone = f"{postgres_dsn} user={api.login}_clone dbname={api.databases[0]} options='-c role={api.owner}'"
    _q(clone, "ALTER TABLE requests ADD COLUMN variant text")
    _q(clone, "INSERT INTO requests VALUES (1, 'A')")
    assert _q(app, "SELECT variant FROM requests") == [("A",)]
    # after a rotation the init container sees the clone in the secret and changes nothing
    assert ensure_service_db(master, api, f"{api.login}_clone", "x") == []
    from t2s.errors import ConfigError

    with pytest.raises(ConfigError, match="expected"):
        ensure_service_db(master, api, "postgres", "x")


def test_db_init_command_reports_a_missing_secret(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from infra.db_init import main

    monkeypatch.delenv("T2S_DB_LOGIN_USER", raising=False)
    assert main(["--service", "api"]) == 1
    assert "T2S_DB_LOGIN_PASSWORD" in capsys.readouterr().err
    assert main(["--service", "nope"]) == 1


PASSWORDS = {"admin": "admin-password-1", "deploy": "deploy-password-1", "serving": "serving-password-1"}


@pytest.mark.slow
def test_tracking_server_only_admins_and_deploy_move_aliases(postgres_dsn: str, tmp_path: Any,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    import httpx
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from mlflow.server.auth.client import AuthServiceClient
    from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore as AuthStore
    from psycopg.conninfo import conninfo_to_dict

    from infra.tracking_auth import prepare
    from infra.tracking_server import TrackingServer
    from t2s.bundle import REGISTERED_MODEL

    pg = conninfo_to_dict(postgres_dsn)
    backend = f"postgresql+psycopg://{pg['user']}@{pg['host']}:{pg['port']}/mlflow_auth_{uuid.uuid4().hex[:6]}"
    with TrackingServer(backend, workers=1, auth_passwords=PASSWORDS, log_path=tmp_path / "mlflow.log") as srv:
        def as_user(user: str, password: str | None = None) -> MlflowClient:
            monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
            monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password or PASSWORDS.get(user, ""))
            return MlflowClient(srv.url, srv.url)

        with httpx.Client(trust_env=False) as http:
            assert http.get(f"{srv.url}/health").status_code == 200  # the load balancer's check needs no login
            anonymous = http.get(f"{srv.url}/api/2.0/mlflow/registered-models/get", params={"name": REGISTERED_MODEL})
            assert anonymous.status_code == 401

        deploy = as_user("deploy")
        exp = deploy.create_experiment("bootstrap")
        run = deploy.create_run(exp)
        deploy.log_text(run.info.run_id, "bundle", "generator/MLmodel")
        version = deploy.create_model_version(REGISTERED_MODEL, f"{run.info.artifact_uri}/generator",
                                              run_id=run.info.run_id)
        deploy.set_registered_model_alias(REGISTERED_MODEL, "champion", version.version)

        serving = as_user("serving")
        assert serving.get_model_version_by_alias(REGISTERED_MODEL, "champion").version == version.version
        with pytest.raises(MlflowException, match=r"(?i)permission"):
            serving.set_registered_model_alias(REGISTERED_MODEL, "challenger", version.version)

        as_user("admin")
        AuthServiceClient(srv.url).create_user("ana", "engineer-password-1")
        ana = as_user("ana", "engineer-password-1")
        ana_exp = ana.create_experiment("ana-sweep")  # engineers log their own runs ...
        ana.log_metric(ana.create_run(ana_exp).info.run_id, "execution_accuracy", 0.5)
        for move in (lambda: ana.set_registered_model_alias(REGISTERED_MODEL, "champion", version.version),
                     lambda: ana.delete_registered_model_alias(REGISTERED_MODEL, "champion"),
                     lambda: ana.create_model_version(REGISTERED_MODEL, f"{run.info.artifact_uri}/generator",
                                                      run_id=run.info.run_id)):
            with pytest.raises(MlflowException, match=r"(?i)permission"):  # ... but cannot change production
                move()
        admin = as_user("admin")
        admin.set_registered_model_alias(REGISTERED_MODEL, "challenger", version.version)

        with pytest.raises(MlflowException, match=r"(?i)401|unauthori"):
            as_user("serving", "not-the-password").get_registered_model(REGISTERED_MODEL)

    # rotation: a new secret value is applied when a task starts; the old password no longer authenticates
    rotated = {**PASSWORDS, "serving": "serving-password-2"}
    assert prepare(backend, srv.auth_db_uri, rotated) == ["updated user serving"]
    assert prepare(backend, srv.auth_db_uri, rotated) == []  # the next task to start changes nothing
    store = AuthStore()
    store.init_db(srv.auth_db_uri)
    assert not store.authenticate_user("serving", PASSWORDS["serving"], use_primary=True)
    assert store.authenticate_user("serving", "serving-password-2", use_primary=True)
    assert sorted(u.username for u in store.list_users() if u.is_admin) == ["admin", "deploy"]
    store.engine.dispose()


@pytest.mark.slow
def test_the_tracking_containers_command_starts_an_authenticated_server(postgres_dsn: str, tmp_path: Any) -> None:
    """The exact command the stack gives the tracking container (no user in the URIs: libpq's PGUSER, as
    there), on local PostgreSQL and a moto S3, with the passwords as ECS injects them."""
    import os
    import subprocess
    import sys
    import time

    import boto3
    import httpx
    from moto.server import ThreadedMotoServer
    from psycopg.conninfo import conninfo_to_dict

    from infra.tracking_auth import password_env, server_command
    from infra.tracking_server import ensure_database, free_port

    pg = conninfo_to_dict(postgres_dsn)
    name = f"mlflow_cmd_{uuid.uuid4().hex[:6]}"
    uri = f"postgresql+psycopg://{pg['host']}:{pg['port']}/{{db}}"
    for db in (name, f"{name}_auth"):
        ensure_database(f"postgresql+psycopg://{pg['user']}@{pg['host']}:{pg['port']}/{db}")
    s3 = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    s3.start()
    try:
        endpoint = "http://{}:{}".format(*s3.get_host_and_port())
        boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="t", aws_secret_access_key="t",
                     region_name="us-east-1").create_bucket(Bucket="artifacts")
        port = free_port()
        cmd = server_command(uri.format(db=name), uri.format(db=f"{name}_auth"), "s3://artifacts/mlflow-artifacts",
                             "127.0.0.1*,localhost*", port=port, workers=1, config=str(tmp_path / "auth.ini"))
        assert cmd[0] == "python"
        env = {**os.environ, "PGUSER": pg["user"], "MLFLOW_FLASK_SERVER_SECRET_KEY": "k" * 32,
               "MLFLOW_S3_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "t", "AWS_SECRET_ACCESS_KEY": "t",
               **{password_env(u): p for u, p in PASSWORDS.items()}}
        env.pop("MLFLOW_TRACKING_URI", None)
        log = tmp_path / "server.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen([sys.executable, *cmd[1:]], env=env, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        try:
            deadline = time.monotonic() + 240
            with httpx.Client(trust_env=False, timeout=120) as http:  # first calls import lazily: slow on a busy box
                while time.monotonic() < deadline:
                    assert proc.poll() is None, log.read_text()[-3000:]
                    try:
                        if http.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                            break
                    except httpx.HTTPError:
                        time.sleep(0.5)
                api = f"http://127.0.0.1:{port}/api/2.0/mlflow/registered-models/get"
                assert http.get(api, params={"name": "t2s-generator"}).status_code == 401
                ok = http.get(api, params={"name": "t2s-generator"}, auth=("serving", PASSWORDS["serving"]))
                assert ok.status_code == 200, ok.text  # created at start by the container, readable by serving
            assert "tracking_auth: created user deploy" in log.read_text()
        finally:
            os.killpg(proc.pid, 15)
            proc.wait(timeout=30)
    finally:
        s3.stop()
