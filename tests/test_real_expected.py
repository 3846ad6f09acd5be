"""Every Pod of the real captures comes out as a reading of the raw records by hand says.

The expected records in tests/data/real-expected/<capture>.jsonl were written from the raw
audit records (the reasoning per Pod is in that directory's README.md), never copied from
lunettes' output. Each holds only the fields checked by hand; a mismatch prints the diff.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from realdata import real
from test_replay_truth import replay

from lunettes.model.record import PodRecord
from lunettes.model.times import format_optional

EXPECTED = Path(__file__).parent / "data" / "real-expected"
CAPTURES = {
    "perfspec-kubeadm-metadata": "perfspec-kubeadm-metadata.jsonl.gz",
    "openshift-4.12-requestresponse": "openshift-4.12-requestresponse.jsonl",
    "openshift-4.12-small": "openshift-4.12-small.jsonl",
    "audit2rbac-demo-metadata": "audit2rbac-demo-metadata.jsonl",
    "falco-v1beta1": "falco-v1beta1",
    "gke-cloud-logging": "gke-cloud-logging",
}


def _fields(record: PodRecord) -> dict[str, Any]:
    """Every field an expected record may hold, read from lunettes' pod record."""
    diagnosis = record.results.get("diagnosis") or {}
    return {
        "namespace": record.namespace, "name": record.name,
        "created": format_optional(record.created_us), "outcome": record.outcome,
        "partial": record.partial, "node": record.node, "owner_kind": record.owner_kind,
        "owner_name": record.owner_name,
        "stages": {s.name: "open" if s.end_us is None else "closed" for s in record.stages},
        "reason": diagnosis.get("reason"), "diagnosis_owner": diagnosis.get("owner"),
        "slo": (record.results.get("slo") or {}).get("result"),
    }


def _key(fields: dict[str, Any]) -> tuple[str, str]:
    """A Pod's name, or for an unnamed refused create its creation time."""
    return fields["namespace"], fields["name"] or f"created {fields['created']}"


def test_every_capture_has_expected_records() -> None:
    assert sorted(p.stem for p in EXPECTED.glob("*.jsonl")) == sorted(CAPTURES)


@pytest.mark.parametrize("capture", sorted(CAPTURES))
def test_real_capture_matches_the_records_read_by_hand(capture: str) -> None:
    lines = (EXPECTED / f"{capture}.jsonl").read_text().splitlines()
    expected = {_key(row): row for row in map(json.loads, lines)}
    records, source = replay(Path(real(CAPTURES[capture])))
    assert source.bad.total == 0, source.bad.report()
    got = {_key(fields): fields for fields in map(_fields, records)}
    assert len(got) == len(records), "two Pods share a key"
    diff = []
    for key in sorted(set(expected) | set(got)):
        want, have = expected.get(key), got.get(key)
        if want is None or have is None:
            diff.append(f"{'/'.join(key)}: {'unexpected' if want is None else 'missing'}")
            continue
        diff.extend(f"{'/'.join(key)}: {name}: expected {value!r}, got {have[name]!r}"
                    for name, value in want.items() if have[name] != value)
    assert not diff, f"{capture}: {len(diff)} difference(s):\n" + "\n".join(diff)
