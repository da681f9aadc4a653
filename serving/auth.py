"""Who is calling: a Cognito-style access token (JWT checked against the pool's JWKS) or a static API key.

Contract of :meth:`Authenticator.authenticate` (the FastAPI dependencies in :mod:`serving.deps` call it):

- **JWT** (``Authorization: Bearer …``): the header's ``alg`` must be one of ``T2S_SERVE_JWT_ALGORITHMS``
  (asymmetric only: ``none`` and ``HS*`` are refused before any key is looked at, so a token "signed" with
  the public key as an HMAC secret never reaches a verifier). The key comes from the JWKS by ``kid`` through
  PyJWT's ``PyJWKClient``: the key set is cached for ``T2S_SERVE_JWKS_TTL_S`` and refetched on an unknown
  ``kid`` at most once per ``T2S_SERVE_JWKS_COOLDOWN_S`` (key rotation without a refetch storm). Claims:
  signature, ``exp`` (required), ``nbf``, ``iss`` (= ``T2S_SERVE_JWT_ISSUER``), ``token_use == "access"``
  (an ID token is refused), ``client_id`` (Cognito access tokens) or ``aud`` in ``T2S_SERVE_JWT_CLIENT_IDS``.
  Roles come from the ``cognito:groups`` claim: a group in ``T2S_SERVE_JWT_ADMIN_GROUPS`` makes an admin, one
  in ``T2S_SERVE_JWT_REVIEWER_GROUPS`` a reviewer; a group in ``T2S_SERVE_JWT_ACT_FOR_USERS_GROUPS`` lets the
  principal (e.g. a back end holding a client-credentials token) name the end user it acts for.
- **API key** (``X-API-Key: …``): only the SHA-256 of each key is configured (``T2S_SERVE_API_KEYS_FILE``,
  a JSON list of ``{"name", "sha256", "role", "act_for_users"}``); the presented key's digest is compared
  with every record in constant time. The file is re-read when it changes (checked at most every
  ``T2S_SERVE_API_KEYS_CHECK_S``) and on ``POST /admin/reload`` (every process follows, :mod:`serving.reload`):
  removing a key revokes it within seconds without a restart. ``python -m serving.auth new-key NAME [--role admin]
  [--act-for-users]`` makes a key and its record.

Roles: ``caller`` asks and labels its own queries; ``reviewer`` may also label anyone's query (its label
supersedes the owner's, see :meth:`serving.store.Store.label`); ``admin`` has the reviewer's rights and
reloads, stops experiments and reads reports. The experiment's user is the principal itself
(:func:`experiment_user`): a body's ``user_id`` counts only from a principal allowed to act for users.

Failures: :class:`Unauthenticated` (401: missing, malformed, expired, tampered, wrong issuer/audience,
unknown kid, ID token, unknown API key), :class:`Forbidden` (403: valid but not allowed),
:class:`AuthUnavailable` (503: the JWKS cannot be fetched — an outage is not the caller's fault). Messages
say what was wrong with the credential, never echo it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from t2s.errors import ConfigError, Text2SQLError
from t2s.settings import Settings

log = logging.getLogger("t2s.serving")
Role = Literal["caller", "reviewer", "admin"]
_RANK = {"caller": 0, "reviewer": 1, "admin": 2}
LOOPBACK_HOSTS = {"127.0.0.1", "::1", "localhost"}
_ASYMMETRIC = {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}


class Unauthenticated(Text2SQLError):
    """No credential, or one that does not prove who the caller is (HTTP 401)."""


class Forbidden(Text2SQLError):
    """A valid credential without the role the call needs (HTTP 403)."""


class AuthUnavailable(Text2SQLError):
    """The identity provider's keys cannot be fetched (HTTP 503)."""


@dataclass(frozen=True)
class Principal:
    """The authenticated caller. ``id`` keys rate limits, logs and query ownership: never a credential.

    ``subject`` is who the caller is as an experiment user (a token's ``sub``, ``key:<name>`` for an API
    key); ``act_for_users`` lets it name the end user of a request instead (``user_id`` in the body).
    """

    id: str
    role: Role
    method: Literal["jwt", "api_key", "none"]
    subject: str = ""
    act_for_users: bool = False

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def is_reviewer(self) -> bool:
        """May label any query (admins may too)."""
        return _RANK[self.role] >= _RANK["reviewer"]


