"""Cloud Logging audit entries (GKE's export of kube-apiserver audit) as audit Events."""

from __future__ import annotations

import re
from typing import Any

from lunettes.sources.errors import BadRecord

_VERSION = re.compile(r"^v\d+((alpha|beta)\d+)?$")
# google.rpc.Code -> HTTP status, for the codes kube-apiserver entries carry.
_RPC_TO_HTTP = {0: 200, 3: 400, 4: 504, 5: 404, 6: 409, 7: 403, 8: 429, 9: 422, 10: 409,
                13: 500, 14: 503, 16: 401}


def is_log_entry(doc: dict[str, Any]) -> bool:
    """True for a Cloud Logging entry whose payload is a Kubernetes AuditLog."""
    payload = doc.get("protoPayload")
    return isinstance(payload, dict) and str(payload.get("methodName", "")).startswith("io.k8s.")


def _split_method(method: str) -> tuple[str, str, str, str, str]:
    """``io.k8s.core.v1.pods.status.patch`` -> (group, version, resource, subresource, verb)."""
    parts = method.removeprefix("io.k8s.").split(".")
    for i, part in enumerate(parts):
        if _VERSION.match(part):
            group = ".".join(parts[:i])
            rest = parts[i + 1:]
            if len(rest) < 2:
                break
            resource, verb = rest[0], rest[-1]
            sub = ".".join(rest[1:-1])
            return ("" if group == "core" else group), part, resource, sub, verb
    raise BadRecord("bad_method_name", method)


def _split_resource_name(name: str) -> tuple[str, str]:
    """``core/v1/namespaces/ns/pods/p/status`` -> (namespace, name)."""
    parts = name.split("/")
    namespace = ""
    if "namespaces" in parts:
        i = parts.index("namespaces")
        namespace = parts[i + 1] if i + 1 < len(parts) else ""
        parts = parts[i + 2:]
        if not parts:  # the namespace object itself
            return "", namespace
    else:
        parts = parts[2:]
    return namespace, (parts[1] if len(parts) > 1 else "")


def from_log_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """Rebuild the audit.k8s.io/v1 Event a Cloud Logging entry was made from."""
    payload = entry["protoPayload"]
    group, version, resource, sub, verb = _split_method(payload["methodName"])
    namespace, name = _split_resource_name(str(payload.get("resourceName", "")))
    status = payload.get("status") or {}
    rpc_code = status.get("code", 0) if isinstance(status, dict) else 0
    http = _RPC_TO_HTTP.get(rpc_code, 500) if isinstance(rpc_code, int) else 500
    if http == 200 and verb == "create":
        http = 201
    meta = payload.get("requestMetadata") or {}
    auth = payload.get("authenticationInfo") or {}
    operation = entry.get("operation") or {}
    labels = entry.get("labels") or {}
    return {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "RequestResponse" if "response" in payload else "Request",
        "auditID": operation.get("id") or entry.get("insertId") or "",
        "stage": "ResponseComplete",
        "verb": verb,
        "user": {"username": auth.get("principalEmail", "")},
        "userAgent": meta.get("callerSuppliedUserAgent", ""),
        "objectRef": {
            "resource": resource, "subresource": sub, "namespace": namespace, "name": name,
            "apiGroup": group, "apiVersion": version,
        },
        "responseStatus": {"code": http, "message": status.get("message", "")
                           if isinstance(status, dict) else ""},
        "requestObject": payload.get("request"),
        "responseObject": payload.get("response"),
        "requestReceivedTimestamp": entry.get("timestamp") or entry.get("receiveTimestamp"),
        "annotations": labels,
    }
