"""``/docs``: Swagger UI served from this origin, no CDN.

FastAPI's own ``/docs`` page loads Swagger UI's script and stylesheet from a public CDN, so every reader's
browser fetches code from a third party, and the page needs an inline script. Here the page links the
Swagger UI build that ships inside the ``fastapi-offline`` package (served at ``/docs/static/``) and
starts it from a script file of its own, under a Content-Security-Policy that allows scripts,
styles and connections from this origin only. ``T2S_SERVE_DOCS=false`` turns the page off (production);
``/openapi.json`` stays, for clients and schema tools. ReDoc is not served.
"""

from __future__ import annotations

import html
from pathlib import Path

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse, HTMLResponse, Response

CSP_DOCS = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
            "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
ASSETS = {"swagger-ui-bundle.js": "text/javascript; charset=utf-8", "swagger-ui.css": "text/css; charset=utf-8",
          "favicon.png": "image/png"}
# Relative URLs: right under any root path a proxy adds. validatorUrl null: no badge fetched from outside.
INIT_JS = """window.ui = SwaggerUIBundle({
  url: "openapi.json", dom_id: "#swagger-ui", layout: "BaseLayout", deepLinking: true,
  showExtensions: true, showCommonExtensions: true, validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis, SwaggerUIBundle.SwaggerUIStandalonePreset],
});
"""


def assets_dir() -> Path:
    import fastapi_offline

    return Path(fastapi_offline.__file__).resolve().parent / "static"


def install_docs(app: FastAPI) -> None:
    """Add ``/docs`` and its assets to ``app`` (built with ``docs_url=None, redoc_url=None``)."""
    page = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(app.title)} — API</title>'
            '<link rel="icon" href="docs/static/favicon.png"><link rel="stylesheet" href="docs/static/swagger-ui.css">'
            '</head><body><div id="swagger-ui"></div><script src="docs/static/swagger-ui-bundle.js"></script>'
            '<script src="docs/static/init.js"></script></body></html>')
    headers = {"Content-Security-Policy": CSP_DOCS, "Cache-Control": "no-store"}
    static_headers = {"Cache-Control": "public, max-age=86400"}

    @app.get("/docs", include_in_schema=False)
    async def docs_page() -> HTMLResponse:
        return HTMLResponse(page, headers=headers)

    @app.get("/docs/static/{name}", include_in_schema=False)
    async def docs_asset(name: str) -> Response:
        if name == "init.js":
            return Response(INIT_JS, media_type="text/javascript; charset=utf-8", headers=static_headers)
        if name not in ASSETS:  # a fixed list: no path from the request reaches the file system
            raise HTTPException(404, f"no docs asset {name!r}")
        return FileResponse(assets_dir() / name, media_type=ASSETS[name], headers=static_headers)
