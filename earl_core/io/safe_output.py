"""Output files that never destroy an input (standard library only).

Every file the project's tools write goes through :func:`atomic_open` /
:func:`atomic_write`: the data go to a temporary file in the target's folder, are flushed
to disk (``fsync``) and then renamed over the target (``os.replace``, atomic on POSIX). A
kill, a full disk or an exception at any point leaves either the previous file or the new
one, never a truncated mix. Before that, :func:`check_output` refuses an output that is
one of the inputs (the same file under another name, through a symbolic or hard link
included), a name longer than the file system allows and, where a tool picks the format
by suffix, an unknown suffix.

Generators that fill a folder (``tools/make_medmnist.py``, ``tools/make_vindr_sample.py``)
mark it with a manifest of the files they wrote (:func:`claim_folder`,
:func:`seal_folder`): they work only in an empty folder or one that holds exactly their own
earlier output, and ``--overwrite`` deletes only the files the manifest lists.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import os.path as osp
import secrets
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from typing import IO, Any

#: The manifest a generator leaves in the folder it fills (see :func:`claim_folder`).
MANIFEST = '.earl_manifest.json'

_NAME_MAX = 255  # POSIX file systems, when pathconf cannot tell
_PATH_MAX = 4096


def _existing_ancestor(path: str) -> str:
    folder = osp.abspath(path)
    while not osp.isdir(folder):
        parent = osp.dirname(folder)
        if parent == folder:
            break
        folder = parent
    return folder


def _pathconf(folder: str, name: str, default: int) -> int:
    try:
        value = os.pathconf(folder, name)
    except (OSError, ValueError, AttributeError):  # not POSIX, or no limit known
        return default
    return value if value and value > 0 else default


def check_name(path: str | os.PathLike, what: str = 'output') -> None:
    """Raise ``ValueError`` if a part of ``path`` is longer than the file system allows.

    Each name (folder or file) is compared in bytes with ``NAME_MAX`` of the nearest
    existing folder (255 on ext4, xfs, tmpfs), the whole path with ``PATH_MAX``.

    Raises:
        ValueError: ``"<what> <path, the long name cut to 40 characters + '...'>: a name
            of N bytes; this file system allows M"``.
    """
    path = os.fspath(path)
    folder = _existing_ancestor(path)
    name_max = _pathconf(folder, 'PC_NAME_MAX', _NAME_MAX)
    parts = path.split(os.sep)
    for k, part in enumerate(parts):
        size = len(os.fsencode(part))
        if size > name_max:
            shown = os.sep.join([*parts[:k], part[:40] + '...', *parts[k + 1 :]])
            raise ValueError(
                f'{what} {shown}: a name of {size} bytes; this file system allows {name_max}'
            )
    size = len(os.fsencode(osp.abspath(path)))
    path_max = _pathconf(folder, 'PC_PATH_MAX', _PATH_MAX)
    if size >= path_max:
        raise ValueError(
            f'{what} {path[:60]}...: a path of {size} bytes; this file system allows {path_max - 1}'
        )


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when ``a`` and ``b`` name one file: same inode (hard or symbolic links), or the
    same resolved path when one of them does not exist yet."""
    try:
        return osp.samefile(a, b)
    except OSError:  # one does not exist (yet)
        return osp.realpath(a) == osp.realpath(b)


def check_output(
    path: str | os.PathLike,
    inputs: Iterable[str | os.PathLike | None] = (),
    suffixes: Sequence[str] | None = None,
    what: str = 'output',
) -> None:
    """Refuse an output path that would destroy an input or that cannot be written.

    Args:
        path (str | PathLike): the file to write.
        inputs (Iterable[str | PathLike | None]): files the run reads; None is skipped.
        suffixes (Sequence[str] | None): the suffixes (``'.json'``) the writer picks a
            format by; None = any suffix. Defaults to None.
        what (str): how the messages name the output (a flag, ``'output'``).

    Raises:
        ValueError: ``path`` is one of ``inputs`` (through any link), its suffix is not
            in ``suffixes``, or a name in it is too long (:func:`check_name`).
    """
    path = os.fspath(path)
    check_name(path, what)
    if suffixes is not None:
        suffix = osp.splitext(path)[1].lower()
        if suffix not in suffixes:
            raise ValueError(
                f'{what} {path}: unknown suffix {suffix or "(none)"!r}; the format is picked '
                f'by the suffix: one of {", ".join(suffixes)}'
            )
    for source in inputs:
        if source is not None and same_file(path, source):
            raise ValueError(
                f'{what} {path} is the input {os.fspath(source)} (the same file); writing it '
                'would destroy the input: choose another output name'
            )


