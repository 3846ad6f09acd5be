"""``lunettes validate-config``: check a configuration directory without reading events."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from lunettes.cli.common import report_config_error
from lunettes.config.errors import ConfigError
from lunettes.pipeline import Pipeline


def register(sub: Any) -> None:
    parser = sub.add_parser("validate-config", help="check pipeline.yaml and stages.yaml",
                            description=__doc__)
    parser.add_argument("config", metavar="DIR", type=Path, help="configuration directory")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        # Sinks connect lazily: building them checks their sections and opens nothing.
        pipeline = Pipeline.from_config(args.config)
        pipeline.shutdown()
    except ConfigError as exc:
        return report_config_error(exc)
    for warning in pipeline.stage_set.warnings():
        print(f"warning: {warning}", file=sys.stderr)
    stages = pipeline.stage_set.stages
    print(f"{args.config}: ok ({len(pipeline.dag.analyzers)} analyzers, {len(stages)} stages:"
          f" {', '.join(s.name for s in stages)})")
    return 0

