"""``lunettes graph``: print the analyzer DAG as Mermaid."""

from __future__ import annotations

import argparse
from typing import Any

from lunettes.analyzers.dag import check_graph, mermaid, read_nodes
from lunettes.cli.common import add_config_arg, report_config_error
from lunettes.config.errors import ConfigError, Section
from lunettes.pipeline import load_config


def register(sub: Any) -> None:
    parser = sub.add_parser("graph", help="print the analyzer DAG as a Mermaid flowchart",
                            description=__doc__)
    add_config_arg(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    problems: list[str] = []
    origin = str(args.config / "pipeline.yaml")
    try:
        section = Section(load_config(args.config).get("analyzers"), f"{origin}: analyzers",
                          problems)  # same paths as the pipeline's own checks
        nodes = read_nodes(section)
        problems += check_graph(nodes, section.path)
        if problems:
            raise ConfigError(problems)
    except ConfigError as exc:
        return report_config_error(exc)
    print(mermaid(nodes))
    return 0
