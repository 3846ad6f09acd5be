"""The lunettes HTTP app: ``create_app(registry, state)``, everything injected.

- ``GET /metrics``: the registry in the Prometheus text format, or OpenMetrics when the
  scraper asks for it (Accept header), as Prometheus does.
- ``GET /healthz``: 200 while the process works; 500 once the input reader has failed.
- ``GET /readyz``: 200 once the input given at start has been read (files: to their end;
  ``--follow``: to their current end; stdin: as soon as reading starts), else 503.

Both health answers are JSON with the reader's phase and counts. The API issue adds its
routes to the app this factory returns.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

__all__ = ["ServeState", "create_app"]


@dataclass
class ServeState:
    """What the server tells about its input reader; the reader thread updates it."""

    phase: str = "starting"
    """``starting``, ``reading``, ``following``, ``done`` or ``failed``."""
    error: str = ""
    ready: threading.Event = field(default_factory=threading.Event)
    details: dict[str, Any] = field(default_factory=dict)

    def view(self) -> dict[str, Any]:
        out: dict[str, Any] = {"phase": self.phase, "ready": self.ready.is_set(),
                               **self.details}
        if self.error:
            out["error"] = self.error
        return out


def create_app(registry: CollectorRegistry, state: ServeState | None = None) -> FastAPI:
    """The app serving ``registry`` and the health of ``state``."""
    status = state if state is not None else ServeState()
    app = FastAPI(title="lunettes", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.registry = registry
    app.state.serve = status

    @app.get("/metrics")
    def metrics(request: Request) -> Response:
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encoder(registry), media_type=content_type)

    @app.get("/healthz")
    def healthz() -> JSONResponse:
        return JSONResponse(status.view(), status_code=500 if status.phase == "failed" else 200)

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        ok = status.ready.is_set() and status.phase != "failed"
        return JSONResponse(status.view(), status_code=200 if ok else 503)

    return app
