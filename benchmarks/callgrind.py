"""Instructions a Python command executes, counted by valgrind's callgrind: the same count
whatever else the machine is doing (CPU seconds on a shared machine move by 20-40%)."""

from __future__ import annotations

import re
import subprocess
import sys


def instructions(args: list[str]) -> int:
    """Instructions of ``python3 ARGS...`` (this interpreter, run under callgrind)."""
    try:
        out = subprocess.run(
            ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
             *args], check=True, capture_output=True, text=True).stderr
    except FileNotFoundError:
        raise SystemExit("counting instructions needs valgrind (Debian: apt install "
                         "valgrind)") from None
    found = re.search(r"I\s+refs:\s+([\d,]+)", out)
    if found is None:
        raise SystemExit(f"valgrind printed no instruction count:\n{out[-2000:]}")
    return int(found.group(1).replace(",", ""))
