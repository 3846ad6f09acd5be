"""Audit policies: which level (None, Metadata, Request, RequestResponse) a request gets."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["LEVELS", "POLICIES", "Policy", "get_policy"]

NONE, METADATA, REQUEST, REQUEST_RESPONSE = "None", "Metadata", "Request", "RequestResponse"
LEVELS = (NONE, METADATA, REQUEST, REQUEST_RESPONSE)
RANK = {level: i for i, level in enumerate(LEVELS)}


@dataclass(frozen=True, slots=True)
class Policy:
    """A named audit policy. ``level`` answers for one request's resource."""

    name: str
    description: str

    def level(self, resource: str, subresource: str = "", group: str = "") -> str:
        """The audit level of a request on ``group/resource/subresource``."""
        if self.name == "metadata":
            return METADATA
        is_pod = resource == "pods" and group == ""
        is_core_event = resource == "events" and group == ""
        is_event = resource == "events" and group in ("", "events.k8s.io")
        if self.name == "openshift":  # the Default profile of OpenShift 4.12's base policy
            return NONE if is_core_event else METADATA
        if self.name == "aks":  # aks-engine's parts/k8s/addons/audit-policy.yaml
            if is_pod and subresource == "":
                return REQUEST_RESPONSE
            if is_pod and subresource == "status":
                return METADATA
            return REQUEST if group == "" else METADATA
        if self.name in ("gke", "eks"):
            if is_core_event:
                return NONE
            if is_pod and subresource == "status":
                return REQUEST
            if is_pod and subresource in ("", "binding"):
                return REQUEST_RESPONSE
            return METADATA
        # requestresponse
        if (is_pod and subresource in ("", "status", "binding")) or is_event:
            return REQUEST_RESPONSE
        return METADATA

    @property
    def events_readable(self) -> bool:
        """Whether the log holds the bodies of the Events about Pods."""
        return all(self.level("events", group=g) in (REQUEST, REQUEST_RESPONSE)
                   for g in ("", "events.k8s.io"))


POLICIES: dict[str, Policy] = {
    p.name: p
    for p in (
        Policy(
            "requestresponse",
            "RequestResponse for pods, pods/status, pods/binding and events; Metadata else",
        ),
        Policy(
            "gke",
            "core Events not logged; pods/status at Request; pods at RequestResponse; "
            "Metadata else",
        ),
        Policy(
            "eks",
            "assumed as gke's (the kube-up policy: EKS does not publish its own): core "
            "Events not logged; pods/status at Request; pods at RequestResponse",
        ),
        Policy(
            "aks",
            "aks-engine's: pods at RequestResponse; pods/status at Metadata; pods/binding "
            "and core Events at Request; Metadata else",
        ),
        Policy(
            "openshift",
            "the Default profile (OpenShift 4.12): core Events not logged; Metadata else",
        ),
        Policy("metadata", "Metadata for everything: no bodies"),
    )
}


def get_policy(name: str) -> Policy:
    """The policy called ``name``; raises KeyError listing the known names."""
    try:
        return POLICIES[name]
    except KeyError:
        raise KeyError(f"unknown policy {name!r}; known: {', '.join(POLICIES)}") from None
