"""The pod record's fields, declared once: name, type, meaning.

:meth:`lunettes.model.record.PodRecord.to_dict` writes records by :data:`RECORD_FIELDS`,
the Elasticsearch mappings (:mod:`lunettes.store.es_indices`) and the API's models
(:mod:`lunettes.api.models`) are derived from them, and an analyzer's result is described
by the same :class:`Field` (its ``fields``: a type name per key, or a ``Field`` for a
list of objects), so the record, the index and the OpenAPI schema cannot drift apart.

Types are Elasticsearch's field types (``keyword``, ``text``, ``date``, ``float``,
``integer``, ``boolean``, ``flattened``: an object of strings with any keys), plus
``object`` and ``nested`` (a list of objects) whose ``fields`` describe their keys.
Dates are RFC 3339 strings with microseconds; durations seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from lunettes.model.times import format_optional, format_time

__all__ = ["EVENT_FIELDS", "FIELD_TYPES", "NESTED_TYPES", "RECORD_FIELDS", "REQUIRED",
           "STAGE_FIELDS", "Field", "dump", "fields_of", "readers"]

KEYWORD, TEXT, DATE, FLOAT, INTEGER, BOOLEAN, FLATTENED = (
    "keyword", "text", "date", "float", "integer", "boolean", "flattened")
OBJECT, NESTED = "object", "nested"
FIELD_TYPES = (KEYWORD, TEXT, FLOAT, INTEGER, BOOLEAN, DATE, FLATTENED)
"""Types of a value."""
NESTED_TYPES = (OBJECT, NESTED)
"""Types whose ``fields`` describe their keys."""


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()
"""The ``default`` of a field every stored record has."""


@dataclass(frozen=True)
class Field:
    """One key of a record (or of an object in it).

    ``nullable``: the value (each value, for a list) may be None. ``many``: how deeply the
    value is a list of such values (``user_intervals``: 2, a list of [start, end] pairs).
    ``default``: what a reader assumes when a record lacks it (written by an older
    lunettes); :data:`REQUIRED` when every record has it. ``omit_empty``: ``to_dict``
    leaves it out when empty. ``get`` reads the value from the Python object (default: the
    attribute of the same name; for a date, ``<name>_us`` formatted; for a nested list,
    each item by ``fields``).
    """

    name: str
    type: str
    doc: str = ""
    nullable: bool = False
    many: int = 0
    fields: tuple[Field, ...] = ()
    default: Any = REQUIRED
    omit_empty: bool = False
    get: Callable[[Any], Any] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.type not in FIELD_TYPES + NESTED_TYPES:
            raise ValueError(f"{self.name}: unknown type {self.type!r}; supported: "
                             f"{', '.join(FIELD_TYPES + NESTED_TYPES)}")
        if self.fields and self.type not in NESTED_TYPES:
            raise ValueError(f"{self.name}: only object and nested fields have fields")

    def reader(self) -> Callable[[Any], Any]:
        """The function reading this field's JSON value from a Python object."""
        if self.get is not None:
            return self.get
        name = self.name
        if self.type == DATE:
            attribute = f"{name}_us"
            return lambda obj: format_optional(getattr(obj, attribute))
        if self.type == NESTED:
            return lambda obj: [item.to_dict() for item in getattr(obj, name)]
        if self.type == FLATTENED:
            return lambda obj: dict(getattr(obj, name))
        return lambda obj: getattr(obj, name)


def fields_of(declared: Mapping[str, str | Field]) -> tuple[Field, ...]:
    """An analyzer's ``fields`` (key -> type name, or a Field) as Fields named by their
    key; a value declared by type name alone may be None. A ValueError names an unknown
    type."""
    return tuple(replace(value, name=key) if isinstance(value, Field)
                 else Field(key, str(value), nullable=True, default=None)
                 for key, value in declared.items())


def readers(fields: Iterable[Field]) -> tuple[tuple[Field, Callable[[Any], Any]], ...]:
    """Each field with its reader, for :func:`dump`."""
    return tuple((spec, spec.reader()) for spec in fields)


