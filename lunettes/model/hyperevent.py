"""HyperEvent: one fact about one Pod, on the Pod's own timeline."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

# Operation kinds a HyperEvent can carry; stage markers match on these names.
OPS = ("create", "bind", "status", "update", "delete", "evict", "event")
_NO_EXTRA: Mapping[str, str] = MappingProxyType({})

EventKey = tuple[str, str, tuple[str, ...], tuple[str, ...], bool]
"""See :attr:`HyperEvent.key`."""
_KEYS: dict[EventKey, EventKey] = {}
_KEYS_LIMIT = 4096  # bounded: a cleared table only stops sharing for new HyperEvents


@dataclass(slots=True, frozen=True)
class ConditionChange:
    """A Pod condition as it became in this update (only changed conditions are kept)."""

    type: str
    status: str
    reason: str = ""
    message: str = ""


@dataclass(slots=True, frozen=True)
class ContainerChange:
    """A container's state as it became in this update (only changed containers are kept).

    ``state`` is ``waiting``, ``running`` or ``terminated``; ``reason`` is the waiting or
    terminated reason; ``exit_code`` is set for terminated states. ``transition`` is False
    when only readiness changed (the container stayed in its state, without restarting).
    ``previous_run`` marks the termination of the run before a restart, read from the
    container's ``lastState`` (an OOMKilled run behind a CrashLoopBackOff).
    """

    name: str
    init: bool
    state: str
    reason: str = ""
    message: str = ""
    exit_code: int | None = None
    restart_count: int = 0
    ready: bool = False
    image: str = ""
    transition: bool = True
    previous_run: bool = False


@dataclass(slots=True)
class HyperEvent:
    """One operation on a Pod or one Kubernetes Event about it.

    ``time_us`` is the audit requestReceivedTimestamp; ``seq`` breaks ties in arrival order.
    ``source`` names the component that caused it (``kubelet``, ``kube-scheduler``, a
    controller, or the user name); ``container``/``init`` say which container an Event or
    change is about; ``image`` is the image an image Event names. ``reason``/``message``
    are the Event's, or for ``status`` operations the Pod-level status reason and message
    (``Evicted``, ``OutOfcpu``, ...).
    """

    time_us: int
    seq: int
    op: str
    uid: str
    audit_id: str = ""
    source: str = ""
    node: str = ""
    code: int = 0
    conditions: tuple[ConditionChange, ...] = ()
    containers: tuple[ContainerChange, ...] = ()
    phase: str = ""
    pod_ip: str = ""
    reason: str = ""
    message: str = ""
    event_type: str = ""
    count: int = 0
    container: str = ""
    init: bool = False
    image: str = ""
    extra: Mapping[str, str] = field(default_factory=lambda: _NO_EXTRA)
    """More facts by name (read-only; one shared empty mapping by default, so that a Pod in
    flight does not pay a dict per HyperEvent)."""
    _key: EventKey | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def key(self) -> EventKey:
        """What decides which stage and diagnosis markers can match this HyperEvent: (op,
        reason, the types of the conditions it changes, the states of the containers it
        changes, has a phase). Computed once (the fold's delivery check, the stages and
        the diagnosis all ask), one object shared by every HyperEvent with that key."""
        key = self._key
        if key is None:
            key = (self.op, self.reason,
                   tuple([c.type for c in self.conditions]) if self.conditions else (),
                   tuple([c.state for c in self.containers]) if self.containers else (),
                   bool(self.phase))
            shared = _KEYS.get(key)
            if shared is None:
                if len(_KEYS) >= _KEYS_LIMIT:
                    _KEYS.clear()
                shared = _KEYS[key] = key
            key = self._key = shared
        return key