def _umask() -> int:
    try:  # Linux >= 4.7 reports it without changing it
        with open('/proc/self/status', encoding='ascii') as f:
            for line in f:
                if line.startswith('Umask:'):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_open(
    path: str | os.PathLike,
    mode: str = 'w',
    *,
    inputs: Iterable[str | os.PathLike | None] = (),
    encoding: str | None = 'utf-8',
    newline: str | None = None,
) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``path``; on a clean exit, replace ``path`` by it.

    The temporary file (``.<name>.<random>.tmp`` in the target's folder, so the rename
    never crosses file systems) is flushed and ``fsync``-ed, given the mode the target had
    (a new file: ``0o666`` minus the umask, as ``open`` would) and renamed over the target.
    An exception inside the ``with`` block removes it and leaves the target untouched; a
    kill leaves the target untouched and a stray ``.tmp`` file. A symbolic link at ``path``
    is kept: the file it points to is replaced. Missing folders are created.

    Args:
        path (str | PathLike): the file to write.
        mode (str): ``'w'`` (text) or ``'wb'`` (bytes). Defaults to ``'w'``.
        inputs (Iterable[str | PathLike | None]): files the run reads
            (:func:`check_output` refuses ``path`` if it is one of them).
        encoding (str | None): text encoding. Defaults to ``'utf-8'``.
        newline (str | None): as for ``open``. Defaults to None.

    Raises:
        ValueError: see :func:`check_output`.

    Examples:
        >>> import os, tempfile
        >>> path = os.path.join(tempfile.mkdtemp(), 'out.json')
        >>> with atomic_open(path) as f:
        ...     _ = f.write('{}')
        >>> open(path).read()
        '{}'
    """
    if mode not in ('w', 'wb'):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    path = os.fspath(path)
    check_output(path, inputs)
    target = osp.realpath(path)
    folder = osp.dirname(target)
    os.makedirs(folder, exist_ok=True)
    # The name is cut so that the temporary name stays within NAME_MAX too.
    fd, tmp = tempfile.mkstemp(prefix=f'.{osp.basename(target)[:100]}.', suffix='.tmp', dir=folder)
    try:
        if mode == 'wb':
            f = os.fdopen(fd, 'wb')
        else:
            f = os.fdopen(fd, 'w', encoding=encoding, newline=newline)
        with f:
            yield f
        commit(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def temporary_path(path: str | os.PathLike) -> str:
    """A free name beside ``path`` (``.<name>.<random>.tmp<suffix>``, suffix kept) for a
    writer that only takes a path (mmdet's ``DumpDetResults``); :func:`commit` renames it
    over ``path`` once it is complete. The file is not created (in a distributed run every
    process asks for a name, one writes)."""
    target = osp.realpath(os.fspath(path))
    os.makedirs(osp.dirname(target), exist_ok=True)
    name = f'.{osp.basename(target)[:100]}.{secrets.token_hex(6)}.tmp{osp.splitext(target)[1]}'
    return osp.join(osp.dirname(target), name)


def commit(tmp: str, path: str | os.PathLike) -> None:
    """Flush ``tmp`` (from :func:`temporary_path`) to disk and rename it over ``path``,
    with the mode ``path`` had (a new file: ``0o666`` minus the umask)."""
    target = osp.realpath(os.fspath(path))
    try:
        perms = os.stat(target).st_mode & 0o7777
    except FileNotFoundError:
        perms = 0o666 & ~_umask()  # what open() would give a new file
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, perms)
    os.replace(tmp, target)
    _fsync_folder(osp.dirname(target))


def _fsync_folder(folder: str) -> None:
    """Make the rename itself durable (best effort: not every system opens folders)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(
    path: str | os.PathLike,
    data: str | bytes,
    *,
    inputs: Iterable[str | os.PathLike | None] = (),
    encoding: str = 'utf-8',
    newline: str | None = None,
) -> None:
    """Write ``data`` (text or bytes) to ``path`` through :func:`atomic_open`."""
    mode = 'wb' if isinstance(data, (bytes, bytearray)) else 'w'
    with atomic_open(path, mode, inputs=inputs, encoding=encoding, newline=newline) as f:
        f.write(data)


def write_json(
    path: str | os.PathLike,
    obj: Any,
    *,
    inputs: Iterable[str | os.PathLike | None] = (),
    **dumps_kwargs: Any,
) -> None:
    """``json.dumps(obj, **dumps_kwargs)`` written to ``path`` through :func:`atomic_open`
    (the bytes ``json.dump`` would write)."""
    if dumps_kwargs.get('indent') is None:
        # No indent: json.dumps runs the C encoder in one go, far faster than streaming.
        atomic_write(path, json.dumps(obj, **dumps_kwargs), inputs=inputs)
        return
    # With an indent both run the Python encoder; streaming never holds the whole text (a
    # crowd's rater report: 100 MB of text, about 1 GB of pieces before they are joined).
    with atomic_open(path, 'w', inputs=inputs) as f:
        json.dump(obj, f, **dumps_kwargs)


# --------------------------------------------------------------------------- folders
def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(1 << 20), b''):
            h.update(block)
    return h.hexdigest()