def dump(obj: Any, readers: Iterable[tuple[Field, Callable[[Any], Any]]]) -> dict[str, Any]:
    """The JSON-ready dict of ``obj`` by its fields and their readers (:func:`readers`)."""
    out: dict[str, Any] = {}
    for spec, read in readers:
        value = read(obj)
        if spec.omit_empty and not value:
            continue
        out[spec.name] = value
    return out


def _user_intervals(obj: Any) -> list[list[str]]:
    return [[format_time(s), format_time(e)] for s, e in obj.user_intervals]


EVENT_FIELDS = (
    Field("time", DATE, "when it happened"),
    Field("name", KEYWORD, "the Event's reason (or what happened)"),
    Field("message", TEXT, "its message, redacted", default=""),
    Field("attributes", FLATTENED, "count, k8s.container.name, ...", default={}),
)
"""A span event of a stage (:class:`lunettes.model.record.SpanEvent`)."""

STAGE_FIELDS = (
    Field("name", KEYWORD, "the stage (stages.yaml)"),
    Field("instance", KEYWORD, "the container or image of a per-instance stage",
          default=""),
    Field("instance_kind", KEYWORD, "container or image for per-instance stages",
          default=""),
    Field("owner", KEYWORD, "platform or user: who owns the stage (stages.yaml)"),
    Field("start", DATE, "when the stage started", nullable=True),
    Field("end", DATE, "when it ended; None while the stage is open", nullable=True),
    Field("duration_s", FLOAT, "end - start; None while open", nullable=True),
    Field("effective_owner", KEYWORD, "who owns most of the stage's time by the SLO's "
          "account (a platform stage spent on a user fault is the user's)", default="",
          get=lambda s: s.effective_owner or s.owner),
    Field("user_s", FLOAT, "seconds of the stage the SLO counts as user time",
          default=0.0, get=lambda s: sum(e - b for b, e in s.user_intervals) / 1e6),
    Field("user_intervals", DATE, "those parts of the stage, as [start, end] pairs",
          many=2, default=[], get=_user_intervals),
    Field("events", NESTED, "warning Events in the stage", fields=EVENT_FIELDS,
          default=[], omit_empty=True),
)
"""A stage of a pod record (:class:`lunettes.model.record.Stage`): a span of its trace."""

RECORD_FIELDS = (
    Field("uid", KEYWORD, "the Pod's UID (derived when the log never showed it)"),
    Field("namespace", KEYWORD, "the Pod's namespace"),
    Field("name", KEYWORD, "the Pod's name"),
    Field("node", KEYWORD, "the node it was bound to, empty before"),
    Field("created", DATE, "its creation (the creationTimestamp for a partial record)",
          nullable=True),
    Field("finished", DATE, "the end of its delivery", nullable=True),
    Field("duration_s", FLOAT, "finished - created", nullable=True),
    Field("outcome", KEYWORD, "delivered, completed, failed, deleted, rejected, timeout, "
          "in_progress or unknown"),
    Field("partial", BOOLEAN, "the log began after the Pod was created"),
    Field("uid_derived", BOOLEAN, "the log never showed the real UID", default=False),
    Field("owner_kind", KEYWORD, "the kind of its controller (ReplicaSet, Job, ...)"),
    Field("owner_name", KEYWORD, "the name of its controller"),
    Field("last_seen", DATE, "its last record in the log", nullable=True, default=None),
    Field("end_reason", KEYWORD, "why lunettes stopped following the Pod: delivered, "
          "terminal, deleted, rejected, timeout or end_of_input", default=""),
    Field("stages", NESTED, "the stages of its delivery, root first", fields=STAGE_FIELDS),
    Field("trace_context", KEYWORD, "the W3C traceparent its annotation carried",
          default="", omit_empty=True),
)
"""A pod record (:class:`lunettes.model.record.PodRecord`) before the analyzers' results,
which follow under their analyzers' names."""
