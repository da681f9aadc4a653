"""Test support for serving in production: an RSA-keyed JWKS on loopback, Cognito-style tokens, API-key
files, and a private ``redis-server`` on a free loopback port."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ISSUER = "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_TEST"
CLIENT_ID = "t2s-web-client"


def rsa_key() -> Any:
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_jwk(private_key: Any, kid: str) -> dict[str, Any]:
    from jwt.algorithms import RSAAlgorithm

    jwk = json.loads(RSAAlgorithm.to_jwk(private_key.public_key()))
    return {**jwk, "kid": kid, "alg": "RS256", "use": "sig"}


class JwksServer:
    """Serves ``{"keys": [...]}`` on 127.0.0.1; ``keys`` may be replaced (rotation), ``fetches`` counts GETs,
    ``down`` makes it answer 503."""

    def __init__(self, keys: list[dict[str, Any]]) -> None:
        self.keys = keys
        self.fetches = 0
        self.down = False
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.fetches += 1
                body = json.dumps({"keys": owner.keys}).encode()
                self.send_response(503 if owner.down else 200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/.well-known/jwks.json"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def token(private_key: Any, kid: str = "k1", *, alg: str = "RS256", groups: list[str] | None = None,
          **overrides: Any) -> str:
    """A Cognito-style access token; ``overrides`` replace claims (value ``None`` removes one)."""
    import jwt

    now = int(time.time())
    claims: dict[str, Any] = {"sub": "user-123", "iss": ISSUER, "client_id": CLIENT_ID, "token_use": "access",
                              "iat": now, "exp": now + 600, "scope": "openid", "username": "ann"}
    if groups is not None:
        claims["cognito:groups"] = groups
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, private_key, algorithm=alg, headers={"kid": kid})


def write_api_keys(path: Path, keys: dict[str, tuple[str, str]], act_for_users: tuple[str, ...] = ()) -> Path:
    """``name -> (key, role)`` → a keys file holding only digests; the keys named in ``act_for_users`` may
    name their end users. Written atomically (a temporary file renamed over it), as an operator should."""
    from serving.auth import key_digest

    records = [{"name": n, "sha256": key_digest(k), "role": r, **({"act_for_users": True} if n in act_for_users else {})}
               for n, (k, r) in keys.items()]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(records))
    tmp.replace(path)
    return path


@contextmanager
def redis_server(tmp: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A private redis-server on a free loopback port, no persistence; yields its URL and process."""
    from tests.serving_support import free_port

    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is missing: run infra/local/install_system_deps.sh")
    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(tmp)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        import redis

        client = redis.Redis.from_url(url, socket_timeout=0.5)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        yield url, proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