def _read_manifest(out: str) -> dict | None:
    path = osp.join(out, MANIFEST)
    if not osp.isfile(path):
        return None
    try:
        with open(path, encoding='utf-8') as f:
            manifest = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f'{path}: unreadable manifest ({e}); delete the folder yourself') from e
    files = manifest.get('files') if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or not all(
        isinstance(k, str) and not osp.isabs(k) and '..' not in k.split('/') for k in files
    ):
        raise ValueError(f'{path}: not a manifest of this project; delete the folder yourself')
    return manifest


def _present(out: str) -> list[str]:
    """Files (and links) under ``out``, relative, '/'-separated, the manifest left out."""
    found = []
    for root, dirs, files in os.walk(out):
        rel = osp.relpath(root, out)
        for name in files + [d for d in dirs if osp.islink(osp.join(root, d))]:
            found.append(name if rel == '.' else f'{rel}/{name}'.replace(os.sep, '/'))
    return sorted(f for f in found if f != MANIFEST)


def _is_temporary_of(path: str, names: Iterable[str]) -> bool:
    """Whether ``path`` is a temporary file :func:`atomic_open` made for one of ``names``
    (relative '/'-separated paths) and a kill left behind."""
    folder, _, base = path.rpartition('/')
    if not (base.startswith('.') and base.endswith('.tmp')):
        return False
    return any(
        name.rpartition('/')[0] == folder and base.startswith(f'.{name.rpartition("/")[2][:100]}.')
        for name in names
    )


def claim_folder(out: str, tool: str, planned: Iterable[str], overwrite: bool = False) -> None:
    """Make ``out`` ready for generator ``tool``, or raise ``ValueError`` saying why not.

    ``out`` may be missing or empty; it may hold an earlier output of ``tool`` (its
    manifest lists every file there) only with ``overwrite``, and then exactly those files
    are deleted, and only if none changed since ``tool`` wrote it. Any other file in the
    folder (a user's data, another tool's output) refuses it: nothing is deleted then.
    Writes the manifest of ``planned`` (relative '/'-separated paths) before the first
    file, so a killed run can be overwritten later; :func:`seal_folder` completes it.

    Raises:
        ValueError: ``out`` is not empty and ``tool`` did not make it; it holds an earlier
            run and ``overwrite`` is False; files in it are not ``tool``'s or changed.
    """
    os.makedirs(out, exist_ok=True)
    manifest = _read_manifest(out)
    listed = {} if manifest is None else manifest['files']
    present, strays = [], []  # strays: temporary files a kill left of the tool's writes
    for p in _present(out):
        (strays if _is_temporary_of(p, [MANIFEST, *listed]) else present).append(p)
    if manifest is None and present:
        raise ValueError(
            f'output folder {out} is not empty and {tool} did not write it (no {MANIFEST}; '
            f'holds {present[:3]}...): it never writes into or deletes from a folder of '
            'other files; choose an empty or new folder'
        )
    if manifest is not None:
        if manifest.get('tool') != tool:
            raise ValueError(
                f'output folder {out} was written by {manifest.get("tool")!r}, not by {tool}; '
                'choose an empty or new folder'
            )
        if not overwrite:
            raise ValueError(
                f'output folder {out} is not empty: it holds an earlier output of {tool}; '
                'pass --overwrite to replace it, or choose another folder'
            )
        foreign = [p for p in present if p not in listed]
        if foreign:
            raise ValueError(
                f'output folder {out} holds files {tool} did not write ({foreign[:5]}); '
                'refusing to overwrite: move them away or choose another folder'
            )
        changed = [
            p
            for p, digest in listed.items()
            if digest is not None and p in present and _sha256(osp.join(out, p)) != digest
        ]
        if changed:
            raise ValueError(
                f'output folder {out}: {changed[:5]} changed since {tool} wrote them; '
                'refusing to overwrite: move them away or choose another folder'
            )
        for p in present + strays:
            os.remove(osp.join(out, p))
        # Folders the tool made and that are empty now (deepest first).
        folders = {osp.dirname(p) for p in listed} - {''}
        for d in sorted(folders, key=lambda d: -d.count('/')):
            parts = d.split('/')
            for k in range(len(parts), 0, -1):
                with contextlib.suppress(OSError):  # not empty or gone: leave it
                    os.rmdir(osp.join(out, *parts[:k]))
    _write_manifest(out, tool, dict.fromkeys(planned), complete=False)


def seal_folder(out: str, tool: str, files: Iterable[str]) -> None:
    """Record ``files`` (relative '/'-separated paths under ``out``) with their SHA-256 in
    the manifest: the run is complete, and a later ``--overwrite`` can tell whether a file
    changed since."""
    digests = {p: _sha256(osp.join(out, p)) for p in sorted(files)}
    _write_manifest(out, tool, digests, complete=True)


def _write_manifest(out: str, tool: str, files: dict, complete: bool) -> None:
    manifest = dict(tool=tool, complete=complete, files=dict(sorted(files.items())))
    atomic_write(osp.join(out, MANIFEST), json.dumps(manifest, indent=1) + '\n')
