"""ElasticsearchSink: pod records and diagnoses into monthly Elasticsearch indices.

What is written (indices, documents, templates, the ILM retention policy) lives in
:mod:`lunettes.sinks.es_templates`; the disk spool in :mod:`lunettes.sinks.spool`. This
module sends it with the official client (the ``elasticsearch`` extra); nothing else in
lunettes imports it, so the core works without the client.

Export is synchronous. Each batch becomes ``index`` bulk actions with ``_id`` = pod UID
(a replay overwrites). Before the first bulk request the ILM policy and both index
templates are PUT (once per sink; the PUTs are idempotent), and each monthly index is
created once with its ILM origination date. Failures:

- connection errors, timeouts, 429 and 5xx answers are retried with exponential backoff
  and jitter, at most ``max_retries`` times and never past ``timeout_s``;
- bulk items refused with 429/5xx are retried the same way, alone; items refused for
  good (a 400 mapping error) are counted in ``stats['failed']`` and logged with the UID
  and Elasticsearch's reason, never retried;
- what still cannot be delivered (Elasticsearch down, overloaded, or refusing our
  credentials or templates) goes to the disk spool instead of being lost. Every later
  export, ``force_flush`` and ``shutdown`` drains the spool first, oldest first; while it
  cannot be drained, new batches are spooled behind it so documents keep their order.

``stats`` counts Elasticsearch documents (a pod record with a diagnosis is two):
``indexed``, ``failed``, ``retried`` (re-sent documents), ``spooled``, ``drained`` (taken
out of the spool), ``dropped`` (lost to the spool's size limit) and ``requests``.
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
from urllib.parse import urlsplit

import elastic_transport
from elasticsearch import ApiError, Elasticsearch

from lunettes.config.errors import Section
from lunettes.model.record import PodRecord
from lunettes.model.results import Results
from lunettes.registry import BuildContext
from lunettes.sinks import es_templates as tpl
from lunettes.sinks.base import SinkClosedError
from lunettes.sinks.spool import DiskSpool

log = logging.getLogger(__name__)

DEFAULT_HOST = "http://localhost:9200"
DEFAULT_PREFIX = "lunettes"
DEFAULT_RETENTION_DAYS = 30
DEFAULT_BULK_SIZE = 500
DEFAULT_MAX_RETRIES = 5
DEFAULT_TIMEOUT_S = 30.0
DEFAULT_SPOOL_MAX_MB = 512.0
SPOOL_ROOT = ".lunettes-spool"

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


class ElasticsearchSink:
    """Writes pod records (and their diagnoses) to Elasticsearch; see the module docstring.

    ``hosts`` are URLs (``http://`` with a port, or ``https://``); ``api_key`` (the
    encoded form) or ``basic_auth`` authenticate; ``ca_certs``/``verify_certs`` apply to
    https hosts. ``timeout_s`` bounds one bulk request including its retries.
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
        spool_dir: str | Path = f"{SPOOL_ROOT}/elasticsearch",
        spool_max_mb: float = DEFAULT_SPOOL_MAX_MB,
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
        if bulk_size < 1:
            raise ValueError("bulk_size must be at least 1")
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
        self.spool = DiskSpool(spool_dir, int(spool_max_mb * 2**20))
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.clock = clock
        self.client_options = dict(client_options or {})
        self.results = results
        """The pipeline's analyzer results (mapped and read by role); None: the shipped
        configuration's."""
        self.stats: dict[str, int] = {
            "indexed": 0, "failed": 0, "retried": 0, "spooled": 0, "drained": 0,
            "dropped": 0, "requests": 0,
        }
        self._es: Elasticsearch | None = None
        self._installed = False
        self._indices: set[str] = set()
        self._outage: str | None = None
        self._random = random.Random()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._closed = False

    @classmethod
    def from_config(cls, name: str, section: Section, context: BuildContext
                    ) -> ElasticsearchSink:
        """Build from a ``type: elasticsearch`` sink section; problems go to
        ``section.problems`` (the caller raises them all at once) and a sink with
        defaults in place of bad values is still returned.

        Keys: hosts, api_key, username, password, password_file, ca_certs, verify_certs,
        index_prefix, retention_days, bulk_size, max_retries, timeout_s, spool_dir,
        spool_max_mb. ``hosts`` defaults to ``ELASTICSEARCH_URL`` of ``context.env``
        (comma-separated), then to http://localhost:9200; ``password_file`` and
        ``ca_certs`` are relative to the config directory, ``spool_dir`` (default
        ``.lunettes-spool/<sink name>``) to the working directory.
        """
        hosts = _hosts(section, context.env)

        api_key = section.get("api_key", None, str)
        username = section.get("username", None, str)
        password = section.get("password", None, str)
        password_file = section.get("password_file", None, str)
        if password is not None and password_file is not None:
            section.problem("password_file", "set password or password_file, not both")
        elif password_file is not None:
            path = context.config_dir / password_file
            try:
                password = path.read_text().rstrip("\r\n")
            except OSError as exc:
                section.problem("password_file", f"cannot read {path}: {exc.strerror or exc}")
        basic_auth = None
        if username is not None and password is not None:
            basic_auth = (username, password)
        elif username is not None and password_file is None:
            section.problem("username", "needs password or password_file")
        elif username is None and (password is not None or password_file is not None):
            section.problem("password" if password_file is None else "password_file",
                            "needs username")
        if api_key is not None and username is not None:
            section.problem("api_key", "use api_key or username/password, not both")

        ca_certs = section.get("ca_certs", None, str)
        if ca_certs is not None:
            ca_path = context.config_dir / ca_certs
            if not ca_path.is_file():
                section.problem("ca_certs", f"no such file: {ca_path}")
            ca_certs = str(ca_path)
        verify_certs = section.get("verify_certs", None, bool)
        if (ca_certs is not None or verify_certs is not None) and any(
                h.lower().startswith("http://") for h in hosts):
            key = "ca_certs" if ca_certs is not None else "verify_certs"
            section.problem(key, "TLS options need https:// hosts")

        prefix = section.get("index_prefix", DEFAULT_PREFIX, str)
        problem = tpl.prefix_problem(prefix)
        if problem:
            section.problem("index_prefix", f"{prefix!r} {problem}")
            prefix = DEFAULT_PREFIX
        retention_days = _at_least(section, "retention_days", DEFAULT_RETENTION_DAYS, 1)
        bulk_size = _at_least(section, "bulk_size", DEFAULT_BULK_SIZE, 1)
        max_retries = _at_least(section, "max_retries", DEFAULT_MAX_RETRIES, 0)
        timeout_s = _positive(section, "timeout_s", DEFAULT_TIMEOUT_S)
        spool_dir = section.get("spool_dir", f"{SPOOL_ROOT}/{name.replace('/', '-')}", str)
        spool_max_mb = _positive(section, "spool_max_mb", DEFAULT_SPOOL_MAX_MB)
        section.check_unknown()

        return cls(
            hosts, api_key=api_key, basic_auth=basic_auth, ca_certs=ca_certs,
            verify_certs=verify_certs, index_prefix=prefix, retention_days=retention_days,
            bulk_size=bulk_size, max_retries=max_retries, timeout_s=timeout_s,
            spool_dir=spool_dir, spool_max_mb=spool_max_mb, results=context.results,
        )

    # -- Sink contract -------------------------------------------------------------------

    def export(self, batch: Sequence[PodRecord]) -> None:
        """Drain the spool, then index the batch (or spool it: see the module docstring).
        Never raises for Elasticsearch's failures; raises SinkClosedError after shutdown."""
        if self._closed:
            raise SinkClosedError("elasticsearch sink is shut down")
        now_us = int(self.clock() * 1e6)
        actions = [a for record in batch
                   for a in tpl.bulk_actions(record, self.index_prefix, now_us, self.results)]
        with self._lock:
            if self._closed:
                raise SinkClosedError("elasticsearch sink is shut down")
            # One attempt at the spool: while Elasticsearch is down, an export costs one
            # failed request, not a full round of backoff.
            if not self._drain(retry=False, deadline=time.monotonic() + self.timeout_s):
                self._to_spool(actions, self._outage or "spool not drained")
                return
            self._deliver(actions)

    def force_flush(self, timeout_s: float = 30.0) -> bool:
        """Drain the spool (with retries, within ``timeout_s``); whether nothing remains
        spooled."""
        with self._lock:
            if self._closed:
                return self.spool.pending() == 0
            return self._drain(retry=True, deadline=time.monotonic() + timeout_s)

    def pending(self) -> int:
        """Documents waiting in the spool."""
        with self._lock:
            return self.spool.pending()

    def shutdown(self) -> None:
        """One last attempt at the spool (no backoff), then close the client. What stays
        spooled is drained by the next sink with the same ``spool_dir``. Idempotent."""
        if self._closed:
            return
        self._stopping.set()  # an export waiting in a backoff spools what it holds
        with self._lock:
            if self._closed:
                return
            try:
                self._drain(retry=False, deadline=time.monotonic() + self.timeout_s)
            finally:
                self._closed = True
                if self._es is not None:
                    self._es.close()
                    self._es = None
            left = self.spool.pending()
            if left:
                log.warning("elasticsearch sink shut down with %d documents spooled in %s; "
                            "the next run with this spool_dir sends them", left,
                            self.spool.directory)

    def __enter__(self) -> ElasticsearchSink:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.shutdown()

    # -- delivery ------------------------------------------------------------------------

    def _deliver(self, actions: list[Action]) -> None:
        """Send in chunks of ``bulk_size``; from the first chunk that fails, spool the rest."""
        for start in range(0, len(actions), self.bulk_size):
            chunk = actions[start:start + self.bulk_size]
            undelivered = self._send(chunk, time.monotonic() + self.timeout_s, retry=True)
            if undelivered is not None:
                rest = undelivered.actions + actions[start + self.bulk_size:]
                self._to_spool(rest, undelivered.reason)
                return

    def _drain(self, retry: bool, deadline: float) -> bool:
        """Send spooled documents, oldest first; whether the spool is now empty."""
        for spooled in self.spool.files():
            actions = self.spool.read(spooled)
            for start in range(0, len(actions), self.bulk_size):
                chunk = actions[start:start + self.bulk_size]
                send_deadline = min(deadline, time.monotonic() + self.timeout_s)
                undelivered = self._send(chunk, send_deadline, retry)
                if undelivered is not None:
                    rest = undelivered.actions + actions[start + self.bulk_size:]
                    self.stats["drained"] += len(actions) - len(rest)
                    self.spool.replace(spooled, rest)
                    return False
            self.stats["drained"] += len(actions)
            self.spool.remove(spooled)
            log.info("drained %d spooled documents (%s) into Elasticsearch", len(actions),
                     spooled.path.name)
        return True

    def _to_spool(self, actions: list[Action], reason: str) -> None:
        if not actions:
            return
        spooled, dropped = self.spool.append(actions)
        self.stats["spooled"] += spooled
        self.stats["dropped"] += dropped
        log.warning("spooled %d documents to %s (%s); %d waiting", spooled,
                    self.spool.directory, reason, self.spool.pending())

    def _send(self, chunk: list[Action], deadline: float, retry: bool) -> _Undelivered | None:
        """One bulk request and its retries; None when every document was indexed or
        failed for good, else what is left to spool."""
        pending = chunk
        attempt = 0
        while True:
            setup = True
            try:
                client = self._ready(pending, deadline)
                setup = False
                self.stats["requests"] += 1
                response = client.options(request_timeout=_remaining(deadline)).bulk(
                    operations=_operations(pending), filter_path=_FILTER_PATH)
            except (ApiError, elastic_transport.TransportError) as exc:
                verdict, reason = _classify(exc, setup)
                if verdict == "fail":
                    self.stats["failed"] += len(pending)
                    log.error("Elasticsearch refused a bulk request of %d documents: %s; "
                              "they are not retried", len(pending), reason)
                    return None
                if verdict == "retry" and retry and self._backoff(attempt, deadline):
                    attempt += 1
                    self.stats["retried"] += len(pending)
                    continue
                self._set_outage(reason)
                return _Undelivered(pending, reason)

            self._set_outage(None)
            again = self._check_items(pending, response.body.get("items") or [])
            if not again:
                return None
            if retry and self._backoff(attempt, deadline):
                attempt += 1
                self.stats["retried"] += len(again)
                pending = again
                continue
            return _Undelivered(again, f"{len(again)} documents refused with 429/5xx")

    def _check_items(self, sent: list[Action], items: list[Any]) -> list[Action]:
        """Count indexed and permanently failed documents; return those to retry."""
        again: list[Action] = []
        for position, action in enumerate(sent):
            item = items[position] if position < len(items) else None
            result: dict[str, Any] = next(iter(item.values()), {}) if isinstance(item, dict) else {}
            status = int(result.get("status") or 0)
            if 200 <= status < 300:
                self.stats["indexed"] += 1
            elif status in RETRYABLE_STATUSES or status == 0:
                again.append(action)
            else:
                self.stats["failed"] += 1
                error = result.get("error") or {}
                if isinstance(error, dict):
                    cause = error.get("caused_by") or {}
                    reason = f"{error.get('type')}: {error.get('reason')}"
                    if isinstance(cause, dict) and cause.get("reason"):
                        reason += f" ({cause.get('reason')})"
                else:
                    reason = str(error)
                log.error("Elasticsearch refused pod %s in %s (status %d): %s; not retried",
                          action.get("_id"), action.get("_index"), status, reason)
        return again

    def _ready(self, pending: list[Action], deadline: float) -> Elasticsearch:
        """The client, with the policy and templates installed and the indices created."""
        client = self._client().options(request_timeout=_remaining(deadline))
        if not self._installed:
            prefix = self.index_prefix
            self.stats["requests"] += 1
            client.ilm.put_lifecycle(name=tpl.policy_name(prefix),
                                     body=tpl.retention_policy(self.retention_days))
            for family in tpl.FAMILIES:
                self.stats["requests"] += 1
                client.indices.put_index_template(name=tpl.template_name(prefix, family),
                                                  body=tpl.index_template(prefix, family,
                                                                          self.results))
            self._installed = True
            log.info("installed ILM policy %s and index templates %s-{%s}",
                     tpl.policy_name(prefix), prefix, ",".join(tpl.FAMILIES))
        for index in sorted({str(a["_index"]) for a in pending} - self._indices):
            origin = tpl.month_end_ms(index)
            settings = ({"index": {"lifecycle": {"origination_date": origin}}}
                        if origin is not None else None)
            self.stats["requests"] += 1
            try:
                client.indices.create(index=index, settings=settings)
            except ApiError as exc:
                if _error_type(exc) != "resource_already_exists_exception":
                    raise
            self._indices.add(index)
        return self._client()

    def _client(self) -> Elasticsearch:
        if self._es is None:
            options: dict[str, Any] = {
                "request_timeout": self.timeout_s,
                "max_retries": 0,  # retries are ours: backoff, item-level, the spool
                "retry_on_timeout": False,
            }
            if self.api_key is not None:
                options["api_key"] = self.api_key
            if self.basic_auth is not None:
                options["basic_auth"] = self.basic_auth
            if self.ca_certs is not None:
                options["ca_certs"] = self.ca_certs
            if self.verify_certs is not None:
                options["verify_certs"] = self.verify_certs
            options.update(self.client_options)
            self._es = Elasticsearch(self.hosts, **options)
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

    def _set_outage(self, reason: str | None) -> None:
        """Log once when Elasticsearch stops taking documents and once when it is back."""
        if reason is not None and self._outage is None:
            log.error("Elasticsearch %s cannot take documents (%s); spooling to %s",
                      ",".join(self.hosts), reason, self.spool.directory)
        elif reason is None and self._outage is not None:
            log.warning("Elasticsearch %s takes documents again", ",".join(self.hosts))
        self._outage = reason


