"""Run a tool the way a user does: ``python tools/NAME.py ARGS`` from the repository root."""

from __future__ import annotations

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
