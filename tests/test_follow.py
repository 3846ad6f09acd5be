"""lunettes.sources.follow: following audit logs through both kinds of rotation, resuming
from a checkpoint, and telling when a file cannot be read.

The lines are the bundled sample's records about Pods (one audit ID each); what must come
out is what was written, in the order written: no line lost, none repeated.
"""

from __future__ import annotations

import gzip
import os
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
import pytest
from api_server import SAMPLE, wait_for

from lunettes.model.audit import AuditRecord
from lunettes.sources.follow import FollowSource


def pod_lines(n: int) -> list[bytes]:
    """``n`` sample lines that each decode to one record about a Pod."""
    out = []
    for line in gzip.decompress(SAMPLE.read_bytes()).splitlines(keepends=True):
        event = orjson.loads(line)
        if event["objectRef"].get("resource") == "pods" and event["verb"] in (
                "create", "patch", "update", "delete"):
            out.append(line)
            if len(out) == n:
                return out
    raise AssertionError("the sample has too few Pod lines")


def ids(lines: list[bytes]) -> list[str]:
    return [orjson.loads(line)["auditID"] for line in lines]


@contextmanager
def following(source: FollowSource) -> Iterator[list[AuditRecord]]:
    """``source`` read by a thread into the yielded list."""
    got: list[AuditRecord] = []
    reader = threading.Thread(target=lambda: got.extend(source), daemon=True)
    reader.start()
    try:
        yield got
    finally:
        source.close()
        reader.join(10)
    assert not reader.is_alive()


def test_rename_and_create_rotation_loses_and_repeats_nothing(tmp_path: Path) -> None:
    lines = pod_lines(60)
    log = tmp_path / "audit.log"
    writer = log.open("ab", buffering=0)  # the API server's open descriptor
    writer.write(b"".join(lines[:20]))
    source = FollowSource([str(log)], poll_s=0.01)
    with following(source) as got:
        wait_for(lambda: len(got) == 20, "the first lines", 20)
        writer.write(b"".join(lines[20:25]))
        log.rename(tmp_path / "audit.log.1")  # --audit-log-maxsize reached: mv, then...
        writer.write(b"".join(lines[25:30]))  # ...the last lines still reach the old file
        writer.close()
        with log.open("ab") as new:  # ...and a new audit.log
            new.write(b"".join(lines[30:45]))
        wait_for(lambda: len(got) == 45, "the rotated and the new file", 20)
        with log.open("ab") as new:
            new.write(b"".join(lines[45:60]))
        wait_for(lambda: len(got) == 60, "lines appended to the new file", 20)
        assert source.state == "following"
    assert [r.audit_id for r in got] == ids(lines)


def test_two_rotations_between_polls_read_every_file_in_order(tmp_path: Path) -> None:
    lines = pod_lines(30)
    log = tmp_path / "audit.log"
    log.write_bytes(b"".join(lines[:10]))
    source = FollowSource([str(log)], poll_s=0.01)
    records = iter(source)
    assert [next(records).audit_id for _ in range(10)] == ids(lines[:10])
    # the generator is paused: two rotations happen before it looks again
    log.rename(tmp_path / "audit.log.1")
    log.write_bytes(b"".join(lines[10:20]))
    os.utime(log, ns=(os.stat(tmp_path / "audit.log.1").st_mtime_ns + 10**6,) * 2)
    (tmp_path / "audit.log.1").rename(tmp_path / "audit.log.2")
    log.rename(tmp_path / "audit.log.1")
    log.write_bytes(b"".join(lines[20:30]))
    assert [next(records).audit_id for _ in range(20)] == ids(lines[10:30])
    source.close()
    assert list(records) == []


def test_copytruncate_reads_the_lines_written_before_the_truncation_from_the_copy(
        tmp_path: Path) -> None:
    lines = pod_lines(40)
    log = tmp_path / "audit.log"
    log.write_bytes(b"".join(lines[:10]))
    source = FollowSource([str(log)], poll_s=0.01)
    records = iter(source)
    assert [next(records).audit_id for _ in range(10)] == ids(lines[:10])
    with log.open("ab") as out:  # written, not read yet...
        out.write(b"".join(lines[10:15]))
    shutil.copy(log, tmp_path / "audit.log.1")  # ...logrotate copies...
    with log.open("r+b") as out:
        out.truncate(0)  # ...and truncates; the writer goes on at the start
    with log.open("ab") as out:
        out.write(b"".join(lines[15:40]))
    assert [next(records).audit_id for _ in range(30)] == ids(lines[10:40])
    source.close()
    assert list(records) == []


def test_a_checkpoint_resumes_at_its_line_even_after_a_rotation(tmp_path: Path) -> None:
    lines = pod_lines(30)
    log = tmp_path / "audit.log"
    log.write_bytes(b"".join(lines[:20]))
    first = FollowSource([str(log)], poll_s=0.01, name="follow/a")
    records = iter(first)
    read = [next(records) for _ in range(12)]
    lane, n = read[-1].position or ("", 0)
    saved = first.checkpoint(lane, n)
    first.close()
    assert saved is not None and saved["offset"] == sum(map(len, lines[:11]))
    # lunettes is down; the API server rotates and writes on
    log.rename(tmp_path / "audit.log.1")
    log.write_bytes(b"".join(lines[20:30]))
    again = FollowSource([str(log)], poll_s=0.01, name="follow/a",
                         resume=orjson.loads(orjson.dumps({lane: saved})))
    with following(again) as got:
        wait_for(lambda: len(got) == 19, "the rest of the rotated file, then the new one", 20)
    assert [r.audit_id for r in got] == ids(lines[11:30])


def test_a_missing_file_stalls_the_source_and_reading_resumes_once_it_appears(
        tmp_path: Path) -> None:
    now = [0.0]
    log = tmp_path / "audit.log"
    source = FollowSource([str(log)], poll_s=0.01, stall_s=5, clock=lambda: now[0])
    with following(source) as got:
        wait_for(lambda: source.state == "following" and source.error, "a first poll", 20)
        now[0] = 6.0
        wait_for(lambda: source.state == "stalled", "the stalled state", 20)
        assert "No such file" in source.error
        log.write_bytes(b"".join(pod_lines(3)))
        wait_for(lambda: len(got) == 3 and source.state == "following", "the lines", 20)
    assert source.error == ""


def test_follow_refuses_what_it_cannot_tail(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="plain files only"):
        FollowSource([str(SAMPLE)])
    with pytest.raises(ValueError, match="plain files only"):
        FollowSource([str(tmp_path)])


def test_a_stalled_source_makes_readyz_503_while_healthz_stays_200() -> None:
    pytest.importorskip("fastapi", reason="needs the serve extra")
    from fastapi.testclient import TestClient
    from prometheus_client import CollectorRegistry

    from lunettes.api.app import ServeState, create_app

    source = FollowSource(["/nonexistent/audit.log"], name="follow/a")
    state = ServeState(phase="following", sources=[source])
    client = TestClient(create_app(CollectorRegistry(), state))
    assert client.get("/readyz").status_code == 503  # not read yet
    source.state = "following"
    assert client.get("/readyz").status_code == 200
    source.state, source.error = "stalled", "audit.log: No such file or directory"
    answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json()["sources"] == {"follow/a": {"state": "stalled",
                                                     "error": source.error}}
    assert client.get("/healthz").status_code == 200
