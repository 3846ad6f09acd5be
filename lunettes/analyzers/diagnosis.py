"""DiagnosisAnalyzer: why a Pod failed or was slow, with the evidence (diagnosis.yaml)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from lunettes.analyzers.base import DIAGNOSIS, FAULT_INTERVALS, LIFECYCLE, STAGES, Inputs, Reference
from lunettes.analyzers.diagnosisdefs import CodeDef, DiagnosisConfig, RuleDef
from lunettes.analyzers.lifecycle import Lifecycle
from lunettes.analyzers.markers import Alternative, Instance
from lunettes.config.errors import Section
from lunettes.model.hyperevent import EventKey, HyperEvent
from lunettes.model.record import Stage
from lunettes.model.schema import (
    BOOLEAN,
    DATE,
    INTEGER,
    KEYWORD,
    NESTED,
    TEXT,
    Field,
    dump,
    readers,
)
from lunettes.model.timeline import PodTimeline
from lunettes.registry import BuildContext

_DELIVERED = ("delivered", "completed")
_EVIDENCE_HEAD, _EVIDENCE_TAIL = 3, 2


METADATA_LEVEL_MESSAGE = ("the audit log holds no body of any record about this Pod (Metadata "
                          "level): its delivery and the cause of a failure cannot be seen "
                          "after stage {stage}")
METADATA_LEVEL_HINT = ("The audit level is the cause: log pods, pods/status and pods/binding "
                       "at Request level or above (deploy/audit-policy.yaml).")

class _Fields(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "?"


@dataclass(slots=True)
class Evidence:
    """One HyperEvent that supports a finding."""

    time_us: int
    source: str
    audit_id: str
    op: str
    reason: str
    message: str
    container: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dump(self, _EVIDENCE)


@dataclass(slots=True)
class Finding:
    """Every occurrence of one reason code in a timeline."""

    code: CodeDef
    rule_index: int
    message: str
    first_us: int
    last_us: int
    count: int = 0
    evidence: list[Evidence] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dump(self, _FINDING)


@dataclass(slots=True)
class Diagnosis:
    """The primary reason (None when nothing went wrong), the secondary findings, and the
    user-fault intervals the SLO analyzer subtracts from platform time."""

    reason: str | None
    stage: str = ""
    owner: str = ""
    message: str = ""
    hint: str = ""
    so_far: bool = False
    last_stage: str = ""
    evidence: list[Evidence] = field(default_factory=list)
    secondary: list[Finding] = field(default_factory=list)
    user_fault_intervals: list[tuple[int, int | None]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready result (:data:`DIAGNOSIS_FIELDS`)."""
        return dump(self, _DIAGNOSIS)


EVIDENCE_FIELDS = (
    Field("time", DATE, "the audit time of the record", nullable=True, default=None),
    Field("source", KEYWORD, "what kind of record: an operation or an Event", default=""),
    Field("audit_id", KEYWORD, "the auditID of the audit record", default=""),
    Field("op", KEYWORD, "the operation (create, bind, status, event, ...)", default=""),
    Field("reason", KEYWORD, "the Event's or status' reason", default=""),
    Field("message", TEXT, "its message, redacted", default=""),
    Field("container", KEYWORD, "the container it is about", default=""),
)
FINDING_FIELDS = (
    Field("code", KEYWORD, "a reason code", get=lambda f: f.code.name),
    Field("stage", KEYWORD, "the stage of the code", get=lambda f: f.code.stage),
    Field("owner", KEYWORD, "who must act", get=lambda f: f.code.owner),
    Field("message", TEXT, "its first message, redacted", default=""),
    Field("count", INTEGER, "how often it occurred", default=0),
    Field("first", DATE, "its first occurrence", nullable=True, default=None),
    Field("last", DATE, "its last occurrence", nullable=True, default=None),
)
DIAGNOSIS_FIELDS = (
    Field("reason", KEYWORD, "a reason code (see /api/v1/reasons), None for a Pod "
          "delivered without trouble", nullable=True, default=None),
    Field("stage", KEYWORD, "the stage it is about", default=""),
    Field("owner", KEYWORD, "who must act: platform or user", default=""),
    Field("message", TEXT, "what happened, redacted", default=""),
    Field("hint", TEXT, "what to do about it", default=""),
    Field("so_far", BOOLEAN, "the Pod was still in flight", default=False),
    Field("last_stage", KEYWORD, "the last stage it reached", default=""),
    Field("evidence", NESTED, "the audit records behind the reason", fields=EVIDENCE_FIELDS,
          default=[]),
    Field("secondary", NESTED, "the other findings", fields=FINDING_FIELDS, default=[]),
)
"""The diagnosis result of a pod record."""
_EVIDENCE, _FINDING, _DIAGNOSIS = (readers(EVIDENCE_FIELDS), readers(FINDING_FIELDS),
                                   readers(DIAGNOSIS_FIELDS))


