"""Security headers on every response the app sends (a header a route set itself is kept).

- ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: no-referrer`` everywhere;
- ``Cache-Control: no-store`` (answers, labels and reports must not sit in a shared or browser cache);
  routes serving fixed files (the docs' assets) set their own;
- frame protection everywhere: ``X-Frame-Options: DENY`` and CSP ``frame-ancestors 'none'`` — the report
  page cannot be framed (clickjacking);
- a Content-Security-Policy: HTML pages (the report) may use their inline styles and nothing else —
  no script, no outside resource; JSON answers get ``default-src 'none'``; the docs page and the analyst
  app set stricter-than-default policies of their own;
- ``Strict-Transport-Security`` only when the request came over TLS: uvicorn serving TLS itself, or a
  trusted proxy (``T2S_SERVE_FORWARDED_ALLOW_IPS``) saying ``X-Forwarded-Proto: https``; or always/never with
  ``T2S_SERVE_HSTS=always|off``. Over plain HTTP the header is meaningless and on a development machine
  sticky, so it is not sent.
"""

from __future__ import annotations

from typing import Any, Literal

HSTS = "max-age=31536000"
CSP_JSON = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
CSP_HTML = ("default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; "
            "base-uri 'none'; form-action 'none'")


class SecurityHeaders:
    """Pure ASGI middleware adding the headers above to ``http.response.start``."""

    def __init__(self, app: Any, hsts: Literal["auto", "always", "off"] = "auto") -> None:
        self.app = app
        self.hsts = hsts

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        from starlette.datastructures import MutableHeaders

        tls = scope.get("scheme") == "https"

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                html = headers.get("content-type", "").startswith("text/html")
                for name, value in (("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer"),
                                    ("X-Frame-Options", "DENY"), ("Cache-Control", "no-store"),
                                    ("Content-Security-Policy", CSP_HTML if html else CSP_JSON)):
                    if name not in headers:
                        headers[name] = value
                if self.hsts == "always" or (self.hsts == "auto" and tls):
                    headers.setdefault("Strict-Transport-Security", HSTS)
            await send(message)

        await self.app(scope, receive, send_with_headers)
