"""Helpers shared by subcommands: config directory, error printing."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from lunettes.config.errors import ConfigError
from lunettes.pipeline import DEFAULT_CONFIG_DIR


def add_config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", metavar="DIR", type=Path,
        default=Path(os.environ.get("LUNETTES_CONFIG", DEFAULT_CONFIG_DIR)),
        help="configuration directory with pipeline.yaml and stages.yaml "
             "(default: $LUNETTES_CONFIG or the bundled configs/)")


def report_config_error(error: ConfigError) -> int:
    """Print every configuration problem, one per line; return the exit status."""
    print(f"configuration error ({len(error.problems)} problem(s)):", file=sys.stderr)
    for problem in error.problems:
        print(f"  {problem}", file=sys.stderr)
    return 2
