"""The analyzer contract: what an analyzer provides and needs, by role.

An analyzer's output plays one or more **roles**; an analyzer names the roles it
``requires`` (exactly one of its ``needs:`` inputs must provide each) and those it
``accepts`` (any number of inputs, e.g. every source of user-fault intervals). The DAG
checks them when it is built (:mod:`lunettes.analyzers.dag`), and the pipeline, the sinks,
the API and the table find outputs by role, never by analyzer name or class. The roles
lunettes itself uses:

==================  =====================================================================
``stages``          the stages of the trace (``list[Stage]``, root first)
``lifecycle``       identity and outcome (:class:`~lunettes.analyzers.lifecycle.Lifecycle`)
``fault_intervals`` ``user_fault_intervals``: times the user caused, left out of the SLO
``diagnosis``       why a Pod failed or was slow (reason, stage, owner, evidence)
``slo``             the delivery SLO verdict
``requests``        what the Pod's API requests cost (the API-server analysis)
==================  =====================================================================

An output beyond ``stages`` and ``lifecycle`` lands in the pod record's results under the
analyzer's name (``to_dict()`` if it has one). ``headline``, if set, names the key of that
result the replay table shows in a column of its own, and ``fields`` describes its keys
(a type name of :data:`lunettes.model.schema.FIELD_TYPES` each, or a
:class:`lunettes.model.schema.Field`): Elasticsearch maps them and the API's schema shows
them, so a new analyzer is stored, indexed and shown without touching the sinks, the API
or the table.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Protocol

STAGES, LIFECYCLE, FAULT_INTERVALS = "stages", "lifecycle", "fault_intervals"
DIAGNOSIS, SLO, REQUESTS = "diagnosis", "slo", "requests"
PIPELINE_ROLES = (STAGES, LIFECYCLE)
"""Roles the pipeline itself reads to assemble a pod record: exactly one analyzer each."""


Reference = tuple[str, str, str]
"""``(role, name, where)``: a name the analyzer's config expects the input playing
``role`` to define (a stage of stages.yaml), and where the config names it."""


class Analyzer(Protocol):
    """A named unit of analysis in the pipeline DAG.

    ``analyze(timeline, inputs)`` reads one final PodTimeline and the outputs of the
    analyzers it ``needs`` (:class:`Inputs`: by name, and by role) and returns its own
    output. It keeps no state between Pods. Factories are
    ``from_config(name, section, context)`` classmethods that own their defaults.
    Class attributes declare the roles (``provides``, ``requires``, ``accepts``), and
    optionally ``headline`` and ``fields`` (see the module docstring). Analyzers whose
    config names things another analyzer defines list them in ``references()``; one that
    defines names lists them in ``defines()``; the DAG checks the one against the other.
    """

    name: str
    provides: ClassVar[tuple[str, ...]]
    requires: ClassVar[tuple[str, ...]]
    accepts: ClassVar[tuple[str, ...]]

    def analyze(self, timeline: Any, inputs: Inputs) -> Any: ...


class Inputs(dict[str, Any]):
    """The outputs of an analyzer's inputs by analyzer name, with lookups by role."""

    def __init__(self, outputs: Mapping[str, Any], by_role: Mapping[str, tuple[str, ...]]
                 ) -> None:
        super().__init__(outputs)
        self._by_role = by_role

    @classmethod
    def by_role(cls, outputs: Mapping[str, Any]) -> Inputs:
        """Inputs each named for the one role it plays (for tests and embedding)."""
        return cls(outputs, {name: (name,) for name in outputs})

    def role(self, role: str) -> Any:
        """The output of the input playing ``role`` (None when no input does)."""
        names = self._by_role.get(role, ())
        return self[names[0]] if names else None

    def every(self, role: str) -> list[Any]:
        """The outputs of every input playing ``role``."""
        return [self[name] for name in self._by_role.get(role, ())]


def roles_of(analyzer: object) -> tuple[str, ...]:
    """The roles an analyzer declares it provides (none if it declares nothing)."""
    return tuple(getattr(analyzer, "provides", ()))


def references_of(analyzer: object) -> list[Reference]:
    refs = getattr(analyzer, "references", None)
    return list(refs()) if callable(refs) else []


def defined_by(analyzer: object) -> tuple[str, ...] | None:
    defines = getattr(analyzer, "defines", None)
    return tuple(defines()) if callable(defines) else None
