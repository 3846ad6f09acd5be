"""Decoding late (records held as raw lines through dedupe and the reorder window, decoded
when released: lunettes.processors.decode) gives exactly what decoding at the source gives:
the same pod records in the same order, the same counts, and every bad line counted under
the same reason at the same place. Checked on the bundled sample, simulated logs (HA
disorder with duplicates and interim stages), every real capture and the corpus of bad
lines."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hostile import MAX_LINE_BYTES, kinds, sample_lines
from realdata import real
from test_real_expected import CAPTURES
from test_replay_truth import simulate

from lunettes.model.audit import AuditRecord
from lunettes.pipeline import Pipeline
from lunettes.sinks.memory import InMemorySink
from lunettes.sources.errors import BadRecords
from lunettes.sources.files import FileSource

SAMPLE = Path(__file__).resolve().parents[1] / "lunettes" / "data" / "sample-audit.jsonl.gz"


def replay(paths: list[str], decode_late: bool) -> tuple[list[dict[str, Any]], Counter[str],
                                                         dict[str, list[str]], int]:
    """(pod records, stats, bad places by reason, records left undecoded by the source)."""
    memory = InMemorySink()
    pipeline = Pipeline.from_config(data=None, extra_sinks=[memory], env={})
    pipeline.sinks = [memory]
    bad = BadRecords(samples_per_reason=1_000_000)
    source = FileSource(paths, bad, max_line_bytes=MAX_LINE_BYTES, decode_late=decode_late)
    undecoded = 0

    def counted(records: Iterator[AuditRecord]) -> Iterator[AuditRecord]:
        nonlocal undecoded
        for record in records:
            undecoded += record.undecoded is not None
            yield record

    stats = pipeline.run(counted(iter(source)), bad=bad)
    places = {reason: sorted(found) for reason, found in bad.samples.items()}
    assert sum(len(found) for found in places.values()) == bad.total
    return [r.to_dict() for r in memory.records], Counter(stats), places, undecoded


def same_either_way(paths: list[str]) -> tuple[int, dict[str, list[str]]]:
    """Replay early and late; assert they agree; (records left raw, bad places)."""
    early, early_stats, early_bad, none = replay(paths, decode_late=False)
    late, late_stats, late_bad, undecoded = replay(paths, decode_late=True)
    assert none == 0
    assert late == early
    assert late_stats == early_stats
    assert late_bad == early_bad
    return undecoded, late_bad


def test_the_sample_gives_the_same_pods_decoded_late() -> None:
    undecoded, bad = same_either_way([str(SAMPLE)])
    assert undecoded > 1000 and bad == {}


SIMULATED = pytest.mark.parametrize("options", [
    {"policy": "requestresponse", "seed": 21, "pods": 120},
    {"policy": "requestresponse", "seed": 22, "pods": 120, "apiservers": 3, "skew_s": 4.0,
     "duplicates": 0.05, "request_received": 0.3},
    {"policy": "gke", "seed": 23, "pods": 100},
], ids=["requestresponse", "ha-disorder", "gke"])
"""Simulated logs: RequestResponse, HA disorder with duplicates and interim stages, GKE."""


@SIMULATED
def test_simulated_logs_give_the_same_pods_decoded_late(tmp_path: Path,
                                                        options: dict[str, Any]) -> None:
    log, _ = simulate(tmp_path, **options)
    undecoded, bad = same_either_way([str(log)])
    assert undecoded > 0 and bad == {}


@pytest.mark.parametrize("capture", sorted(CAPTURES.values()))
def test_real_captures_give_the_same_pods_decoded_late(capture: str) -> None:
    same_either_way([real(capture)])


def test_bad_lines_are_counted_where_they_are_decoded_late(tmp_path: Path) -> None:
    """Every kind of the corpus in one log, and a good final line repeated with a broken
    body (its auditID already seen: decoded late, it is still counted as bad, not as a
    duplicate)."""
    base = sample_lines()[:1000]
    corpus = kinds(base)
    after: dict[int, list[bytes]] = {}
    for kind in corpus:
        after.setdefault(kind.after, []).append(kind.line)
    template = next(i for i, line in enumerate(base)
                    if b'"stage":"ResponseComplete"' in line and b'"resource":"pods"' in line
                    and b'"subresource":"status"' in line)
    broken = base[template].replace(b'"code":200', b'"code":NaN')
    assert broken != base[template]
    after.setdefault(template + 1, []).append(broken)  # right after its first copy
    out: list[bytes] = []
    expected: Counter[str] = Counter()
    for number, line in enumerate(base, 1):
        out.append(line)
        out.extend(after.get(number, ()))
    for kind in corpus:
        expected[kind.reason] += 1
    expected["invalid_json"] += 1
    log = tmp_path / "audit.log"
    log.write_bytes(b"".join(out))
    undecoded, bad = same_either_way([str(log)])
    assert undecoded > 0
    assert Counter({reason: len(places) for reason, places in bad.items()}) == expected
    where = f"{log}:{out.index(broken) + 1}"
    assert any(place.split(": ", 1)[0] == where for place in bad["invalid_json"])
    assert orjson.loads(base[template])["stage"] == "ResponseComplete"
