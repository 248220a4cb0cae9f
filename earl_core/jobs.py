"""Running the tools' jobs: a child tool's environment, a training's progress from its log,
a progress counter, and the slot a heavy job holds on a shared machine (``--lock``).

Standard library only; every name is also importable from :mod:`earl_core.cli`, where the
tools take it from.
"""

from __future__ import annotations

import contextlib
import os
import os.path as osp
import re
import sys
from collections.abc import Iterable, Iterator

__all__ = ['child_env', 'heavy_job_slot', 'progress', 'train_log_status']


def child_env(root: str, **overrides: str) -> dict[str, str]:
    """This process's environment for a child tool run from the checkout ``root``:
    ``root`` first on ``PYTHONPATH`` (the checkout's package wins), ``overrides`` set."""
    env = {**os.environ, **overrides}
    env['PYTHONPATH'] = root + (os.pathsep + env['PYTHONPATH'] if env.get('PYTHONPATH') else '')
    return env


_ETA = re.compile(r'Epoch\(train\)\s*\[(\d+)\]\[\s*(\d+)/(\d+)\].*?eta: ([0-9:]+)')


def train_log_status(log: str) -> str | None:
    """'epoch 3 iter 50/94, eta 0:02:10' from the last mmengine line of a training log."""
    try:
        with open(log, 'rb') as f:
            f.seek(max(0, osp.getsize(log) - 20000))
            tail = f.read().decode('utf-8', 'replace')
    except OSError:
        return None
    found = _ETA.findall(tail)
    if not found:
        return None
    epoch, it, n, eta = found[-1]
    return f'epoch {epoch} iter {it}/{n}, run eta {eta}'


def progress(iterable: Iterable, total: int, desc: str) -> Iterator:
    """tqdm if installed, else a counter on stderr every ~10 %."""
    try:
        from tqdm import tqdm
    except ImportError:
        tqdm = None
    if tqdm is not None:
        yield from tqdm(iterable, total=total, desc=desc, file=sys.stderr, leave=False)
        return
    step = max(1, total // 10)
    for i, item in enumerate(iterable, 1):
        if i % step == 0 or i == total:
            sys.stderr.write(f'\r{desc}: {i}/{total}')
            sys.stderr.flush()
        yield item
    sys.stderr.write('\n')


@contextlib.contextmanager
def heavy_job_slot(lock: str | None) -> Iterator[None]:
    """Hold a slot of a study's heavy jobs on a shared machine (``--lock FILE``).

    Two lock files, ``FILE`` (the gate) and ``FILE.running``. A job first passes the gate
    (takes it exclusively and releases it at once: it waits while someone holds the gate),
    then holds ``FILE.running`` *shared* while it runs, so the study's ``--jobs`` trainings
    run together. Whoever needs the machine alone takes the gate, then ``FILE.running``
    exclusively: no new job starts, and the command starts once the running ones end::

        flock -x /tmp/heavy.lock flock -x /tmp/heavy.lock.running make test

    Waiting at the gate first means such a command is not starved by a study that always
    has a job running. ``None``: no locking.
    """
    if not lock:
        yield
        return
    import fcntl

    with open(lock, 'a') as gate:
        fcntl.flock(gate, fcntl.LOCK_EX)
        fcntl.flock(gate, fcntl.LOCK_UN)
    with open(lock + '.running', 'a') as running:
        fcntl.flock(running, fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(running, fcntl.LOCK_UN)
