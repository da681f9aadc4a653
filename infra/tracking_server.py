"""The team's shared MLflow tracking server, run locally the way it runs on AWS: backend store on
PostgreSQL, artifacts proxied by the server into S3 (``--serve-artifacts``). Without a real S3 endpoint
a local moto S3 server stands in for AWS S3 (``local_s3=True``; needs the ``dev`` extra's moto).

``t2s tracking serve`` runs one until interrupted; tests use :class:`TrackingServer` as a context manager.
The backend database is created when missing (MLflow needs its own database, as on RDS). With
``auth=True`` it runs as on AWS with MLflow's basic-auth app: users ``admin``, ``deploy`` and ``serving``
(passwords given), everyone else reads only (:mod:`infra.tracking_auth`); the auth store lives in a second
database ``<backend db>_auth``.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from t2s.errors import ConfigError, Text2SQLError
from t2s.local_llm import free_port


class TrackingServerError(Text2SQLError):
    """The tracking server or its S3 stand-in did not start."""


def ensure_database(backend_uri: str) -> None:
    """Create the backend URI's PostgreSQL database if it does not exist (connecting to ``postgres``)."""
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(backend_uri)
    if not url.drivername.startswith("postgresql"):
        raise ConfigError(f"backend store must be PostgreSQL (postgresql+psycopg://user@host:port/db), got "
                          f"{url.drivername!r}")
    if not url.database:
        raise ConfigError("backend store URI names no database: add /mlflow at the end")
    params = {"host": url.host or "127.0.0.1", "port": url.port or 5432, "user": url.username,
              "password": url.password, "dbname": "postgres", "autocommit": True, "connect_timeout": 10}
    with psycopg.connect(**{k: v for k, v in params.items() if v is not None}) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (url.database,)).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{url.database}"')


class TrackingServer:
    """``mlflow server`` on PostgreSQL with S3 artifacts; a context manager that waits for ``/health``."""

    def __init__(self, backend_uri: str, *, host: str = "127.0.0.1", port: int = 0, workers: int = 2,
                 bucket: str = "t2s-artifacts", prefix: str = "mlflow-artifacts",
                 s3_endpoint_url: str | None = None, local_s3: bool = True, log_path: Path | None = None,
                 start_timeout_s: float = 180, auth_passwords: dict[str, str] | None = None) -> None:
        self.backend_uri = backend_uri
        self.host, self.port, self.workers = host, port or free_port(), workers
        self.bucket, self.prefix = bucket, prefix
        self.s3_endpoint_url, self.local_s3 = s3_endpoint_url, local_s3 and s3_endpoint_url is None
        self.log_path = log_path
        self.start_timeout_s = start_timeout_s
        self.auth_passwords = auth_passwords
        self._moto: Any = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def auth_db_uri(self) -> str:
        from sqlalchemy.engine import make_url

        url = make_url(self.backend_uri)
        return url.set(database=f"{url.database}_auth").render_as_string(hide_password=False)

    @property
    def artifacts_destination(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def s3_env(self) -> dict[str, str]:
        """Environment that points boto3/MLflow at the S3 stand-in (empty for real S3)."""
        if not self.s3_endpoint_url:
            return {}
        env = {"MLFLOW_S3_ENDPOINT_URL": self.s3_endpoint_url, "AWS_ENDPOINT_URL_S3": self.s3_endpoint_url}
        if self.local_s3:
            env |= {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                    "AWS_DEFAULT_REGION": "us-east-1"}
        return env

    def _start_s3(self) -> None:
        if self.local_s3:
            try:
                from moto.server import ThreadedMotoServer
            except ImportError as exc:
                raise TrackingServerError("the local S3 stand-in needs moto: pip install -e '.[dev]', or pass "
                                          "--s3-endpoint-url / use real S3 with --no-local-s3") from exc
            self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
            self._moto.start()
            host, port = self._moto.get_host_and_port()
            self.s3_endpoint_url = f"http://{host}:{port}"
        if self.s3_endpoint_url:
            import boto3

            env = self.s3_env()
            s3 = boto3.client("s3", endpoint_url=self.s3_endpoint_url,
                              aws_access_key_id=env.get("AWS_ACCESS_KEY_ID"),
                              aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY"), region_name="us-east-1")
            if self.bucket not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
                s3.create_bucket(Bucket=self.bucket)

    def start(self) -> TrackingServer:
        ensure_database(self.backend_uri)
        self._start_s3()
        mlflow = Path(sys.executable).with_name("mlflow")
        cmd = [str(mlflow), "server", "--backend-store-uri", self.backend_uri, "--serve-artifacts",
               "--artifacts-destination", self.artifacts_destination, "--host", self.host,
               "--port", str(self.port), "--workers", str(self.workers)]
        env = {**os.environ, **self.s3_env()}
        env.pop("MLFLOW_TRACKING_URI", None)
        if self.auth_passwords is not None:
            from infra.tracking_auth import prepare, write_auth_config

            ensure_database(self.auth_db_uri)
            prepare(self.backend_uri, self.auth_db_uri, self.auth_passwords)
            config = Path(tempfile.mkdtemp(prefix="t2s-mlflow-auth-")) / "basic_auth.ini"
            env |= {"MLFLOW_AUTH_CONFIG_PATH": str(write_auth_config(config, self.auth_db_uri)),
                    "MLFLOW_AUTH_ADMIN_PASSWORD": self.auth_passwords["admin"],
                    # one session/CSRF key for every worker (on AWS: the TrackingFlaskKey secret)
                    "MLFLOW_FLASK_SERVER_SECRET_KEY": env.get("MLFLOW_FLASK_SERVER_SECRET_KEY")
                    or secrets.token_urlsafe(32)}
            cmd[2:2] = ["--app-name", "basic-auth"]
        out = open(self.log_path, "wb") if self.log_path else subprocess.DEVNULL  # noqa: SIM115 - child keeps it
        self._proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        self._wait_healthy()
        return self

    def _wait_healthy(self) -> None:
        import urllib.request

        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            assert self._proc is not None
            if (code := self._proc.poll()) is not None:
                self.stop()
                raise TrackingServerError(f"mlflow server exited with {code}"
                                          + (f"; see {self.log_path}" if self.log_path else ""))
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        self.stop()
        raise TrackingServerError(f"mlflow server did not answer {self.url}/health in {self.start_timeout_s:.0f} s")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            os.killpg(self._proc.pid, 15)
            try:
                self._proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, 9)
                self._proc.wait()
        self._proc = None
        if self._moto is not None:
            self._moto.stop()
            self._moto = None

    def __enter__(self) -> TrackingServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
