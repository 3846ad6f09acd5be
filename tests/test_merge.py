"""lunettes.model.merge: the completeness order and how facts extend each other, on
records written by hand."""

from __future__ import annotations

from typing import Any

from lunettes.model.merge import completeness, merge


def stage(name: str, start: str, end: str | None, instance: str = "",
          **extra: Any) -> dict[str, Any]:
    return {"name": name, "instance": instance, "instance_kind": "", "owner": "platform",
            "start": start, "end": end, "duration_s": None, **extra}


def record(outcome: str, created: str | None, finished: str | None, stages: list[Any],
           **extra: Any) -> dict[str, Any]:
    out = {"uid": "u1", "namespace": "ns", "name": "web-1", "node": "", "created": created,
           "finished": finished, "duration_s": None, "outcome": outcome,
           "partial": created is None, "uid_derived": False, "owner_kind": "",
           "owner_name": "", "last_seen": finished or created, "stages": stages}
    out.update(extra)
    return out


T0, T1, T2, T3 = ("2026-01-01T00:00:00.000000Z", "2026-01-01T00:00:01.000000Z",
                  "2026-01-01T00:00:05.500000Z", "2026-01-01T00:00:09.000000Z")

# The first half of a Pod's life (creation, scheduling, still in flight when the input
# ended) and the second half as a later run sees it (partial: first seen at T2, Ready at T3).
FIRST = record("in_progress", T0, None,
               [stage("delivery", T0, None), stage("scheduling", T0, T1),
                stage("pull", T1, None, "nginx")],
               node="", owner_kind="ReplicaSet", owner_name="web",
               slo={"result": "in_progress"}, last_seen=T1, end_reason="end_of_input")
SECOND = record("delivered", None, T3,
                [stage("delivery", T2, T3), stage("pull", T2, T2, "nginx"),
                 stage("readiness", T2, T3)],
                node="worker-1", slo={"result": "not_applicable"}, last_seen=T3,
                end_reason="delivered")


def test_order_of_records_without_end_reason_outcome_then_creation_then_stages() -> None:
    ranked = sorted([
        record("delivered", None, T3, []), record("timeout", T0, None, []),
        record("in_progress", T0, None, [stage("delivery", T0, None)]),
        record("in_progress", T0, None, []), record("unknown", T0, None, []),
        record("delivered", T0, T3, []), record("in_progress", None, None, []),
    ], key=completeness)
    assert [(r["outcome"], r["created"] is not None, len(r["stages"])) for r in ranked] == [
        ("unknown", True, 0), ("in_progress", False, 0), ("in_progress", True, 0),
        ("in_progress", True, 1), ("timeout", True, 0), ("delivered", False, 0),
        ("delivered", True, 0)]


def test_order_how_following_ended_comes_before_the_outcome() -> None:
    tiers = [("end_of_input", "in_progress"), ("end_of_input", "delivered"),
             ("timeout", "timeout"), ("deleted", "deleted"), ("terminal", "completed")]
    ranked = sorted((record(outcome, T0 if i % 2 else None, T3, [], end_reason=reason)
                     for i, (reason, outcome) in enumerate(reversed(tiers))),
                    key=completeness)
    assert [(r["end_reason"], r["outcome"]) for r in ranked][:3] == tiers[:3]
    # both final: the record that saw the creation leads
    assert ranked[-1]["created"] == T0 and ranked[-2]["created"] is None


def test_job_seen_ready_when_input_ended_gives_way_to_its_completion() -> None:
    ready = record("delivered", T0, T1, [stage("delivery", T0, T1)],
                   end_reason="end_of_input", slo={"result": "met"})
    done = record("completed", None, T3, [stage("delivery", T2, T3)], end_reason="terminal",
                  slo={"result": "not_applicable"})
    for merged in (merge(ready, done), merge(done, ready)):
        assert (merged["outcome"], merged["created"], merged["finished"]) == (
            "completed", T0, T3)
        assert (merged["stages"][0]["start"], merged["stages"][0]["end"]) == (T0, T3)


def test_delivered_pod_keeps_its_record_when_a_later_run_sees_only_its_delete() -> None:
    delivered = record("delivered", T0, T1, [stage("delivery", T0, T1)],
                       end_reason="delivered", slo={"result": "met"})
    deleted = record("deleted", None, T3, [stage("delivery", T2, None)],
                     end_reason="deleted", slo={"result": "not_applicable"})
    for merged in (merge(delivered, deleted), merge(deleted, delivered)):
        assert {k: merged[k] for k in ("outcome", "finished", "slo")} == {
            "outcome": "delivered", "finished": T1, "slo": {"result": "met"}}
        assert merged["last_seen"] == T3


def test_two_halves_give_creation_end_and_stages_whatever_the_order() -> None:
    expected = {
        "created": T0, "finished": T3, "outcome": "delivered", "node": "worker-1",
        "owner_kind": "ReplicaSet", "owner_name": "web", "last_seen": T3,
        "duration_s": 9.0, "partial": True, "slo": {"result": "not_applicable"},
    }
    for merged in (merge(FIRST, SECOND), merge(SECOND, FIRST)):
        assert {k: merged[k] for k in expected} == expected
        assert [(s["name"], s["instance"], s["start"], s["end"], s["duration_s"])
                for s in merged["stages"]] == [
            ("delivery", "", T0, T3, 9.0), ("scheduling", "", T0, T1, None),
            ("pull", "nginx", T1, T2, 4.5), ("readiness", "", T2, T3, None)]


def test_less_complete_record_never_replaces_a_final_one() -> None:
    final = merge(FIRST, SECOND)
    late = record("in_progress", None, None, [stage("delivery", T2, None)],
                  slo={"result": "not_applicable"}, last_seen=T2)
    assert merge(final, late) == final


def test_identical_replay_keeps_the_record() -> None:
    assert merge(SECOND, dict(SECOND)) == SECOND
    assert merge(None, FIRST) is FIRST


def test_span_events_of_both_records_are_kept_once_in_time_order() -> None:
    warn_a = {"time": T1, "name": "BackOff", "message": "a", "attributes": {}}
    warn_b = {"time": T2, "name": "Failed", "message": "b", "attributes": {}}
    first = record("in_progress", T0, None, [stage("delivery", T0, None, events=[warn_b])])
    second = record("in_progress", T0, None,
                    [stage("delivery", T0, None, events=[warn_a, warn_b])], last_seen=T2)
    merged = merge(first, second)
    assert merged["stages"][0]["events"] == [warn_a, warn_b]


def test_a_seen_creation_beats_a_partial_records_creation_timestamp() -> None:
    """A partial record's ``created`` is the creationTimestamp a body showed (whole seconds,
    so earlier than the create's audit time): the creation a record saw wins."""
    seen = record("in_progress", "2026-01-01T00:00:00.750000Z", None, [],
                  end_reason="end_of_input")
    recovered = dict(record("delivered", T0, T3, [], end_reason="delivered"), partial=True)
    for merged in (merge(seen, recovered), merge(recovered, seen)):
        assert (merged["created"], merged["outcome"], merged["duration_s"]) == (
            "2026-01-01T00:00:00.750000Z", "delivered", 8.25)
    both_partial = dict(recovered, created="2026-01-01T00:00:01.000000Z", last_seen=T2)
    assert merge(both_partial, recovered)["created"] == T0
