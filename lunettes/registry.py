"""Component registry: built-in and plug-in sources, processors, analyzers and sinks,
found by entry point."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from lunettes.config.errors import ConfigError, Section
from lunettes.model.results import Results, ResultSchema
from lunettes.sources.errors import BadRecords

ANALYZERS = "lunettes.analyzers"
PROCESSORS = "lunettes.processors"
SINKS = "lunettes.sinks"
SOURCES = "lunettes.sources"


@dataclass(frozen=True)
class BuildContext:
    """What factories may use besides their own YAML section: injected, never global.

    ``config_dir`` resolves relative file names in the config; ``env`` stands for the
    process environment (tests pass their own). Sources count bad input in ``bad`` (one
    count for the whole pipeline) and resume from ``resume[their key]`` when a checkpoint
    holds their position (see :class:`lunettes.sources.base.Source`).
    """

    config_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    bad: BadRecords = field(default_factory=BadRecords)
    resume: dict[str, Any] = field(default_factory=dict)
    checkpointing: bool = False
    """Whether the pipeline writes checkpoints: a source then keeps what a restart from
    the last one written still needs."""
    results: Results = field(default_factory=lambda: default_results())
    """The analyzers' result entries of the pipeline the sink serves (the shipped
    configuration's when a sink is built on its own)."""
    decode_late: bool = False
    """Sources may leave final records undecoded (``AuditRecord.raw``): the processors
    decode them (:mod:`lunettes.processors.decode`)."""


def default_results() -> Results:
    """The result entries of the shipped pipeline.yaml's analyzers: diagnosis and slo."""
    from lunettes.analyzers.diagnosis import DiagnosisAnalyzer
    from lunettes.analyzers.slo import SLOAnalyzer

    return Results.of([ResultSchema.of("diagnosis", DiagnosisAnalyzer),
                       ResultSchema.of("slo", SLOAnalyzer)])


def build_section(group: str, section: Section, context: BuildContext) -> list[Any]:
    """One component of ``group`` per key of a config section (``type`` or ``type/name``,
    so several of one type coexist), each built by its class's ``from_config``; every
    problem is added to the section's, none stops the others."""
    built = (build(group, str(key), section.sub(str(key)), context) for key in section.data)
    return [item for item in built if item is not None]


def build(group: str, key: str, section: Section, context: BuildContext) -> Any:
    """The component of ``group`` for ``key`` (``type`` or ``type/name``) configured by
    ``section``; None after adding its problems to the section's."""
    try:
        factory = load(group, key.split("/")[0])
    except (KeyError, ImportError) as exc:
        message = str(exc).strip('"')
        section.problems.append(f"{section.path}: {message}")
        return None
    try:
        return factory.from_config(key, section, context)
    except ConfigError as exc:
        section.problems.extend(exc.problems)
        return None


def names(group: str) -> list[str]:
    """The registered component type names of a group, sorted."""
    return sorted({ep.name for ep in entry_points(group=group)})


def load(group: str, type_name: str) -> Any:
    """The class registered under ``type_name``; unknown names raise KeyError listing the
    supported ones, a missing optional dependency raises ImportError naming the extra."""
    for ep in entry_points(group=group):
        if ep.name == type_name:
            try:
                return ep.load()
            except ImportError as exc:
                raise ImportError(
                    f"{type_name}: needs an optional dependency ({exc.name}); "
                    f"install it with: pip install 'lunettes[{type_name}]'"
                ) from exc
    known = names(group)
    if not known:  # an install older than the group: its metadata lacks the entry points
        raise KeyError(f"unknown type {type_name!r}: no {group} entry points are installed; "
                       f"reinstall lunettes (pip install -e .)")
    raise KeyError(f"unknown type {type_name!r}; supported: {', '.join(known)}")
