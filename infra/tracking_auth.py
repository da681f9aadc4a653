"""Start the MLflow tracking server with authentication, its schema current and its users in step with
their secrets.

``python -m infra.tracking_auth --backend-store-uri URI --auth-db-uri URI -- <mlflow server arguments>``:

1. under the same advisory lock as ``infra.db_init`` (tasks starting together take turns): upgrade the
   tracking schema (``mlflow db upgrade``: creates it on an empty database), initialise MLflow's auth store,
   and create or update the users :data:`infra.layout.TRACKING_USERS` from
   ``T2S_TRACKING_<USER>_PASSWORD`` (a changed secret value is a password change: that is the rotation);
2. create the registered model ``t2s-generator`` if missing, *as no user*: MLflow grants MANAGE on a model
   to whoever creates it, so a model created here is editable by admins only. ``admin`` and ``deploy`` are
   MLflow admins (only they move ``@champion``); ``serving`` and every other user read (the auth config's
   ``default_permission = READ``);
3. exec ``mlflow server --app-name basic-auth`` with the given arguments.

The local shared server (``t2s tracking serve --auth``, :class:`infra.tracking_server.TrackingServer`) runs
the same :func:`prepare`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from t2s.errors import ConfigError

ADMIN_USERS = ("admin", "deploy")  # MLflow admins: may move aliases on any model
PASSWORD_ENV = "T2S_TRACKING_{user}_PASSWORD"


def password_env(user: str) -> str:
    return PASSWORD_ENV.format(user=user.upper())


# Each worker caches a successful password check this long: without it every request runs PBKDF2 (about a
# second on a busy small task). A password changed at a task's start is not affected; one changed while it
# runs (the admin API) is honoured by the other workers within this time.
AUTH_CACHE_TTL_S = 60


def write_auth_config(path: Path, auth_db_uri: str) -> Path:
    """MLflow's basic-auth configuration: everyone reads, nobody else writes without a grant."""
    path.write_text("[mlflow]\ndefault_permission = READ\n"
                    f"database_uri = {auth_db_uri.replace('%', '%%')}\nadmin_username = admin\n"
                    "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
                    f"auth_cache_ttl_seconds = {AUTH_CACHE_TTL_S}\n", encoding="utf-8")
    return path


def _advisory_lock(backend_uri: str):  # type: ignore[no-untyped-def]
    """A connection holding ``infra.db_init.LOCK_KEY`` (released when the connection closes)."""
    import psycopg
    from sqlalchemy.engine import make_url

    from infra.db_init import LOCK_KEY

    url = make_url(backend_uri)
    params = {"host": url.host, "port": url.port, "user": url.username, "password": url.password,
              "dbname": url.database, **{k: v for k, v in url.query.items() if isinstance(v, str)}}
    conn = psycopg.connect(**{k: v for k, v in params.items() if v is not None}, autocommit=True)
    conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
    return conn


def prepare(backend_uri: str, auth_db_uri: str, passwords: Mapping[str, str]) -> list[str]:
    """Steps 1 and 2 of the module docstring; returns what was done."""
    from mlflow.exceptions import MlflowException
    from mlflow.server.auth.sqlalchemy_store import SqlAlchemyStore as AuthStore
    from mlflow.store.model_registry.sqlalchemy_store import SqlAlchemyStore as RegistryStore

    from infra.layout import TRACKING_USERS
    from t2s.bundle import REGISTERED_MODEL

    missing = [u for u in TRACKING_USERS if not passwords.get(u)]
    if missing:
        raise ConfigError(f"no password for tracking user(s) {', '.join(missing)}: set "
                          + ", ".join(password_env(u) for u in missing))
    done: list[str] = []
    lock = _advisory_lock(backend_uri) if backend_uri.startswith("postgresql") else None
    try:
        mlflow_cli = Path(sys.executable).with_name("mlflow")
        proc = subprocess.run([str(mlflow_cli), "db", "upgrade", backend_uri], capture_output=True, text=True)
        if proc.returncode != 0:
            raise ConfigError(f"mlflow db upgrade failed: {proc.stderr.strip()[-2000:]}")
        store = AuthStore()
        store.init_db(auth_db_uri)
        for user in TRACKING_USERS:
            admin = user in ADMIN_USERS
            if not store.has_user(user, use_primary=True):
                store.create_user(user, passwords[user], is_admin=admin)
                done.append(f"created user {user}")
            elif not store.authenticate_user(user, passwords[user], use_primary=True) or \
                    store.get_user(user).is_admin != admin:
                store.update_user(user, password=passwords[user], is_admin=admin)
                done.append(f"updated user {user}")
        registry = RegistryStore(backend_uri)
        try:
            registry.get_registered_model(REGISTERED_MODEL)
        except MlflowException:
            registry.create_registered_model(REGISTERED_MODEL, description="The served text-to-SQL bundle; "
                                             "aliases champion/challenger are moved by admins and deploy only.")
            done.append(f"created registered model {REGISTERED_MODEL}")
        finally:
            registry.engine.dispose()
        store.engine.dispose()
    finally:
        if lock is not None:
            lock.close()
    return done


def server_command(backend_uri: str, auth_db_uri: str, artifacts_destination: str, allowed_hosts: str, *,
                   port: int = 5000, workers: int = 2, config: str = "/tmp/mlflow-basic-auth.ini") -> list[str]:
    """The tracking container's command (the serving stack uses it as is; a test runs it)."""
    return ["python", "-m", "infra.tracking_auth", "--backend-store-uri", backend_uri, "--auth-db-uri", auth_db_uri,
            "--config", config, "--", "--host", "0.0.0.0", "--port", str(port), "--workers", str(workers),
            "--serve-artifacts", "--artifacts-destination", artifacts_destination, "--allowed-hosts", allowed_hosts]


def passwords_from_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    from infra.layout import TRACKING_USERS

    env = os.environ if env is None else env
    return {u: env.get(password_env(u), "") for u in TRACKING_USERS}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    server_args = argv[argv.index("--") + 1:] if "--" in argv else []
    parser = argparse.ArgumentParser(prog="python -m infra.tracking_auth", description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend-store-uri", required=True)
    parser.add_argument("--auth-db-uri", required=True)
    parser.add_argument("--config", default="/tmp/mlflow-basic-auth.ini", help="where to write the auth config")
    args = parser.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    try:
        for line in prepare(args.backend_store_uri, args.auth_db_uri, passwords_from_env()):
            print(f"tracking_auth: {line}", flush=True)
        config = write_auth_config(Path(args.config), args.auth_db_uri)
    except Exception as exc:
        print(f"tracking_auth failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1
    os.environ["MLFLOW_AUTH_CONFIG_PATH"] = str(config)
    os.environ["MLFLOW_AUTH_ADMIN_PASSWORD"] = os.environ.get(password_env("admin"), "")
    mlflow_cli = str(Path(sys.executable).with_name("mlflow"))
    os.execv(mlflow_cli, [mlflow_cli, "server", "--app-name", "basic-auth", "--backend-store-uri",
                          args.backend_store_uri, *server_args])
    return 0  # not reached


if __name__ == "__main__":
    raise SystemExit(main())