class DiagnosisAnalyzer:
    """Finds every rule's occurrences, then names the primary reason.

    - Rejected, failed, deleted or undelivered Pods: a finding of the first stage that did
      not complete, else the earliest rule that matched anywhere; with no finding at all,
      DeletedBeforeDelivered, NoProgress (past the deadline, naming the last stage
      reached) or Unknown. In-flight Pods are answered "so far" (``so_far``).
    - Delivered Pods: a reason only when a platform stage exceeded its ``slow`` limit: the
      finding of that stage (as its ``recovered`` code) or the stage's slowness code. A Pod
      that recovered in time is not blamed; its findings stay secondary.
    """

    provides = (DIAGNOSIS, FAULT_INTERVALS)
    requires = (STAGES, LIFECYCLE)
    accepts = ()
    headline = "reason"
    fields: ClassVar[dict[str, Field]] = {f.name: f for f in DIAGNOSIS_FIELDS}

    def __init__(self, config: DiagnosisConfig, name: str = "diagnosis") -> None:
        self.name = name
        self.config = config
        # For each event key, the rules that can match such an event, with their
        # alternatives that can: an event tries a handful of rules, not all (filled lazily).
        self._candidates: dict[EventKey, list[tuple[int, RuleDef, tuple[Alternative, ...]]]] = {}

    @classmethod
    def from_config(cls, name: str, section: Section,
                    context: BuildContext) -> DiagnosisAnalyzer:
        path = context.config_dir / section.get("config", "diagnosis.yaml", str)
        section.check_unknown()
        return cls(DiagnosisConfig.load(path), name)

    def references(self) -> list[Reference]:
        """The stages diagnosis.yaml names, checked against the stages input's."""
        return [(STAGES, stage, where) for where, stage in self.config.stage_references]

    def analyze(self, timeline: PodTimeline, inputs: Inputs) -> Diagnosis:
        stages: list[Stage] = inputs.role(STAGES) or []
        life: Lifecycle = inputs.role(LIFECYCLE)
        findings = self.findings(timeline)
        if life.outcome in _DELIVERED:
            primary, code, stage = self._slowness(stages, findings)
        else:
            primary, code, stage = self._failure(stages, findings, life,
                                                 timeline.observed_until_us)
        diagnosis = Diagnosis(reason=None, so_far=life.outcome == "in_progress",
                              last_stage=_last_stage(stages))
        if code is not None:
            diagnosis.reason, diagnosis.stage = code.name, code.stage
            diagnosis.owner, diagnosis.hint = code.owner, code.hint
            diagnosis.message = primary.message if primary else _default_message(
                code, diagnosis.last_stage)
            diagnosis.evidence = (primary.evidence if primary
                                  else _stage_evidence(timeline, stage, code))
        if life.outcome == "unknown" and diagnosis.reason == "Unknown":
            diagnosis.message = METADATA_LEVEL_MESSAGE.format(stage=diagnosis.last_stage)
            diagnosis.hint = METADATA_LEVEL_HINT
        diagnosis.secondary = [f for f in findings if f is not primary]
        diagnosis.user_fault_intervals = [
            (f.first_us, _stage_end(stages, f.code.stage)) for f in findings
            if f.code.owner == "user" and (f is primary or life.outcome in _DELIVERED)]
        if (primary is None and code is not None and code.owner == "user" and stage
                and self.config.stuck.get(stage.name) == code.name):
            # a cause read from the stage itself (stuck in readiness): its time is the user's
            diagnosis.user_fault_intervals.append((stage.start_us, stage.end_us))
        return diagnosis

    # -- findings -------------------------------------------------------------------------
    def findings(self, timeline: PodTimeline) -> list[Finding]:
        """Every code found in the timeline, in rule order."""
        by_code: dict[str, Finding] = {}
        for event in timeline.ordered():
            for rule_index, rule, captures, (container, image) in self._matches(
                    event, timeline):
                finding = by_code.get(rule.code)
                if finding is None:
                    fields = _Fields(captures, container=container or "?",
                                     image=captures.get("image") or image or "?")
                    finding = Finding(self.config.codes[rule.code], rule_index,
                                      rule.message.format_map(fields), event.time_us,
                                      event.time_us)
                    by_code[rule.code] = finding
                finding.rule_index = min(finding.rule_index, rule_index)
                finding.last_us = event.time_us
                finding.count += 1
                _add_evidence(finding, event, container)
        return sorted(by_code.values(), key=lambda f: f.rule_index)

    def _matches(self, event: HyperEvent, timeline: PodTimeline
                 ) -> list[tuple[int, RuleDef, dict[str, str], Instance]]:
        """(rule index, rule, message captures, (container, image)) of every rule the
        event matches: one per code, and one ranked rule (the cause on most nodes)."""
        matches: list[tuple[int, RuleDef, dict[str, str], Instance]] = []
        key = event.key
        candidates = self._candidates.get(key)
        if candidates is None:
            if len(self._candidates) >= 4096:
                self._candidates.clear()
            candidates = [(i, rule, rule.match.candidates(key))
                          for i, rule in enumerate(self.config.rules)
                          if rule.match.candidates(key)]
            self._candidates[key] = candidates
        spec = timeline.spec
        for index, rule, alternatives in candidates:
            if matches and any(m[1].code == rule.code for m in matches):
                continue  # one occurrence of a code per event: its earliest rule
            for alt in alternatives:
                hits = alt.match(event, spec)
                if not hits:
                    continue
                captures = alt.captures(event) or {}
                matches.append((index, rule, captures,
                                (hits[0][0] or event.container, hits[0][1] or event.image)))
                break
        if not matches:
            return matches
        ranked = [m for m in matches if m[1].rank]
        if len(ranked) > 1:  # several causes in one message: the one on most nodes wins
            best = max(ranked, key=lambda m: _number(m[2].get(m[1].rank)))
            matches = [m for m in matches if not m[1].rank or m is best]
        return matches

    # -- choosing the primary -------------------------------------------------------------
    def _failure(self, stages: list[Stage], findings: list[Finding], life: Lifecycle,
                 observed_until_us: int | None = None
                 ) -> tuple[Finding | None, CodeDef | None, Stage | None]:
        """The finding (or code) that explains a Pod that was not delivered, and the
        stage the explanation rests on when no finding does."""
        ordered = sorted(stages[1:], key=lambda s: s.start_us)
        open_stage = next((s for s in ordered if s.end_us is None), None)
        if findings:
            owned = [f for f in findings if open_stage and f.code.stage == open_stage.name]
            primary = (owned or findings)[0]
            return primary, primary.code, None
        codes = self.config.codes
        last = ordered[-1] if ordered else (stages[0] if stages else None)
        if life.outcome == "deleted":
            return None, codes["DeletedBeforeDelivered"], last
        seen_until = max(life.last_seen_us or 0, observed_until_us or 0)
        stuck = open_stage is not None and (life.outcome == "timeout" or (
            life.outcome == "in_progress"
            and seen_until - open_stage.start_us > self.config.deadline_us))
        if stuck and open_stage is not None and open_stage.name in self.config.stuck:
            return None, codes[self.config.stuck[open_stage.name]], open_stage
        if life.outcome == "in_progress":
            elapsed = (life.last_seen_us or 0) - (life.created_us or life.last_seen_us or 0)
            return (None, codes["NoProgress"], last) if elapsed > self.config.deadline_us \
                else (None, None, None)
        if life.outcome == "timeout":
            return None, codes["NoProgress"], last
        return None, codes["Unknown"], last

    def _slowness(self, stages: list[Stage], findings: list[Finding]
                  ) -> tuple[Finding | None, CodeDef | None, Stage | None]:
        """The finding (or slowness code) of the platform stage most over its limit, and
        that stage."""
        worst, worst_stage, worst_ratio = None, None, 1.0
        for slow in self.config.slow:
            for stage in stages:
                if stage.name == slow.stage and stage.end_us is not None:
                    ratio = (stage.end_us - stage.start_us) / max(slow.after_us, 1)
                    if ratio > worst_ratio:
                        worst, worst_stage, worst_ratio = slow, stage, ratio
        if worst is None:
            return None, None, None
        codes = self.config.codes
        found = next((f for f in findings if f.code.stage == worst.stage), None)
        if found is not None:
            return found, codes[found.code.recovered or found.code.name], worst_stage
        return None, codes[worst.code] if worst.code else codes["Unknown"], worst_stage


