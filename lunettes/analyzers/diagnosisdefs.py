"""Diagnosis configuration (diagnosis.yaml): reason codes, rules, slowness limits."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from lunettes.analyzers.markers import Marker
from lunettes.config.errors import ConfigError, Section, read_yaml, suggest

OWNERS = ("platform", "user")
PSEUDO_STAGES = ("create", "lifecycle")
_FIELD = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True, slots=True)
class CodeDef:
    """One reason code of the vocabulary."""

    name: str
    owner: str
    stage: str
    hint: str
    recovered: str = ""


@dataclass(frozen=True, slots=True)
class RuleDef:
    """How one code is recognised: a marker, a message template, an optional rank group."""

    code: str
    match: Marker
    message: str
    rank: str = ""


@dataclass(frozen=True, slots=True)
class SlowDef:
    """A platform stage's time limit for Pods that were delivered in the end."""

    stage: str
    after_us: int
    code: str = ""


@dataclass(frozen=True, slots=True)
class DiagnosisConfig:
    codes: dict[str, CodeDef]
    rules: tuple[RuleDef, ...]
    slow: tuple[SlowDef, ...]
    deadline_us: int
    stuck: dict[str, str] = field(default_factory=dict)
    """Stage -> code for a Pod stuck in that stage with no finding (instead of NoProgress):
    the stage itself tells the cause (containers running but never ready)."""
    stage_references: tuple[tuple[str, str], ...] = ()
    """``(where, stage)`` of every stage name the file uses, left to check against
    stages.yaml when it was parsed without stage names (by the analyzer DAG)."""

    @classmethod
    def load(cls, path: Path, stage_names: tuple[str, ...] | None = None) -> DiagnosisConfig:
        data = read_yaml(path)
        return cls.parse(data, f"{path}:", stage_names)

    @classmethod
    def parse(cls, data: object, origin: str,
              stage_names: tuple[str, ...] | None = None) -> DiagnosisConfig:
        """Validate everything, reporting every problem at once; the stage names are
        checked against ``stage_names`` when given, else kept in ``stage_references``."""
        problems: list[str] = []
        top = Section(data, origin, problems)
        refs: list[tuple[str, str]] = []
        codes = _codes(top.sub("codes"), refs)
        rules = _rules(top.get("rules", [], list), top.join("rules"), problems, codes)
        slow = _slow(top.sub("slow"), codes, refs)
        deadline = top.get("deadline_s", 600.0, float)
        stuck = _stuck(top.sub("stuck"), codes, refs)
        if stage_names is not None:
            problems.extend(unknown_stages(refs, stage_names))
            refs = []
        top.check_unknown()
        for code in codes.values():
            if code.recovered and code.recovered not in codes:
                problems.append(f"{origin} codes.{code.name}.recovered: unknown code "
                                f"{code.recovered!r}{suggest(code.recovered, codes)}")
        for required in ("NoProgress", "Unknown", "DeletedBeforeDelivered"):
            if required not in codes:
                problems.append(f"{origin} codes: the code {required} must be defined")
        if problems:
            raise ConfigError(problems)
        return cls(codes, rules, slow, int(deadline * 1_000_000), stuck, tuple(refs))


def unknown_stages(refs: list[tuple[str, str]], stage_names: tuple[str, ...]) -> list[str]:
    """A problem for each referenced stage ``stage_names`` does not hold."""
    return [f"{where}: unknown stage {stage!r}{suggest(stage, stage_names)}; known: "
            f"{', '.join(stage_names)}" for where, stage in refs if stage not in stage_names]


def _codes(section: Section, refs: list[tuple[str, str]]) -> dict[str, CodeDef]:
    codes = {}
    for name in section.data:
        sub = section.sub(str(name))
        owner = sub.get("owner", "platform", str)
        if owner not in OWNERS:
            sub.problem("owner", f"unknown owner {owner!r}; supported: {', '.join(OWNERS)}")
        stage = sub.require("stage", str) or ""
        if stage and stage not in PSEUDO_STAGES:
            refs.append((sub.join("stage"), stage))
        codes[str(name)] = CodeDef(str(name), owner, stage, sub.get("hint", "", str),
                                   sub.get("recovered", "", str))
        sub.check_unknown()
    return codes


def _rules(items: list, path: str, problems: list[str],
           codes: dict[str, CodeDef]) -> tuple[RuleDef, ...]:
    rules = []
    for i, item in enumerate(items):
        label = item.get("code") if isinstance(item, dict) else None
        sub = Section(item, f"{path}[{i}]" + (f" ({label})" if label else ""), problems)
        code = sub.require("code", str) or ""
        if code and code not in codes:
            sub.problem("code", f"unknown code {code!r}{suggest(code, codes)}")
        match = Marker.from_config(sub.get("match", None, (dict, list)), sub.join("match"),
                                   problems)
        message = sub.get("message", code, str)
        rank = sub.get("rank", "", str)
        groups = {g for alt in match.alternatives if alt.message
                  for g in alt.message.groupindex}
        if rank and rank not in groups:
            sub.problem("rank", f"no message group named {rank!r} in this rule's regex")
        for name in _FIELD.findall(message):
            if name not in groups and name not in ("container", "image"):
                sub.problem("message", f"{{{name}}} is not a message group of this rule "
                                       f"(groups: {', '.join(sorted(groups)) or 'none'})")
        sub.check_unknown()
        rules.append(RuleDef(code, match, message, rank))
    return tuple(rules)


def _slow(section: Section, codes: dict[str, CodeDef],
          refs: list[tuple[str, str]]) -> tuple[SlowDef, ...]:
    out = []
    for stage in section.data:
        sub = section.sub(str(stage))
        refs.append((section.join(str(stage)), str(stage)))
        after = sub.require("after_s", (int, float)) or 0
        code = sub.get("code", "", str)
        if code and code not in codes:
            sub.problem("code", f"unknown code {code!r}{suggest(code, codes)}")
        sub.check_unknown()
        out.append(SlowDef(str(stage), int(after * 1_000_000), code))
    return tuple(out)


def _stuck(section: Section, codes: dict[str, CodeDef],
           refs: list[tuple[str, str]]) -> dict[str, str]:
    out = {}
    for stage, code in section.data.items():
        refs.append((section.join(str(stage)), str(stage)))
        if not isinstance(code, str) or code not in codes:
            section.problem(str(stage), f"unknown code {code!r}"
                                        f"{suggest(str(code), codes)}")
        out[str(stage)] = str(code)
    return out
