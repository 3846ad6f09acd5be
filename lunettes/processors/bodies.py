"""Read the parts of Pod, Binding and Event bodies that HyperEvents carry.

Condition and container state messages are redacted (:mod:`lunettes.model.redact`) as
they are read; Event and Pod status messages when the folder adds them to a timeline.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from functools import lru_cache
from sys import intern
from typing import Any

from lunettes.config.errors import Section
from lunettes.model.audit import AuditRecord
from lunettes.model.hyperevent import ConditionChange, ContainerChange
from lunettes.model.redact import redact_text
from lunettes.model.typed import EMPTY, flag, integer, objects, optional_integer, sub, text
from lunettes.processors.base import Run, Stateless
from lunettes.registry import BuildContext

_FIELD_PATH = re.compile(r"spec\.(containers|initContainers|ephemeralContainers)\{([^}]*)\}")
_IMAGE = re.compile(r'[Ii]mage "([^"]+)"')
_DENIED_NAME = re.compile(r'^\w+ "([^"]+)"')


# Strings that repeat across Pods (condition types and statuses, reasons, container names,
# images, node names...) are interned: a Pod in flight then holds references, not copies
# (each decoded JSON string is a new object). Unique texts (messages) are kept as read.
_CONDITIONS: dict[tuple[str, str, str, str], ConditionChange] = {}
_CONTAINERS: dict[tuple[Any, ...], ContainerChange] = {}
_SHARED_LIMIT = 4096  # bounded: a cleared cache only stops sharing for new Pods


def _condition(key: tuple[str, str, str, str]) -> ConditionChange:
    """The ConditionChange of (type, status, reason, message), one object shared by every
    Pod (frozen)."""
    change = _CONDITIONS.get(key)
    if change is None:
        if len(_CONDITIONS) >= _SHARED_LIMIT:
            _CONDITIONS.clear()
        kind, status, reason, message = key
        change = _CONDITIONS[key] = ConditionChange(intern(kind), intern(status),
                                                    intern(reason),
                                                    redact_text(message))
    return change


@lru_cache(maxsize=4096)
def component(username: str, user_agent: str = "", groups: tuple[str, ...] = ()
              ) -> tuple[str, str]:
    """(component, node) of an audit user: kubelet of a node, the scheduler, a controller.

    A kubelet is ``system:node:<node>``, or (managed clusters whose kubelets share a
    credential: AKS shows ``nodeclient``) any user in the ``system:nodes`` group or with
    the kubelet's user agent; its node is then unknown (""). The scheduler and the
    controller manager are known by their user names or user agents too.
    """
    if username.startswith("system:node:"):
        return "kubelet", intern(username[len("system:node:"):])
    if "system:nodes" in groups or user_agent.startswith("kubelet/"):
        return "kubelet", ""
    if username == "system:kube-scheduler" or user_agent.startswith("kube-scheduler/"):
        return "kube-scheduler", ""
    if username.startswith("system:serviceaccount:kube-system:"):
        return intern(username.rsplit(":", 1)[1]), ""
    if username == "system:kube-controller-manager":
        return "kube-controller-manager", ""
    return intern(username), ""


def meta(body: dict[str, Any] | None) -> dict[str, Any]:
    """The metadata mapping of a body (empty when absent)."""
    return sub(body, "metadata", "metadata") if body else EMPTY


def meta_text(body: dict[str, Any] | None, key: str) -> str:
    """A string of a body's metadata (``uid``, ``name``...), "" when absent."""
    return text(meta(body), key, f"metadata.{key}") if body else ""


def denied_name(message: str) -> str:
    """The object name in an API error such as ``pods "x" is forbidden: ...``."""
    found = _DENIED_NAME.match(message)
    return found.group(1) if found else ""


_Ended = tuple[str, str, int | None]
"""(reason, message, exit code) of a container's previous run (its lastState)."""


