"""HA control planes: three API servers' streams, each its own source, merged on one audit
clock. The simulator writes them (three servers, their clocks skewed by up to 4 s, records
written twice), and what lunettes makes of them must be the simulator's ground truth."""

from __future__ import annotations

from pathlib import Path

import orjson

from lunettes.model.times import format_optional
from lunettes.pipeline import DEFAULT_CONFIG_DIR, Pipeline, load_config
from lunettes.simulate import SCENARIOS, SimConfig, Simulation, write_truth
from lunettes.sinks.memory import InMemorySink
from lunettes.sources.peek import clock_only, peek


def test_three_skewed_api_server_logs_merge_into_the_ground_truth(tmp_path: Path) -> None:
    sim = Simulation(SimConfig(seed=21, pods=200, apiservers=3, skew_s=4.0,
                               duplicates=0.03, request_received=0.2,
                               scenarios=dict.fromkeys(SCENARIOS, 1.0)))
    logs = [(tmp_path / f"apiserver-{k}.log").open("wb") for k in range(3)]
    previous: tuple[int, bytes] | None = None
    crossed = 0
    for server, line in sim.lines():
        line = line if line.endswith(b"\n") else line + b"\n"
        if previous == (server, line):  # a record written twice: the copy reaches the
            server = (server + 1) % 3  # next server's stream, to be dropped across them
            seen = peek(line)
            crossed += seen is not None and seen.final and clock_only(line, seen) is None
        previous = (server, line)
        logs[server].write(line)
    for log in logs:
        log.close()
    write_truth(sim.truth_rows(), str(tmp_path / "truth.jsonl"))
    truth = [orjson.loads(x) for x in (tmp_path / "truth.jsonl").read_bytes().splitlines()]
    assert crossed > 10

    memory = InMemorySink()
    sources = {f"file/apiserver-{k}": {"paths": [str(tmp_path / f"apiserver-{k}.log")]}
               for k in range(3)}
    data = {**load_config(DEFAULT_CONFIG_DIR), "sources": sources, "sinks": {}}
    pipeline = Pipeline.from_config(data=data, env={}, extra_sinks=[memory])
    stats = pipeline.run()
    assert pipeline.bad.total == 0
    assert stats["duplicate"] == crossed  # each copy of a record about a Pod, once
    by_uid = {r.uid: r for r in memory.records}
    assert len(memory.records) == len(truth)
    mismatches = []
    for row in truth:
        record = by_uid[row["uid"]]
        stages = {(s.name, s.instance): (format_optional(s.start_us), format_optional(s.end_us))
                  for s in record.stages}
        if stages != {(s["name"], s["instance"]): (s["start"], s["end"])
                      for s in row["stages"]} or record.outcome != row["outcome"]:
            mismatches.append((row["scenario"], row["uid"], record.outcome, row["outcome"]))
    assert mismatches == []