def experiment_user(principal: Principal, given: str | None) -> str | None:
    """The user id a request is assigned and recorded under.

    Without auth (loopback development) the body's ``user_id`` is taken as given. With auth, an ordinary
    principal is its own user (``subject``) whatever the body says, so nobody can pose as another user to
    pick a variant; a principal allowed to act for users passes its end user's id (``None``: assigned at
    random and flagged, as before).
    """
    if principal.method == "none" or principal.act_for_users:
        return given
    return principal.subject or principal.id


class ApiKeyRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="hex SHA-256 of the key")
    role: Role = "caller"
    act_for_users: bool = Field(False, description="May name the end user of a request (body user_id).")


class AccessClaims(BaseModel):
    """The claims an access token must carry, with their types (strict: a number is not a string)."""

    model_config = ConfigDict(extra="ignore", strict=True)

    sub: str = Field(min_length=1, max_length=256)
    token_use: str
    client_id: str | None = None
    aud: str | list[str] | None = None


_GROUPS: TypeAdapter[str | list[str] | None] = TypeAdapter(str | list[str] | None)


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_api_key(name: str, role: Role = "caller", act_for_users: bool = False) -> tuple[str, ApiKeyRecord]:
    """A fresh random key (shown once) and the record to store (its digest only)."""
    key = "t2s_" + secrets.token_urlsafe(32)
    return key, ApiKeyRecord(name=name, sha256=key_digest(key), role=role, act_for_users=act_for_users)


def load_api_keys(path: Path | None) -> list[ApiKeyRecord]:
    if path is None:
        return []
    try:
        raw = json.loads(path.read_text())
        records = [ApiKeyRecord.model_validate(r) for r in raw]
    except (OSError, ValueError, TypeError, ValidationError) as exc:
        raise ConfigError(f"API keys file {path}: {type(exc).__name__}: {str(exc)[:300]}; it must be a JSON list "
                          "of {name, sha256, role} (python -m serving.auth new-key NAME prints one)",
                          field="serve_api_keys_file") from None
    names = [r.name for r in records]
    if len(set(names)) != len(names):
        raise ConfigError(f"API keys file {path}: duplicate names", field="serve_api_keys_file")
    return records


def _file_stat(path: Path | None) -> tuple[int, int, int] | None:
    """What tells a changed file: modification time, size and inode (a file replaced by rename)."""
    try:
        st = path.stat() if path is not None else None
    except OSError:
        return None
    return None if st is None else (st.st_mtime_ns, st.st_size, st.st_ino)


MIN_USER_HASH_KEY = 16


def check_user_hash_key(settings: Settings) -> None:
    """With authentication required, refuse the built-in (public) user-hash key or a short one: stored user
    hashes are only as private as this key (anyone holding it hashes a list of likely ids and matches them)."""
    if settings.serve_auth != "required":
        return
    key = settings.serve_user_hash_key.get_secret_value()
    builtin = Settings.model_fields["serve_user_hash_key"].default.get_secret_value()
    if key == builtin or len(key) < MIN_USER_HASH_KEY:
        raise ConfigError(f"T2S_SERVE_USER_HASH_KEY must be set to a secret of at least {MIN_USER_HASH_KEY} "
                          "characters when T2S_SERVE_AUTH=required (the built-in key is public, so stored user "
                          "hashes could be reversed); e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))'",
                          field="serve_user_hash_key")


def check_exposure(settings: Settings, host: str) -> None:
    """Refuse to serve without auth on an address other machines can reach, unless explicitly forced."""
    if settings.serve_auth == "none" and host not in LOOPBACK_HOSTS and not settings.serve_allow_no_auth:
        raise ConfigError(f"refusing to serve on {host} without authentication: set T2S_SERVE_AUTH=required "
                          "(with T2S_SERVE_JWKS_URL/… or T2S_SERVE_API_KEYS_FILE), bind 127.0.0.1, or force it "
                          "with T2S_SERVE_ALLOW_NO_AUTH=true", field="serve_auth")


