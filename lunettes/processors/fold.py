"""Fold audit records into per-Pod timelines of HyperEvents, keyed by pod UID."""

from __future__ import annotations

import heapq
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from sys import intern
from typing import Any

from lunettes.config.errors import Section
from lunettes.model.audit import FOLDED_VERBS, AuditRecord
from lunettes.model.hyperevent import ConditionChange, ContainerChange, HyperEvent
from lunettes.model.ids import derive_uid
from lunettes.model.redact import redact_text
from lunettes.model.spec import TRACE_ANNOTATIONS, PodSpecSummary
from lunettes.model.timeline import PodTimeline
from lunettes.model.times import parse_time
from lunettes.model.typed import EMPTY, sub, text
from lunettes.processors.base import RECORDS, TIMELINES, Run, Stateless, seconds
from lunettes.processors.bodies import (
    EventFacts,
    PodState,
    StatusFacts,
    component,
    denied_name,
    event_facts,
    meta_text,
)
from lunettes.registry import BuildContext
from lunettes.sources.errors import BadRecord

BadSink = Callable[..., None]
"""Where refused records go: (reason, origin ``file:line``, detail, record=the record), as
BadRecords.add."""

# (timeline, the HyperEvent just added) -> True when it ends the Pod's delivery.
DeliveryCheck = Callable[[PodTimeline, HyperEvent], bool]
_POD_VERBS = {"create": "create", "delete": "delete", "patch": "update", "update": "update"}
_SUBRESOURCE_OPS = {"status": "status", "binding": "bind", "eviction": "evict",
                    "ephemeralcontainers": "update", "resize": "update"}
_CHANGES = FOLDED_VERBS["events"]


@dataclass(slots=True)
class _Live:
    timeline: PodTimeline
    state: PodState = field(default_factory=PodState)
    first_us: int = 0
    last_us: int = 0
    done_us: int | None = None
    event_names: tuple[str, ...] = ()
    """Names of the Events about the Pod (a tuple: exact size, most Pods have a few)."""
    first: dict[str, int] | None = None
    """The lowest source position of the Pod's records, by lane (checkpoints only)."""