# -- helpers -------------------------------------------------------------------------------


def _operations(actions: list[Action]) -> list[dict[str, Any]]:
    ops: list[dict[str, Any]] = []
    for action in actions:
        ops.append({"index": {"_index": action["_index"], "_id": action["_id"]}})
        ops.append(action["_source"])
    return ops


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


def _hosts(section: Section, env: Mapping[str, str]) -> list[str]:
    value = section.get("hosts", None, (str, list))
    origin = ""
    if value is None:
        value = env.get("ELASTICSEARCH_URL") or DEFAULT_HOST
        origin = " (from ELASTICSEARCH_URL)" if env.get("ELASTICSEARCH_URL") else ""
    items = value.split(",") if isinstance(value, str) else value
    hosts: list[str] = []
    for item in items:
        if not isinstance(item, str):
            section.problem("hosts", f"expected a URL string, got {type(item).__name__} {item!r}")
            continue
        host = item.strip()
        if not host:
            continue
        parts = urlsplit(host)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            section.problem("hosts", f"{host!r}{origin} is not an http:// or https:// URL")
            continue
        try:
            port = parts.port
        except ValueError:
            section.problem("hosts", f"{host!r}{origin} has an invalid port")
            continue
        if port is None and parts.scheme == "http":
            section.problem("hosts", f"{host!r}{origin} needs a port "
                                     f"(http://{parts.hostname}:9200)")
            continue
        hosts.append(host)
    if not hosts:
        if isinstance(value, list) and not value:
            section.problem("hosts", "must name at least one URL")
        hosts = [DEFAULT_HOST]
    return hosts


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
