"""The lunettes HTTP app: ``create_app(registry, state, api)``, everything injected.

- ``GET /metrics``: the registry in the Prometheus text format, or OpenMetrics when the
  scraper asks for it (Accept header), as Prometheus does.
- ``GET /healthz``: 200 while the process works; 500 once the input reader has failed.
- ``GET /readyz``: 200 once the input given at start has been read (files: to their end;
  ``--follow``: to their current end; stdin: as soon as reading starts), else 503; 503
  again while a source is stalled or failed (a damaged or missing file never fails
  ``/healthz``: restarting would not mend it).
- ``/api/v1/...``: the read-only API over a store (:mod:`lunettes.api.routes`).
- ``GET /openapi.json`` and ``GET /docs``: the OpenAPI spec and Swagger UI, whose assets
  come from the ``swagger-ui-bundle-v2`` package (no CDN: it works offline).
- ``GET /``: the web page (``lunettes/api/web``: plain HTML, CSS and JS, no CDN).

Both health answers are JSON with the reader's phase and counts.

Every answer carries :data:`SECURITY_HEADERS`: a Content-Security-Policy that allows only
the server's own scripts, styles and API (no inline script; ``/docs`` adds the hash of
Swagger UI's one inline script), and may not be framed; ``nosniff``; no Referer.
"""

from __future__ import annotations

import base64
import hashlib
import re
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from lunettes import __version__
from lunettes.api.routes import ApiSettings, api_router
from lunettes.api.store import InvalidQuery, StoreUnavailable

__all__ = ["ApiSettings", "ServeState", "create_app"]

WEB_DIR = Path(str(resources.files("lunettes.api") / "web"))

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def _with_script_hashes(csp: str, html: str) -> str:
    """``csp`` whose script-src also allows the inline scripts of ``html``, by hash."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"
        for s in _INLINE_SCRIPT.findall(html))
    return csp.replace("script-src 'self'", f"script-src 'self' {hashes}")

DESCRIPTION = """\
Pod delivery traces, SLOs and diagnoses from kube-apiserver audit logs, read-only.

Every `/api/v1` answer comes from the store `lunettes serve` reads (the embedded SQLite
store, or Elasticsearch). With a token configured, `/api/v1` needs
`Authorization: Bearer <token>`. Audit bodies never leave the service, and messages are
redacted of secret-looking values.
"""


@dataclass
class ServeState:
    """What the server tells about its input reader; the reader thread updates it.

    ``sources`` (objects with ``name``, ``state`` and ``error``, see
    :class:`lunettes.sources.base.Source`) are shown by name; the reader is ready once
    every source has read what it was given at start (``following`` or ``done``), and not
    ready while one is ``stalled`` or ``failed``.
    """

    phase: str = "starting"
    """``starting``, ``reading``, ``following``, ``done`` or ``failed``."""
    error: str = ""
    ready: threading.Event = field(default_factory=threading.Event)
    details: dict[str, Any] = field(default_factory=dict)
    sources: list[Any] = field(default_factory=list)
    late: Any = None
    """The pipeline's :class:`~lunettes.sources.errors.LateRecords` (shown as
    ``late_records``: count and first places), when it reads input."""

    @property
    def ok(self) -> bool:
        """Ready, and no source stalled or failed."""
        states = [source.state for source in self.sources]
        if states and all(s in ("following", "done") for s in states):
            self.ready.set()
        return (self.ready.is_set() and self.phase != "failed"
                and not any(s in ("stalled", "failed") for s in states))

    def view(self) -> dict[str, Any]:
        out: dict[str, Any] = {"phase": self.phase, "ready": self.ok, **self.details}
        if self.sources:
            out["sources"] = {source.name: {"state": source.state, **(
                {"error": source.error} if source.error else {})} for source in self.sources}
        if self.late is not None:
            out["late_records"] = self.late.view()
        if self.error:
            out["error"] = self.error
        return out


def _swagger_assets() -> Path | None:
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:
        return None
    path = Path(str(swagger_ui_path))
    return path if (path / "swagger-ui-bundle.js").is_file() else None


def create_app(registry: CollectorRegistry, state: ServeState | None = None,
               api: ApiSettings | None = None) -> FastAPI:
    """The app serving ``registry``, the health of ``state`` and the API of ``api``."""
    status = state if state is not None else ServeState()
    settings = api if api is not None else ApiSettings()
    app = FastAPI(title="lunettes", version=__version__, description=DESCRIPTION,
                  docs_url=None, redoc_url=None, openapi_url="/openapi.json")
    app.state.registry = registry
    app.state.serve = status
    app.state.api = settings
    guard = ([Depends(settings.auth.dependency())]
             if settings.auth is not None and settings.auth.protect_health else [])
    operations: dict[str, Any] = {"dependencies": guard, "tags": ["health"]}

    @app.get("/metrics", **operations, response_class=Response,
             summary="Prometheus metrics (text format, or OpenMetrics on request)")
    def metrics(request: Request) -> Response:
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encoder(registry), media_type=content_type)

    @app.get("/healthz", **operations, summary="200 while the process works")
    def healthz() -> JSONResponse:
        return JSONResponse(status.view(), status_code=500 if status.phase == "failed" else 200)

    @app.get("/readyz", **operations, summary="200 once the input given at start is read",
             responses={503: {"description": "not ready yet"}})
    def readyz() -> JSONResponse:
        return JSONResponse(status.view(), status_code=200 if status.ok else 503)

    app.include_router(api_router(settings), tags=["pods"])

    @app.middleware("http")
    async def security_headers(request: Request,
                               call_next: Callable[[Request], Awaitable[Response]]
                               ) -> Response:
        response = await call_next(request)
        for name, value in SECURITY_HEADERS.items():
            response.headers.setdefault(name, value)
        return response

    @app.exception_handler(StoreUnavailable)
    def unavailable(request: Request, exc: StoreUnavailable) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    @app.exception_handler(InvalidQuery)
    def invalid(request: Request, exc: InvalidQuery) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    swagger = _swagger_assets()
    if swagger is not None:
        app.mount("/docs/assets", StaticFiles(directory=swagger), name="swagger-assets")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        if swagger is None:
            return HTMLResponse(
                "<!doctype html><title>lunettes API</title><h1>lunettes API</h1><p>The "
                "interactive docs need the <code>swagger-ui-bundle-v2</code> package "
                "(<code>pip install 'lunettes[serve]'</code>); the spec is at "
                "<a href='/openapi.json'>/openapi.json</a>.</p>")
        page = get_swagger_ui_html(openapi_url="/openapi.json", title="lunettes API",
                                   swagger_js_url="/docs/assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs/assets/swagger-ui.css",
                                   swagger_favicon_url="/docs/assets/favicon-32x32.png")
        csp = _with_script_hashes(CSP, bytes(page.body).decode())
        page.headers["Content-Security-Policy"] = csp
        return page

    app.mount("/web", StaticFiles(directory=WEB_DIR), name="web")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html", media_type="text/html")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> RedirectResponse:
        return RedirectResponse("/web/favicon.svg")

    return app
