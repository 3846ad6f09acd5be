"""What the Elasticsearch sink writes: index names, documents, templates and the ILM policy.

Pure data, no client: :mod:`lunettes.sinks.elasticsearch` sends it and
:mod:`lunettes.api.es_store` reads what it names. Two families of
monthly indices, each with its index template:

- ``<prefix>-pods-YYYY.MM``: one document per Pod (``PodRecord.to_dict()``), id = pod UID;
- ``<prefix>-diagnoses-YYYY.MM``: one document per diagnosed Pod (the ``diagnosis`` result
  flattened, plus the Pod's identity and SLO result), id = pod UID.

The month is the one of the record's ``created`` time (else ``last_seen``, ``finished``),
so a replay writes every document to the index it wrote before and overwrites it.
Retention is an ILM policy deleting an index ``retention_days`` after its month ended
(the sink creates each monthly index with ``index.lifecycle.origination_date`` set to the
month's end, so a record is kept at least ``retention_days``).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from lunettes.analyzers.base import DIAGNOSIS, SLO
from lunettes.model.record import PodRecord
from lunettes.model.results import Results, ResultSchema
from lunettes.registry import default_results

TEMPLATE_VERSION = 1
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


def diagnosis_document(record: PodRecord, pod: dict[str, Any],
                       results: Results | None = None) -> dict[str, Any] | None:
    """The diagnoses-index document of a record (the result playing the diagnosis role),
    or None when it has no diagnosis reason."""
    results = results or default_results()
    diagnosis = results.get(record, DIAGNOSIS)
    if not diagnosis.get("reason"):
        return None
    slo = results.get(record, SLO)
    doc: dict[str, Any] = {
        "uid": pod["uid"],
        "namespace": pod["namespace"],
        "name": pod["name"],
        "node": pod["node"],
        "created": pod["created"],
        "finished": pod["finished"],
        "outcome": pod["outcome"],
        "owner_kind": pod["owner_kind"],
        "owner_name": pod["owner_name"],
        "slo_result": slo.get("result"),
        "slo_class": slo.get("class"),
    }
    # The diagnosis's own fields (reason, stage, owner, message, hint, evidence, ...) at the
    # top; identity fields win if a diagnosis ever carries one of the same name.
    return {**diagnosis, **doc}


def bulk_actions(record: PodRecord, prefix: str, now_us: int,
                 results: Results | None = None) -> list[dict[str, Any]]:
    """The documents of one record as ``{_index, _id, _source}`` actions (1 or 2)."""
    month = month_of(record, now_us)
    pod = record.to_dict()
    actions = [{"_index": index_name(prefix, PODS, month), "_id": record.uid, "_source": pod}]
    diagnosis = diagnosis_document(record, pod, results)
    if diagnosis is not None:
        actions.append({"_index": index_name(prefix, DIAGNOSES, month), "_id": record.uid,
                        "_source": diagnosis})
    return actions


# -- mappings ----------------------------------------------------------------------------

_DATE = {"type": "date", "format": "strict_date_optional_time"}
"""RFC 3339 with microseconds (``2026-01-01T00:00:00.123456Z``) parses; the ``date`` type
indexes milliseconds, the exact string stays in ``_source`` and durations are floats."""
_KEYWORD = {"type": "keyword", "ignore_above": 1024}
_FLOAT = {"type": "float"}
_BOOL = {"type": "boolean"}
_TEXT = {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 1024}}}

_STAGE = {
    "type": "nested",
    "properties": {
        "name": _KEYWORD, "instance": _KEYWORD, "instance_kind": _KEYWORD, "owner": _KEYWORD,
        "start": _DATE, "end": _DATE, "duration_s": _FLOAT, "effective_owner": _KEYWORD,
        "user_s": _FLOAT, "user_intervals": _DATE,
    },
}

_EVIDENCE = {
    "type": "nested",
    "properties": {
        "time": _DATE, "source": _KEYWORD, "audit_id": _KEYWORD, "op": _KEYWORD,
        "reason": _KEYWORD, "message": _TEXT, "container": _KEYWORD,
    },
}

_SECONDARY = {
    "type": "nested",
    "properties": {
        "code": _KEYWORD, "stage": _KEYWORD, "owner": _KEYWORD, "message": _TEXT,
        "count": {"type": "integer"}, "first": _DATE, "last": _DATE,
    },
}

_TYPES: dict[str, dict[str, Any]] = {
    "keyword": _KEYWORD, "text": _TEXT, "float": _FLOAT, "integer": {"type": "integer"},
    "boolean": _BOOL, "date": _DATE,
}
"""The mapping of each field type an analyzer may declare (``FIELD_TYPES``)."""

_NESTED_BY_ROLE: dict[str, dict[str, Any]] = {
    DIAGNOSIS: {"evidence": _EVIDENCE, "secondary": _SECONDARY},
}
"""Lists of objects a role's result holds beyond its declared scalar fields."""


def result_fields(schema: ResultSchema) -> dict[str, Any]:
    """The mapped fields of one analyzer's result: its declared ones, plus the nested
    lists its roles hold."""
    fields = {key: _TYPES[kind] for key, kind in schema.fields.items()}
    for role in schema.roles:
        fields.update(_NESTED_BY_ROLE.get(role, {}))
    return fields

_IDENTITY: dict[str, Any] = {
    "uid": _KEYWORD, "namespace": _KEYWORD, "name": _KEYWORD, "node": _KEYWORD,
    "created": _DATE, "finished": _DATE, "outcome": _KEYWORD,
    "owner_kind": _KEYWORD, "owner_name": _KEYWORD,
}

def mappings(results: Results) -> dict[str, dict[str, Any]]:
    """The mappings of both index families for a pipeline's analyzer ``results``.

    Each analyzer's result is mapped from the fields it declares, so a new analyzer's
    output is indexed with no change here. ``dynamic: false`` at the top: only those
    fields are indexed, exactly as lunettes writes them; anything else in a document (a
    key a result does not declare, a field added to the pod record later) is kept in
    ``_source``, never guessed into a mapping, so it can never make a monthly index reject
    documents or grow its mapping unbounded.
    """
    diagnosis = next((s for s in results.schemas if DIAGNOSIS in s.roles), None)
    pods = {
        **_IDENTITY,
        "duration_s": _FLOAT, "partial": _BOOL, "uid_derived": _BOOL, "last_seen": _DATE,
        "end_reason": _KEYWORD,
        "stages": _STAGE,
        **{s.name: {"properties": result_fields(s)} for s in results.schemas},
    }
    diagnoses = {**_IDENTITY, "slo_result": _KEYWORD, "slo_class": _KEYWORD,
                 **(result_fields(diagnosis) if diagnosis else {})}
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
