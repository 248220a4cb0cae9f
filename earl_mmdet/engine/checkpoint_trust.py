"""Which checkpoint files may be fully unpickled (pure Python, no mmengine).

torch >= 2.6 loads with ``weights_only=True`` by default, which refuses mmengine's own
resume checkpoints (they pickle ``HistoryBuffer`` and numpy objects). Turning that off for
every file would let a downloaded checkpoint run arbitrary code while it is unpickled. We
therefore trust a file only if *this user's* training run saved it: the run's
``TrustOwnCheckpointsHook`` is told the path of each checkpoint the runner saves and records
an HMAC-SHA256 of its bytes, keyed by a secret in the user's cache directory, in a manifest
beside the file. Anything else loads with ``weights_only=True``.

The key is a 32-byte random file, created atomically (written to a temporary file, then
hard-linked into place, so no process ever sees it empty) with mode ``0600`` in a folder
of mode ``0700``. A key file that is a symlink, not a regular file, owned by another user,
readable or writable by group or others, or shorter than 32 bytes (what a kill or a full
disk between create and write could leave) is never used as a key: verifying against it
trusts nothing, and signing raises :class:`CheckpointKeyError`, except that an empty or
short key file of this user's, with safe permissions, is replaced by a fresh key (nothing
was ever signed with it).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import os.path as osp
import secrets
import stat as stat_mod
import tempfile
from pathlib import Path

MANIFEST_NAME = '.earl_trusted_checkpoints.json'
KEY_ENV = 'EARL_MMDET_KEY_FILE'
KEY_BYTES = 32


class CheckpointKeyError(RuntimeError):
    """The signing key file exists but must not be used (and cannot be safely replaced)."""


def key_path() -> Path:
    """Where the signing key lives: ``$EARL_MMDET_KEY_FILE`` or
    ``$XDG_CACHE_HOME/earl_mmdet/checkpoint.key`` (``~/.cache`` without XDG)."""
    env = os.environ.get(KEY_ENV)
    if env:
        return Path(env)
    base = os.environ.get('XDG_CACHE_HOME') or osp.join(osp.expanduser('~'), '.cache')
    return Path(base) / 'earl_mmdet' / 'checkpoint.key'


def _key_problem(path: Path, st: os.stat_result) -> str | None:
    """Why the key file with status ``st`` (from ``lstat`` / ``fstat``) is unusable, or None."""
    if stat_mod.S_ISLNK(st.st_mode):
        return f'{path} is a symlink'
    if not stat_mod.S_ISREG(st.st_mode):
        return f'{path} is not a regular file'
    if hasattr(os, 'geteuid') and st.st_uid != os.geteuid():
        return f'{path} is owned by uid {st.st_uid}, not by you (uid {os.geteuid()})'
    if st.st_mode & 0o077:
        return (
            f'{path} is accessible by group or others (mode {oct(st.st_mode & 0o777)}); '
            'a key others can read or write lets them sign checkpoints'
        )
    if st.st_size < KEY_BYTES:
        return f'{path} is {"empty" if st.st_size == 0 else "short"} ({st.st_size} bytes)'
    return None


def _read_key(path: Path) -> tuple[bytes | None, str | None]:
    """The key and None, or None and why there is no usable key (missing counts)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, 'O_NOFOLLOW', 0))
    except FileNotFoundError:
        return None, f'{path} does not exist'
    except OSError as err:  # ELOOP: a symlink under O_NOFOLLOW
        try:
            problem = _key_problem(path, os.lstat(path))
        except OSError:
            problem = None
        return None, problem or f'{path} cannot be opened ({err.strerror})'
    with os.fdopen(fd, 'rb') as f:
        problem = _key_problem(path, os.fstat(f.fileno()))
        if problem:
            return None, problem
        return f.read(), None


