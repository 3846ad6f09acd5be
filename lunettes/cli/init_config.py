"""``lunettes init-config DIR``: write an editable copy of the default configuration."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from lunettes.config.bundled import write_copy


def register(sub: Any) -> None:
    parser = sub.add_parser("init-config", help="write a copy of the default configuration",
                            description=__doc__)
    parser.add_argument("dir", metavar="DIR", type=Path, help="directory to write into")
    parser.add_argument("--force", action="store_true", help="replace existing files")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    try:
        written = write_copy(args.dir, overwrite=args.force)
    except FileExistsError as exc:
        print(f"init-config: already there (use --force to replace): {exc}", file=sys.stderr)
        return 1
    for path in written:
        print(path)
    print(f"edit them, then: lunettes validate-config {args.dir} && "
          f"lunettes replay --config {args.dir} ...", file=sys.stderr)
    return 0
