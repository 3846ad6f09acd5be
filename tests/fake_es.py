"""A local stand-in for Elasticsearch 8 on 127.0.0.1, for the sink tests.

It answers the requests the official client sends the way Elasticsearch 8 does (the
``X-Elastic-Product`` header the client checks, compatible-with=8 media types, ``GET /``,
``PUT _ilm/policy``, ``PUT _index_template``, ``PUT <index>``, ``POST _bulk`` with
per-item results (``index``, ``create``, ``delete``; optimistic concurrency control:
``create`` of an existing document and ``index`` with ``if_seq_no``/``if_primary_term``
that no longer match answer 409 ``version_conflict_engine_exception``), ``GET
<index>/_doc/<id>`` and ``_mget`` (real time, with each document's ``_seq_no`` and
``_primary_term``), ``<index>/_search`` and ``_count`` through :mod:`fake_es_search`, and
points in time: ``POST <index>/_pit?keep_alive=``, ``POST _search`` with a ``pit``
(searching the documents as they were when it was opened, no index in the path) and
``DELETE _pit``) and records every request so tests can read the bodies. Documents are
kept by (index, id), so a replay overwrites; every write takes the next sequence number
(one primary term). ``before_bulk`` (a callable) runs before the next bulk request is
applied: another writer, between a sink's read and its write. Faults are injected:
refused connections (``go_down``/``come_back``), failing requests (``fail_requests``),
items refused per document id (``fail_item``), requests taken and never answered
(``hang``: they are answered 503 and not applied on ``recover``, which ends every
injected failure) and required credentials (``require_auth``).

It is not Elasticsearch: it checks no mapping, so a document is refused only when a test
says so. What it proves is what the client sends and how the sink reacts to answers.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import socket
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import fake_es_search

VERSION = "8.15.0"
COMPAT = "compatible-with=8"


@dataclass
class Request:
    """One request as received."""

    method: str
    path: str
    params: dict[str, str]
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    @property
    def ndjson(self) -> list[Any]:
        return [json.loads(line) for line in self.body.splitlines() if line.strip()]


@dataclass
class _ItemFault:
    status: int
    times: int | None  # None: forever
    error_type: str
    reason: str


@dataclass
class FakeElasticsearch:
    """Start with ``start()``, stop with ``stop()``; ``url`` is ``http://127.0.0.1:N``."""

    requests: list[Request] = field(default_factory=list)
    documents: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    templates: dict[str, dict[str, Any]] = field(default_factory=dict)
    policies: dict[str, dict[str, Any]] = field(default_factory=dict)
    indices: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Index name -> {settings, template (the one applied at creation), explicit}."""
    writes: Counter[tuple[str, str]] = field(default_factory=Counter)
    """How many times each (index, id) was written: a replay overwrites, this counts."""
    seq_nos: dict[tuple[str, str], int] = field(default_factory=dict)
    """The sequence number of each document's last write."""
    before_bulk: Callable[[], None] | None = None
    """Run (once) before the next bulk request is applied."""

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._failures: list[list[Any]] = []  # [status, path fragment, times left]
        self._item_faults: dict[str, _ItemFault] = {}
        self._auth: str | None = None
        self._released = threading.Event()
        self._released.set()
        self._hung_cond = threading.Condition()
        self.hung = 0
        self.pits: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}
        """Open points in time: id -> the documents of their indices when opened."""
        self.pits_opened = 0
        self.port = 0
        self._seq_no = -1

    # -- control -------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeElasticsearch:
        server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler_class(self))
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever,
                                        kwargs={"poll_interval": 0.02}, daemon=True,
                                        name="fake-elasticsearch")
        self._thread.start()
        self._server = server
        return self

    def stop(self) -> None:
        """Close the listening socket and every open connection (clients get refused)."""
        self._released.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._lock:
            for conn in list(self._connections):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
            self._connections.clear()

    go_down = stop

    def come_back(self) -> None:
        """Listen again on the same port, with every document and template kept."""
        self.start()

    def fail_requests(self, n: int, status: int = 503, path: str = "") -> None:
        """Answer the next ``n`` requests (whose path contains ``path``) with ``status``."""
        with self._lock:
            self._failures = [[status, path, n]] if n > 0 else []

    def fail_item(self, doc_id: str, status: int, times: int | None = None,
                  error_type: str = "", reason: str = "") -> None:
        """Refuse the bulk item of ``doc_id`` with ``status``, ``times`` times (None:
        always). Default errors look like Elasticsearch's (429 rejected execution, 400
        document parsing)."""
        if not error_type:
            error_type = ("es_rejected_execution_exception" if status == 429
                          else "document_parsing_exception")
        if not reason:
            reason = ("rejected execution of coordinating operation" if status == 429
                      else "[1:42] failed to parse field [created] of type [date]")
        with self._lock:
            self._item_faults[doc_id] = _ItemFault(status, times, error_type, reason)

    def hang(self) -> None:
        """Take every request and answer none until :meth:`recover` (or ``stop``)."""
        self._released.clear()

    def recover(self) -> None:
        """End every injected failure: hung requests get a 503, nothing of them applied."""
        with self._lock:
            self._failures = []
            self._item_faults.clear()
        self._released.set()

    def wait_for_hung(self, n: int, timeout: float = 10.0) -> None:
        """Block until ``n`` requests are being held by :meth:`hang`."""
        with self._hung_cond:
            if not self._hung_cond.wait_for(lambda: self.hung >= n, timeout):
                raise TimeoutError(f"{self.hung} of {n} requests hung within {timeout}s")

    def require_auth(self, authorization: str | None) -> None:
        """Answer 401 unless the Authorization header equals this (None: no auth)."""
        self._auth = authorization

    # -- reading -------------------------------------------------------------------------

    def bulk_requests(self) -> list[Request]:
        return [r for r in self.requests if r.path.endswith("/_bulk")]

    def paths(self) -> list[str]:
        return [f"{r.method} {r.path}" for r in self.requests]

    def docs(self, index_prefix: str = "") -> dict[tuple[str, str], dict[str, Any]]:
        return {k: v for k, v in self.documents.items() if k[0].startswith(index_prefix)}

    def put(self, index: str, doc_id: str, source: dict[str, Any]) -> None:
        """Write a document as another client would (a new sequence number)."""
        with self._lock:
            self._write(index, doc_id, source)

    def _write(self, index: str, doc_id: str, source: dict[str, Any]) -> int:
        self._seq_no += 1
        self.documents[(index, doc_id)] = source
        self.seq_nos[(index, doc_id)] = self._seq_no
        self.writes[(index, doc_id)] += 1
        return self._seq_no

    # -- serving -------------------------------------------------------------------------

    def _handle(self, method: str, target: str, headers: dict[str, str], body: bytes
                ) -> tuple[int, Any]:
        if not self._released.is_set():
            with self._hung_cond:
                self.hung += 1
                self._hung_cond.notify_all()
            self._released.wait()
            return 503, _error("unavailable_shards_exception", "was hung")
        parts = urlsplit(target)
        path = unquote(parts.path)
        params = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        with self._lock:
            self.requests.append(Request(method, path, params, headers, body))
            for name in ("accept", "content-type"):
                value = headers.get(name, "")
                if "compatible-with=" in value and COMPAT not in value.replace(" ", ""):
                    return 400, _error("media_type_header_exception",
                                       f"Invalid media-type value on headers [{name}]")
            if self._auth is not None and headers.get("authorization") != self._auth:
                return 401, _error("security_exception", "unable to authenticate user")
            for i, (status, fragment, left) in enumerate(self._failures):
                if fragment in path:
                    if left <= 1:
                        del self._failures[i]
                    else:
                        self._failures[i][2] = left - 1
                    return status, _error("unavailable_shards_exception"
                                          if status >= 500 else "too_many_requests",
                                          "injected failure")
            return self._route(method, path, body, params)

    def _route(self, method: str, path: str, body: bytes, params: dict[str, str]
               ) -> tuple[int, Any]:
        segments = [s for s in path.split("/") if s]
        if method in ("GET", "HEAD") and not segments:
            return 200, {"name": "fake", "cluster_name": "lunettes-test",
                         "version": {"number": VERSION, "build_flavor": "default"},
                         "tagline": "You Know, for Search"}
        if method == "PUT" and segments[:2] == ["_ilm", "policy"] and len(segments) == 3:
            self.policies[segments[2]] = json.loads(body)
            return 200, {"acknowledged": True}
        if method == "PUT" and segments[0] == "_index_template" and len(segments) == 2:
            self.templates[segments[1]] = json.loads(body)
            return 200, {"acknowledged": True}
        if method in ("POST", "PUT") and segments[-1] == "_bulk":
            hook, self.before_bulk = self.before_bulk, None
            if hook is not None:
                self._lock.release()  # the hook writes through put()
                try:
                    hook()
                finally:
                    self._lock.acquire()
            return 200, self._bulk(body)
        if method in ("GET", "POST") and segments[-1] == "_mget" and len(segments) <= 2:
            return self._mget(segments[0] if len(segments) == 2 else None, json.loads(body))
        if method == "PUT" and len(segments) == 1 and not segments[0].startswith("_"):
            index = segments[0]
            if index in self.indices:
                return 400, _error("resource_already_exists_exception",
                                   f"index [{index}/abc] already exists")
            settings = (json.loads(body) if body else {}).get("settings") or {}
            self._create_index(index, settings, explicit=True)
            return 200, {"acknowledged": True, "shards_acknowledged": True, "index": index}
        if method == "POST" and len(segments) == 2 and segments[1] == "_pit":
            return self._open_pit(segments[0], params)
        if method == "DELETE" and segments == ["_pit"]:
            found = self.pits.pop(json.loads(body).get("id", ""), None) is not None
            return (200 if found else 404), {"succeeded": found, "num_freed": int(found)}
        if method in ("GET", "POST") and segments == ["_search"]:
            return self._pit_search(json.loads(body) if body else {})
        if method in ("GET", "POST") and len(segments) == 2 and segments[1] == "_search":
            if body and "pit" in json.loads(body):
                return 400, _error("action_request_validation_exception",
                                   "[indices] cannot be used with point in time")
            return fake_es_search.search(self.documents, segments[0],
                                         json.loads(body) if body else {})
        if method in ("GET", "POST") and len(segments) == 2 and segments[1] == "_count":
            return fake_es_search.count(self.documents, segments[0],
                                        json.loads(body) if body else {})
        if method == "GET" and len(segments) == 3 and segments[1] == "_doc":
            key = (segments[0], segments[2])
            found = self._get(*key)
            return (200 if found["found"] else 404), found
        return 400, _error("illegal_argument_exception", f"no handler for {method} {path}")

    def _get(self, index: str, doc_id: str) -> dict[str, Any]:
        key = (index, doc_id)
        if key not in self.documents:
            return {"_index": index, "_id": doc_id, "found": False}
        return {"_index": index, "_id": doc_id, "_version": self.writes[key],
                "_seq_no": self.seq_nos[key], "_primary_term": 1, "found": True,
                "_source": self.documents[key]}

    def _mget(self, index: str | None, body: dict[str, Any]) -> tuple[int, Any]:
        docs = body.get("docs")
        if not isinstance(docs, list) or not docs:
            return 400, _error("action_request_validation_exception", "no documents to get")
        out = []
        for doc in docs:
            target = doc.get("_index", index)
            if target is None or "_id" not in doc:
                return 400, _error("action_request_validation_exception",
                                   "index and id are required")
            out.append(self._get(target, doc["_id"]))
        return 200, {"docs": out}

    def _open_pit(self, target: str, params: dict[str, str]) -> tuple[int, Any]:
        if "keep_alive" not in params:
            return 400, _error("action_request_validation_exception",
                               "[keep_alive] is not specified")
        patterns = target.split(",")
        self.pits_opened += 1
        pit_id = f"pit-{self.pits_opened}"
        self.pits[pit_id] = {key: dict(source) for key, source in self.documents.items()
                             if any(fnmatch.fnmatchcase(key[0], p) for p in patterns)}
        return 200, {"id": pit_id, "_shards": {"total": 1, "successful": 1, "skipped": 0,
                                                "failed": 0}}

    def _pit_search(self, body: dict[str, Any]) -> tuple[int, Any]:
        pit = body.pop("pit", None)
        if not isinstance(pit, dict) or "id" not in pit:
            return 400, _error("action_request_validation_exception",
                               "a search without index needs a point in time here")
        if pit["id"] not in self.pits:
            return 404, _error("search_context_missing_exception",
                               f"No search context found for id [{pit['id']}]")
        status, answer = fake_es_search.search(self.pits[pit["id"]], "*", body)
        if status == 200:
            answer["pit_id"] = pit["id"]
        return status, answer

    def _create_index(self, index: str, settings: dict[str, Any], explicit: bool) -> None:
        matching = sorted(
            (t.get("priority", 0), name) for name, t in self.templates.items()
            if any(fnmatch.fnmatchcase(index, p) for p in t.get("index_patterns", []))
        )
        self.indices[index] = {"settings": settings, "explicit": explicit,
                               "template": matching[-1][1] if matching else None}

    def _bulk(self, body: bytes) -> dict[str, Any]:
        lines = iter([json.loads(line) for line in body.splitlines() if line.strip()])
        items: list[dict[str, Any]] = []
        for action in lines:
            (op, meta), = action.items()
            if op not in ("index", "create", "delete"):
                raise ValueError(f"bulk: unsupported action {op!r}")
            source = next(lines) if op != "delete" else {}
            index, doc_id = meta["_index"], meta["_id"]
            fault = self._item_faults.get(doc_id)
            if fault is not None:
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        del self._item_faults[doc_id]
                items.append({op: {"_index": index, "_id": doc_id, "status": fault.status,
                                   "error": {"type": fault.error_type,
                                             "reason": fault.reason}}})
                continue
            if index not in self.indices:
                self._create_index(index, {}, explicit=False)
            key = (index, doc_id)
            existed = key in self.documents
            if op == "delete":
                if existed:
                    del self.documents[key], self.seq_nos[key]
                items.append({op: {"_index": index, "_id": doc_id,
                                   "result": "deleted" if existed else "not_found",
                                   "status": 200 if existed else 404}})
                continue
            conflict = _conflict(op, meta, existed, self.seq_nos.get(key))
            if conflict:
                items.append({op: {"_index": index, "_id": doc_id, "status": 409,
                                   "error": {"type": "version_conflict_engine_exception",
                                             "reason": f"[{doc_id}]: {conflict}"}}})
                continue
            seq_no = self._write(index, doc_id, source)
            items.append({op: {"_index": index, "_id": doc_id, "_version": self.writes[key],
                               "_seq_no": seq_no, "_primary_term": 1,
                               "result": "updated" if existed else "created",
                               "status": 200 if existed else 201}})
        errors = any(next(iter(i.values()))["status"] >= 300 for i in items)
        return {"took": 1, "errors": errors, "items": items}


