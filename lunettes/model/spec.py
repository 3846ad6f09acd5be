"""PodSpecSummary: what later analyzers need to know of a Pod's spec, nothing more."""

from __future__ import annotations

from dataclasses import dataclass, field
from sys import intern
from typing import Any

from lunettes.model.typed import (
    EMPTY,
    flag,
    objects,
    optional_integer,
    scalar_map,
    sub,
    text,
)

_CONTROLLER = "metadata.ownerReferences[].controller"
_VOLUME_KINDS = (
    "persistentVolumeClaim", "configMap", "secret", "emptyDir", "hostPath", "projected",
    "downwardAPI", "csi", "ephemeral", "nfs",
)
TRACE_ANNOTATIONS = ("lunettes.io/traceparent",)
"""The default keys of the annotation carrying the caller's W3C trace context."""


@dataclass(slots=True, frozen=True)
class ContainerSpec:
    """One container or init container of the spec."""

    name: str
    image: str
    requests: dict[str, str] = field(default_factory=dict)
    limits: dict[str, str] = field(default_factory=dict)
    readiness_probe: bool = False
    liveness_probe: bool = False
    startup_probe: bool = False


@dataclass(slots=True)
class PodSpecSummary:
    """A compact summary of a Pod's metadata and spec."""

    containers: tuple[ContainerSpec, ...] = ()
    init_containers: tuple[ContainerSpec, ...] = ()
    volumes: tuple[tuple[str, str], ...] = ()
    """(name, kind) pairs, kind being the volume source key such as ``configMap``."""
    node_name: str = ""
    scheduler_name: str = ""
    owner_kind: str = ""
    owner_name: str = ""
    priority: int | None = None
    priority_class_name: str = ""
    readiness_gates: tuple[str, ...] = ()
    restart_policy: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    """Shared between Pods with the same labels: read-only (as are containers' requests and
    limits)."""
    has_affinity: bool = False
    has_pod_anti_affinity: bool = False
    trace_context: str = ""
    """The W3C ``traceparent`` found under one of the trace-context annotation keys."""

    @property
    def images(self) -> tuple[str, ...]:
        """Every image the Pod runs, init containers first, without repeats."""
        seen: dict[str, None] = {}
        for c in (*self.init_containers, *self.containers):
            seen.setdefault(c.image, None)
        return tuple(seen)

    @property
    def runs_to_completion(self) -> bool:
        """True for Pods that end in a terminal phase instead of staying Ready."""
        return self.restart_policy in ("Never", "OnFailure")

    @classmethod
    def from_pod(cls, pod: dict[str, Any],
                 trace_annotations: tuple[str, ...] = TRACE_ANNOTATIONS) -> PodSpecSummary:
        """Summarise a Pod object (a dict as found in an audit request or response body);
        ``trace_annotations`` are the annotation keys that may hold a W3C traceparent.

        Raises BadRecord (``wrong_type:<path>``) for a field of the wrong type."""
        meta = sub(pod, "metadata", "metadata")
        spec = sub(pod, "spec", "spec")
        owners = objects(meta, "ownerReferences", "metadata.ownerReferences")
        owner = next((o for o in owners if flag(o, "controller", _CONTROLLER)),
                     owners[0] if owners else EMPTY)
        affinity = sub(spec, "affinity", "spec.affinity")
        priority = optional_integer(spec, "priority", "spec.priority")
        return cls(
            containers=tuple(_container(c, "spec.containers")
                             for c in objects(spec, "containers", "spec.containers")),
            init_containers=tuple(
                _container(c, "spec.initContainers")
                for c in objects(spec, "initContainers", "spec.initContainers")),
            volumes=tuple(_volume(v) for v in objects(spec, "volumes", "spec.volumes")),
            node_name=_text(text(spec, "nodeName", "spec.nodeName")),
            scheduler_name=_text(text(spec, "schedulerName", "spec.schedulerName")),
            owner_kind=_text(text(owner, "kind", "metadata.ownerReferences[].kind")),
            owner_name=_text(text(owner, "name", "metadata.ownerReferences[].name")),
            priority=priority,
            priority_class_name=text(spec, "priorityClassName", "spec.priorityClassName"),
            readiness_gates=tuple(
                text(g, "conditionType", "spec.readinessGates[].conditionType")
                for g in objects(spec, "readinessGates", "spec.readinessGates")),
            restart_policy=_text(text(spec, "restartPolicy", "spec.restartPolicy")
                                 or "Always"),
            labels=shared_dict(scalar_map(meta, "labels", "metadata.labels")),
            has_affinity=bool(affinity.get("nodeAffinity") or affinity.get("podAffinity")),
            has_pod_anti_affinity=bool(affinity.get("podAntiAffinity")),
            trace_context=annotation(meta, trace_annotations),
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready view (no env, no secrets: the summary never holds them)."""
        return {
            "containers": [_container_dict(c) for c in self.containers],
            "init_containers": [_container_dict(c) for c in self.init_containers],
            "volumes": [{"name": n, "kind": k} for n, k in self.volumes],
            "node_name": self.node_name,
            "scheduler_name": self.scheduler_name,
            "owner_kind": self.owner_kind,
            "owner_name": self.owner_name,
            "priority": self.priority,
            "priority_class_name": self.priority_class_name,
            "readiness_gates": list(self.readiness_gates),
            "restart_policy": self.restart_policy,
            "labels": self.labels,
        }


def annotation(meta: Any, keys: tuple[str, ...]) -> str:
    """The first of ``keys`` among an object's annotations (a string, at most 512
    characters: a traceparent has 55), else empty."""
    annotations = meta.get("annotations") if isinstance(meta, dict) else None
    if not isinstance(annotations, dict):
        return ""
    for key in keys:
        value = annotations.get(key)
        if isinstance(value, str) and value and len(value) <= 512:
            return value
    return ""


_DICTS: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}
_SHARED_LIMIT = 4096  # bounded: a cleared cache only stops sharing for new Pods


def shared_dict(items: dict[Any, Any]) -> dict[str, str]:
    """A str -> str dict of ``items``, one object shared by every Pod with the same contents
    (labels, requests and limits repeat across the Pods of a workload; a Pod in flight then
    costs a reference). Treat it as read-only."""
    key = tuple([(str(k), str(v)) for k, v in items.items()])
    found = _DICTS.get(key)
    if found is None:
        if len(_DICTS) >= _SHARED_LIMIT:
            _DICTS.clear()
        found = _DICTS[key] = {intern(k): intern(v) for k, v in key}
    return found


def _text(value: str) -> str:
    """Interned: names, images, labels repeat across Pods in flight."""
    return intern(value)


def _container(c: dict[str, Any], path: str) -> ContainerSpec:
    resources = sub(c, "resources", f"{path}[].resources")
    return ContainerSpec(
        name=_text(text(c, "name", f"{path}[].name")),
        image=_text(text(c, "image", f"{path}[].image")),
        requests=shared_dict(scalar_map(resources, "requests",
                                        f"{path}[].resources.requests")),
        limits=shared_dict(scalar_map(resources, "limits", f"{path}[].resources.limits")),
        readiness_probe="readinessProbe" in c,
        liveness_probe="livenessProbe" in c,
        startup_probe="startupProbe" in c,
    )


def _volume(v: dict[str, Any]) -> tuple[str, str]:
    kind = next((k for k in _VOLUME_KINDS if k in v), "")
    if not kind:
        kind = next((k for k in v if k != "name"), "")
    return (text(v, "name", "spec.volumes[].name"), kind)


def _container_dict(c: ContainerSpec) -> dict[str, Any]:
    return {
        "name": c.name,
        "image": c.image,
        "requests": c.requests,
        "limits": c.limits,
        "readiness_probe": c.readiness_probe,
    }
