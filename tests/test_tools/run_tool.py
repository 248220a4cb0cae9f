"""Run a tool the way a user does: ``python tools/NAME.py ARGS`` from the repository root."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_tool(name: str, *args: object, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python tools/<name>.py ARGS`` (each argument through ``str``), output captured."""
    return subprocess.run(
        [sys.executable, f'tools/{name}.py', *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def free_port() -> str:
    """A TCP port nobody listens on now, for a torchrun rendezvous (``PORT=``).

    Fixed ports made back-to-back distributed runs flaky: a run reusing the port of the one
    before can find it still taken.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(('127.0.0.1', 0))
        return str(sock.getsockname()[1])
