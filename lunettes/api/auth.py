"""Optional bearer-token authentication of the API (no ``from __future__ import
annotations`` here: FastAPI must see the dependency in the closure's annotations).

With a token configured (``lunettes serve --api-token-file FILE`` or
``$LUNETTES_API_TOKEN``) every ``/api/v1`` request needs ``Authorization: Bearer
<token>``; a missing or wrong token answers 401 with ``WWW-Authenticate: Bearer``. The
tokens are compared in constant time. ``/healthz``, ``/readyz`` and ``/metrics`` stay open
(kubelet probes, Prometheus scrapes) unless ``protect_health`` is set
(``--auth-health``). The web page, its assets, ``/docs`` and ``/openapi.json`` hold no
data and stay open; the page asks for the token and sends it with its API calls.
"""


import hmac
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import Depends, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

__all__ = ["BearerAuth", "read_token_file"]


def read_token_file(path: str | Path) -> str:
    """The token in a file (surrounding whitespace stripped); ValueError when empty."""
    token = Path(path).read_text(encoding="utf-8").strip()
    if not token:
        raise ValueError(f"{path}: the token file is empty")
    return token


@dataclass(frozen=True)
class BearerAuth:
    token: str
    protect_health: bool = False

    def __post_init__(self) -> None:
        if not self.token or any(c.isspace() for c in self.token):
            raise ValueError("the API token must be non-empty and hold no whitespace")

    def check(self, authorization: str | None) -> bool:
        """Whether an Authorization header value carries the token."""
        if not authorization:
            return False
        scheme, _, value = authorization.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            value.strip().encode(), self.token.encode())

    def dependency(self) -> Callable[..., None]:
        """A FastAPI dependency enforcing the token (and declaring it in OpenAPI)."""
        scheme = HTTPBearer(auto_error=False, description="the token lunettes serve was "
                                                          "given (--api-token-file)")
        expected = self.token.encode()

        def require_token(
            credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(scheme)],
        ) -> None:
            if credentials is None or credentials.scheme.lower() != "bearer" or \
                    not hmac.compare_digest(credentials.credentials.encode(), expected):
                raise HTTPException(401, "a valid bearer token is needed "
                                         "(Authorization: Bearer <token>)",
                                    headers={"WWW-Authenticate": "Bearer"})

        return require_token
