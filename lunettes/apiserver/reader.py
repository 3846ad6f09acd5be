"""Read :class:`~lunettes.apiserver.scan.RequestFacts` from audit logs: the bytes of each
line when they tell (:func:`~lunettes.apiserver.scan.scan`), a decode otherwise."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import orjson

from lunettes.apiserver.scan import UNREADABLE, RequestFacts, facts_from_event, scan
from lunettes.sources.cloudlogging import from_log_entry, is_log_entry
from lunettes.sources.decode import AUDIT_API_VERSIONS
from lunettes.sources.errors import BadRecord, BadRecords
from lunettes.sources.exports import batch, strip_time_prefix, unwrap, wrapped
from lunettes.sources.files import STDIN, expand, is_yaml, yaml_documents
from lunettes.sources.files import _open as open_log  # the sources' opener: gzip, BOM, stdin
from lunettes.sources.jsonline import loads


def read_lines(paths: Iterable[str], bad: BadRecords
               ) -> Iterator[tuple[bytes | RequestFacts, str]]:
    """The lines of audit logs with where they were read (``file:line``), in file order;
    the requests of YAML files (Cloud Logging entries or Events, as GKE exports them)
    already read. Files, .gz, directories, ``-``; unreadable files counted in ``bad``."""
    for path in expand(paths):
        name = "<stdin>" if path == STDIN else path
        try:
            with open_log(path) as stream:
                if is_yaml(path):  # Cloud Logging exports (GKE), events written as YAML
                    for index, doc in yaml_documents(stream, name, bad):
                        origin = f"{name}#{index}"
                        for facts in _facts_of(doc, origin, bad):
                            yield facts, origin
                    continue
                for number, raw in enumerate(stream, 1):
                    yield raw, f"{name}:{number}"
        except OSError as exc:
            bad.add("unreadable_file", name, str(exc))


def read_facts(paths: Iterable[str], bad: BadRecords) -> Iterator[RequestFacts]:
    """The finished requests of audit logs (JSON lines of Events, EventLists, Cloud Logging
    entries, AKS resource logs, CloudWatch events and exports; YAML files of Cloud Logging
    entries or Events, as GKE exports them; files, .gz, directories, ``-``), in file order.
    Bad lines are counted in ``bad``."""
    for item, origin in read_lines(paths, bad):
        if not isinstance(item, bytes):
            yield item
            continue
        facts = scan(item)
        if facts is UNREADABLE:
            yield from decoded_facts(item, origin, bad)
        elif facts is not None:
            yield facts  # type: ignore[misc]


def decoded_facts(raw: bytes, origin: str, bad: BadRecords) -> Iterator[RequestFacts]:
    """The finished requests of a line the bytes do not tell, decoded (bad ones counted)."""
    if not raw.strip():
        return
    try:
        doc = loads(strip_time_prefix(raw) or raw)
    except orjson.JSONDecodeError as exc:
        bad.add("invalid_json", origin, str(exc))
        return
    yield from _facts_of(doc, origin, bad)


def _facts_of(doc: Any, origin: str, bad: BadRecords) -> Iterator[RequestFacts]:
    """The finished requests of one decoded document (an Event, a list, an export)."""
    for event in _events(doc, origin, bad):
        facts = facts_from_event(event)
        if facts is not None:
            yield facts
        elif event.get("stage") in ("ResponseComplete", "Panic"):
            bad.add("bad_timestamp", origin, "no requestReceivedTimestamp")


def _events(doc: Any, origin: str, bad: BadRecords) -> Iterator[dict[str, Any]]:
    """The audit Events of one decoded document, in order: lists, EventLists and exports
    opened, however deep (a stack, not recursion: a hostile line nests a thousand lists)."""
    stack: list[Iterator[Any]] = [iter((doc,))]
    while stack:
        item = next(stack[-1], _END)
        if item is _END:
            stack.pop()
        elif isinstance(item, list):
            stack.append(iter(item))
        elif not isinstance(item, dict):
            bad.add("not_an_object", origin, type(item).__name__)
        elif item.get("kind") == "EventList" and isinstance(item.get("items"), list):
            stack.append({"kind": "Event", **event} if isinstance(event, dict) else event
                          for event in item["items"])
        elif item.get("kind") == "Event" and _version(item) in AUDIT_API_VERSIONS:
            yield item
        elif (items := batch(item)) is not None:
            stack.append(iter((items,)))
        else:
            try:
                if is_log_entry(item):
                    yield from_log_entry(item)
                elif (inner := wrapped(item)) is not None:
                    stack.append(iter((unwrap(inner),)))
                else:
                    bad.add("unknown_kind", origin, f"kind={item.get('kind')!r}")
            except BadRecord as exc:
                bad.add(exc.reason, origin, str(exc))


_END = object()


def _version(event: dict[str, Any]) -> str:
    version = event.get("apiVersion", "audit.k8s.io/v1")
    return version if type(version) is str else ""
