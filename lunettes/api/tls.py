"""Client certificates per route: uvicorn verifies a certificate when one is presented
(``CERT_OPTIONAL``), and :func:`peer_certificate_protocol` puts what the connection showed
into each request's scope as the ASGI TLS extension (``scope["extensions"]["tls"]``:
``client_cert_chain``, ``client_cert_name``, ``client_cert_error``), so a route can require
one (the audit webhook) while the probes, ``/metrics`` and the API answer connections
without one.

uvicorn does not fill the TLS extension itself; the protocol class below, given to
``uvicorn.Config(http=...)``, does, for each connection, from the transport's SSL object.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from typing import Any, cast

__all__ = ["has_client_certificate", "peer_certificate_protocol"]


def peer_certificate_protocol() -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol class (as ``http="auto"`` picks it) whose requests carry
    the connection's verified client certificate in the ASGI TLS extension."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    class PeerCertificateProtocol(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            extension = _tls_extension(transport.get_extra_info("ssl_object"))
            app = cast(Any, self).app  # the application uvicorn gives each request

            async def with_certificate(scope: dict[str, Any], receive: Any, send: Any
                                       ) -> None:
                if scope["type"] in ("http", "websocket"):
                    scope["extensions"] = {**(scope.get("extensions") or {}),
                                           "tls": extension}
                await app(scope, receive, send)

            self.app = with_certificate

    return PeerCertificateProtocol


def _tls_extension(ssl_object: ssl.SSLObject | None) -> dict[str, Any]:
    """The ASGI TLS extension's client fields for one connection."""
    if ssl_object is None or not (der := ssl_object.getpeercert(binary_form=True)):
        return {"client_cert_chain": [], "client_cert_name": None, "client_cert_error": None}
    subject: Any = (ssl_object.getpeercert() or {}).get("subject", ())
    name = ",".join(f"{key}={value}" for rdn in subject for key, value in rdn)
    return {"client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)],
            "client_cert_name": name or None, "client_cert_error": None}


def has_client_certificate(scope: Mapping[str, Any]) -> bool:
    """Whether the request's connection showed a client certificate (verified by the TLS
    handshake against the client CA: one that is not was refused there)."""
    tls = (scope.get("extensions") or {}).get("tls") or {}
    return bool(tls.get("client_cert_chain"))
