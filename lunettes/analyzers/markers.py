"""Stage markers: which HyperEvents start or end a stage, read from stages.yaml."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from lunettes.config.errors import Section
from lunettes.model.hyperevent import OPS, EventKey, HyperEvent
from lunettes.model.spec import PodSpecSummary

# (container name, image) a match is about; ("", "") for Pod-level facts.
Instance = tuple[str, str]
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

    def match(self, event: HyperEvent, spec: PodSpecSummary | None) -> list[Instance]:
        """The instances this event matches for, or an empty list when it does not match."""
        if self.ops is not None and event.op not in self.ops:
            return []
        if self.sources is not None and event.source not in self.sources:
            return []
        if self.completes is not None and (
            (spec.runs_to_completion if spec else False) != self.completes
        ):
            return []
        if self.phases is not None and event.phase not in self.phases:
            return []
        if self.codes is not None and event.code not in self.codes:
            return []
        if self.pod_reasons is not None and (event.op != "status"
                                             or event.reason not in self.pod_reasons):
            return []
        if self.reasons is not None or self.event_types is not None:
            if event.op != "event":
                return []
            if self.reasons is not None and event.reason not in self.reasons:
                return []
            if self.event_types is not None and event.event_type not in self.event_types:
                return []
        if self.condition is not None and not any(
            c.type == self.condition
            and (self.status is None or c.status == self.status)
            and (self.condition_reason is None or c.reason == self.condition_reason)
            for c in event.conditions
        ):
            return []
        if self.message is not None and not self._message_matches(event):
            return []
        if self.container_states is not None:
            return [
                (c.name, c.image) for c in event.containers
                if c.state in self.container_states and c.transition
                and (not c.previous_run or self.container_reasons or self.exit_codes)
                and (self.container_reasons is None or c.reason in self.container_reasons)
                and (self.exit_codes is None or c.exit_code in self.exit_codes)
                and (self.init is None or c.init == self.init)
                and (self.message is None or bool(c.message and self.message.search(c.message))
                     or bool(event.message and self.message.search(event.message)))
            ]
        if self.init is not None:
            if event.op != "event" or not event.container or event.init != self.init:
                return []
            return [(event.container, event.image)]
        if event.op == "event":
            return [(event.container, event.image)]
        return _POD_LEVEL

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

    def _message_matches(self, event: HyperEvent) -> bool:
        return self.captures(event) is not None

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


@dataclass(frozen=True, slots=True)
class Marker:
    """Alternatives (any may match) and whether the first or last match counts."""

    alternatives: tuple[Alternative, ...]
    pick: str = "first"
    _candidates: dict[EventKey, tuple[Alternative, ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False)
    """The alternatives that can match HyperEvents of each key, in order (filled lazily)."""

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
        alternatives = self._candidates.get(key)
        if alternatives is None:
            alternatives = self.candidates(key)
        if not alternatives:
            return []
        if len(alternatives) == 1:
            return alternatives[0].match(event, spec)
        hits: list[Instance] = []
        for alt in alternatives:
            hits.extend(alt.match(event, spec))
        return hits
