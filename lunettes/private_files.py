"""Files lunettes writes are the owner's alone: created 0600 (directories 0700).

The store, spools, JSON lines and OpenMetrics outputs and dead-letter files hold what the
cluster's audit log said about its Pods; whoever may read them is the operator's choice
(``chmod``), not the umask's. A file that already exists keeps its mode.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import IO, Any

__all__ = ["DIR_MODE", "FILE_MODE", "create_private", "make_private_dir", "open_private"]

FILE_MODE = 0o600
DIR_MODE = 0o700
_FLAGS = {"w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC, "a": os.O_WRONLY | os.O_CREAT |
          os.O_APPEND, "x": os.O_WRONLY | os.O_CREAT | os.O_EXCL}


def open_private(path: str | Path, mode: str = "wb", **kwargs: Any) -> IO[Any]:
    """``open(path, mode)`` for writing (``w``, ``a`` or ``x``, binary or text), creating
    the file with mode 0600."""
    fd = os.open(path, _FLAGS[mode[0]] | getattr(os, "O_CLOEXEC", 0), FILE_MODE)
    try:
        return os.fdopen(fd, mode, **kwargs)
    except BaseException:
        os.close(fd)
        raise


def create_private(path: str | Path) -> None:
    """Create ``path`` empty with mode 0600 unless it exists (for files another library
    opens, such as SQLite's)."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE))


def make_private_dir(path: Path) -> None:
    """``mkdir -p`` whose new directories are 0700."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
