"""Cloud Logging audit entries (GKE's export of kube-apiserver audit) as audit Events."""

from __future__ import annotations

import re
from typing import Any

from lunettes.model.typed import optional_integer, text
from lunettes.model.typed import sub as typed_sub
from lunettes.sources.errors import BadRecord

_VERSION = re.compile(r"^v\d+((alpha|beta)\d+)?$")
# google.rpc.Code -> HTTP status, for the codes kube-apiserver entries carry.
_RPC_TO_HTTP = {0: 200, 3: 400, 4: 504, 5: 404, 6: 409, 7: 403, 8: 429, 9: 422, 10: 409,
                13: 500, 14: 503, 16: 401}


def is_log_entry(doc: dict[str, Any]) -> bool:
    """True for a Cloud Logging entry whose payload is a Kubernetes AuditLog."""
    payload = doc.get("protoPayload")
    if type(payload) is not dict:
        return False
    method = payload.get("methodName")
    return type(method) is str and method.startswith("io.k8s.")


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


def _request_uri(resource_name: str) -> str:
    """The path a resourceName was derived from: ``core/v1/namespaces/ns/pods/p`` ->
    ``/api/v1/namespaces/ns/pods/p``, ``apps/v1/...`` -> ``/apis/apps/v1/...``."""
    if not resource_name:
        return ""
    group, _, rest = resource_name.partition("/")
    return f"/api/{rest}" if group == "core" else f"/apis/{resource_name}"


def from_log_entry(entry: dict[str, Any]) -> dict[str, Any]:
    """Rebuild the audit.k8s.io/v1 Event a Cloud Logging entry was made from."""
    payload = entry["protoPayload"]
    group, version, resource, sub, verb = _split_method(payload["methodName"])
    resource_name = text(payload, "resourceName", "resourceName")
    namespace, name = _split_resource_name(resource_name)
    status = typed_sub(payload, "status", "protoPayload.status")
    rpc_code = optional_integer(status, "code", "protoPayload.status.code") or 0
    http = _RPC_TO_HTTP.get(rpc_code, 500)
    if http == 200 and verb == "create":
        http = 201
    meta = typed_sub(payload, "requestMetadata", "protoPayload.requestMetadata")
    auth = typed_sub(payload, "authenticationInfo", "protoPayload.authenticationInfo")
    operation = typed_sub(entry, "operation", "operation")
    labels = typed_sub(entry, "labels", "labels")
    return {
        "kind": "Event",
        "apiVersion": "audit.k8s.io/v1",
        "level": "RequestResponse" if "response" in payload else "Request",
        "auditID": (text(operation, "id", "operation.id")
                    or text(entry, "insertId", "insertId")),
        "stage": "ResponseComplete",
        "requestURI": _request_uri(resource_name),
        "verb": verb,
        "user": {"username": text(auth, "principalEmail",
                                  "protoPayload.authenticationInfo.principalEmail")},
        "userAgent": text(meta, "callerSuppliedUserAgent",
                          "protoPayload.requestMetadata.callerSuppliedUserAgent"),
        "objectRef": {
            "resource": resource, "subresource": sub, "namespace": namespace, "name": name,
            "apiGroup": group, "apiVersion": version,
        },
        "responseStatus": {"code": http, "message": text(status, "message",
                                                         "protoPayload.status.message")},
        "requestObject": payload.get("request"),
        "responseObject": payload.get("response"),
        "requestReceivedTimestamp": entry.get("timestamp") or entry.get("receiveTimestamp"),
        "annotations": labels,
    }
