"""What the Elasticsearch sink writes: index names, documents, templates and the ILM policy.

Pure data, no client: :mod:`lunettes.sinks.elasticsearch` sends it and
:mod:`lunettes.api.es_store` reads what it names. Two families of
monthly indices, each with its index template:

- ``<prefix>-pods-YYYY.MM``: one document per Pod (``PodRecord.to_dict()``), id = pod UID;
- ``<prefix>-diagnoses-YYYY.MM``: one document per diagnosed Pod (the ``diagnosis`` result
  flattened, plus the Pod's identity and SLO result), id = pod UID.

The month is the one of the record's ``created`` time (else ``last_seen``, ``finished``),
so a replay writes every document to the index it wrote before, merged with it
(:func:`merged_writes`).
Retention is an ILM policy deleting an index ``retention_days`` after its month ended
(the sink creates each monthly index with ``index.lifecycle.origination_date`` set to the
month's end, so a record is kept at least ``retention_days``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lunettes.analyzers.base import DIAGNOSIS, SLO
from lunettes.model.merge import merge
from lunettes.model.record import PodRecord
from lunettes.model.results import Results
from lunettes.model.schema import (
    BOOLEAN,
    DATE,
    FLATTENED,
    FLOAT,
    INTEGER,
    KEYWORD,
    NESTED,
    OBJECT,
    RECORD_FIELDS,
    TEXT,
    Field,
)
from lunettes.registry import default_results

TEMPLATE_VERSION = 2
"""Bumped whenever the mappings change (shown in the templates' ``version`` and ``_meta``)."""

PODS = "pods"
DIAGNOSES = "diagnoses"
FAMILIES = (PODS, DIAGNOSES)

_MONTH_RE = re.compile(r"-(\d{4})\.(\d{2})$")
_INVALID_PREFIX_CHARS = set(' "*\\/<>|,#:?')


def prefix_problem(prefix: str) -> str | None:
    """Why ``prefix`` cannot start an index name, or None when it can."""
    if not prefix:
        return "must not be empty"
    if prefix != prefix.lower():
        return f"index names are lowercase; use {prefix.lower()!r}"
    if prefix[0] in "-_+.":
        return "must not start with -, _, + or ."
    bad = sorted(set(prefix) & _INVALID_PREFIX_CHARS)
    if bad:
        return f"must not contain {' '.join(repr(c) for c in bad)}"
    return None


def policy_name(prefix: str) -> str:
    return f"{prefix}-retention"


def template_name(prefix: str, family: str) -> str:
    return f"{prefix}-{family}"


def month_of(record: PodRecord, now_us: int) -> str:
    """``YYYY.MM`` of the record's created time (else last seen, finished, ``now_us``)."""
    for us in (record.created_us, record.last_seen_us, record.finished_us, now_us):
        if us is not None:
            return datetime.fromtimestamp(us / 1e6, UTC).strftime("%Y.%m")
    raise AssertionError("unreachable")


def index_name(prefix: str, family: str, month: str) -> str:
    return f"{prefix}-{family}-{month}"


def index_pattern(prefix: str, family: str) -> str:
    """The indices of a family, every month: what its template matches and readers search."""
    return f"{prefix}-{family}-*"


def month_end_ms(index: str) -> int | None:
    """Epoch milliseconds of the first instant after the month an index name ends with."""
    match = _MONTH_RE.search(index)
    if match is None:
        return None
    year, month = int(match.group(1)), int(match.group(2))
    if not 1 <= month <= 12:
        return None
    year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return int(datetime(year, month, 1, tzinfo=UTC).timestamp() * 1000)


def diagnosis_document(pod: dict[str, Any], results: Results | None = None
                       ) -> dict[str, Any] | None:
    """The diagnoses-index document of a pod document (the result playing the diagnosis
    role), or None when it has no diagnosis reason."""
    results = results or default_results()
    diagnosis = results.get(pod, DIAGNOSIS)
    if not diagnosis.get("reason"):
        return None
    slo = results.get(pod, SLO)
    doc: dict[str, Any] = {name: pod[name] for name in _IDENTITY}
    doc.update({name: slo.get(key) for name, key in _SLO_KEYS.items()})
    # The diagnosis's own fields (reason, stage, owner, message, hint, evidence, ...) at the
    # top; identity fields win if a diagnosis ever carries one of the same name.
    return {**diagnosis, **doc}


@dataclass(frozen=True, slots=True)
class Stored:
    """A stored pod document and the sequence number and primary term of its last write
    (what a write conditional on nobody having written since names)."""

    source: dict[str, Any]
    seq_no: int
    primary_term: int


@dataclass(frozen=True, slots=True)
class Write:
    """One bulk operation: ``create`` (only if absent), ``index`` (only over the stored
    version ``if_seq``, when set) or ``delete``."""

    op: str
    index: str
    id: str
    source: dict[str, Any] | None = None
    if_seq: tuple[int, int] | None = None

    @property
    def conditional(self) -> bool:
        """Whether Elasticsearch refuses it (409) when another write came first."""
        return self.op == "create" or self.if_seq is not None

    def operations(self) -> list[dict[str, Any]]:
        """The bulk body lines of this operation."""
        meta: dict[str, Any] = {"_index": self.index, "_id": self.id}
        if self.if_seq is not None:
            meta["if_seq_no"], meta["if_primary_term"] = self.if_seq
        return [{self.op: meta}] if self.source is None else [{self.op: meta}, self.source]


def merged_writes(index: str, incoming: dict[str, Any], stored: Stored | None, prefix: str,
                  results: Results | None = None) -> list[Write]:
    """The writes that merge a pod record into its stored document in ``index``
    (:func:`lunettes.model.merge.merge`: never a record that knows less): the merged pod
    document, conditional on the stored version (``create`` when none, so a concurrent
    writer makes it fail and the caller reads and merges again), then its diagnosis
    document, derived from the merged record (deleted when the merged record has no
    reason any more)."""
    merged = merge(stored.source if stored else None, incoming)
    uid = str(merged["uid"])
    writes = [Write("create", index, uid, merged) if stored is None else
              Write("index", index, uid, merged, (stored.seq_no, stored.primary_term))]
    month = index[len(f"{prefix}-{PODS}-"):]
    document = diagnosis_document(merged, results)
    if document is not None:
        writes.append(Write("index", index_name(prefix, DIAGNOSES, month), uid, document))
    elif stored is not None and (results or default_results()).get(
            stored.source, DIAGNOSIS).get("reason"):
        writes.append(Write("delete", index_name(prefix, DIAGNOSES, month), uid))
    return writes


def bulk_actions(record: PodRecord, prefix: str, now_us: int,
                 results: Results | None = None) -> list[dict[str, Any]]:
    """The documents of one record as ``{_index, _id, _source}`` actions (1 or 2)."""
    month = month_of(record, now_us)
    pod = record.to_dict()
    actions = [{"_index": index_name(prefix, PODS, month), "_id": record.uid, "_source": pod}]
    diagnosis = diagnosis_document(pod, results)
    if diagnosis is not None:
        actions.append({"_index": index_name(prefix, DIAGNOSES, month), "_id": record.uid,
                        "_source": diagnosis})
    return actions


# -- mappings ----------------------------------------------------------------------------

_DATE = {"type": "date", "format": "strict_date_optional_time"}
"""RFC 3339 with microseconds (``2026-01-01T00:00:00.123456Z``) parses; the ``date`` type
indexes milliseconds, the exact string stays in ``_source`` and durations are floats."""
_KEYWORD = {"type": "keyword", "ignore_above": 1024}
_TYPES: dict[str, dict[str, Any]] = {
    KEYWORD: _KEYWORD, DATE: _DATE, FLOAT: {"type": "float"}, INTEGER: {"type": "integer"},
    BOOLEAN: {"type": "boolean"}, FLATTENED: {"type": "flattened"},
    TEXT: {"type": "text", "fields": {"keyword": _KEYWORD}},
}
"""The mapping of each value type of :mod:`lunettes.model.schema` (a list of values maps
as its values do)."""


def field_mapping(spec: Field) -> dict[str, Any]:
    """The mapping of one field: ``object`` and ``nested`` ones by their own fields."""
    if spec.type == OBJECT:
        return {"properties": properties(spec.fields)}
    if spec.type == NESTED:
        return {"type": "nested", "properties": properties(spec.fields)}
    return _TYPES[spec.type]


def properties(fields: Iterable[Field]) -> dict[str, Any]:
    return {spec.name: field_mapping(spec) for spec in fields}


_IDENTITY = ("uid", "namespace", "name", "node", "created", "finished", "outcome",
             "owner_kind", "owner_name")
"""The pod record's fields a diagnosis document repeats (:func:`diagnosis_document`)."""
_SLO_KEYS = {"slo_result": "result", "slo_class": "class"}
"""The SLO result's keys a diagnosis document repeats, by their names there."""


def mappings(results: Results) -> dict[str, dict[str, Any]]:
    """The mappings of both index families for a pipeline's analyzer ``results``.

    Everything is derived from the declared fields: the pod record's
    (:data:`~lunettes.model.schema.RECORD_FIELDS`) and each analyzer's, so a new analyzer's
    output is indexed with no change here. ``dynamic: false`` at the top: only those
    fields are indexed, exactly as lunettes writes them; anything else in a document (a
    key a result does not declare) is kept in ``_source``, never guessed into a mapping,
    so it can never make a monthly index reject documents or grow its mapping unbounded.
    """
    record = properties(RECORD_FIELDS)
    pods = {**record, **{s.name: {"properties": properties(s.fields)}
                         for s in results.schemas}}
    diagnosis = next((s for s in results.schemas if DIAGNOSIS in s.roles), None)
    slo = next((s for s in results.schemas if SLO in s.roles), None)
    slo_fields = {f.name: f for f in slo.fields} if slo else {}
    diagnoses = {**(properties(diagnosis.fields) if diagnosis else {}),
                 **{name: record[name] for name in _IDENTITY},
                 **{name: field_mapping(slo_fields[key]) if key in slo_fields else _KEYWORD
                    for name, key in _SLO_KEYS.items()}}
    return {PODS: {"dynamic": False, "properties": pods},
            DIAGNOSES: {"dynamic": False, "properties": diagnoses}}


MAPPINGS = mappings(default_results())
"""The mappings of the shipped configuration."""
POD_MAPPINGS, DIAGNOSIS_MAPPINGS = MAPPINGS[PODS], MAPPINGS[DIAGNOSES]


def index_template(prefix: str, family: str,
                   results: Results | None = None) -> dict[str, Any]:
    """The body of ``PUT _index_template/<prefix>-<family>`` (for ``results``, else the
    shipped configuration's)."""
    return {
        "index_patterns": [index_pattern(prefix, family)],
        "priority": 200,
        "version": TEMPLATE_VERSION,
        "template": {
            "settings": {"index": {"lifecycle": {"name": policy_name(prefix)}}},
            "mappings": MAPPINGS[family] if results is None else mappings(results)[family],
        },
        "_meta": {"managed_by": "lunettes", "schema_version": TEMPLATE_VERSION},
    }


def retention_policy(retention_days: int) -> dict[str, Any]:
    """The body of ``PUT _ilm/policy/<prefix>-retention``: delete after the retention."""
    return {
        "policy": {
            "phases": {
                "hot": {"min_age": "0ms", "actions": {}},
                "delete": {"min_age": f"{retention_days}d", "actions": {"delete": {}}},
            },
            "_meta": {"managed_by": "lunettes"},
        }
    }
