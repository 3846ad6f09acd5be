"""SLO classes from slo.yaml: which deadline fits a Pod, chosen by matching its spec.

Classes are tried in order and the first whose ``match`` holds wins; ``default`` takes the
rest. Every key of a ``match`` must hold (AND); a list means "any of". Ranges are
``{min: X, max: Y}``, both ends inclusive, either may be left out. Keys:

==================  ===========================================================================
namespaces          namespace names or globs (``team-*``)
labels              ``{key: value}``; a value may be a glob or a list of globs (``"*"``: present)
owner_kinds         controller kinds (ReplicaSet, StatefulSet, Job, DaemonSet...); ``none``:
                    a bare Pod
priority_classes    priorityClassName values; ``none``: no priority class
cpu, memory         range of the Pod's effective requests (quantities: ``500m``, ``2``,
                    ``512Mi``, ``1G``): the sum over app containers (a container with a
                    limit and no request counts its limit, as Kubernetes defaults it), or the
                    largest init container's when that is larger (the scheduler's rule)
containers          range of the number of app containers
init_containers     range of the number of init containers
volume_kinds        volume sources, any of (persistentVolumeClaim, configMap, secret,
                    emptyDir, hostPath, projected, csi, ephemeral, ...)
extended_resources  extended resource names or globs requested or limited by any container
                    (``nvidia.com/gpu``, ``example.com/*``)
gpu                 true: requests any resource whose name contains ``gpu``; false: none
affinity            true/false: node or pod affinity is set
anti_affinity       true/false: pod anti-affinity is set
==================  ===========================================================================

Without a spec (Metadata-level logs) only ``namespaces`` can match: every other key fails.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

from lunettes.config.errors import ConfigError, Section, read_yaml, suggest
from lunettes.model.quantity import parse_quantity
from lunettes.model.spec import ContainerSpec, PodSpecSummary

__all__ = ["SLIStages", "SLOClass", "SLOConfig", "effective_requests"]

RESERVED = ("other", "none")
"""Class names kept for the metrics' cardinality guard and Pods without a verdict."""

VOLUME_KINDS = (
    "awsElasticBlockStore", "azureDisk", "azureFile", "cephfs", "cinder", "configMap", "csi",
    "downwardAPI", "emptyDir", "ephemeral", "fc", "flexVolume", "flocker",
    "gcePersistentDisk", "gitRepo", "glusterfs", "hostPath", "image", "iscsi", "nfs",
    "persistentVolumeClaim", "photonPersistentDisk", "portworxVolume", "projected",
    "quobyte", "rbd", "scaleIO", "secret", "storageos", "vsphereVolume",
)
_NATIVE_RESOURCES = ("cpu", "memory", "ephemeral-storage", "storage", "pods")

Predicate = Callable[[str, PodSpecSummary | None], bool]


def effective_requests(spec: PodSpecSummary, resource: str) -> Fraction:
    """What the scheduler reserves of ``resource``: max(sum of app containers, largest init
    container); a container with a limit and no request counts its limit."""

    def one(c: ContainerSpec) -> Fraction:
        text = c.requests.get(resource, c.limits.get(resource))
        if text is None:
            return Fraction(0)
        try:
            return parse_quantity(text)
        except ValueError:
            return Fraction(0)

    app = sum((one(c) for c in spec.containers), Fraction(0))
    init = max((one(c) for c in spec.init_containers), default=Fraction(0))
    return max(app, init)


def _extended(spec: PodSpecSummary) -> set[str]:
    names: set[str] = set()
    for c in (*spec.containers, *spec.init_containers):
        names.update(k for k in (*c.requests, *c.limits)
                     if k not in _NATIVE_RESOURCES and not k.startswith("hugepages-")
                     and "/" in k and not k.startswith("kubernetes.io/"))
    return names


@dataclass(frozen=True)
class SLOClass:
    """One class: its name, deadline and the predicates that must all hold."""

    name: str
    deadline_s: float
    predicates: tuple[Predicate, ...] = ()
    description: str = ""

    def matches(self, namespace: str, spec: PodSpecSummary | None) -> bool:
        return all(p(namespace, spec) for p in self.predicates)


@dataclass(frozen=True)
class SLIStages:
    """Which stages the pod startup SLI reads (``pod_start_sli`` in slo.yaml).

    The SLI ends when the last app container's ``started`` stage ends (or, when a container
    has none, e.g. a log without Events, at the start of ``fallback``: the moment the last
    container was first seen started) and leaves out the ``exclude`` stages.
    """

    started: str = "container_start"
    fallback: str = "readiness"
    exclude: tuple[str, ...] = ("image_pull", "init_containers")


