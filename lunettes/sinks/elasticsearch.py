"""ElasticsearchSink: pod records and diagnoses into monthly Elasticsearch indices.

What is written (indices, documents, templates, the ILM retention policy) lives in
:mod:`lunettes.store.es_indices`; the disk spool in :mod:`lunettes.sinks.spool`. This
module sends it with the official client (the ``elasticsearch`` extra); nothing else in
lunettes imports it, so the core works without the client.

Each batch becomes bulk actions with ``_id`` = pod UID. ``export`` only builds them;
the sending thread merges each pod record into its stored document (as the SQLite store
does, :mod:`lunettes.model.merge`: a record never replaces one of the same UID that knows
more, so overlapping or split replays give the documents of one clean pass): it reads the
stored documents (``_mget``, real time), then writes the merged ones conditionally
(``create`` when absent, else ``index`` with ``if_seq_no``/``if_primary_term``). A
document another writer changed in between is refused (409) and read, merged and written
again at once (at most :data:`MAX_CONFLICTS` times, then like any retry). The diagnosis
document is derived from the merged pod document and written (or deleted) in the same
bulk request, unconditionally: two writers of one Pod at the same instant may leave it
one merge behind the pod document until the Pod is written again.
``export`` hands the actions on: bulk requests are sent by a background thread through
:class:`~lunettes.sinks.delivery.SpooledDelivery` (a bounded queue and the disk spool), so
an Elasticsearch that is down, hung or overloaded never stalls the pipeline. Before the
first bulk request the ILM policy and both index templates are PUT (once per sink; the PUTs
are idempotent), and each monthly index is created once with its ILM origination date.
Failures:

- connection errors, timeouts, 429 and 5xx answers are retried with exponential backoff
  and jitter, at most ``max_retries`` times and never past ``timeout_s``;
- bulk items refused with 429/5xx are retried the same way, alone; items refused for
  good (a 400 mapping error) are counted in ``stats['failed']`` and logged with the UID
  and Elasticsearch's reason, never retried;
- what still cannot be delivered (Elasticsearch down, hung, overloaded, or refusing our
  credentials or templates) goes to the disk spool instead of being lost, and is sent,
  oldest first, once Elasticsearch takes documents again (by this run or the next one
  with the same ``spool_dir``); documents it took are never sent again.

``stats`` counts Elasticsearch documents (a pod record with a diagnosis is two):
``indexed``, ``failed``, ``retried`` (re-sent documents), ``conflicts`` (pod documents
merged again after a concurrent write), ``spooled``, ``drained`` (taken
out of the spool), ``dropped`` (lost to the spool's size limit) and ``requests``; ``lost``
counts the pod records refused for good or dropped.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import elastic_transport
from elasticsearch import ApiError, Elasticsearch

from lunettes.config.errors import Section
from lunettes.model.merge import merge
from lunettes.model.record import PodRecord
from lunettes.model.results import Results
from lunettes.registry import BuildContext
from lunettes.sinks.base import SinkClosedError
from lunettes.sinks.delivery import Outcome, Payload, SpooledDelivery, SpooledSink
from lunettes.sinks.spool import ROOT, DiskSpool, decode_lines, default_dir, encode_lines
from lunettes.store import es_indices as tpl
from lunettes.store.es_connection import (
    DEFAULT_HOST,
    DEFAULT_TIMEOUT_S,
    client,
    connection_from_config,
)

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "lunettes"
DEFAULT_RETENTION_DAYS = 30
DEFAULT_BULK_SIZE = 500
DEFAULT_MAX_RETRIES = 5
DEFAULT_SPOOL_MAX_MB = 512.0
DEFAULT_QUEUE_SIZE = 16

MAX_CONFLICTS = 10
"""Times a bulk request is sent again at once for documents another writer changed between
our read and our write, before they wait out a backoff like other retries."""
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
_HOLD_STATUSES = frozenset({401, 403})
"""Refused credentials: spooled (not retried) until the configuration is fixed."""
_FILTER_PATH = "errors,items.*._index,items.*._id,items.*.status,items.*.error"

Action = dict[str, Any]


@dataclass(slots=True)
class _Undelivered:
    """What a send could not deliver (to spool or keep spooled), and why."""

    actions: list[Action]
    reason: str


class ElasticsearchSink(SpooledSink):
    """Writes pod records (and their diagnoses) to Elasticsearch; see the module docstring.

    ``hosts`` are URLs (``http://`` with a port, or ``https://``); ``api_key`` (the
    encoded form) or ``basic_auth`` authenticate; ``ca_certs``/``verify_certs`` apply to
    https hosts. ``timeout_s`` bounds one bulk request including its retries;
    ``queue_size`` bulk requests wait in memory for the sending thread.
    ``backoff_base_s``/``backoff_max_s``, ``clock`` (seconds since the epoch, for records
    without times) and ``client_options`` (extra ``Elasticsearch(...)`` arguments) are
    for tests and embedding. Building a sink opens nothing: the client, the templates
    and the spool directory come with the first export.
    """

    def __init__(
        self,
        hosts: Sequence[str] = (DEFAULT_HOST,),
        *,
        api_key: str | None = None,
        basic_auth: tuple[str, str] | None = None,
        ca_certs: str | None = None,
        verify_certs: bool | None = None,
        index_prefix: str = DEFAULT_PREFIX,
        retention_days: int = DEFAULT_RETENTION_DAYS,
        bulk_size: int = DEFAULT_BULK_SIZE,
        max_retries: int = DEFAULT_MAX_RETRIES,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        spool_dir: str | Path = f"{ROOT}/elasticsearch",
        spool_max_mb: float = DEFAULT_SPOOL_MAX_MB,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        backoff_base_s: float = 0.2,
        backoff_max_s: float = 10.0,
        clock: Callable[[], float] = time.time,
        client_options: Mapping[str, Any] | None = None,
        results: Results | None = None,
    ) -> None:
        problem = tpl.prefix_problem(index_prefix)
        if problem:
            raise ValueError(f"index_prefix {index_prefix!r}: {problem}")
        if not hosts:
            raise ValueError("at least one host is needed")
        if bulk_size < 1 or queue_size < 1:
            raise ValueError("bulk_size and queue_size must be at least 1")
        if max_retries < 0:
            raise ValueError("max_retries must not be negative")
        if timeout_s <= 0 or retention_days < 1 or spool_max_mb <= 0:
            raise ValueError("timeout_s, retention_days and spool_max_mb must be positive")
        self.hosts = list(hosts)
        self.api_key = api_key
        self.basic_auth = basic_auth
        self.ca_certs = ca_certs
        self.verify_certs = verify_certs
        self.index_prefix = index_prefix
        self.retention_days = retention_days
        self.bulk_size = bulk_size
        self.max_retries = max_retries
        self.timeout_s = float(timeout_s)
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.clock = clock
        self.client_options = dict(client_options or {})
        self.results = results
        """The pipeline's analyzer results (mapped and read by role); None: the shipped
        configuration's."""
        self._counts: dict[str, int] = {
            "indexed": 0, "failed": 0, "retried": 0, "conflicts": 0, "requests": 0,
        }
        self._es: Elasticsearch | None = None
        self._installed = False
        self._indices: set[str] = set()
        self._failed_ids: set[str] = set()
        self._random = random.Random()
        self._stopping = threading.Event()
        self._closed = False
        self._delivery = SpooledDelivery(
            f"Elasticsearch {','.join(self.hosts)}", self,
            DiskSpool(spool_dir, int(spool_max_mb * 2**20)), queue_size=queue_size,
            timeout_s=self.timeout_s, backoff_base_s=backoff_base_s,
            backoff_max_s=backoff_max_s)

    @classmethod
    def from_config(cls, name: str, section: Section, context: BuildContext
                    ) -> ElasticsearchSink:
        """Build from a ``type: elasticsearch`` sink section; problems go to
        ``section.problems`` (the caller raises them all at once) and a sink with
        defaults in place of bad values is still returned.

        Keys: hosts, api_key, username, password, password_file, ca_certs, verify_certs,
        index_prefix, retention_days, bulk_size, max_retries, timeout_s, spool_dir,
        spool_max_mb, queue_size. ``hosts`` defaults to ``ELASTICSEARCH_URL`` of ``context.env``
        (comma-separated), then to http://localhost:9200; ``password_file`` and
        ``ca_certs`` are relative to the config directory, ``spool_dir`` (default
        ``.lunettes-spool/<sink name>``) to the working directory.
        """
        connection = connection_from_config(section, context)

        prefix = section.get("index_prefix", DEFAULT_PREFIX, str)
        problem = tpl.prefix_problem(prefix)
        if problem:
            section.problem("index_prefix", f"{prefix!r} {problem}")
            prefix = DEFAULT_PREFIX
        retention_days = _at_least(section, "retention_days", DEFAULT_RETENTION_DAYS, 1)
        bulk_size = _at_least(section, "bulk_size", DEFAULT_BULK_SIZE, 1)
        max_retries = _at_least(section, "max_retries", DEFAULT_MAX_RETRIES, 0)
        timeout_s = _positive(section, "timeout_s", DEFAULT_TIMEOUT_S)
        spool_dir = section.get("spool_dir", default_dir(name), str)
        spool_max_mb = _positive(section, "spool_max_mb", DEFAULT_SPOOL_MAX_MB)
        queue_size = _at_least(section, "queue_size", DEFAULT_QUEUE_SIZE, 1)
        section.check_unknown()

        return cls(
            **connection, index_prefix=prefix, retention_days=retention_days,
            bulk_size=bulk_size, max_retries=max_retries, timeout_s=timeout_s,
            spool_dir=spool_dir, spool_max_mb=spool_max_mb, queue_size=queue_size,
            results=context.results,
        )

    # -- Sink contract -------------------------------------------------------------------

    def export(self, batch: Sequence[PodRecord]) -> None:
        """Build the bulk actions and hand them, ``bulk_size`` per request, to the sending
        thread (or the spool); never waits on Elasticsearch. Raises SinkClosedError after
        shutdown."""
        if self._closed:
            raise SinkClosedError("elasticsearch sink is shut down")
        now_us = int(self.clock() * 1e6)
        actions = [a for record in batch
                   for a in tpl.bulk_actions(record, self.index_prefix, now_us, self.results)]
        for start in range(0, len(actions), self.bulk_size):
            self._delivery.submit(_payload(actions[start:start + self.bulk_size]))

    @property
    def stats(self) -> dict[str, int]:
        delivery = self._delivery.stats
        return {**self._counts, "spooled": delivery["spooled"],
                "drained": delivery["drained"], "dropped": delivery["dropped"]}

    def shutdown(self) -> None:
        """Flush (unless Elasticsearch is down, within ``timeout_s``), stop the thread,
        close the client. What stays spooled is sent by the next sink with the same
        ``spool_dir``. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._delivery.finish(self.timeout_s)
        finally:
            self._stopping.set()
            if self._es is not None:
                self._es.close()
                self._es = None

    # -- delivery (the sending thread) ---------------------------------------------------

    def send(self, payload: Payload, deadline: float, retry: bool) -> Outcome:
        """One bulk request of a payload and its retries (the Sender of SpooledDelivery)."""
        self._failed_ids = set()
        undelivered = self._send(decode_lines(payload.data), deadline, retry)
        refused = len(self._failed_ids)
        if undelivered is None:
            return Outcome(refused_pods=refused)
        return Outcome(rest=_payload(undelivered.actions), reason=undelivered.reason,
                       refused_pods=refused)

    def interrupt(self) -> None:
        """End a backoff wait (a request on the wire runs to its timeout)."""
        self._stopping.set()

    def _send(self, chunk: list[Action], deadline: float, retry: bool) -> _Undelivered | None:
        """Merge the chunk's pod records into the stored documents and write them, with
        retries; None when every document was written or failed for good, else what is
        left to spool (the chunk's own actions of the Pods not written)."""
        pending = _units(chunk, self.index_prefix)
        attempt = conflicts = 0
        while True:
            if self._stopping.is_set():  # closing: nothing is sent after shutdown
                return _undelivered(pending, "shutting down")
            setup = True
            try:
                client = self._ready(_indices(pending), deadline)
                setup = False
                self._counts["requests"] += 1
                stored = self._stored(client, pending, deadline)
                writes = [tpl.merged_writes(unit.index, unit.record, stored.get(unit.key),
                                            self.index_prefix, self.results)
                          for unit in pending]
                client = self._ready({w.index for ws in writes for w in ws}, deadline)
                self._counts["requests"] += 1
                response = client.options(request_timeout=_remaining(deadline)).bulk(
                    operations=[op for ws in writes for w in ws for op in w.operations()],
                    filter_path=_FILTER_PATH)
            except (ApiError, elastic_transport.TransportError) as exc:
                verdict, reason = _classify(exc, setup)
                if verdict == "fail":
                    documents = sum(len(u.actions) for u in pending)
                    self._counts["failed"] += documents
                    self._failed_ids.update(u.key[1] for u in pending)
                    log.error("Elasticsearch refused a request for %d documents: %s; "
                              "they are not retried", documents, reason)
                    return None
                if verdict == "retry" and retry and self._backoff(attempt, deadline):
                    attempt += 1
                    self._counts["retried"] += sum(len(u.actions) for u in pending)
                    continue
                return _undelivered(pending, reason)

            conflicted, again = self._check_items(pending, writes,
                                                  response.body.get("items") or [])
            if conflicted and conflicts < MAX_CONFLICTS:
                # Another writer changed a document between our read and our write: read
                # it again and merge with what it holds now (no backoff: nothing is wrong).
                conflicts += 1
                self._counts["conflicts"] += len(conflicted)
                pending = conflicted + again
                continue
            again += conflicted
            if not again:
                return None
            if retry and self._backoff(attempt, deadline):
                attempt += 1
                self._counts["retried"] += sum(len(u.actions) for u in again)
                pending = again
                continue
            return _undelivered(again, f"{len(again)} pod documents refused with 429/5xx "
                                       "or in conflict")

    def _stored(self, client: Elasticsearch, units: list[_Unit], deadline: float
                ) -> dict[tuple[str, str], tpl.Stored]:
        """The stored pod documents of ``units`` (real time: our own writes included),
        with their sequence numbers, by (index, id)."""
        response = client.options(request_timeout=_remaining(deadline)).mget(
            docs=[{"_index": u.key[0], "_id": u.key[1]} for u in units], realtime=True)
        stored: dict[tuple[str, str], tpl.Stored] = {}
        for doc in response.body.get("docs") or []:
            if isinstance(doc, dict) and doc.get("found"):
                stored[(str(doc["_index"]), str(doc["_id"]))] = tpl.Stored(
                    dict(doc["_source"]), int(doc["_seq_no"]), int(doc["_primary_term"]))
        return stored

    def _check_items(self, sent: list[_Unit], writes: list[list[tpl.Write]],
                     items: list[Any]) -> tuple[list[_Unit], list[_Unit]]:
        """Count written and permanently failed documents; return the Pods whose pod
        document met a concurrent write (to merge again) and those to retry."""
        conflicted: list[_Unit] = []
        again: list[_Unit] = []
        position = 0
        for unit, unit_writes in zip(sent, writes, strict=True):
            statuses = []
            for write in unit_writes:
                item = items[position] if position < len(items) else None
                position += 1
                result: dict[str, Any] = (next(iter(item.values()), {})
                                          if isinstance(item, dict) else {})
                status = int(result.get("status") or 0)
                statuses.append(status)
                if 200 <= status < 300 or (write.op == "delete" and status == 404):
                    self._counts["indexed"] += write.op != "delete"
                elif status == 409 and write.conditional:
                    pass
                elif status not in RETRYABLE_STATUSES and status != 0:
                    self._counts["failed"] += 1
                    self._failed_ids.add(unit.key[1])
                    log.error("Elasticsearch refused pod %s in %s (status %d): %s; not "
                              "retried", unit.key[1], write.index, status,
                              _item_error(result))
            if statuses and statuses[0] == 409 and unit_writes[0].conditional:
                conflicted.append(unit)
            elif any(s in RETRYABLE_STATUSES or s == 0 for s in statuses):
                again.append(unit)
        return conflicted, again

    def _ready(self, indices: set[str], deadline: float) -> Elasticsearch:
        """The client, with the policy and templates installed and the indices created."""
        client = self._client().options(request_timeout=_remaining(deadline))
        if not self._installed:
            prefix = self.index_prefix
            self._counts["requests"] += 1
            client.ilm.put_lifecycle(name=tpl.policy_name(prefix),
                                     body=tpl.retention_policy(self.retention_days))
            for family in tpl.FAMILIES:
                self._counts["requests"] += 1
                client.indices.put_index_template(name=tpl.template_name(prefix, family),
                                                  body=tpl.index_template(prefix, family,
                                                                          self.results))
            self._installed = True
            log.info("installed ILM policy %s and index templates %s-{%s}",
                     tpl.policy_name(prefix), prefix, ",".join(tpl.FAMILIES))
        for index in sorted(indices - self._indices):
            origin = tpl.month_end_ms(index)
            settings = ({"index": {"lifecycle": {"origination_date": origin}}}
                        if origin is not None else None)
            self._counts["requests"] += 1
            try:
                client.indices.create(index=index, settings=settings)
            except ApiError as exc:
                if _error_type(exc) != "resource_already_exists_exception":
                    raise
            self._indices.add(index)
        return self._client()

    def _client(self) -> Elasticsearch:
        if self._es is None:
            self._es = client(self.hosts, api_key=self.api_key, basic_auth=self.basic_auth,
                              ca_certs=self.ca_certs, verify_certs=self.verify_certs,
                              request_timeout=self.timeout_s, options=self.client_options)
        return self._es

    def _backoff(self, attempt: int, deadline: float) -> bool:
        """Wait before retry ``attempt + 1``; False when no retry is allowed."""
        if attempt >= self.max_retries or self._stopping.is_set():
            return False
        cap = min(self.backoff_max_s, self.backoff_base_s * (2**attempt))
        delay = cap * self._random.uniform(0.5, 1.0)
        if time.monotonic() + delay >= deadline:
            return False
        return not self._stopping.wait(delay)


# -- helpers -------------------------------------------------------------------------------


def _payload(actions: list[Action]) -> Payload:
    """Bulk actions as a payload: JSON lines, one per document, of so many pods."""
    return Payload(encode_lines(actions), len(actions), len({a.get("_id") for a in actions}))


@dataclass(slots=True)
class _Unit:
    """One Pod of a chunk: its pod document's (index, id), the record to merge into it
    (the chunk's records of that document merged in order), and the chunk's own actions
    for it (what is spooled again if it cannot be written)."""

    key: tuple[str, str]
    record: dict[str, Any]
    actions: list[Action]

    @property
    def index(self) -> str:
        return self.key[0]


def _units(chunk: list[Action], prefix: str) -> list[_Unit]:
    """The Pods of a chunk of spooled actions. Its diagnosis documents are not sent as
    they are: each is derived again from the merged pod document."""
    units: dict[tuple[str, str], _Unit] = {}
    by_id: dict[str, _Unit] = {}
    pods = tpl.index_pattern(prefix, tpl.PODS)[:-1]
    for action in chunk:
        if str(action["_index"]).startswith(pods):
            key = (str(action["_index"]), str(action["_id"]))
            unit = units.get(key)
            if unit is None:
                unit = units[key] = _Unit(key, action["_source"], [])
            else:
                unit.record = merge(unit.record, action["_source"])
            by_id[key[1]] = unit
        else:
            unit = by_id.get(str(action["_id"]))
            if unit is None:  # a diagnosis without its pod document: nothing to derive from
                continue
        unit.actions.append(action)
    return list(units.values())


def _indices(units: list[_Unit]) -> set[str]:
    return {str(a["_index"]) for u in units for a in u.actions}


def _undelivered(units: list[_Unit], reason: str) -> _Undelivered:
    return _Undelivered([a for u in units for a in u.actions], reason)


def _item_error(result: dict[str, Any]) -> str:
    error = result.get("error") or {}
    if not isinstance(error, dict):
        return str(error)
    cause = error.get("caused_by") or {}
    reason = f"{error.get('type')}: {error.get('reason')}"
    if isinstance(cause, dict) and cause.get("reason"):
        reason += f" ({cause.get('reason')})"
    return reason


def _remaining(deadline: float) -> float:
    return max(deadline - time.monotonic(), 0.001)


def _error_type(exc: ApiError) -> str:
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return str(body["error"].get("type", ""))
    return str(exc.message)


def _classify(exc: Exception, setup: bool) -> tuple[str, str]:
    """``retry`` (transient), ``hold`` (spool until fixed) or ``fail`` (drop), and why;
    ``setup`` for the policy, template and index requests before a bulk request."""
    if isinstance(exc, ApiError):
        status = exc.meta.status
        reason = f"HTTP {status} {_error_type(exc)}".strip()
        if status in RETRYABLE_STATUSES or status >= 500:
            return "retry", reason
        if status in _HOLD_STATUSES or not 400 <= status < 500:
            return "hold", reason  # bad credentials, or not Elasticsearch at all
        # A 4xx from a template, policy or index creation: hold rather than write with
        # mappings we did not install; a 4xx for the whole bulk request: our request is
        # wrong and resending it would never help.
        return ("hold" if setup else "fail"), reason
    if isinstance(exc, elastic_transport.ConnectionError | elastic_transport.ConnectionTimeout):
        return "retry", f"{type(exc).__name__}: {exc.message}"
    return "hold", f"{type(exc).__name__}: {exc}"


def _at_least(section: Section, key: str, default: int, minimum: int) -> int:
    value = section.get(key, default, int)
    if value < minimum:
        section.problem(key, f"must be at least {minimum}, got {value}")
        return default
    return int(value)


def _positive(section: Section, key: str, default: float) -> float:
    value = section.get(key, default, float)
    if value <= 0:
        section.problem(key, f"must be positive, got {value}")
        return default
    return float(value)
