"""``lunettes simulate``: write the audit log of a simulated cluster delivering Pods."""

from __future__ import annotations

import argparse
import sys
import time

__all__ = ["DEFAULT_SCENARIOS", "register", "run"]

DEFAULT_SCENARIOS = "healthy=1"


def _rate(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``simulate`` subcommand."""
    p = subparsers.add_parser(
        "simulate",
        help="write a simulated audit log with ground truth",
        description=(
            "Write the audit log (audit.k8s.io/v1 Events) a Kubernetes cluster would write "
            "while delivering Pods under chosen failure scenarios, plus the ground truth of "
            "every Pod. Same --seed, same bytes."),
    )
    p.add_argument("-o", "--output", metavar="PATH", default="-",
                   help="audit log path; .gz compresses; - for stdout (default)")
    p.add_argument("--truth", metavar="PATH", help="write ground-truth JSON lines here")
    p.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    p.add_argument("--pods", type=int, default=100, help="Pods to create (default 100)")
    p.add_argument("--duration", type=float, default=600.0, metavar="SECONDS",
                   help="cluster seconds over which Pod creations spread (default 600)")
    p.add_argument("--rate", type=float, default=20.0, metavar="PER_SECOND",
                   help="background requests per second (default 20)")
    p.add_argument("--start", default="2026-01-01T00:00:00Z", metavar="RFC3339",
                   help="cluster time of the first record (default 2026-01-01T00:00:00Z)")
    p.add_argument("--end", type=float, default=None, metavar="SECONDS",
                   help="cut the log this many seconds after --start (default: when every "
                        "Pod has settled or timed out)")
    p.add_argument("--nodes", type=int, default=5, help="worker nodes (default 5)")
    p.add_argument("--apiservers", type=int, default=1, metavar="N",
                   help="API servers writing interleaved logs (default 1)")
    p.add_argument("--skew", type=float, default=3.0, metavar="SECONDS",
                   help="max write skew between API servers (default 3)")
    p.add_argument("--duplicates", type=_rate, default=0.0, metavar="RATE",
                   help="fraction of records written twice (default 0)")
    p.add_argument("--request-received", type=_rate, default=0.0, metavar="RATE",
                   help="fraction of requests also logged at stage RequestReceived")
    p.add_argument("--policy", default="requestresponse",
                   choices=("requestresponse", "gke", "eks", "aks", "openshift", "metadata"),
                   help="audit policy (default requestresponse)")
    p.add_argument("--scenarios", default=DEFAULT_SCENARIOS, metavar="MIX",
                   help="weighted scenario mix, e.g. healthy=0.6,crash_loop=0.1 or all=1 "
                        f"(default {DEFAULT_SCENARIOS})")
    p.add_argument("--list-scenarios", action="store_true",
                   help="list the scenarios with their reason codes and exit")
    p.add_argument("--eventlist", type=int, default=0, metavar="N",
                   help="write EventList documents of N items per line (webhook style)")
    p.add_argument("-q", "--quiet", action="store_true", help="no summary on stderr")
    p.set_defaults(run=run)


def _list_scenarios() -> int:
    from lunettes.simulate.scenarios import SCENARIOS

    width = max(len(n) for n in SCENARIOS)
    for s in SCENARIOS.values():
        print(f"{s.name:<{width}}  {s.reason or '-':<27}  {s.description}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Run the simulation and write the log (and truth)."""
    if args.list_scenarios:
        return _list_scenarios()
    from lunettes.simulate import SimConfig, Simulation, open_output, parse_mix, write_events
    from lunettes.simulate.writer import write_truth

    try:
        mix = parse_mix(args.scenarios)
        sim = Simulation(SimConfig(
            seed=args.seed, pods=args.pods, duration_s=args.duration, rate=args.rate,
            start=args.start, nodes=args.nodes, apiservers=args.apiservers,
            skew_s=args.skew, duplicates=args.duplicates,
            request_received=args.request_received, policy=args.policy, scenarios=mix,
            end_s=args.end))
    except ValueError as exc:
        print(f"lunettes simulate: {exc}", file=sys.stderr)
        return 2
    began = time.perf_counter()
    progress = None
    bar = None
    if sys.stderr.isatty() and not args.quiet:
        from rich.progress import Progress

        bar = Progress(transient=True)
        task = bar.add_task("simulating pods", total=args.pods)
        bar.start()

        def progress(done: int) -> None:
            if done % 16 == 0 or done == args.pods:
                bar.update(task, completed=done)
    try:
        with open_output(args.output) as out:
            written = write_events((line for _, line in sim.lines(progress)), out,
                                   args.eventlist)
    finally:
        if bar is not None:
            bar.stop()
    if args.truth:
        write_truth(sim.truth_rows(), args.truth)
    if not args.quiet:
        took = time.perf_counter() - began
        print(f"lunettes simulate: {written} audit events, {len(sim.pods)} pods "
              f"({args.policy}) in {took:.1f}s", file=sys.stderr)
    return 0
