"""Read the parts of Pod, Binding and Event bodies that HyperEvents carry.

Condition and container state messages are redacted (:mod:`lunettes.model.redact`) as
they are read; Event and Pod status messages when the folder adds them to a timeline.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from functools import lru_cache
from sys import intern
from typing import Any

from lunettes.model.hyperevent import ConditionChange, ContainerChange
from lunettes.model.redact import redact_text

_FIELD_PATH = re.compile(r"spec\.(containers|initContainers|ephemeralContainers)\{([^}]*)\}")
_IMAGE = re.compile(r'[Ii]mage "([^"]+)"')
_DENIED_NAME = re.compile(r'^\w+ "([^"]+)"')


# Strings that repeat across Pods (condition types and statuses, reasons, container names,
# images, node names...) are interned: a Pod in flight then holds references, not copies
# (each decoded JSON string is a new object). Unique texts (messages) are kept as read.
def _text(value: Any) -> str:
    """An interned string of a body value (None and missing as "")."""
    return intern(value) if type(value) is str else intern(str(value))


_CONDITIONS: dict[tuple[Any, str, str, str], ConditionChange] = {}
_CONTAINERS: dict[tuple[Any, ...], ContainerChange] = {}
_SHARED_LIMIT = 4096  # bounded: a cleared cache only stops sharing for new Pods


def _condition(kind: Any, status: str, reason: str, message: str) -> ConditionChange:
    """The ConditionChange of these values, one object shared by every Pod (frozen)."""
    key = (kind, status, reason, message)
    change = _CONDITIONS.get(key)
    if change is None:
        if len(_CONDITIONS) >= _SHARED_LIMIT:
            _CONDITIONS.clear()
        change = _CONDITIONS[key] = ConditionChange(_text(kind), status, reason,
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
    if not body:
        return {}
    value = body.get("metadata")
    return value if isinstance(value, dict) else {}


def denied_name(message: str) -> str:
    """The object name in an API error such as ``pods "x" is forbidden: ...``."""
    found = _DENIED_NAME.match(message)
    return found.group(1) if found else ""


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

    def apply(self, status: dict[str, Any]) -> tuple[
        tuple[ConditionChange, ...], tuple[ContainerChange, ...], str, str, tuple[str, str]
    ]:
        """Fold a (full or patch) status in; return the changed conditions, containers,
        the new phase, the new pod IP and the new Pod-level (reason, message) such as
        (``Evicted``, ...) -- empty when unchanged."""
        conditions = []
        for cond in status.get("conditions") or ():
            if not isinstance(cond, dict) or "type" not in cond:
                continue
            key = (_text(cond.get("status", "")), _text(cond.get("reason") or ""),
                   _text(cond.get("message") or ""))
            kind = cond["type"]
            known = self.conditions.get(kind)
            if known is None or (known.status, known.reason, known.message) != key:
                updated = _condition(kind, *key)
                self.conditions[updated.type] = updated
                conditions.append(updated)
        containers = []
        for init, list_key in ((True, "initContainerStatuses"), (False, "containerStatuses")):
            for cs in status.get(list_key) or ():
                change = _container_change(cs, init) if isinstance(cs, dict) else None
                if change is None:
                    continue
                state = (change.state, change.reason, change.restart_count)
                last = self.containers.get((init, change.name))
                old = None if last is None else (last.state, last.reason, last.restart_count)
                if old == state and last is not None and last.ready == change.ready:
                    continue
                self.containers[(init, change.name)] = change
                if old == state:  # only readiness flipped
                    change = replace(change, transition=False)
                restarted = old is not None and change.restart_count > old[2]
                ended = _last_terminated(cs, change)
                if ended is not None and (restarted or old is None) and change.state != (
                        "terminated"):
                    containers.append(ended)  # the run that ended before this restart
                containers.append(change)
        phase = _text(status.get("phase") or "")
        if phase == self.phase:
            phase = ""
        elif phase:
            self.phase = phase
        pod_ip = str(status.get("podIP") or "")
        if pod_ip == self.pod_ip:
            pod_ip = ""
        elif pod_ip:
            self.pod_ip = pod_ip
        reason = (str(status.get("reason") or ""), str(status.get("message") or ""))
        if reason == self.reason or not reason[0]:
            reason = ("", "")
        else:
            self.reason = reason
        return tuple(conditions), tuple(containers), phase, pod_ip, reason


def _last_terminated(cs: dict[str, Any], current: ContainerChange) -> ContainerChange | None:
    """The terminated state in ``lastState`` (why the previous run ended), if any."""
    last = cs.get("lastState")
    ended = last.get("terminated") if isinstance(last, dict) else None
    if not isinstance(ended, dict):
        return None
    exit_code = ended.get("exitCode")
    return replace(current, state="terminated", reason=str(ended.get("reason") or ""),
                   message=redact_text(str(ended.get("message") or "")),
                   exit_code=exit_code if isinstance(exit_code, int) else None, ready=False,
                   transition=True, previous_run=True)


def _container_change(cs: dict[str, Any], init: bool) -> ContainerChange | None:
    state = cs.get("state")
    if not isinstance(state, dict) or not state:
        return None
    kind = next((k for k in ("terminated", "running", "waiting") if k in state), "")
    if not kind:
        return None
    detail = state[kind] if isinstance(state[kind], dict) else {}
    exit_code = detail.get("exitCode") if kind == "terminated" else None
    key = (str(cs.get("name", "")), init, kind, str(detail.get("reason") or ""),
           str(detail.get("message") or ""),
           exit_code if isinstance(exit_code, int) else None,
           int(cs.get("restartCount") or 0), bool(cs.get("ready")),
           str(cs.get("image") or ""))
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
    """Read an Event body (create) or an Event patch merged over what was known before."""
    facts = EventFacts() if previous is None else replace(previous)
    about = body.get("involvedObject") or body.get("regarding")
    if isinstance(about, dict):
        facts.kind = _text(about.get("kind") or "")
        facts.namespace = _text(about.get("namespace") or "")
        facts.name = str(about.get("name") or "")
        facts.uid = str(about.get("uid") or "")
        path = _FIELD_PATH.search(str(about.get("fieldPath") or ""))
        if path:
            facts.container = intern(path.group(2))
            facts.init = path.group(1) == "initContainers"
    reason, event_type = body.get("reason"), body.get("type")
    if isinstance(reason, str):
        facts.reason = intern(reason)
    if isinstance(event_type, str):
        facts.event_type = intern(event_type)
    text = body.get("message", body.get("note"))
    if isinstance(text, str):
        facts.message = text
        image = _IMAGE.search(text)
        if image:
            facts.image = intern(image.group(1))
    series = body.get("series")
    count = series.get("count") if isinstance(series, dict) else body.get("count")
    if isinstance(count, int):
        facts.count = count
    elif not facts.count:
        facts.count = 1
    source = body.get("source")
    reporter = body.get("reportingController") or body.get("reportingComponent") or (
        source.get("component") if isinstance(source, dict) else "")
    if isinstance(reporter, str) and reporter:
        facts.reporter = intern(reporter)
    return facts