class Folder:
    """Turns audit records (in time order, after the reorder window) into PodTimelines.

    A Pod leaves memory ``linger_us`` after its delivery ends (``delivered`` decides, from
    the root stage's end markers), after it is deleted or rejected, or ``timeout_us`` after
    it was created (or first seen) without delivery; :meth:`advance` returns those final
    timelines. Records about a Pod already finished are dropped (``after_final``) for
    ``forget_us`` of audit time, so a late record cannot start a second, partial record.
    """

    def __init__(self, delivered: DeliveryCheck, stats: Counter[str], *,
                 linger_us: int = 5_000_000, timeout_us: int = 35 * 60_000_000,
                 forget_us: int = 35 * 60_000_000,
                 trace_annotations: tuple[str, ...] = TRACE_ANNOTATIONS,
                 on_bad: BadSink | None = None) -> None:
        self.delivered = delivered
        self.stats = stats
        self.on_bad = on_bad
        self.linger_us = linger_us
        self.timeout_us = timeout_us
        self.forget_us = forget_us
        self.trace_annotations = trace_annotations
        self.live: dict[str, _Live] = {}
        self._names: dict[tuple[str, str], str] = {}
        self._finished: dict[str, int] = {}
        self._finished_order: deque[tuple[int, str, tuple[str, str]]] = deque()
        self._events: dict[tuple[str, str], tuple[str, EventFacts]] = {}
        self._due: list[tuple[int, str]] = []
        self._seq = 0

    # -- identity -------------------------------------------------------------------------
    def _resolve(self, namespace: str, name: str, uid: str) -> str:
        if uid:
            return uid
        return self._names.get((namespace, name), "")

    def _start(self, uid: str, namespace: str, name: str, now_us: int, *,
               derived: bool = False, created: bool = False) -> _Live:
        namespace = intern(namespace)
        timeline = PodTimeline(uid=uid, namespace=namespace, name=name, uid_derived=derived,
                               created_us=now_us if created else None)
        live = _Live(timeline, first_us=now_us, last_us=now_us)
        self.live[uid] = live
        if name:
            self._names[(namespace, name)] = uid
        heapq.heappush(self._due, (now_us + self.timeout_us, uid))
        self.stats["pods_seen"] += 1
        if not created:
            self.stats["pods_partial"] += 1
        return live

    def _pod(self, record: AuditRecord, uid: str) -> _Live | None:
        """The live Pod a record is about, starting a partial timeline for unknown Pods."""
        uid = self._resolve(record.namespace, record.name, uid)
        if uid in self._finished:
            self.stats["after_final"] += 1
            return None
        live = self.live.get(uid) if uid else None
        if live is not None:
            return live
        if not record.name:
            self.stats["unidentified"] += 1
            return None
        if uid:
            return self._start(uid, record.namespace, record.name, record.received_us)
        return self._start(derive_uid(record.namespace, record.name), record.namespace,
                           record.name, record.received_us, derived=True)

    # -- folding --------------------------------------------------------------------------
    def add(self, record: AuditRecord) -> None:
        """Fold one record; records about other objects are ignored. A record with a body
        field of the wrong type changes nothing: it is counted as bad (``on_bad``)."""
        try:
            self._add(record)
        except BadRecord as exc:
            self._refuse(exc.reason, record, str(exc))
        except Exception as exc:  # a bug must not stop the run: count it, where it was
            self._refuse(f"internal_error:{type(exc).__name__}", record, str(exc))

    def _refuse(self, reason: str, record: AuditRecord, detail: str) -> None:
        self.stats["refused"] += 1
        if self.on_bad is not None:
            self.on_bad(reason, record.origin, detail, record=record)

    def _add(self, record: AuditRecord) -> None:
        if record.resource == "pods":
            if record.subresource:
                op = _SUBRESOURCE_OPS.get(record.subresource)
                if op and record.verb in _CHANGES:
                    self._subresource(record, op)
            elif record.verb in _POD_VERBS:
                self._pod_verb(record, _POD_VERBS[record.verb])
        elif (record.resource == "events" and record.api_group in ("", "events.k8s.io")
              and record.verb in _CHANGES and record.succeeded):
            self._event(record)

    def _emit(self, live: _Live, record: AuditRecord, op: str, *, node: str | None = None,
              conditions: tuple[ConditionChange, ...] = (),
              containers: tuple[ContainerChange, ...] = (), phase: str = "",
              pod_ip: str = "", reason: str = "", message: str = "", event_type: str = "",
              count: int = 0, container: str = "", init: bool = False, image: str = ""
              ) -> HyperEvent:
        """Add a HyperEvent to the Pod's timeline (``node``: the acting kubelet's unless
        given); its ``message`` (an Event's, the Pod status's, a rejected create's error)
        is redacted here, before anything keeps it."""
        if message:
            message = redact_text(message)
        source, kubelet_node = component(record.username, record.user_agent, record.groups)
        self._seq += 1
        event = HyperEvent(record.received_us, self._seq, op, live.timeline.uid,
                           record.audit_id, source,
                           kubelet_node if node is None else node, record.code, conditions,
                           containers, phase, pod_ip, reason, message, event_type, count,
                           container, init, image)
        timeline = live.timeline
        timeline.events.append(event)
        live.last_us = max(live.last_us, record.received_us)
        position = record.position
        if position is not None:
            lane, n = position
            if live.first is None:
                live.first = {lane: n}
            elif n < live.first.get(lane, n + 1):
                live.first[lane] = n
        if record.request is not None or record.response is not None:
            timeline.bodies = True
            if (timeline.created_us is None and timeline.recovered_created_us is None
                    and record.resource == "pods"):
                _recover_created(timeline, record)
        if live.done_us is None and self.delivered(live.timeline, event):
            self._finish(live, record.received_us, "delivered")
        self.stats["hyperevents"] += 1
        return event

    def _finish(self, live: _Live, now_us: int, reason: str, linger: bool = True) -> None:
        live.done_us = now_us
        live.timeline.end_reason = reason
        heapq.heappush(self._due, (now_us + (self.linger_us if linger else 0),
                                   live.timeline.uid))

    def _pod_verb(self, record: AuditRecord, op: str) -> None:
        if op == "create":
            self._create(record)
            return
        if not record.succeeded:
            return
        body = record.response or record.request
        live = self._pod(record, meta_text(body, "uid"))
        if live is None:
            return
        self._emit(live, record, op)
        if op == "delete" and live.done_us is None:
            self._finish(live, record.received_us, "deleted")

    def _create(self, record: AuditRecord) -> None:
        request, response = record.request, record.response
        # every field read before any is used: a mistyped one refuses the record whole
        response_name, request_name = meta_text(response, "name"), meta_text(request, "name")
        response_namespace = meta_text(response, "namespace")
        generate_name = meta_text(request, "generateName")
        name = (response_name or record.name or request_name
                or denied_name(record.status_message))
        namespace = record.namespace or response_namespace
        if not record.succeeded:
            if record.audit_id in self._finished:  # its UID: read again after a restart
                self.stats["after_final"] += 1
                return
            name = name or generate_name
            spec = _spec(request, self.trace_annotations)
            live = self._start(record.audit_id, namespace, "", record.received_us,
                               derived=True, created=True)
            live.timeline.name = name
            self._set_spec(live, spec)
            self._emit(live, record, "create", message=record.status_message,
                       reason=record.status_reason)
            self._finish(live, record.received_us, "rejected", linger=False)
            return
        uid = meta_text(response, "uid") or record.object_uid
        spec = _spec(response or request, self.trace_annotations)  # refused before use
        if not uid and not name:
            self.stats["unidentified"] += 1
            return
        if uid in self.live or uid in self._finished:
            self.stats["duplicate_create"] += 1
            return
        derived = not uid
        if derived:
            uid = derive_uid(namespace, name, record.audit_id)
        live = self._start(uid, namespace, name, record.received_us, derived=derived,
                           created=True)
        self._set_spec(live, spec)
        self._emit(live, record, "create")

    @staticmethod
    def _set_spec(live: _Live, spec: PodSpecSummary | None) -> None:
        if spec is not None:
            live.timeline.spec = spec
            live.timeline.node = spec.node_name or live.timeline.node

    def _subresource(self, record: AuditRecord, op: str) -> None:
        if not record.succeeded:
            return
        body = record.request if op == "bind" else (record.response or record.request)
        uid = meta_text(body, "uid") or meta_text(record.request, "uid")
        # read everything before any state changes: a mistyped field refuses the record
        node, status = "", None
        if op == "bind":
            target = sub(record.request or EMPTY, "target", "target")
            node = intern(text(target, "name", "target.name"))
        elif op == "status" and body is not None and body.get("status") is not None:
            status = StatusFacts.read(sub(body, "status", "status"))
        live = self._pod(record, uid)
        if live is None:
            return
        if op == "bind":
            live.timeline.node = node or live.timeline.node
            self._emit(live, record, "bind", node=node)
            return
        if op == "status" and body is None:  # the policy logs pods/status without bodies
            live.timeline.status_hidden = True
        if status is None:
            self._emit(live, record, op)
            return
        conditions, containers, phase, pod_ip, (reason, message) = live.state.apply(status)
        self._emit(live, record, "status", conditions=conditions, containers=containers,
                   phase=phase, pod_ip=pod_ip, reason=reason, message=message)

    def _event(self, record: AuditRecord) -> None:
        key = (record.namespace, record.name)
        body = record.request or record.response
        if record.verb == "create":
            if body is None:
                self._metadata_event(record)
                return
            facts = event_facts(body)
            if facts.kind != "Pod":
                return
            live = self._pod_by_event(record, facts)
            if live is None:
                return
            # the Event names the Pod with strings of its own: keep the timeline's
            if facts.uid == live.timeline.uid:
                facts.uid = live.timeline.uid
            if facts.name == live.timeline.name:
                facts.name = live.timeline.name
            if record.name:
                self._events[key] = (live.timeline.uid, facts)
                live.event_names += (record.name,)
        else:
            known = self._events.get(key)
            if known is None:
                self.stats["event_patch_unknown"] += 1
                return
            uid, previous = known
            live = self.live.get(uid)
            if live is None:
                return
            facts = event_facts(body, previous) if body else previous
            self._events[key] = (uid, facts)
        self._emit(live, record, "event", reason=facts.reason, message=facts.message,
                   event_type=facts.event_type, count=facts.count, container=facts.container,
                   init=facts.init, image=facts.image)

    def _pod_by_event(self, record: AuditRecord, facts: EventFacts) -> _Live | None:
        uid = self._resolve(facts.namespace or record.namespace, facts.name, facts.uid)
        if uid in self._finished:
            self.stats["after_final"] += 1
            return None
        live = self.live.get(uid) if uid else None
        if live is None:
            self.stats["event_unknown_pod"] += 1
        return live

    def _metadata_event(self, record: AuditRecord) -> None:
        """Metadata-level logs: an Event named ``<pod>.<hex>`` for a Pod in flight."""
        pod_name, _, suffix = record.name.rpartition(".")
        uid = self._names.get((record.namespace, pod_name), "")
        live = self.live.get(uid) if uid and suffix and len(suffix) >= 8 else None
        if live is not None:
            self._events[(record.namespace, record.name)] = (uid, EventFacts(kind="Pod"))
            live.event_names += (record.name,)
            self._emit(live, record, "event")

    # -- leaving memory -------------------------------------------------------------------
    def advance(self, now_us: int) -> list[PodTimeline]:
        """Final timelines whose linger or timeout has passed at audit time ``now_us``."""
        out: list[PodTimeline] = []
        due = self._due
        order = self._finished_order
        if (not due or due[0][0] > now_us) and (
                not order or order[0][0] + self.forget_us > now_us):
            return out  # the common case: nothing due yet
        while due and due[0][0] <= now_us:
            when, uid = heapq.heappop(due)
            live = self.live.get(uid)
            if live is None:
                continue
            if live.done_us is None:
                start = live.timeline.created_us or live.first_us
                if start + self.timeout_us > when:
                    continue
                live.timeline.end_reason = "timeout"
            elif live.done_us + (0 if live.timeline.end_reason == "rejected"
                                 else self.linger_us) > when:
                continue
            out.append(self._retire(live, now_us))
        self._forget(now_us)
        return out

    def drain(self) -> Iterator[PodTimeline]:
        """Every Pod still in memory, at the end of the input, one at a time: each leaves
        memory as it is taken, so the caller can finish them in batches."""
        self._due.clear()
        for live in list(self.live.values()):
            if not live.timeline.end_reason:
                live.timeline.end_reason = "end_of_input"
            yield self._retire(live, live.last_us)

    def _retire(self, live: _Live, now_us: int) -> PodTimeline:
        timeline = live.timeline
        timeline.ordered()  # once, for every analyzer
        del self.live[timeline.uid]
        self._finished[timeline.uid] = now_us
        key = (timeline.namespace, timeline.name)
        self._finished_order.append((now_us, timeline.uid, key))
        for name in live.event_names:
            self._events.pop((timeline.namespace, name), None)
        self.stats["pods_final"] += 1
        return timeline

    def finished(self) -> list[tuple[int, str, str, str]]:
        """The Pods that left memory within the forget horizon: (when, uid, namespace,
        name), oldest first (for a checkpoint); the name only while it still resolves to
        that Pod."""
        names = self._names
        return [(when, uid, key[0], key[1] if names.get(key) == uid else "")
                for when, uid, key in self._finished_order if uid in self._finished]

    def restore(self, finished: list[tuple[int, str, str, str]]) -> None:
        """Remember Pods a previous run finished (a checkpoint's), as it did."""
        for when, uid, namespace, name in finished:
            self._finished[uid] = when
            key = (namespace, name)
            self._finished_order.append((when, uid, key))
            if name:
                self._names[key] = uid

    _CARRIED = ("live", "_names", "_finished", "_finished_order", "_events", "_due", "_seq")

    def carry(self) -> dict[str, Any]:
        """The state a later run continues from (see :mod:`lunettes.processors.carry`):
        the Pods in flight, names, Pods finished within the forget horizon, Event names."""
        return {name: getattr(self, name) for name in self._CARRIED}

    def resume(self, state: dict[str, Any]) -> None:
        """Continue from what :meth:`carry` returned at the end of an earlier run (before
        any record of this run was folded)."""
        for name in self._CARRIED:
            setattr(self, name, state[name])

    def positions(self) -> dict[str, int]:
        """The lowest position, by lane, of the records of the Pods in flight."""
        lowest: dict[str, int] = {}
        for live in self.live.values():
            for lane, n in (live.first or {}).items():
                if n < lowest.get(lane, n + 1):
                    lowest[lane] = n
        return lowest

    def _forget(self, now_us: int) -> None:
        order = self._finished_order
        while order and order[0][0] + self.forget_us <= now_us:
            _, uid, key = order.popleft()
            self._finished.pop(uid, None)
            if self._names.get(key) == uid:
                del self._names[key]


