"""The HTTP route of a webhook source: ``POST <path>`` with an audit EventList.

The body is read up to the source's limit (413 beyond it, without reading the rest) and
handed to :meth:`lunettes.sources.webhook.WebhookSource.receive`, which answers once the
batch is in its spool: the API server gets its answer in milliseconds, the pipeline reads
the batch in the background. With ``client_certificate``, a connection that showed no
client certificate (mutual TLS, :mod:`lunettes.api.tls`) is refused with 403.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from lunettes.api.tls import has_client_certificate
from lunettes.sources.webhook import Answer, WebhookSource

__all__ = ["add_webhook"]


def add_webhook(app: FastAPI, source: WebhookSource, client_certificate: bool = False
                ) -> None:
    """Serve ``source``'s receiver at ``source.path``; with ``client_certificate``, only
    to connections that showed one."""

    @app.post(source.path, tags=["audit webhook"], name=f"webhook {source.name}",
              summary="Receive an audit.k8s.io/v1 EventList from kube-apiserver's webhook "
                      "backend",
              responses={400: {"description": "not an EventList"},
                         401: {"description": "missing or wrong bearer token"},
                         403: {"description": "no client certificate (mutual TLS)"},
                         413: {"description": "body over the limit"},
                         429: {"description": "queue full; retry after Retry-After"}})
    async def receive(request: Request) -> JSONResponse:
        if client_certificate and not has_client_certificate(request.scope):
            return JSONResponse({"message": "a client certificate signed by the client CA "
                                            "is required"}, status_code=403)
        authorization = request.headers.get("authorization", "")
        if not source.authorized(authorization):
            return _json(source.unauthorized())
        limit = source.max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            return _json(source.too_large())
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                return _json(source.too_large())
            chunks.append(chunk)
        # decoding and the spool's fsync run off the event loop
        return _json(await run_in_threadpool(
            source.receive, b"".join(chunks), request.headers.get("content-encoding", ""),
            authorization))


def _json(answer: Answer) -> JSONResponse:
    return JSONResponse(answer.body, status_code=answer.status, headers=answer.headers)
