"""Freshness: how soon a Pod's record is queryable after the audit event that finished it.

    python3 benchmarks/freshness.py                  # both paths, 60 s of simulated traffic
    python3 benchmarks/freshness.py --path webhook --duration 30 --pods 40

Simulates a cluster whose audit clock is the wall clock (``lunettes simulate``'s engine,
started now), and sends each audit event when it happens: appended to a log that
``lunettes serve --follow`` reads, or POSTed in EventList batches every ``--batch-wait``
seconds to ``lunettes serve --webhook`` (kube-apiserver's batch backend with
``--audit-webhook-batch-max-wait``). A poller reads the store the API serves every 50 ms.

A delivered Pod can be final no sooner than its delivery end + ``pods.linger_s`` (trailing
Events) + ``input.reorder_window_s`` (late writers) of audit time: the freshness printed is
the wall time the record appeared in the store minus that moment, per Pod (seconds;
the target is under 2 s). Pods still in flight at the end are not counted.
"""

from __future__ import annotations

import argparse
import gzip
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lunettes.config.errors import Section  # noqa: E402
from lunettes.model.times import parse_time  # noqa: E402
from lunettes.pipeline import DEFAULT_CONFIG_DIR, Settings, load_config  # noqa: E402
from lunettes.simulate import SimConfig, Simulation  # noqa: E402

DELIVERED = ("delivered", "completed")


def timeline(args: argparse.Namespace) -> list[tuple[float, bytes]]:
    """(send time in wall seconds, line) of a simulation starting a few seconds from now."""
    start = datetime.fromtimestamp(time.time() + 3, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    sim = Simulation(SimConfig(seed=args.seed, pods=args.pods, duration_s=args.duration,
                               rate=args.rate, start=start))
    out = []
    for _, line in sim.lines():
        event = orjson.loads(line)
        at = parse_time(event.get("stageTimestamp") or event["requestReceivedTimestamp"])
        out.append((at / 1e6, line if line.endswith(b"\n") else line + b"\n"))
    out.sort(key=lambda item: item[0])
    return out


def serve(tmp: Path, *flags: str) -> tuple[subprocess.Popen[bytes], str, Path]:
    db = tmp / "pods.db"
    log = tmp / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "lunettes.cli.main", "serve",
                                 "--port", "0", "--store", str(db), *flags],
                                stdout=out, stderr=subprocess.STDOUT, cwd=tmp)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = re.search(r"listening on (http://127\.0\.0\.1:\d+)/", log.read_text())
        if found:
            return proc, found[1], db
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"lunettes serve did not start: {log.read_text()}")


def poll(db: Path, seen: dict[str, tuple[float, int | None, str]], stop: threading.Event
         ) -> None:
    """Note when each Pod's record first appears in the store."""
    while not stop.wait(0.05):
        if not db.exists():
            continue
        try:
            with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
                rows = conn.execute("SELECT uid, finished_us, outcome FROM pods").fetchall()
        except sqlite3.Error:
            continue
        now = time.time()
        for uid, finished_us, outcome in rows:
            seen.setdefault(uid, (now, finished_us, outcome))


def run_path(path: str, lines: list[tuple[float, bytes]], args: argparse.Namespace,
             hold_s: float) -> list[float]:
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        audit = tmp / "audit.log"
        audit.touch()
        if path == "follow":
            proc, base, db = serve(tmp, "--follow", str(audit))
        else:
            proc, base, db = serve(tmp, "--webhook", "--webhook-spool", str(tmp / "spool"))
        seen: dict[str, tuple[float, int | None, str]] = {}
        stop = threading.Event()
        poller = threading.Thread(target=poll, args=(db, seen, stop), daemon=True)
        poller.start()
        try:
            with audit.open("ab") as log, httpx.Client(timeout=30) as client:
                step = 0.05 if path == "follow" else args.batch_wait
                index = 0
                while index < len(lines):
                    now = time.time()
                    due = []
                    while index < len(lines) and lines[index][0] <= now:
                        due.append(lines[index][1])
                        index += 1
                    if due and path == "follow":
                        log.write(b"".join(due))
                        log.flush()
                    elif due:
                        items = [orjson.loads(line) for line in due]
                        client.post(f"{base}/audit/webhook", content=gzip.compress(
                            orjson.dumps({"kind": "EventList", "apiVersion": "audit.k8s.io/v1",
                                          "items": items})),
                            headers={"Content-Encoding": "gzip"}).raise_for_status()
                    time.sleep(step)  # the sender's pace, as the API server's
            time.sleep(hold_s + 3)  # let the last deliveries through linger and the window
        finally:
            stop.set()
            poller.join(5)
            proc.terminate()
            proc.wait(30)
    return [at - (finished_us / 1e6 + hold_s) for at, finished_us, outcome in seen.values()
            if outcome in DELIVERED and finished_us]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--path", choices=("follow", "webhook", "both"), default="both")
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--pods", type=int, default=60)
    parser.add_argument("--rate", type=float, default=20.0,
                        help="background audit events per second")
    parser.add_argument("--batch-wait", type=float, default=1.0,
                        help="webhook: seconds between batches (default 1)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    settings = Settings.from_config(_top())
    hold_s = (settings.linger_us + settings.reorder_window_us) / 1e6
    for path in (("follow", "webhook") if args.path == "both" else (args.path,)):
        lines = timeline(args)
        lags = sorted(run_path(path, lines, args, hold_s))
        if not lags:
            print(f"{path}: no delivered Pod became final")
            continue
        q = (statistics.quantiles(lags, n=100, method="inclusive") if len(lags) > 1
             else lags * 99)
        print(f"{path}: {len(lags)} delivered Pods, seconds after delivery end + "
              f"linger + reorder window ({hold_s:g} s): min {lags[0]:.2f}  p50 {q[49]:.2f}  "
              f"p90 {q[89]:.2f}  p99 {q[98]:.2f}  max {lags[-1]:.2f}")


def _top() -> Section:
    return Section(load_config(DEFAULT_CONFIG_DIR), "pipeline.yaml:", [])


if __name__ == "__main__":
    main()
