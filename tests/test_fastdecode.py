"""The msgspec fast path (lunettes/sources/fastdecode.py) decodes every line as the checked
path does (lunettes/sources/decode.py): the same records on every real capture, the
bundled sample and simulated logs; bodies cut only to keys the folder reads; the same pod
records when every line takes the checked path instead."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import orjson
import pytest
from realdata import REAL, real

import lunettes
from lunettes.model.audit import AuditRecord
from lunettes.pipeline import Pipeline
from lunettes.processors.bodies import slim
from lunettes.simulate import SCENARIOS, SimConfig, Simulation, open_output, write_events
from lunettes.sinks.memory import InMemorySink
from lunettes.sources import files
from lunettes.sources.decode import audit_version, decode_event
from lunettes.sources.errors import BadRecord
from lunettes.sources.fastdecode import fast_event
from lunettes.sources.files import FileSource

SAMPLE = str(Path(lunettes.__file__).parent / "data" / "sample-audit.jsonl.gz")
CAPTURES = ["openshift-4.12-requestresponse.jsonl", "openshift-4.12-small.jsonl",
            "audit2rbac-demo-metadata.jsonl", "perfspec-kubeadm-metadata.jsonl.gz"]
"""The real captures of one audit Event per line (the GKE export is Cloud Logging
entries, which the fast path leaves to the checked one; the Falco capture is checked
line by line below)."""


def _lines(path: str) -> list[bytes]:
    opener: Any = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as stream:
        return [line for line in stream if line.strip()]


def _body(fast: Any, checked: Any, path: str) -> None:
    """``fast`` is the ``checked`` body with some keys left out, and as truthy (the folder
    reads ``response or request``)."""
    assert bool(fast) == bool(checked), path
    _within(fast, checked, path)


def _within(fast: Any, checked: Any, path: str) -> None:
    """``fast`` is ``checked`` with some keys of its objects left out."""
    if type(checked) is dict:
        assert type(fast) is dict, path
        for key, value in fast.items():
            assert key in checked, f"{path}.{key} not in the line"
            _within(value, checked[key], f"{path}.{key}")
    else:
        assert fast == checked and type(fast) is type(checked), path


def _checked(raw: bytes) -> AuditRecord | None:
    """The checked path's record of a plain Event line, as the folder keeps it (None for
    other documents and bad lines)."""
    doc = orjson.loads(raw)
    if type(doc) is not dict or doc.get("kind") != "Event" or not audit_version(doc):
        return None
    try:
        record = decode_event(doc, "here")
    except BadRecord:
        return None
    slim(record)
    return record


def _compare(lines: list[bytes]) -> int:
    """Assert the two paths agree on every line; return how many the fast path decoded."""
    decoded = 0
    for number, raw in enumerate(lines, 1):
        fast, checked = fast_event(raw, "here"), _checked(raw)
        if fast is None:
            assert checked is None, f"line {number}: the fast path refused a good Event"
            continue
        assert checked is not None, f"line {number}: the fast path took a bad line"
        slim(fast)
        decoded += 1
        for field in AuditRecord.__slots__:
            if field in ("request", "response"):
                _body(getattr(fast, field), getattr(checked, field), f"{number}:{field}")
            else:
                assert getattr(fast, field) == getattr(checked, field), (number, field)
    return decoded


@pytest.mark.parametrize("name", CAPTURES)
def test_real_captures_decode_alike_on_both_paths(name: str) -> None:
    lines = _lines(real(name))
    assert _compare(lines) == len(lines)


def test_falco_v1beta1_capture_decodes_alike_on_both_paths() -> None:
    real("falco-v1beta1")
    for path in sorted((REAL / "falco-v1beta1").iterdir()):
        if path.suffix in (".json", ".jsonl", ".log"):
            _compare(_lines(str(path)))


def test_sample_decodes_alike_on_both_paths() -> None:
    lines = _lines(SAMPLE)
    assert _compare(lines) == len(lines)


def _simulated(tmp: Path, **options: Any) -> Path:
    sim = Simulation(SimConfig(**{"scenarios": dict.fromkeys(SCENARIOS, 1.0), **options}))
    log = tmp / "audit.jsonl.gz"
    with open_output(str(log)) as out:
        write_events((line for _, line in sim.lines()), out)
    return log


@pytest.mark.parametrize("options", [
    {"policy": "requestresponse", "seed": 31, "pods": 150},
    {"policy": "metadata", "seed": 32, "pods": 100},
])
def test_simulated_logs_decode_alike_on_both_paths(tmp_path: Path, options: dict) -> None:
    lines = _lines(str(_simulated(tmp_path, **options)))
    assert _compare(lines) == len(lines)


def _pod_records(path: str) -> list[bytes]:
    memory = InMemorySink()
    pipeline = Pipeline.from_config(data=None, extra_sinks=[memory], env={})
    pipeline.sinks = [memory]
    pipeline.run(FileSource([path]))
    return sorted(orjson.dumps(r.to_dict()) for r in memory.records)


@pytest.mark.parametrize("log", ["sample", "simulated", "openshift"])
def test_checked_path_alone_writes_the_same_pod_records(
        log: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = {"sample": lambda: SAMPLE,
            "simulated": lambda: str(_simulated(tmp_path, seed=33, pods=120)),
            "openshift": lambda: real("openshift-4.12-requestresponse.jsonl")}[log]()
    fast = _pod_records(path)
    monkeypatch.setattr(files, "fast_event", lambda raw, origin: None)
    assert _pod_records(path) == fast and fast
