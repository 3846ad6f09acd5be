"""What the analyzers beyond stages and lifecycle put in a pod record, and how to read it.

Each analyzer's output lands in ``PodRecord.results`` (and the record's JSON) under the
analyzer's name. A :class:`ResultSchema` says what that entry is: the roles it plays
(:mod:`lunettes.analyzers.base`), the key the replay table shows (``headline``) and its
keys (``fields``, :class:`lunettes.model.schema.Field`: what Elasticsearch maps and the
API's schema shows). Sinks, the API and the table read
:class:`Results`, never a hard-coded analyzer name, so a new analyzer needs no change
there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from lunettes.model.schema import Field, fields_of


@dataclass(frozen=True)
class ResultSchema:
    """One analyzer's entry in the pod record."""

    name: str
    roles: tuple[str, ...] = ()
    headline: str = ""
    fields: tuple[Field, ...] = ()

    @classmethod
    def of(cls, name: str, analyzer: object) -> ResultSchema:
        """The schema an analyzer (class or instance) declares, under ``name``."""
        return cls(name, tuple(getattr(analyzer, "provides", ())),
                   str(getattr(analyzer, "headline", "") or ""),
                   fields_of(getattr(analyzer, "fields", {}) or {}))


@dataclass(frozen=True)
class Results:
    """The result entries of one pipeline, in DAG order."""

    schemas: tuple[ResultSchema, ...] = ()

    @classmethod
    def of(cls, schemas: Iterable[ResultSchema]) -> Results:
        return cls(tuple(schemas))

    def key(self, role: str) -> str:
        """The record key of the result playing ``role`` (the role's name when none does:
        a record written by another configuration may still hold it)."""
        return next((s.name for s in self.schemas if role in s.roles), role)

    def get(self, record: Mapping[str, Any] | Any, role: str) -> dict[str, Any]:
        """The result playing ``role`` in a record (a PodRecord's ``results`` or its JSON
        dict), or an empty dict."""
        return self.get_named(record, self.key(role))

    @staticmethod
    def get_named(record: Mapping[str, Any] | Any, name: str) -> dict[str, Any]:
        """The result named ``name`` in a record, or an empty dict."""
        results = record if isinstance(record, Mapping) else record.results
        value = results.get(name)
        return value if isinstance(value, dict) else {}
