"""Entry point of the ``lunettes`` command: one module per subcommand."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from lunettes import __version__

# Each module defines register(subparsers) adding its subcommand with set_defaults(run=...).
COMMANDS = ("replay", "validate_config", "init_config", "graph", "reasons", "simulate", "serve",
            "analyze")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lunettes",
        description="Pod delivery traces, SLOs and diagnoses from kube-apiserver audit logs.",
    )
    parser.add_argument("--version", action="version", version=f"lunettes {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"lunettes.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
