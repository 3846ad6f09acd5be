"""Helpers shared by subcommands: config directory, error printing."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from lunettes.cli.exitcodes import DEFAULT_MAX_BAD_RATIO, BadLimits
from lunettes.config.errors import ConfigError
from lunettes.pipeline import DEFAULT_CONFIG_DIR


def add_config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", metavar="DIR", type=Path,
        default=Path(os.environ.get("LUNETTES_CONFIG", DEFAULT_CONFIG_DIR)),
        help="configuration directory with pipeline.yaml and stages.yaml "
             "(default: $LUNETTES_CONFIG, else the shipped defaults; "
             "lunettes init-config DIR copies them)")


def add_bad_limit_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-bad", metavar="N", type=_count, default=None,
                        help="exit 3 when more than N records are bad (default: no count "
                             "limit)")
    parser.add_argument("--max-bad-ratio", metavar="R", type=_ratio,
                        default=DEFAULT_MAX_BAD_RATIO,
                        help="exit 3 when more than this share of the records read are "
                             f"bad (default: {DEFAULT_MAX_BAD_RATIO:g}, 1%%; 1 never)")


def add_dead_letter_arg(parser: argparse.ArgumentParser | argparse._ArgumentGroup
                        ) -> None:
    parser.add_argument("--dead-letter", metavar="FILE",
                        help="append every bad record (and every late one) to FILE as JSON "
                             "lines: where, why, the line redacted (overrides "
                             "input.dead_letter; created 0600, capped by "
                             "input.dead_letter_max_mb)")


def add_apiserver_load_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--apiserver-load", action="store_true",
                        help="count the API requests of the records read too (the series of "
                             "lunettes analyze apiserver) and export them as Prometheus "
                             "metrics (the requests processor of pipeline.yaml)")


def bad_limits(args: argparse.Namespace) -> BadLimits:
    """The bad-record limits of the command line."""
    return BadLimits(args.max_bad, args.max_bad_ratio)


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a number of records") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value}: must not be negative")
    return value


def _ratio(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: a ratio between 0 and 1") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{value}: must be between 0 and 1")
    return value


def report_config_error(error: ConfigError) -> int:
    """Print every configuration problem, one per line; return the exit status."""
    print(f"configuration error ({len(error.problems)} problem(s)):", file=sys.stderr)
    for problem in error.problems:
        print(f"  {problem}", file=sys.stderr)
    return 2
