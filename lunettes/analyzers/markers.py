"""Stage markers: which HyperEvents start or end a stage, read from stages.yaml."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lunettes.config.errors import Section
from lunettes.model.hyperevent import OPS, EventKey, HyperEvent
from lunettes.model.spec import PodSpecSummary

# (container name, image) a match is about; ("", "") for Pod-level facts.
Instance = tuple[str, str]
Match = Callable[[HyperEvent, PodSpecSummary | None], list[Instance]]
"""(HyperEvent, its Pod's spec) -> the instances it matches for (empty: no match)."""
_POD_LEVEL: list[Instance] = [("", "")]
_STATES = ("waiting", "running", "terminated")
_CACHE_LIMIT = 4096


def _names(section: Section, key: str, allowed: tuple[str, ...] = ()) -> frozenset[str] | None:
    items = section.strings(key)
    if items is None:
        return None
    bad = [v for v in items if allowed and v not in allowed]
    if bad:
        section.problem(key, f"unknown value(s) {', '.join(bad)}; supported: {', '.join(allowed)}")
    return frozenset(items)


def _numbers(section: Section, key: str) -> frozenset[int] | None:
    value = section.get(key, None, (int, list))
    if value is None:
        return None
    items = [value] if isinstance(value, int) else value
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in items):
        section.problem(key, "expected an integer or a list of integers")
        return None
    return frozenset(items)


@dataclass(frozen=True, slots=True)
class Alternative:
    """One set of conditions that must all hold for a HyperEvent to match."""

    ops: frozenset[str] | None = None
    reasons: frozenset[str] | None = None
    event_types: frozenset[str] | None = None
    message: re.Pattern[str] | None = None
    condition: str | None = None
    status: str | None = None
    condition_reason: str | None = None
    phases: frozenset[str] | None = None
    container_states: frozenset[str] | None = None
    container_reasons: frozenset[str] | None = None
    init: bool | None = None
    sources: frozenset[str] | None = None
    completes: bool | None = None
    codes: frozenset[int] | None = None
    exit_codes: frozenset[int] | None = None
    pod_reasons: frozenset[str] | None = None
    match: Match = field(init=False, repr=False, compare=False, hash=False)
    """(event, spec) -> the instances this event matches for, or an empty list when it
    does not match: a test of only the conditions set, compiled once (:func:`_compile`)."""

    @classmethod
    def from_config(cls, section: Section) -> Alternative:
        pattern = section.get("message", None, str)
        message = None
        if pattern is not None:
            try:
                message = re.compile(pattern)
            except re.error as exc:
                section.problem("message", f"invalid regular expression: {exc}")
        status = section.get("status", None, (str, bool))
        if isinstance(status, bool):
            status = "True" if status else "False"
        alt = cls(
            ops=_names(section, "op", OPS),
            reasons=_names(section, "reason"),
            event_types=_names(section, "event_type", ("Normal", "Warning")),
            message=message,
            condition=section.get("condition", None, str),
            status=status,
            condition_reason=section.get("condition_reason", None, str),
            phases=_names(section, "phase",
                          ("Pending", "Running", "Succeeded", "Failed", "Unknown")),
            container_states=_names(section, "container_state", _STATES),
            container_reasons=_names(section, "container_reason"),
            init=section.get("init", None, bool),
            sources=_names(section, "source"),
            completes=section.get("completes", None, bool),
            codes=_numbers(section, "code"),
            exit_codes=_numbers(section, "exit_code"),
            pod_reasons=_names(section, "pod_reason"),
        )
        section.check_unknown()
        if alt == cls():
            section.problems.append(f"{section.path}: a marker needs at least one condition")
        return alt

    def __post_init__(self) -> None:
        object.__setattr__(self, "match", _compile(self))

    def possible_ops(self) -> frozenset[str]:
        """The operations a HyperEvent can have and still match (for indexing)."""
        ops = frozenset(OPS) if self.ops is None else self.ops
        if self.reasons is not None or self.event_types is not None:
            ops &= {"event"}
        if self.pod_reasons is not None:
            ops &= {"status"}
        return ops

    def could_match(self, key: EventKey) -> bool:
        """False when no HyperEvent with this key (:attr:`HyperEvent.key`) can match (a cheap
        necessary condition: :meth:`match` decides)."""
        op, reason, condition_types, container_states, has_phase = key
        if (self.ops is not None or self.reasons is not None or self.event_types is not None
                or self.pod_reasons is not None) and op not in self.possible_ops():
            return False
        if self.reasons is not None and reason not in self.reasons:
            return False
        if self.pod_reasons is not None and reason not in self.pod_reasons:
            return False
        if self.condition is not None and self.condition not in condition_types:
            return False
        if self.container_states is not None and self.container_states.isdisjoint(
                container_states):
            return False
        return not (self.phases is not None and "" not in self.phases and not has_phase)

    def captures(self, event: HyperEvent) -> dict[str, str] | None:
        """The named groups of the message regex in the first text it matches (the Event
        or status message, then condition and container messages; a group that took no
        part is ""); {} without a regex."""
        if self.message is None:
            return {}
        texts = [event.message]
        texts += [c.message for c in event.conditions]
        texts += [c.message for c in event.containers]
        for text in texts:
            found = self.message.search(text) if text else None
            if found:
                return {k: v or "" for k, v in found.groupdict().items()}
        return None


