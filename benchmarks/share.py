"""One process' CPU seconds for ``Pipeline.run`` without sinks, to compare two ways in one
checkout at the same time (alternate them: a shared machine drifts):

    python3 benchmarks/share.py fast LOG       # the msgspec fast path (as shipped)
    python3 benchmarks/share.py checked LOG    # every line through the checked path
    python3 benchmarks/share.py part:0/2 LOG   # worker 0 of 2 reading every line itself
    python3 benchmarks/share.py feed:0/2 LOG   # worker 0 of 2 fed by the parent's pre-scan

LOG: e.g. ``benchmarks/.cache/rr-100000-*.jsonl`` (written by ``benchmarks/run.py``).
Prints the mode, the CPU seconds of the run, the CPU seconds of the pre-scan (feed: every
worker's items built in this process, before the run) and the Pods finished.
"""

from __future__ import annotations

import sys
import time

from lunettes.pipeline import DEFAULT_CONFIG_DIR, Pipeline, load_config
from lunettes.sources import files
from lunettes.sources.files import FileSource
from lunettes.sources.partition import Partition
from lunettes.sources.prescan import Prescan


def main(mode: str, path: str) -> None:
    data = {**load_config(DEFAULT_CONFIG_DIR), "sinks": {}, "sources": {}}
    pipeline = Pipeline.from_config(DEFAULT_CONFIG_DIR, data, env={})
    if mode == "checked":
        files.fast_event = lambda raw, origin: None  # type: ignore[assignment]
    source = FileSource([path])
    scan_cpu = 0.0
    if mode.startswith(("part:", "feed:")):
        index, count = (int(x) for x in mode.split(":")[1].split("/"))
        feed = None
        if mode.startswith("feed:"):
            began = time.process_time()
            feed = [batch[index] for batch in Prescan([path], count)]
            scan_cpu = time.process_time() - began
        source = FileSource([path], partition=Partition(index, count), feed=feed)
    began = time.process_time()
    stats = pipeline.run(source)
    print(mode, round(time.process_time() - began, 3), "pre-scan", round(scan_cpu, 3),
          "pods", stats["pods_final"])


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