@dataclass(frozen=True)
class SLOConfig:
    """The classes of slo.yaml, in order, the default and the SLI's stages."""

    classes: tuple[SLOClass, ...]
    default: SLOClass = field(default_factory=lambda: SLOClass("default", 60.0))
    sli: SLIStages = field(default_factory=SLIStages)

    origin: str = ""
    """The file it was read from, for messages."""

    @property
    def stage_references(self) -> list[tuple[str, str]]:
        """``(where, stage)`` of the stages ``pod_start_sli`` names."""
        where = f"{self.origin}: pod_start_sli"
        return [(f"{where}.started", self.sli.started), (f"{where}.fallback", self.sli.fallback),
                *((f"{where}.exclude[{i}]", s) for i, s in enumerate(self.sli.exclude))]

    def select(self, namespace: str, spec: PodSpecSummary | None) -> SLOClass:
        """The first class that matches, else the default."""
        return next((c for c in self.classes if c.matches(namespace, spec)), self.default)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.classes] + [self.default.name]

    @classmethod
    def load(cls, path: Path) -> SLOConfig:
        """Read and validate an SLO file; every problem is reported at once."""
        data = read_yaml(path)
        return cls.parse(data, str(path))

    @classmethod
    def parse(cls, data: object, origin: str) -> SLOConfig:
        problems: list[str] = []
        top = Section(data, f"{origin}:", problems)
        items = top.get("classes", [], list)
        default_section = top.sub("default")
        sli = _sli(top.sub("pod_start_sli"))
        top.check_unknown()
        classes: list[SLOClass] = []
        seen: set[str] = set()
        for i, item in enumerate(items):
            label = item.get("name") if isinstance(item, dict) else None
            section = Section(item, f"{origin}: classes[{i}]" + (f" ({label})" if label else ""),
                              problems)
            name = section.require("name", str) or f"#{i}"
            if name in seen:
                section.problem("name", f"duplicate class name {name!r}")
            seen.add(name)
            classes.append(_class(section, name))
        if "default" not in top.data:
            top.problem("default", "missing (required): the class of Pods no class matches, "
                                   "e.g. {name: default, deadline_s: 60}")
            default = SLOClass("default", 60.0)
        else:
            name = default_section.get("name", "default", str)
            if name in seen:
                default_section.problem("name", f"{name!r} is also a class name")
            default = _class(default_section, name, matchable=False)
        if problems:
            raise ConfigError(problems)
        return cls(tuple(classes), default, sli, origin)


def _sli(section: Section) -> SLIStages:
    default = SLIStages()
    started = section.get("started", default.started, str)
    fallback = section.get("fallback", default.fallback, str)
    exclude = section.get("exclude", list(default.exclude), list)
    if not all(isinstance(e, str) for e in exclude):
        section.problem("exclude", "expected a list of stage names")
        exclude = list(default.exclude)
    section.check_unknown()
    return SLIStages(started, fallback, tuple(exclude))


def _class(section: Section, name: str, matchable: bool = True) -> SLOClass:
    if name in RESERVED:
        section.problem("name", f"{name!r} is reserved (the metrics use it); choose another")
    deadline = section.require("deadline_s", float)
    if deadline is not None and deadline <= 0:
        section.problem("deadline_s", "must be positive")
    description = section.get("description", "", str)
    predicates: tuple[Predicate, ...] = ()
    if matchable:
        predicates = _predicates(section.sub("match"))
    section.check_unknown()
    return SLOClass(name, float(deadline or 60.0), predicates, description)


def _predicates(match: Section) -> tuple[Predicate, ...]:
    out: list[Predicate] = []
    for key, reader in _READERS.items():
        if key in match.data:
            predicate = reader(match, key)
            if predicate is not None:
                out.append(predicate)
    for key in match.data:
        match.get(str(key), None)
    for key in match.data:
        if key not in _READERS:
            match.problem(str(key), f"unknown match key{suggest(str(key), _READERS)}; "
                                    f"supported: {', '.join(_READERS)}")
    return tuple(out)


def _spec_only(test: Callable[[PodSpecSummary], bool]) -> Predicate:
    return lambda namespace, spec: spec is not None and test(spec)


def _namespaces(match: Section, key: str) -> Predicate | None:
    patterns = match.strings(key)
    if patterns is None:
        return None
    return lambda namespace, spec: any(fnmatch.fnmatchcase(namespace, p) for p in patterns)