def _recover_created(timeline: PodTimeline, record: AuditRecord) -> None:
    """Take a partial Pod's creation time from a body's ``metadata.creationTimestamp``
    (an optional fact, read after the record changed the timeline: never raises)."""
    for body in (record.response, record.request):
        metadata = body.get("metadata") if body else None
        stamp = metadata.get("creationTimestamp") if type(metadata) is dict else None
        if isinstance(stamp, str) and stamp:
            try:
                timeline.recovered_created_us = parse_time(stamp)
            except ValueError:
                continue
            return


def _spec(body: dict[str, Any] | None, trace_annotations: tuple[str, ...]
          ) -> PodSpecSummary | None:
    """The spec summary of a Pod body, None when it has no spec."""
    if body is None or body.get("spec") is None:
        return None
    return PodSpecSummary.from_pod(body, trace_annotations)


class Fold(Stateless):
    """Processor ``fold``: records in, final Pod timelines out (:class:`Folder`), each
    with ``observed_until_us`` set to the newest time folded; at the end of the input,
    every Pod still in flight. Settings: ``linger_s``, ``timeout_s``, ``forget_after_s``,
    ``trace_context_annotations``. Its checkpoint state is :meth:`Folder.finished`."""

    reads = RECORDS
    writes = TIMELINES

    def __init__(self, name: str = "fold", *, linger_us: int = 5_000_000,
                 timeout_us: int = 2100_000_000, forget_us: int = 2100_000_000,
                 trace_annotations: tuple[str, ...] = TRACE_ANNOTATIONS) -> None:
        self.name = name
        self.linger_us, self.timeout_us, self.forget_us = linger_us, timeout_us, forget_us
        self.trace_annotations = trace_annotations
        self._folder: Folder | None = None
        self._restored: list[tuple[int, str, str, str]] = []

    @classmethod
    def from_config(cls, key: str, section: Section, context: BuildContext) -> Fold:
        linger_us = seconds(section, "linger_s", 5)
        timeout_us = seconds(section, "timeout_s", 2100)
        forget_us = seconds(section, "forget_after_s", 2100)
        annotations = section.get("trace_context_annotations", list(TRACE_ANNOTATIONS),
                                  list)
        if not all(isinstance(a, str) and a for a in annotations):
            section.problem("trace_context_annotations", "must be a list of annotation keys")
            annotations = list(TRACE_ANNOTATIONS)
        section.check_unknown()
        return cls(key, linger_us=linger_us, timeout_us=timeout_us, forget_us=forget_us,
                   trace_annotations=tuple(annotations))

    def process(self, items: Iterator[AuditRecord], run: Run) -> Iterator[PodTimeline]:
        folder = self._folder = Folder(
            run.delivered, run.stats, linger_us=self.linger_us, timeout_us=self.timeout_us,
            forget_us=self.forget_us, trace_annotations=self.trace_annotations,
            on_bad=run.bad.add)
        run.in_flight = lambda: len(folder.live)
        self._apply()
        add, advance = folder.add, folder.advance
        now_us = 0
        carry = run.carry
        pending = carry is not None and carry.carried is not None
        for record in items:
            if pending and carry.go is not None:  # decided by dedupe, before this record
                pending = False  # about a Pod reached the fold
                if carry.go:
                    folder.resume(carry.carried.folder)
                    now_us = max(now_us, carry.carried.clock_us)
                    run.stats["pods_carried"] = len(folder.live)
            add(record)
            received = record.received_us
            if received > now_us:
                now_us = received
            done = advance(received)
            for timeline in done:
                timeline.observed_until_us = now_us
                yield timeline
        if run.ending:
            if carry is not None:
                carry.save(now_us, folder.carry())
            for timeline in folder.drain():
                timeline.observed_until_us = now_us
                yield timeline

    def held(self) -> dict[str, int]:
        return self._folder.positions() if self._folder is not None else {}

    def state(self) -> list[tuple[int, str, str, str]]:
        return self._folder.finished() if self._folder is not None else []

    def restore(self, state: Any) -> None:
        """Remember the Pods a previous run finished (its :meth:`state`)."""
        self._restored = [(int(a), str(b), str(c), str(d)) for a, b, c, d in state or ()]
        self._apply()

    def _apply(self) -> None:
        if self._folder is not None and self._restored:
            self._folder.restore(self._restored)
            self._restored = []