def _number(text: str | None) -> int:
    return int(text) if text and text.isdigit() else 0


def _evidence(event: HyperEvent, container: str = "") -> Evidence:
    return Evidence(event.time_us, event.source, event.audit_id, event.op, event.reason,
                    event.message or describe(event), container)


def _add_evidence(finding: Finding, event: HyperEvent, container: str) -> None:
    item = _evidence(event, container)
    if len(finding.evidence) < _EVIDENCE_HEAD + _EVIDENCE_TAIL:
        finding.evidence.append(item)
    else:  # keep the first few and the latest few
        del finding.evidence[_EVIDENCE_HEAD]
        finding.evidence.append(item)


def _stage_evidence(timeline: PodTimeline, stage: Stage | None,
                    code: CodeDef) -> list[Evidence]:
    """The records a diagnosis without a finding rests on: the stage's start and end
    records (a slow or stuck stage), the delete (DeletedBeforeDelivered), and the Pod's
    last record (what it did last before nothing more happened)."""
    events = timeline.ordered()
    if not events:
        return []
    picked: list[HyperEvent | None] = []
    if stage is not None:
        picked += [next((e for e in events if e.time_us == t), None)
                   for t in (stage.start_us, stage.end_us) if t is not None]
    if code.name == "DeletedBeforeDelivered":
        picked.append(next((e for e in events if e.op in ("delete", "evict")), None))
    elif stage is None or stage.end_us is None:
        picked.append(events[-1])
    seen: set[int] = set()
    out = []
    for event in picked:
        if event is not None and id(event) not in seen:
            seen.add(id(event))
            out.append(_evidence(event, event.container))
    return sorted(out, key=lambda e: e.time_us)


