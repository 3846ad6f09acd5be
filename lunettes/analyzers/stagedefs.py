"""Stage definitions from stages.yaml: names, owners, markers, per-instance repetition."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lunettes.analyzers.markers import Alternative, Marker
from lunettes.config.errors import ConfigError, Section, read_yaml
from lunettes.model.hyperevent import HyperEvent
from lunettes.model.spec import PodSpecSummary

OWNERS = ("platform", "user")
PER = ("container", "image")


@dataclass(frozen=True, slots=True)
class StageDef:
    """One stage of stages.yaml."""

    name: str
    owner: str
    start: Marker
    end: Marker
    per: str = ""
    root: bool = False


@dataclass(frozen=True, slots=True)
class StageSet:
    """All stages, the root first; ``delivered`` tells the folder when a Pod is done."""

    stages: tuple[StageDef, ...]
    origin: str = ""
    """The file it was read from, for messages."""

    @property
    def root(self) -> StageDef:
        return self.stages[0]

    def delivered(self, spec: PodSpecSummary | None, event: HyperEvent) -> bool:
        """True when ``event`` is an end marker of the root stage."""
        return bool(self.stages[0].end.match_keyed(event, event.key, spec))

    @classmethod
    def load(cls, path: Path) -> StageSet:
        """Read and validate a stages file; every problem is reported at once."""
        data = read_yaml(path)
        return cls.parse(data, str(path))

    @classmethod
    def parse(cls, data: object, origin: str) -> StageSet:
        problems: list[str] = []
        top = Section(data, origin, problems)
        items = top.require("stages", list) or []
        top.check_unknown()
        stages = []
        seen: set[str] = set()
        for i, item in enumerate(items):
            label = item.get("name") if isinstance(item, dict) else None
            section = Section(item, f"{origin}: stages[{i}]" + (f" ({label})" if label else ""),
                              problems)
            name = section.require("name", str) or f"#{i}"
            if name in seen:
                section.problem("name", f"duplicate stage name {name!r}")
            seen.add(name)
            owner = section.get("owner", "platform", str)
            if owner not in OWNERS:
                section.problem("owner", f"unknown owner {owner!r}; supported: "
                                         f"{', '.join(OWNERS)}")
            per = section.get("per", "", str)
            if per and per not in PER:
                section.problem("per", f"unknown value {per!r}; supported: {', '.join(PER)}")
            root = section.get("root", False, bool)
            start = Marker.from_config(section.get("start", None, (dict, list)),
                                       f"{section.path}.start", problems)
            end = Marker.from_config(section.get("end", None, (dict, list)),
                                     f"{section.path}.end", problems)
            section.check_unknown()
            stages.append(StageDef(name, owner, start, end, per, root))
        roots = [s for s in stages if s.root]
        if len(roots) != 1:
            problems.append(f"{origin}: exactly one stage must have root: true "
                            f"(found {len(roots)})")
        elif roots[0].per:
            problems.append(f"{origin}: the root stage {roots[0].name!r} cannot be per-instance")
        if problems:
            raise ConfigError(problems)
        return cls(tuple(roots + [s for s in stages if not s.root]), origin)

    def warnings(self) -> list[str]:
        """Stages that are valid but can stay open on a delivered Pod, where the SLO would
        count their open time as the platform's: a platform stage that can start on a
        record the API server always logs (create, binding, status) but ends only on
        Events, which audit policies often drop (GKE's default)."""
        return [f"{self.origin}: stage {s.name}: a platform stage that can stay open: it "
                "can start without an Event but ends only on Events, which audit policies "
                "may drop; its open time then counts as the platform's in the SLO. Add an "
                "end alternative on the Pod's status (condition, container_state or phase)"
                for s in self.stages[1:] if s.owner == "platform"
                and all(_needs_event(a) for a in s.end.alternatives)
                and not all(_needs_event(a) for a in s.start.alternatives)]


def _needs_event(alternative: Alternative) -> bool:
    """True when only an Event (not a Pod's own record) can match ``alternative``."""
    return (alternative.reasons is not None or alternative.event_types is not None
            or alternative.ops == frozenset({"event"}))