def _safe_folder(folder: Path) -> None:
    """Create the key's folder (``0700``); refuse one others may write without a sticky bit."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    st = os.stat(folder)
    if st.st_mode & 0o022 and not st.st_mode & stat_mod.S_ISVTX:
        raise CheckpointKeyError(
            f'Refusing to keep the checkpoint signing key in {folder}: the folder is writable '
            f'by group or others (mode {oct(st.st_mode & 0o777)}), so the key could be '
            f'swapped. Use a private folder (chmod 700) or set {KEY_ENV}.'
        )


def _write_new_key(path: Path, replace: bool) -> None:
    """Write a fresh key atomically: temporary file, fsync, then link (new) or rename."""
    fd, tmp = tempfile.mkstemp(prefix='.checkpoint.key.', dir=path.parent)
    try:
        with os.fdopen(fd, 'wb') as f:
            f.write(secrets.token_bytes(KEY_BYTES))
            f.flush()
            os.fsync(f.fileno())
        if replace:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # fails if another process created the key first
            except FileExistsError:
                pass
    finally:
        if osp.lexists(tmp):
            os.unlink(tmp)


def load_or_create_key() -> bytes:
    """The signing key, created on first use (see the module doc for what is refused).

    Raises:
        CheckpointKeyError: The key file exists but is unusable for a reason a fresh key
            cannot fix (symlink, not a file, another owner, open permissions), or its folder
            is writable by others.
    """
    path = key_path()
    _safe_folder(path.parent)
    for _ in range(3):
        key, problem = _read_key(path)
        if key is not None:
            return key
        if not osp.lexists(path):
            _write_new_key(path, replace=False)
            continue
        st = os.lstat(path)
        repairable = (
            stat_mod.S_ISREG(st.st_mode)
            and (not hasattr(os, 'geteuid') or st.st_uid == os.geteuid())
            and not st.st_mode & 0o077
            and st.st_size < KEY_BYTES
        )
        if not repairable:
            raise CheckpointKeyError(
                f'Refusing to sign checkpoints with key file {problem}. Delete or fix it '
                f'(a fresh key is then made) or set {KEY_ENV} to another path.'
            )
        _write_new_key(path, replace=True)
    raise CheckpointKeyError(f'Could not create a usable checkpoint key at {path}')


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


def _tag(key: bytes, name: str, digest: str) -> str:
    return hmac.new(key, f'{name}\0{digest}'.encode(), 'sha256').hexdigest()


def _read_manifest(directory: Path) -> dict:
    path = directory / MANIFEST_NAME
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}


def mark_trusted(path: str | Path, digest: str | None = None) -> None:
    """Record ``path`` as saved by this user's own run (manifest beside the file).

    Only :class:`~earl_mmdet.engine.hooks.TrustOwnCheckpointsHook` calls this, with the
    path the runner has just saved. A symlink is never signed.

    Args:
        path (str | Path): The checkpoint file.
        digest (str, optional): Its SHA-256, if the caller has hashed it already.

    Raises:
        ValueError: ``path`` is a symlink or not a regular file.
        CheckpointKeyError: No usable key (see :func:`load_or_create_key`).

    Examples:
        >>> mark_trusted('work_dirs/exp/epoch_1.pth')  # doctest: +SKIP
    """
    path = Path(path)
    st = os.lstat(path)
    if not stat_mod.S_ISREG(st.st_mode):
        raise ValueError(f'Not signing {path}: it is a symlink or not a regular file')
    key = load_or_create_key()
    path = path.parent.resolve() / path.name
    digest = digest or file_sha256(path)
    manifest = _read_manifest(path.parent)
    manifest[path.name] = dict(
        sha256=digest, hmac=_tag(key, path.name, digest), size=st.st_size, mtime=st.st_mtime
    )
    fd, tmp = tempfile.mkstemp(prefix=f'{MANIFEST_NAME}.', suffix='.tmp', dir=path.parent)
    with os.fdopen(fd, 'w') as f:
        f.write(json.dumps(manifest, indent=1, sort_keys=True))
    os.replace(tmp, path.parent / MANIFEST_NAME)


def trust_status(path: str | Path, data: bytes | None = None) -> tuple[bool, str]:
    """Whether ``path`` (its bytes ``data``, if already read) may be fully unpickled.

    Args:
        path (str | Path): The checkpoint as given (a symlink is followed to its target,
            whose own manifest entry must vouch for these bytes).
        data (bytes, optional): The file's bytes. Pass the bytes you will unpickle, so that
            the file cannot change between the check and the load.

    Returns:
        tuple[bool, str]: Trusted, and why not (empty when trusted).
    """
    path = Path(path).resolve()
    entry = _read_manifest(path.parent).get(path.name)
    if not isinstance(entry, dict):
        return False, f'no entry in a {MANIFEST_NAME} beside it'
    key, problem = _read_key(key_path())
    if key is None:
        return False, f'no usable signing key: {problem}'
    if data is None:
        if not path.is_file():
            return False, 'not a file'
        digest = file_sha256(path)
    else:
        digest = hashlib.sha256(data).hexdigest()
    if not hmac.compare_digest(str(entry.get('sha256', '')), digest):
        return False, 'its contents changed since your run saved it'
    if not hmac.compare_digest(str(entry.get('hmac', '')), _tag(key, path.name, digest)):
        return False, 'its manifest entry was not signed with your key'
    return True, ''


def is_trusted(path: str | Path, data: bytes | None = None) -> bool:
    """True if ``path`` is listed in its directory's manifest with a valid HMAC and hash."""
    return trust_status(path, data)[0]