def _compile(alt: Alternative) -> Match:
    """:meth:`Alternative.match` as a closure that tests only the conditions ``alt`` has,
    in the same order (each a pure test, so the answer is the same)."""
    tests: list[Callable[[HyperEvent, PodSpecSummary | None], bool]] = []
    ops, sources, completes, phases = alt.ops, alt.sources, alt.completes, alt.phases
    codes, pod_reasons, reasons, types = alt.codes, alt.pod_reasons, alt.reasons, alt.event_types
    condition, status, condition_reason = alt.condition, alt.status, alt.condition_reason
    if ops is not None:
        tests.append(lambda e, s: e.op in ops)
    if sources is not None:
        tests.append(lambda e, s: e.source in sources)
    if completes is not None:
        tests.append(lambda e, s: (s.runs_to_completion if s else False) == completes)
    if phases is not None:
        tests.append(lambda e, s: e.phase in phases)
    if codes is not None:
        tests.append(lambda e, s: e.code in codes)
    if pod_reasons is not None:
        tests.append(lambda e, s: e.op == "status" and e.reason in pod_reasons)
    if reasons is not None or types is not None:
        tests.append(lambda e, s: e.op == "event" and (reasons is None or e.reason in reasons)
                     and (types is None or e.event_type in types))
    if condition is not None:
        def changed(event: HyperEvent, spec: PodSpecSummary | None) -> bool:
            for c in event.conditions:
                if c.type == condition and (status is None or c.status == status) and (
                        condition_reason is None or c.reason == condition_reason):
                    return True
            return False

        tests.append(changed)
    message = alt.message
    if message is not None:
        search = message.search
        tests.append(lambda e, s: bool(e.message and search(e.message))
                     or any(c.message and search(c.message) for c in e.conditions)
                     or any(c.message and search(c.message) for c in e.containers))
    instances = _instances(alt)
    if not tests:
        return instances
    if len(tests) == 1:
        test = tests[0]
        return lambda e, s: instances(e, s) if test(e, s) else []

    def match(event: HyperEvent, spec: PodSpecSummary | None) -> list[Instance]:
        for test in tests:
            if not test(event, spec):
                return []
        return instances(event, spec)

    return match