@dataclass(slots=True, frozen=True)
class StatusFacts:
    """What a (full or patch) Pod status says, read whole before any state changes."""

    conditions: tuple[tuple[str, str, str, str], ...]
    """(type, status, reason, message) of each condition."""
    containers: tuple[tuple[bool, ContainerChange, _Ended | None], ...]
    """(init, state, how the previous run ended) of each container status."""
    phase: str
    pod_ip: str
    reason: tuple[str, str]

    @classmethod
    def read(cls, status: dict[str, Any]) -> StatusFacts:
        """Read a status body; raises BadRecord for a field of the wrong type."""
        conditions = []
        for cond in objects(status, "conditions", "status.conditions"):
            kind = text(cond, "type", "status.conditions[].type")
            if kind:
                conditions.append((kind, text(cond, "status", _COND_STATUS),
                                   text(cond, "reason", _COND_REASON),
                                   text(cond, "message", _COND_MESSAGE)))
        containers = []
        for init, key in ((True, "initContainerStatuses"), (False, "containerStatuses")):
            path = f"status.{key}"
            for cs in objects(status, key, path):
                change = _container_change(cs, init, path)
                if change is not None:
                    containers.append((init, change, _last_terminated(cs, path)))
        return cls(tuple(conditions), tuple(containers),
                   text(status, "phase", "status.phase"),
                   text(status, "podIP", "status.podIP"),
                   (text(status, "reason", "status.reason"),
                    text(status, "message", "status.message")))


_COND_STATUS = "status.conditions[].status"
_COND_REASON = "status.conditions[].reason"
_COND_MESSAGE = "status.conditions[].message"


@dataclass(slots=True)
class PodState:
    """What the folder last knew of a Pod's status, to keep only changes."""

    conditions: dict[str, ConditionChange] = field(default_factory=dict)
    """The last change of each condition type (the very objects the HyperEvents hold)."""
    containers: dict[tuple[bool, str], ContainerChange] = field(default_factory=dict)
    """The last change of each (init, name) container."""
    phase: str = ""
    pod_ip: str = ""
    reason: tuple[str, str] = ("", "")

    def apply(self, status: StatusFacts) -> tuple[
        tuple[ConditionChange, ...], tuple[ContainerChange, ...], str, str, tuple[str, str]
    ]:
        """Fold a status in; return the changed conditions, containers, the new phase,
        the new pod IP and the new Pod-level (reason, message) such as (``Evicted``, ...)
        -- empty when unchanged."""
        conditions = []
        for key in status.conditions:
            known = self.conditions.get(key[0])
            if known is None or (known.status, known.reason, known.message) != key[1:]:
                updated = _condition(key)
                self.conditions[updated.type] = updated
                conditions.append(updated)
        containers = []
        for init, change, ended in status.containers:
            state = (change.state, change.reason, change.restart_count)
            last = self.containers.get((init, change.name))
            old = None if last is None else (last.state, last.reason, last.restart_count)
            if old == state and last is not None and last.ready == change.ready:
                continue
            self.containers[(init, change.name)] = change
            if old == state:  # only readiness flipped
                change = replace(change, transition=False)
            restarted = old is not None and change.restart_count > old[2]
            if ended is not None and (restarted or old is None) and change.state != (
                    "terminated"):  # the run that ended before this restart
                containers.append(replace(
                    change, state="terminated", reason=ended[0], message=ended[1],
                    exit_code=ended[2], ready=False, transition=True, previous_run=True))
            containers.append(change)
        phase = intern(status.phase)
        if phase == self.phase:
            phase = ""
        elif phase:
            self.phase = phase
        pod_ip = status.pod_ip
        if pod_ip == self.pod_ip:
            pod_ip = ""
        elif pod_ip:
            self.pod_ip = pod_ip
        reason = status.reason
        if reason == self.reason or not reason[0]:
            reason = ("", "")
        else:
            self.reason = reason
        return tuple(conditions), tuple(containers), phase, pod_ip, reason


def _last_terminated(cs: dict[str, Any], path: str) -> _Ended | None:
    """How the previous run ended (``lastState.terminated``), if it did."""
    last = sub(cs, "lastState", f"{path}[].lastState")
    if last.get("terminated") is None:
        return None
    where = f"{path}[].lastState.terminated"
    ended = sub(last, "terminated", where)
    return (text(ended, "reason", f"{where}.reason"),
            redact_text(text(ended, "message", f"{where}.message")),
            optional_integer(ended, "exitCode", f"{where}.exitCode"))