def describe(event: HyperEvent) -> str:
    """A short text of what a status change (or other operation) said."""
    parts = [f"{c.type}={c.status}" + (f" ({c.reason})" if c.reason else "")
             + (f": {c.message}" if c.message else "") for c in event.conditions]
    parts += [f"{'init ' if c.init else ''}container {c.name} "
              f"{'last run ' if c.previous_run else ''}{c.state}"
              + (f" ({c.reason})" if c.reason else "")
              + (f" exit code {c.exit_code}" if c.exit_code is not None else "")
              + (f": {c.message}" if c.message else "")
              for c in event.containers if c.transition]
    if event.phase:
        parts.append(f"phase {event.phase}")
    if event.op == "bind" and event.node:
        parts.append(f"bound to {event.node}")
    if not parts and event.code >= 300:
        parts.append(f"HTTP {event.code}")
    return "; ".join(parts) or event.op


def _last_stage(stages: list[Stage]) -> str:
    started = sorted(stages[1:], key=lambda s: (s.start_us, s.end_us is None))
    return started[-1].name if started else (stages[0].name if stages else "")


def _stage_end(stages: list[Stage], name: str) -> int | None:
    ends = [s.end_us for s in stages if s.name == name]
    return None if not ends or None in ends else max(e for e in ends if e is not None)


def _default_message(code: CodeDef, last_stage: str) -> str:
    if code.name == "NoProgress":
        return f"no progress after stage {last_stage}"
    if code.name == "DeletedBeforeDelivered":
        return f"deleted during stage {last_stage}"
    return code.hint
