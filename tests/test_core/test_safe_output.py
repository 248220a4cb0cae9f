"""earl_core.io.safe_output: atomic writes, outputs that are inputs, names too long,
folders claimed by a generator. A kill at a chosen point of a write leaves the previous
file intact."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from earl_core.io import safe_output as so

ROOT = Path(__file__).resolve().parents[2]
OLD = b'{"previous": "file"}\n'

# A child process writes 8 MiB through atomic_open over an existing file and SIGKILLs
# itself at POINT. 'mid-write': half the data written and flushed; 'fsync': everything
# written, at the fsync; 'replace': everything written and synced, at the rename.
KILL_SCRIPT = """
import importlib.util, os, signal, sys
path, point, module = sys.argv[1:]
spec = importlib.util.spec_from_file_location('safe_output', module)  # not via mmdet
safe_output = importlib.util.module_from_spec(spec)
spec.loader.exec_module(safe_output)
die = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
if point in ('fsync', 'replace'):
    setattr(safe_output.os, point, die)
with safe_output.atomic_open(path, 'wb') as f:
    f.write(b'x' * (4 << 20))
    if point == 'mid-write':
        f.flush()
        die()
    f.write(b'y' * (4 << 20))
"""


@pytest.mark.parametrize(
    'point',
    [
        'mid-write',  # killed with half of the new data in the temporary file
        'fsync',  # killed with all of it written, before it is on disk
        'replace',  # killed just before the rename
    ],
)
def test_kill_during_write_leaves_previous_file(tmp_path, point):
    target = tmp_path / 'out.json'
    target.write_bytes(OLD)
    module = ROOT / 'earl_core' / 'io' / 'safe_output.py'
    proc = subprocess.run(
        [sys.executable, '-c', KILL_SCRIPT, str(target), point, str(module)], capture_output=True
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    assert target.read_bytes() == OLD  # byte-identical
    others = [p.name for p in tmp_path.iterdir() if p != target]
    assert all(n.startswith('.out.json.') and n.endswith('.tmp') for n in others), others


def test_complete_write_replaces_and_keeps_mode(tmp_path):
    target = tmp_path / 'out.json'
    target.write_bytes(OLD)
    target.chmod(0o640)
    so.atomic_write(target, '{"new": 1}')
    assert target.read_text() == '{"new": 1}'
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ['out.json']  # no temporary left


def test_new_file_gets_umask_mode(tmp_path):
    mask = os.umask(0o027)
    try:
        so.atomic_write(tmp_path / 'sub' / 'new.txt', 'x')  # folder created
    finally:
        os.umask(mask)
    assert stat.S_IMODE((tmp_path / 'sub' / 'new.txt').stat().st_mode) == 0o640


def test_exception_inside_leaves_target_and_no_temporary(tmp_path):
    target = tmp_path / 'out.json'
    target.write_bytes(OLD)
    with pytest.raises(RuntimeError), so.atomic_open(target) as f:
        f.write('half')
        raise RuntimeError('disk full')
    assert target.read_bytes() == OLD
    assert [p.name for p in tmp_path.iterdir()] == ['out.json']


def test_symlink_output_keeps_the_link(tmp_path):
    real = tmp_path / 'real.json'
    real.write_bytes(OLD)
    link = tmp_path / 'link.json'
    link.symlink_to(real)
    so.atomic_write(link, 'new')
    assert link.is_symlink() and real.read_text() == 'new'


def _links(tmp_path):
    src = tmp_path / 'in.json'
    src.write_bytes(OLD)
    (tmp_path / 'sym.json').symlink_to(src)
    os.link(src, tmp_path / 'hard.json')
    (tmp_path / 'sub').mkdir()
    return src


@pytest.mark.parametrize(
    'out',
    [
        'in.json',  # the input itself
        'sym.json',  # a symbolic link to it
        'hard.json',  # a hard link to it
        'sub/../in.json',  # another spelling of its path
    ],
)
def test_output_that_is_an_input_is_refused(tmp_path, out):
    src = _links(tmp_path)
    with pytest.raises(ValueError, match='is the input .*in.json'):
        so.atomic_write(tmp_path / out, 'x', inputs=[None, str(src)])
    assert src.read_bytes() == OLD


@pytest.mark.parametrize(
    'path, suffixes, msg',
    [
        # a file name
        ('x' * 300 + '.json', None, 'x' * 40 + '...: a name of 305 bytes; this file system allows'),
        # a folder on the way
        ('x' * 300 + '/a.json', None, 'x' * 40 + '.../a.json: a name of 300 bytes'),
        # bytes, not characters
        ('ü' * 200, None, 'a name of 400 bytes'),
        ('report.txt', ('.json', '.md'), "unknown suffix '.txt'"),  # format by suffix
        ('report', ('.json',), "unknown suffix '(none)'"),  # no suffix at all
    ],
    ids=['long-file', 'long-folder', 'long-in-bytes', 'suffix', 'no-suffix'],
)
def test_check_output_refuses(tmp_path, path, suffixes, msg):
    with pytest.raises(ValueError, match=re.escape(msg)):
        so.check_output(tmp_path / path, suffixes=suffixes)


def test_check_output_accepts_a_long_but_legal_name(tmp_path):
    path = tmp_path / ('x' * 250 + '.json')  # 255 bytes: the temporary name is shortened
    so.check_output(path, suffixes=('.json',))
    so.atomic_write(path, '{}')
    assert path.read_text() == '{}'


# --------------------------------------------------------------------------- folders
TOOL = 'tools/gen.py'


def _generate(out: Path, names=('a.json', 'img/1.png'), overwrite=False):
    so.claim_folder(str(out), TOOL, names, overwrite)
    for name in names:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(f'made {name}')
    so.seal_folder(str(out), TOOL, names)


def test_generator_writes_empty_then_overwrites_only_its_files(tmp_path):
    out = tmp_path / 'ds'
    _generate(out)
    manifest = json.loads((out / so.MANIFEST).read_text())
    assert manifest['tool'] == TOOL and manifest['complete'] is True
    assert sorted(manifest['files']) == ['a.json', 'img/1.png']
    with pytest.raises(ValueError, match='pass --overwrite'):
        _generate(out)
    _generate(out, names=('b.json',), overwrite=True)  # the old files go, the folder img/ too
    assert sorted(p.name for p in out.iterdir()) == [so.MANIFEST, 'b.json']


@pytest.mark.parametrize(
    'setup, msg',
    [
        # a folder of the user's data (no manifest): never written into
        (lambda out: (out / 'train.csv').write_text('real'), 'not empty and tools/gen.py did not'),
        # an earlier output plus a file of the user's among it
        (lambda out: (out / 'img' / 'mine.png').write_text('real'), 'did not write'),
        # an earlier output whose file the user changed
        (lambda out: (out / 'a.json').write_text('edited'), 'changed since'),
        # another generator's folder
        (
            lambda out: (out / so.MANIFEST).write_text(json.dumps(dict(tool='x', files={}))),
            "written by 'x'",
        ),
        # a forged manifest pointing outside the folder
        (
            lambda out: (out / so.MANIFEST).write_text(
                json.dumps(dict(tool=TOOL, files={'../victim': None}))
            ),
            'not a manifest of this project',
        ),
    ],
    ids=['foreign-folder', 'foreign-file', 'changed-file', 'other-tool', 'forged-manifest'],
)
def test_overwrite_refuses_and_deletes_nothing(tmp_path, setup, msg):
    out = tmp_path / 'ds'
    out.mkdir()
    (tmp_path / 'victim').write_text('keep')
    if msg != 'not empty and tools/gen.py did not':
        _generate(out)
    setup(out)
    before = {p: p.read_bytes() for p in out.rglob('*') if p.is_file()}
    with pytest.raises(ValueError, match=msg):
        _generate(out, overwrite=True)
    assert {p: p.read_bytes() for p in out.rglob('*') if p.is_file()} == before
    assert (tmp_path / 'victim').read_text() == 'keep'


def test_killed_run_can_be_overwritten(tmp_path):
    """A run killed after its claim (manifest incomplete) left some of the planned files."""
    out = tmp_path / 'ds'
    so.claim_folder(str(out), TOOL, ['a.json', 'img/1.png'])
    (out / 'a.json').write_text('half')
    (out / '.a.json.k1ll3d.tmp').write_text('half of a rewrite')  # left by atomic_open
    with pytest.raises(ValueError, match='pass --overwrite'):
        _generate(out)
    _generate(out, overwrite=True)
    assert (out / 'a.json').read_text() == 'made a.json'
    assert sorted(p.name for p in out.iterdir()) == [so.MANIFEST, 'a.json', 'img']