class Authenticator:
    """Checks credentials for one process; the JWKS client (and its cache) lives as long as the app."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.required = settings.serve_auth == "required"
        check_user_hash_key(settings)
        self._keys_lock = threading.Lock()
        self._keys_checked = time.monotonic()
        self._keys_stat = _file_stat(settings.serve_api_keys_file)
        self.keys_error: str | None = None
        self.api_keys = load_api_keys(settings.serve_api_keys_file)
        bad = [a for a in settings.serve_jwt_algorithms if a not in _ASYMMETRIC]
        if bad:
            raise ConfigError(f"T2S_SERVE_JWT_ALGORITHMS may only hold asymmetric algorithms; refused: {bad}",
                              field="serve_jwt_algorithms")
        self.algorithms = list(settings.serve_jwt_algorithms)
        self._jwks: Any = None
        if settings.serve_jwks_url:
            if not (settings.serve_jwt_issuer and settings.serve_jwt_client_ids):
                raise ConfigError("T2S_SERVE_JWKS_URL needs T2S_SERVE_JWT_ISSUER and T2S_SERVE_JWT_CLIENT_IDS "
                                  "(the user pool's issuer URL and app client ids)", field="serve_jwks_url")
            import jwt

            self._jwks = jwt.PyJWKClient(settings.serve_jwks_url, cache_keys=False, cache_jwk_set=True,
                                         lifespan=settings.serve_jwks_ttl_s, timeout=5,
                                         cooldown_duration=settings.serve_jwks_cooldown_s)
        if self.required and self._jwks is None and not self.api_keys:
            raise ConfigError("T2S_SERVE_AUTH=required but no credential source is configured: set "
                              "T2S_SERVE_JWKS_URL (+ issuer, client ids) and/or T2S_SERVE_API_KEYS_FILE",
                              field="serve_auth")

    def authenticate(self, bearer: str | None, api_key: str | None, client: str) -> Principal:
        """The caller behind the request's credentials (``client``: its address, for auth ``none``)."""
        if not self.required:
            return Principal(id=f"anonymous:{client}", role="admin", method="none")
        if bearer:
            return self._from_jwt(bearer)
        if api_key:
            return self._from_api_key(api_key)
        raise Unauthenticated("no credentials: send `Authorization: Bearer <access token>` or `X-API-Key: <key>`")

    def reload_keys(self, force: bool = True) -> str | None:
        """Re-read the API keys file — when ``force``, else only when its mtime, size or inode changed since
        the last read (checked at most once per ``T2S_SERVE_API_KEYS_CHECK_S``). A file that cannot be read
        or parsed any more refuses every API key (503) until it is fixed: a revocation must not be undone
        by a broken edit. Returns the error, if any."""
        path = self.settings.serve_api_keys_file
        if path is None:
            return None
        now = time.monotonic()
        if not force and now - self._keys_checked < self.settings.serve_api_keys_check_s:
            return self.keys_error
        with self._keys_lock:
            stat = _file_stat(path)
            self._keys_checked = now
            if not force and stat == self._keys_stat and stat is not None:
                return self.keys_error
            try:
                keys = load_api_keys(path)
            except ConfigError as exc:
                self.api_keys, self.keys_error, self._keys_stat = [], str(exc), stat
                log.error("API keys refused until the file is fixed: %s", exc)
                return self.keys_error
            if self.keys_error or [k.sha256 for k in keys] != [k.sha256 for k in self.api_keys]:
                log.info("API keys file re-read: %d key(s)", len(keys))
            self.api_keys, self.keys_error, self._keys_stat = keys, None, stat
        return None

    def _from_api_key(self, key: str) -> Principal:
        self.reload_keys(force=False)
        if self.keys_error is not None:
            raise AuthUnavailable("API keys cannot be checked right now (the service's key list is unreadable); "
                                  "retry later or use a bearer token")
        digest = key_digest(key)
        found: ApiKeyRecord | None = None
        for record in self.api_keys:  # every record is compared, so timing does not say which one matched
            if hmac.compare_digest(digest, record.sha256):
                found = record
        if found is None:
            raise Unauthenticated("unknown API key")
        return Principal(id=f"key:{found.name}", role=found.role, method="api_key", subject=f"key:{found.name}",
                         act_for_users=found.act_for_users)

    def _from_jwt(self, token: str) -> Principal:
        import jwt

        if self._jwks is None:
            raise Unauthenticated("bearer tokens are not accepted here (no T2S_SERVE_JWKS_URL); use an API key")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthenticated("malformed token") from None
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in self.algorithms:
            raise Unauthenticated(f"token algorithm {str(alg)[:16]!r} is not accepted")
        if not isinstance(kid, str) or not kid:
            raise Unauthenticated("token has no key id (kid)")
        try:
            key = self._jwks.get_signing_key(kid)
        except jwt.PyJWKClientConnectionError:  # before its parent class: an outage is not a bad token
            raise AuthUnavailable("the identity provider's keys (JWKS) cannot be fetched; retry later") from None
        except jwt.PyJWKClientError:
            raise Unauthenticated("token signed by an unknown key") from None
        s = self.settings
        try:
            claims = jwt.decode(token, key.key, algorithms=[alg], issuer=s.serve_jwt_issuer, leeway=s.serve_jwt_leeway_s,
                                options={"require": ["exp", "iss", "sub", "token_use"], "verify_aud": False})
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("token expired") from None
        except jwt.ImmatureSignatureError:
            raise Unauthenticated("token not valid yet (nbf/iat in the future)") from None
        except jwt.InvalidIssuerError:
            raise Unauthenticated("token from another issuer") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthenticated(f"token lacks the {exc.claim!r} claim") from None
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"invalid token ({type(exc).__name__})") from None
        try:  # a validly signed token can still carry claims of the wrong shape: 401, never a crash
            checked = AccessClaims.model_validate(claims)
            groups = _GROUPS.validate_python(claims.get(s.serve_jwt_roles_claim), strict=True)
        except ValidationError as exc:
            where = ".".join(str(p) for p in exc.errors()[0]["loc"]) or s.serve_jwt_roles_claim
            raise Unauthenticated(f"malformed token claims ({where[:40]})") from None
        if checked.token_use != "access":
            raise Unauthenticated("not an access token (token_use must be 'access'; ID tokens are refused)")
        aud = checked.aud
        audiences = {checked.client_id} | (set(aud) if isinstance(aud, list) else {aud})
        if not audiences & set(s.serve_jwt_client_ids):
            raise Unauthenticated("token issued to another client (client_id/aud)")
        groups = {groups} if isinstance(groups, str) else set(groups or ())
        role: Role = ("admin" if groups & set(s.serve_jwt_admin_groups) else
                      "reviewer" if groups & set(s.serve_jwt_reviewer_groups) else "caller")
        return Principal(id=f"jwt:{checked.sub}", role=role, method="jwt", subject=checked.sub,
                         act_for_users=bool(groups & set(s.serve_jwt_act_for_users_groups)))


def require_role(principal: Principal, role: Role) -> None:
    if _RANK[principal.role] < _RANK[role]:
        raise Forbidden(f"this call needs the {role} role; {principal.id} is a {principal.role}")


def main(argv: list[str] | None = None) -> int:
    """``python -m serving.auth new-key NAME [--role caller|reviewer|admin] [--act-for-users]``: print a key
    and its record."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m serving.auth")
    sub = parser.add_subparsers(dest="command", required=True)
    new = sub.add_parser("new-key", help="make an API key; store only the printed record")
    new.add_argument("name")
    new.add_argument("--role", choices=list(_RANK), default="caller")
    new.add_argument("--act-for-users", action="store_true",
                     help="the key's holder (a back end) may name the end user of each request")
    args = parser.parse_args(argv)
    key, record = new_api_key(args.name, args.role, args.act_for_users)
    print(f"key (give it to the caller; it is not stored): {key}", file=sys.stderr)
    print(record.model_dump_json())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
