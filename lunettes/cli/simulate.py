"""``lunettes simulate``: write the audit log of a simulated cluster delivering Pods."""

from __future__ import annotations

import argparse
import sys

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``simulate`` subcommand."""
    parser = subparsers.add_parser(
        "simulate",
        help="write a simulated audit log with ground truth",
        description="Write the audit log a cluster delivering Pods would write, plus truth.",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the simulation (placeholder while the simulator is being built)."""
    print("simulate: not implemented yet", file=sys.stderr)
    return 2
