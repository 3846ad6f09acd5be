"""Merging two pod records of one UID: a store write never makes a record know less.

A Pod can reach a store more than once: the same log replayed, rotated halves replayed in
separate runs (each half gives its own record of a Pod whose records span the cut), a late
block replayed on its own. Every store (SQLite, Elasticsearch) writes
``merge(stored, incoming)``, never ``incoming`` alone. Records are the JSON-ready dicts of
:meth:`lunettes.model.record.PodRecord.to_dict`.

**Completeness order.** The record that knows more is the *leader*:

1. by how following the Pod ended (``end_reason``): outcome ``unknown`` (no status in the
   log) < the input ended while the Pod was in flight (``end_of_input``: what was seen so
   far, whatever the outcome) < the pod timeout passed (``timeout``) < lunettes saw the
   delivery end (``delivered``, ``terminal``, ``deleted``, ``rejected``). Records stored by
   a lunettes without ``end_reason`` rank by outcome: a final outcome as the last tier,
   ``timeout`` as the third, ``in_progress`` as the second;
2. then a final outcome (``delivered``, ``completed``, ``failed``, ``deleted``,
   ``rejected``) beats ``in_progress`` (a Job seen Ready when the input ended knows more
   than one still starting);
3. then a record that saw the Pod's creation beats a partial one;
4. then more stages; on a full tie the incoming record leads (a replay of the same log
   writes the same record again).

**Facts extend each other**, whichever leads: ``created`` is the earliest creation a
record saw (a partial record's ``created`` is the Pod's creationTimestamp, whole seconds:
used only when no record saw the creation),
``last_seen`` the latest; ``node``, owner and ``finished`` fill in when the leader lacks
them; stages are the union by ``(name, instance)``, each with the earliest start and the
leader's end (else the other's: an open stage closed by the other record), and the union of
their span events; ``duration_s`` follows from the merged times.

**Analyzer results** (``slo``, ``diagnosis`` and any other key a record carries beyond
identity, times and stages) are the leader's, whole: they were computed from the leader's
timeline and cannot be recomputed from two records. So is ``partial``: it says whether the
analysis shown saw the Pod's creation. A Pod whose records span a cut between two runs
therefore gets the creation, stages and outcome of one clean pass, and the results of the
half that saw its end, marked ``partial``.
"""

from __future__ import annotations

from typing import Any

from lunettes.model.times import parse_time

__all__ = ["FINAL_OUTCOMES", "completeness", "merge"]

FINAL_OUTCOMES = frozenset({"delivered", "completed", "failed", "deleted", "rejected"})
_TIER = {"end_of_input": 1, "timeout": 2, "delivered": 3, "terminal": 3, "deleted": 3,
         "rejected": 3}
_OLD_TIER = {"in_progress": 1, "timeout": 2}

Record = dict[str, Any]


def completeness(record: Record) -> tuple[int, int, int, int]:
    """The sort key of the completeness order (greater knows more)."""
    outcome = record.get("outcome")
    final = outcome in FINAL_OUTCOMES
    if outcome == "unknown":
        tier = 0
    elif record.get("end_reason"):
        tier = _TIER.get(str(record["end_reason"]), 0)
    else:
        tier = 3 if final else _OLD_TIER.get(str(outcome), 0)
    stages = record.get("stages")
    return tier, int(final), int(_saw_creation(record)), len(stages) if stages else 0


def _saw_creation(record: Record) -> bool:
    return not record.get("partial") and record.get("created") is not None


def merge(stored: Record | None, incoming: Record) -> Record:
    """The record a store keeps when ``incoming`` arrives for a UID that has ``stored``."""
    if stored is None or stored == incoming:
        return incoming
    if completeness(stored) > completeness(incoming):
        leader, other = stored, incoming
    else:
        leader, other = incoming, stored
    out = dict(leader)
    for key in ("node", "owner_kind", "owner_name", "finished"):
        if not out.get(key) and other.get(key):
            out[key] = other[key]
    seen = [r for r in (leader, other) if _saw_creation(r)] or [leader, other]
    out["created"] = _time(min, *(r.get("created") for r in seen))
    out["last_seen"] = _time(max, leader.get("last_seen"), other.get("last_seen"))
    out["duration_s"] = _duration(out["created"], out["finished"])
    out["stages"] = _stages(leader.get("stages") or [], other.get("stages") or [])
    return out


def _time(pick: Any, *times: str | None) -> str | None:
    known = [t for t in times if t is not None]
    return pick(known, key=parse_time) if known else None


def _duration(start: str | None, end: str | None) -> float | None:
    if start is None or end is None:
        return None
    return (parse_time(end) - parse_time(start)) / 1e6


def _key(stage: Record) -> tuple[str, str]:
    return str(stage.get("name", "")), str(stage.get("instance", ""))


def _stages(leader: list[Record], other: list[Record]) -> list[Record]:
    """The union by (name, instance), in the leader's order; the other's own stages go
    after the stage that precedes them there (the stage definitions' order is kept)."""
    theirs = {_key(s): s for s in other}
    out = [_stage(s, theirs.get(_key(s))) for s in leader]
    have = {_key(s) for s in out}
    at = 0  # where the next stage of ``other`` missing from the leader goes
    for stage in other:
        key = _key(stage)
        if key in have:
            at = next(i for i, s in enumerate(out) if _key(s) == key) + 1
            continue
        out.insert(at, stage)
        have.add(key)
        at += 1
    return out


def _stage(mine: Record, theirs: Record | None) -> Record:
    if theirs is None or theirs == mine:
        return mine
    out = dict(mine)
    out["start"] = _time(min, mine.get("start"), theirs.get("start"))
    if mine.get("end") is None:
        out["end"] = theirs.get("end")
    out["duration_s"] = _duration(out["start"], out["end"])
    events = {(e.get("time"), e.get("name"), e.get("message")): e
              for e in [*(theirs.get("events") or []), *(mine.get("events") or [])]}
    if events:
        out["events"] = sorted(events.values(), key=lambda e: parse_time(e["time"]))
    return out