def _labels(match: Section, key: str) -> Predicate | None:
    value = match.get(key, None, dict)
    if value is None:
        return None
    wanted: dict[str, list[str]] = {}
    for label, patterns in value.items():
        items = [patterns] if isinstance(patterns, str) else patterns
        if not isinstance(items, list) or not all(isinstance(p, str) for p in items):
            match.problem(f"{key}.{label}", "expected a string or a list of strings "
                                            "(quote values like \"true\" or \"1\")")
            continue
        wanted[str(label)] = items

    def test(spec: PodSpecSummary) -> bool:
        return all(k in spec.labels and any(fnmatch.fnmatchcase(spec.labels[k], p) for p in ps)
                   for k, ps in wanted.items())

    return _spec_only(test)


def _named(attribute: str) -> Callable[[Section, str], Predicate | None]:
    def reader(match: Section, key: str) -> Predicate | None:
        values = match.strings(key)
        if values is None:
            return None
        names = {"" if v == "none" else v for v in values}
        return _spec_only(lambda spec: getattr(spec, attribute) in names)

    return reader


def _range(match: Section, key: str,
           parse: Callable[[Any], Fraction]) -> tuple[Fraction | None, Fraction | None] | None:
    sub = match.sub(key)
    bounds: list[Fraction | None] = []
    for end in ("min", "max"):
        raw = sub.get(end, None, (str, int, float))
        value = None
        if raw is not None:
            try:
                value = parse(raw)
            except ValueError as exc:
                sub.problem(end, str(exc))
        bounds.append(value)
    sub.check_unknown()
    low, high = bounds
    if not sub.data:
        match.problem(key, "expected {min: ..., max: ...} (either may be left out)")
        return None
    if low is not None and high is not None and low > high:
        match.problem(key, f"min is larger than max ({float(low):g} > {float(high):g})")
    return low, high


def _within(value: Fraction, low: Fraction | None, high: Fraction | None) -> bool:
    return (low is None or value >= low) and (high is None or value <= high)


def _resource(resource: str) -> Callable[[Section, str], Predicate | None]:
    def reader(match: Section, key: str) -> Predicate | None:
        bounds = _range(match, key, parse_quantity)
        if bounds is None:
            return None
        low, high = bounds
        return _spec_only(lambda spec: _within(effective_requests(spec, resource), low, high))

    return reader


def _integer(value: Any) -> Fraction:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected a whole number, got {value!r}")
    return Fraction(value)


def _count(attribute: str) -> Callable[[Section, str], Predicate | None]:
    def reader(match: Section, key: str) -> Predicate | None:
        bounds = _range(match, key, _integer)
        if bounds is None:
            return None
        low, high = bounds
        return _spec_only(lambda spec: _within(Fraction(len(getattr(spec, attribute))),
                                               low, high))

    return reader


def _volume_kinds(match: Section, key: str) -> Predicate | None:
    kinds = match.strings(key)
    if kinds is None:
        return None
    for kind in kinds:
        if kind not in VOLUME_KINDS:
            match.problem(key, f"unknown volume kind {kind!r}{suggest(kind, VOLUME_KINDS)}")
    wanted = set(kinds)
    return _spec_only(lambda spec: any(k in wanted for _, k in spec.volumes))


def _extended_resources(match: Section, key: str) -> Predicate | None:
    patterns = match.strings(key)
    if patterns is None:
        return None
    return _spec_only(lambda spec: any(fnmatch.fnmatchcase(r, p)
                                       for r in _extended(spec) for p in patterns))


def _flag(test: Callable[[PodSpecSummary], bool]) -> Callable[[Section, str],
                                                               Predicate | None]:
    def reader(match: Section, key: str) -> Predicate | None:
        wanted = match.get(key, None, bool)
        if wanted is None:
            return None
        return _spec_only(lambda spec: test(spec) == wanted)

    return reader


_READERS: Mapping[str, Callable[[Section, str], Predicate | None]] = {
    "namespaces": _namespaces,
    "labels": _labels,
    "owner_kinds": _named("owner_kind"),
    "priority_classes": _named("priority_class_name"),
    "cpu": _resource("cpu"),
    "memory": _resource("memory"),
    "containers": _count("containers"),
    "init_containers": _count("init_containers"),
    "volume_kinds": _volume_kinds,
    "extended_resources": _extended_resources,
    "gpu": _flag(lambda spec: any("gpu" in r.lower() for r in _extended(spec))),
    "affinity": _flag(lambda spec: spec.has_affinity),
    "anti_affinity": _flag(lambda spec: spec.has_pod_anti_affinity),
}
