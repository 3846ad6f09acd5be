"""Client names from userAgents, and request URI patterns with names replaced.

client-go writes ``<binary>/<version> (<os>/<arch>) kubernetes/<commit>``, and controllers
append their own name (``rest.AddUserAgent``) or, with service-account credentials, the
account (``.../system:serviceaccount:kube-system:replicaset-controller``). One client is one
binary plus that controller: ``kube-controller-manager/replicaset-controller``.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Final

NO_AGENT: Final = "(none)"
_CLIENT_GO = re.compile(r"^([^/\s]+)/\S+ \([^)]*\) kubernetes/[^/\s]*(?:/(.*))?$")
_SERVICE_ACCOUNT = "system:serviceaccount:"


@lru_cache(maxsize=8192)
def client_of(user_agent: str) -> str:
    """``kube-controller-manager/v1.30.2 (linux/amd64) kubernetes/abc/system:serviceaccount:
    kube-system:replicaset-controller`` -> ``kube-controller-manager/replicaset-controller``;
    ``kubectl/v1.30.0 (linux/amd64) kubernetes/abc`` -> ``kubectl``; other agents -> their
    first word before ``/`` (``Mozilla/5.0 (...)`` -> ``Mozilla``)."""
    if not user_agent:
        return NO_AGENT
    match = _CLIENT_GO.match(user_agent)
    if match is None:
        return user_agent.split("/", 1)[0].split(" ", 1)[0][:64] or NO_AGENT
    name, suffix = match.group(1), match.group(2)
    if not suffix:
        return name
    return f"{name}/{controller_of(suffix)}"


def controller_of(account_or_name: str) -> str:
    """``system:serviceaccount:kube-system:job-controller`` -> ``job-controller``; any other
    text is returned as it is (truncated to 64 characters)."""
    if account_or_name.startswith(_SERVICE_ACCOUNT):
        return account_or_name.rsplit(":", 1)[-1]
    return account_or_name[:64]


_GROUPED = {"api": 2, "apis": 3}  # /api/v1, /apis/<group>/<version>


@lru_cache(maxsize=16384)
def uri_pattern(uri: str) -> str:
    """The request URI with namespace and object names replaced and query values dropped:
    ``/api/v1/namespaces/ns1/pods/web-0/status?timeout=5s`` ->
    ``/api/v1/namespaces/{namespace}/pods/{name}/status?timeout``."""
    path, _, query = uri.partition("?")
    parts = path.strip("/").split("/")
    prefix = _GROUPED.get(parts[0], 0)
    if prefix and len(parts) > prefix:
        head, rest = parts[:prefix], parts[prefix:]
        if rest[0] == "namespaces" and len(rest) >= 3:
            head += ["namespaces", "{namespace}"]
            rest = rest[2:]
        if len(rest) >= 2:
            rest = [rest[0], "{name}", *rest[2:]]
        parts = head + rest
    pattern = "/" + "/".join(parts)
    if query:
        names = sorted({item.partition("=")[0] for item in query.split("&") if item})
        pattern += "?" + "&".join(names)
    return pattern[:200]
