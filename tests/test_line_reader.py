"""With the API server load analysis on, the file and follow sources read each line once,
through the analysis' typed decoding (``RequestStream.peek_line``) instead of the byte
peek: what it tells of a line is what the peek tells, and a replay with the analysis gives
exactly the Pod results, stats and bad places of a replay without it, while the analysis
counts what reading every line apart counts. Checked on the bundled sample, simulated
logs, every real capture and the corpus of bad lines."""

from __future__ import annotations

import gzip
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hostile import MAX_LINE_BYTES, kinds, sample_lines
from realdata import real
from test_apiserver_scan import counted
from test_decode_late import SIMULATED
from test_real_expected import CAPTURES
from test_replay_truth import simulate

from lunettes.apiserver.processor import Requests, with_requests
from lunettes.apiserver.reader import read_lines
from lunettes.apiserver.stream import RequestStream
from lunettes.pipeline import DEFAULT_CONFIG_DIR, Pipeline, load_config
from lunettes.sinks.memory import InMemorySink
from lunettes.sources.errors import BadRecords
from lunettes.sources.files import FileSource
from lunettes.sources.follow import FollowSource
from lunettes.sources.peek import peek, received_us

SAMPLE = Path(__file__).resolve().parents[1] / "lunettes" / "data" / "sample-audit.jsonl.gz"


def _lines(path: str) -> list[bytes]:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as stream:
        return stream.readlines()


def replay(paths: list[str], analysis: bool, follow: bool = False
           ) -> tuple[list[dict[str, Any]], Counter[str], dict[str, list[str]],
                      RequestStream | None]:
    """(pod records, stats, bad places by reason, the analysis' counts)."""
    memory = InMemorySink()
    data = with_requests(load_config(DEFAULT_CONFIG_DIR)) if analysis else None
    pipeline = Pipeline.from_config(data=data, extra_sinks=[memory], env={})
    pipeline.sinks = [memory]
    bad = BadRecords(samples_per_reason=1_000_000)
    if follow:
        source: FileSource | FollowSource = FollowSource(paths, bad=bad, decode_late=True)
        source.on_caught_up = source.stop.set  # read what is there, then end
    else:
        source = FileSource(paths, bad, max_line_bytes=MAX_LINE_BYTES, decode_late=True)
    pipeline.sources = [source]
    stats = pipeline.run(bad=bad)
    places = {reason: sorted(found) for reason, found in bad.samples.items()}
    stream = next((p.stream for p in pipeline.processors if isinstance(p, Requests)), None)
    if analysis:
        assert source.line_reader is not None  # the analysis reads the lines
    return [r.to_dict() for r in memory.records], Counter(stats), places, stream


def same_with_the_analysis(paths: list[str], follow: bool = False) -> RequestStream:
    """Replay without and with the analysis; assert they agree and the analysis counted
    what a stream fed every line apart counts; the analysis' stream."""
    plain, plain_stats, plain_bad, _ = replay(paths, False, follow)
    pods, stats, places, stream = replay(paths, True, follow)
    assert pods == plain
    assert stats == plain_stats
    assert places == plain_bad
    assert stream is not None
    apart = RequestStream()  # as lunettes analyze apiserver reads the files
    for item, origin in read_lines(paths, apart.bad):
        if not isinstance(item, bytes):
            apart.add(item)
        elif len(item) < MAX_LINE_BYTES:  # (the source refuses longer lines unread)
            apart.add_line(item, origin)
    assert counted(stream) == counted(apart)
    assert stream.bad.counts == apart.bad.counts
    return stream


def test_the_sample_gives_the_same_pods_and_requests_with_the_analysis() -> None:
    stream = same_with_the_analysis([str(SAMPLE)])
    assert stream.requests > 1000


def test_a_followed_file_gives_the_same_pods_and_requests_with_the_analysis(
        tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    log.write_bytes(b"".join(sample_lines()))
    assert same_with_the_analysis([str(log)], follow=True).requests > 1000


@SIMULATED
def test_simulated_logs_give_the_same_pods_and_requests_with_the_analysis(
        tmp_path: Path, options: dict[str, Any]) -> None:
    log, _ = simulate(tmp_path, **options)
    assert same_with_the_analysis([str(log)]).requests > 0


@pytest.mark.parametrize("capture", sorted(CAPTURES.values()))
def test_real_captures_give_the_same_pods_and_requests_with_the_analysis(
        capture: str) -> None:
    stream = same_with_the_analysis([real(capture)])
    assert stream.requests > 0 or stream.bad.counts["bad_timestamp"] > 0  # audit2rbac: 2017


def test_bad_lines_give_the_same_places_with_the_analysis(tmp_path: Path) -> None:
    base = sample_lines()[:1000]
    out = list(base)
    for kind in kinds(base):
        out.insert(kind.after, kind.line)
    log = tmp_path / "audit.log"
    log.write_bytes(b"".join(out))
    same_with_the_analysis([str(log)])


@pytest.mark.parametrize("name", ["sample", *sorted(
    name for name in CAPTURES.values() if name.endswith((".jsonl", ".jsonl.gz")))])
def test_the_analysis_reading_tells_what_the_peek_tells(name: str) -> None:
    """Line by line: where the byte peek answers, the analysis' reading answers the same
    (and the requestReceivedTimestamp of a final line); on kube-apiserver's own lines it
    answers wherever the peek does."""
    lines = sample_lines() if name == "sample" else _lines(real(name))
    stream = RequestStream()
    both = 0
    for raw in lines:
        seen, read = peek(raw), stream.peek_line(raw, "")
        if seen is None or read is None:
            assert read is not None or seen is None or not name.startswith(
                ("sample", "perfspec", "openshift")), raw[:300]
            continue
        assert read[:7] == seen[:7], raw[:300]
        assert read.received == (received_us(raw) if seen.final else None)
        both += 1
    assert both > 0 or name.startswith("audit2rbac")  # (2017: another field order)
