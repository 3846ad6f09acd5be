"""Build audit.k8s.io/v1 Event records under a policy and queue them on the stream."""

from __future__ import annotations

import random
from typing import Any

import orjson

from lunettes.simulate.clock import rfc3339
from lunettes.simulate.cluster import Cluster, Identity
from lunettes.simulate.policy import METADATA, NONE, RANK, REQUEST, REQUEST_RESPONSE, Policy
from lunettes.simulate.stream import Stream

__all__ = ["AuditLog", "Written", "failure_status", "object_ref"]

_dumps = orjson.dumps


def object_ref(resource: str, namespace: str = "", name: str = "", *, group: str = "",
               version: str = "v1", subresource: str = "", uid: str = "") -> dict[str, Any]:
    """An audit objectRef in kube-apiserver's key order (empty fields omitted)."""
    ref: dict[str, Any] = {"resource": resource}
    if namespace:
        ref["namespace"] = namespace
    if name:
        ref["name"] = name
    if uid:
        ref["uid"] = uid
    if group:
        ref["apiGroup"] = group
    ref["apiVersion"] = version
    if subresource:
        ref["subresource"] = subresource
    return ref


def failure_status(code: int, reason: str, message: str,
                   details: dict[str, Any] | None = None) -> dict[str, Any]:
    """A metav1.Status for a failed request (without kind/apiVersion)."""
    status: dict[str, Any] = {"metadata": {}, "status": "Failure", "message": message,
                              "reason": reason}
    if details is not None:
        status["details"] = details
    status["code"] = code
    return status


class Written:
    """What one emitted request left in the log: its level and auditID (or not written)."""

    __slots__ = ("audit_id", "level")

    def __init__(self, level: str, audit_id: str) -> None:
        self.level = level
        self.audit_id = audit_id

    @property
    def request_body(self) -> bool:
        return RANK[self.level] >= RANK[REQUEST]

    @property
    def response_body(self) -> bool:
        return self.level == REQUEST_RESPONSE


NOT_WRITTEN = Written(NONE, "")


class AuditLog:
    """Turns requests into audit Event lines, applying the policy, onto a Stream."""

    def __init__(self, cluster: Cluster, policy: Policy, stream: Stream, rng: random.Random,
                 request_received: float = 0.0) -> None:
        self.cluster = cluster
        self.policy = policy
        self.stream = stream
        self.rng = rng
        self.request_received = request_received
        self.servers = cluster.apiservers
        self.emitted = 0

    def level(self, ref: dict[str, Any]) -> str:
        return self.policy.level(ref["resource"], ref.get("subresource", ""),
                                 ref.get("apiGroup", ""))

    def emit(self, t_us: int, latency_us: int, verb: str, uri: str, ident: Identity,
             ref: dict[str, Any], code: int = 200, *, request: Any = None,
             response: Any = None, failure: dict[str, Any] | None = None,
             annotations: dict[str, str] | None = None, stage: str = "ResponseComplete",
             audit_id: str | None = None, server: int | None = None) -> Written:
        """Write one request's record; bodies are kept only when the policy's level allows.

        ``failure`` is the Status of a failed request (its ``code`` wins over ``code``);
        the response body of a failure is that Status.
        """
        level = self.level(ref)
        stage_us = t_us + latency_us
        if not self.stream.accepts(stage_us):
            return NOT_WRITTEN
        # the same draws whatever the policy, so that every policy logs the same cluster
        rng = self.rng
        if audit_id is None:
            audit_id = self.cluster.uuid()
        if server is None:
            server = rng.randrange(self.servers) if self.servers > 1 else 0
        logged_received = (self.request_received and stage == "ResponseComplete"
                           and rng.random() < self.request_received)
        if level == NONE:
            return NOT_WRITTEN
        received = rfc3339(t_us)
        if logged_received:
            self.stream.push(server, t_us, _dumps({
                "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": level,
                "auditID": audit_id, "stage": "RequestReceived", "requestURI": uri,
                "verb": verb, "user": ident.user, "sourceIPs": [ident.source_ip],
                "userAgent": ident.user_agent, "objectRef": ref,
                "requestReceivedTimestamp": received, "stageTimestamp": received,
            }))
            self.emitted += 1
        if failure is not None:
            code = failure["code"]
            status: dict[str, Any] = failure
        else:
            status = {"metadata": {}, "code": code}
        event: dict[str, Any] = {
            "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": level,
            "auditID": audit_id, "stage": stage, "requestURI": uri, "verb": verb,
            "user": ident.user, "sourceIPs": [ident.source_ip],
            "userAgent": ident.user_agent, "objectRef": ref, "responseStatus": status,
        }
        if level != METADATA:
            if request is not None:
                event["requestObject"] = request
            if level == REQUEST_RESPONSE and stage == "ResponseComplete":
                if failure is not None:
                    event["responseObject"] = {"kind": "Status", "apiVersion": "v1", **failure}
                elif response is not None:
                    event["responseObject"] = response
        event["requestReceivedTimestamp"] = received
        event["stageTimestamp"] = rfc3339(stage_us)
        notes = {"authorization.k8s.io/decision": "allow",
                 "authorization.k8s.io/reason": ident.authz_reason}
        if annotations:
            notes.update(annotations)
        event["annotations"] = notes
        self.stream.push(server, stage_us, _dumps(event))
        self.emitted += 1
        return Written(level, audit_id)