def _instances(alt: Alternative) -> Match:
    """The instances a HyperEvent that passed ``alt``'s other conditions matches for: the
    containers whose state changes as asked, the container an Event names, or the Pod."""
    states, reasons, exit_codes = alt.container_states, alt.container_reasons, alt.exit_codes
    init, message = alt.init, alt.message
    if states is not None:
        return lambda e, s: [
            (c.name, c.image) for c in e.containers
            if c.state in states and c.transition
            and (not c.previous_run or reasons or exit_codes)
            and (reasons is None or c.reason in reasons)
            and (exit_codes is None or c.exit_code in exit_codes)
            and (init is None or c.init == init)
            and (message is None or bool(c.message and message.search(c.message))
                 or bool(e.message and message.search(e.message)))]
    if init is not None:
        return lambda e, s: ([(e.container, e.image)]
                             if e.op == "event" and e.container and e.init == init else [])
    return lambda e, s: [(e.container, e.image)] if e.op == "event" else _POD_LEVEL


@dataclass(frozen=True, slots=True)
class Marker:
    """Alternatives (any may match) and whether the first or last match counts."""

    alternatives: tuple[Alternative, ...]
    pick: str = "first"
    _candidates: dict[EventKey, tuple[Alternative, ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False)
    """The alternatives that can match HyperEvents of each key, in order (filled lazily)."""
    _matchers: dict[EventKey, Match] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False)

    def candidates(self, key: EventKey) -> tuple[Alternative, ...]:
        """The alternatives that can match a HyperEvent with this key, in order."""
        found = self._candidates.get(key)
        if found is None:
            if len(self._candidates) >= _CACHE_LIMIT:
                self._candidates.clear()
            found = tuple(a for a in self.alternatives if a.could_match(key))
            self._candidates[key] = found
        return found

    @classmethod
    def from_config(cls, value: Any, path: str, problems: list[str]) -> Marker:
        """Read a marker: a mapping, a list of mappings, or ``{pick:, match:}``."""
        pick = "first"
        if isinstance(value, dict) and "match" in value:
            outer = Section(value, path, problems)
            pick = outer.get("pick", "first", str)
            if pick not in ("first", "last"):
                outer.problem("pick", f"unknown value {pick!r}; supported: first, last")
            value = outer.get("match", None, (dict, list))
            outer.check_unknown()
            path = f"{path}.match"
        items = value if isinstance(value, list) else [value]
        if not items or value is None:
            problems.append(f"{path}: missing (a marker needs at least one alternative)")
        alternatives = tuple(
            Alternative.from_config(Section(item, f"{path}[{i}]" if isinstance(value, list)
                                            else path, problems))
            for i, item in enumerate(items) if item is not None
        )
        return cls(alternatives, pick)

    def match(self, event: HyperEvent, spec: PodSpecSummary | None) -> list[Instance]:
        """Every instance any alternative matches for (may repeat)."""
        return self.match_keyed(event, event.key, spec)

    def match_keyed(self, event: HyperEvent, key: EventKey,
                    spec: PodSpecSummary | None) -> list[Instance]:
        """:meth:`match` with the event's key (:attr:`HyperEvent.key`) read once by the
        caller."""
        return self.matcher(key)(event, spec)

    def matcher(self, key: EventKey) -> Match:
        """:meth:`match` for HyperEvents of ``key``: only the alternatives that can match
        them are tried (one per key, kept)."""
        found = self._matchers.get(key)
        if found is None:
            if len(self._matchers) >= _CACHE_LIMIT:
                self._matchers.clear()
            found = self._matchers[key] = _any_of(self.candidates(key))
        return found


def _any_of(alternatives: tuple[Alternative, ...]) -> Match:
    """Every instance any of ``alternatives`` matches for (may repeat)."""
    if len(alternatives) == 1:
        return alternatives[0].match

    def match(event: HyperEvent, spec: PodSpecSummary | None) -> list[Instance]:
        hits: list[Instance] = []
        for alt in alternatives:
            hits.extend(alt.match(event, spec))
        return hits

    return match