def _container_change(cs: dict[str, Any], init: bool, path: str) -> ContainerChange | None:
    state = sub(cs, "state", f"{path}[].state")
    kind = next((k for k in ("terminated", "running", "waiting") if k in state), "")
    if not kind:
        return None
    where = f"{path}[].state.{kind}"
    detail = sub(state, kind, where)
    exit_code = (optional_integer(detail, "exitCode", f"{where}.exitCode")
                 if kind == "terminated" else None)
    key = (text(cs, "name", f"{path}[].name"), init, kind,
           text(detail, "reason", f"{where}.reason"),
           text(detail, "message", f"{where}.message"), exit_code,
           integer(cs, "restartCount", f"{path}[].restartCount"),
           flag(cs, "ready", f"{path}[].ready"), text(cs, "image", f"{path}[].image"))
    change = _CONTAINERS.get(key)
    if change is None:  # one object shared by every Pod with the same values (frozen)
        if len(_CONTAINERS) >= _SHARED_LIMIT:
            _CONTAINERS.clear()
        change = _CONTAINERS[key] = ContainerChange(
            name=intern(key[0]), init=init, state=kind, reason=intern(key[3]),
            message=redact_text(key[4]), exit_code=key[5], restart_count=key[6], ready=key[7],
            image=intern(key[8]))
    return change


@dataclass(slots=True)
class EventFacts:
    """The parts of a core/v1 or events.k8s.io/v1 Event a HyperEvent carries."""

    kind: str = ""
    namespace: str = ""
    name: str = ""
    uid: str = ""
    reason: str = ""
    message: str = ""
    event_type: str = ""
    count: int = 0
    container: str = ""
    init: bool = False
    image: str = ""
    reporter: str = ""


def event_facts(body: dict[str, Any], previous: EventFacts | None = None) -> EventFacts:
    """Read an Event body (create) or an Event patch merged over what was known before.

    Raises BadRecord for a field of the wrong type."""
    facts = EventFacts() if previous is None else replace(previous)
    key = "involvedObject" if body.get("involvedObject") else "regarding"
    about = sub(body, key, key)
    if about:
        facts.kind = intern(text(about, "kind", f"{key}.kind"))
        facts.namespace = intern(text(about, "namespace", f"{key}.namespace"))
        facts.name = text(about, "name", f"{key}.name")
        facts.uid = text(about, "uid", f"{key}.uid")
        path = _FIELD_PATH.search(text(about, "fieldPath", f"{key}.fieldPath"))
        if path:
            facts.container = intern(path.group(2))
            facts.init = path.group(1) == "initContainers"
    if body.get("reason") is not None:
        facts.reason = intern(text(body, "reason", "reason"))
    if body.get("type") is not None:
        facts.event_type = intern(text(body, "type", "type"))
    key = "message" if "message" in body else "note"
    if body.get(key) is not None:
        facts.message = message = text(body, key, key)
        image = _IMAGE.search(message)
        if image:
            facts.image = intern(image.group(1))
    series = sub(body, "series", "series")
    count = (optional_integer(series, "count", "series.count")
             if body.get("series") is not None
             else optional_integer(body, "count", "count"))
    if count is not None:
        facts.count = count
    elif not facts.count:
        facts.count = 1
    source = sub(body, "source", "source")
    reporter = (text(body, "reportingController", "reportingController")
                or text(body, "reportingComponent", "reportingComponent")
                or text(source, "component", "source.component"))
    if reporter:
        facts.reporter = intern(reporter)
    return facts


def slim(record: AuditRecord) -> None:
    """Drop the parts of a record's bodies that the fold never reads.

    Done before the reorder window holds the record (seconds of audit time): the bodies of
    other resources, and the Pod ``spec`` that every pods/status or delete response repeats
    (only creates are read for it), are freed at once instead of staying in memory to be
    freed, cold, when the record is folded.
    """
    resource = record.resource
    if resource == "pods":
        if record.verb != "create" or record.subresource:
            request, response = record.request, record.response
            if request is not None and "spec" in request:
                record.request = {k: v for k, v in request.items() if k != "spec"}
            if response is not None and "spec" in response:
                record.response = {k: v for k, v in response.items() if k != "spec"}
    elif resource != "events" and (record.request is not None
                                   or record.response is not None):
        record.request = record.response = None


class Bodies(Stateless):
    """Processor ``bodies``: :func:`slim` every record (put it before the window)."""

    def __init__(self, name: str = "bodies") -> None:
        self.name = name

    @classmethod
    def from_config(cls, key: str, section: Section, context: BuildContext) -> Bodies:
        section.check_unknown()
        return cls(key)

    def process(self, items: Iterator[AuditRecord], run: Run) -> Iterator[AuditRecord]:
        for record in items:
            slim(record)
            yield record
