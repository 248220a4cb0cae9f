"""Which checkpoint files may be fully unpickled (pure Python, no mmengine).

torch >= 2.6 loads with ``weights_only=True`` by default, which refuses mmengine's own
resume checkpoints (they pickle ``HistoryBuffer`` and numpy objects). Turning that off for
every file would let a downloaded checkpoint run arbitrary code while it is unpickled. We
therefore trust a file only if *this user's* training run wrote it: the run records an
HMAC-SHA256 of each checkpoint it saved, keyed by a secret that lives in the user's cache
directory, in a manifest beside the file. Anything else loads with ``weights_only=True``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import os.path as osp
import secrets
from pathlib import Path

MANIFEST_NAME = '.earl_trusted_checkpoints.json'
KEY_ENV = 'EARL_MMDET_KEY_FILE'


def _key_path() -> Path:
    env = os.environ.get(KEY_ENV)
    if env:
        return Path(env)
    base = os.environ.get('XDG_CACHE_HOME') or osp.join(osp.expanduser('~'), '.cache')
    return Path(base) / 'earl_mmdet' / 'checkpoint.key'


def _load_or_create_key() -> bytes:
    path = _key_path()
    if path.is_file():
        return path.read_bytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    # O_EXCL: two processes racing to create the key must not overwrite each other.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_bytes()
    with os.fdopen(fd, 'wb') as f:
        f.write(key)
    return key


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 hex digest of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()


def _tag(name: str, digest: str) -> str:
    return hmac.new(_load_or_create_key(), f'{name}\0{digest}'.encode(), 'sha256').hexdigest()


def _read_manifest(directory: Path) -> dict:
    path = directory / MANIFEST_NAME
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def mark_trusted(path: str | Path) -> None:
    """Record ``path`` as written by this user's own run (manifest beside the file).

    Examples:
        >>> mark_trusted('work_dirs/exp/epoch_1.pth')  # doctest: +SKIP
    """
    path = Path(path).resolve()
    manifest = _read_manifest(path.parent)
    digest = file_sha256(path)
    stat = path.stat()
    manifest[path.name] = dict(
        sha256=digest, hmac=_tag(path.name, digest), size=stat.st_size, mtime=stat.st_mtime
    )
    tmp = path.parent / f'{MANIFEST_NAME}.{os.getpid()}.tmp'
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
    os.replace(tmp, path.parent / MANIFEST_NAME)


def is_trusted(path: str | Path) -> bool:
    """True if ``path`` is listed in its directory's manifest with a valid HMAC and hash."""
    path = Path(path).resolve()
    entry = _read_manifest(path.parent).get(path.name)
    if not isinstance(entry, dict) or not path.is_file():
        return False
    if not _key_path().is_file():
        return False
    digest = file_sha256(path)
    if not hmac.compare_digest(str(entry.get('sha256', '')), digest):
        return False
    return hmac.compare_digest(str(entry.get('hmac', '')), _tag(path.name, digest))