def _conflict(op: str, meta: dict[str, Any], existed: bool, seq_no: int | None) -> str:
    """Why Elasticsearch refuses a write for concurrency control, or ""."""
    if op == "create" and existed:
        return "version conflict, document already exists"
    if ("if_seq_no" in meta) != ("if_primary_term" in meta):
        raise ValueError("if_seq_no and if_primary_term go together")
    if "if_seq_no" in meta and (not existed or meta["if_seq_no"] != seq_no
                                or meta["if_primary_term"] != 1):
        return (f"required seqNo [{meta['if_seq_no']}], primary term "
                f"[{meta['if_primary_term']}]; current document has seqNo [{seq_no}]")
    return ""


def _error(kind: str, reason: str) -> dict[str, Any]:
    cause = {"type": kind, "reason": reason}
    return {"error": {"root_cause": [cause], **cause}}


def _handler_class(fake: FakeElasticsearch) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet test output
            pass

        def setup(self) -> None:
            super().setup()
            # Headers and body go out in two writes: without this, Nagle and delayed
            # ACKs hold every answer ~40 ms.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with fake._lock:
                fake._connections.add(self.connection)

        def finish(self) -> None:
            with fake._lock:
                fake._connections.discard(self.connection)
            super().finish()

        def _serve(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, payload = fake._handle(self.command, self.path, headers, body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("X-Elastic-Product", "Elasticsearch")
            self.send_header("Content-Type", f"application/vnd.elasticsearch+json;{COMPAT}")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _serve

    return Handler
