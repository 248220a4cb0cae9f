"""Hostile checkpoints in a work dir (issue: trust of "own" checkpoints), one case per row.

Each case plants a checkpoint whose unpickling writes a marker file (arbitrary code), runs
the hook the way a training run does, and asserts the planted file is not trusted and does
not run. The module's last test does the same end to end through ``tools/train.py`` and
``tools/test.py``.
"""

from __future__ import annotations

import hmac
import json
import os
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
import torch
from mmengine.fileio import join_path

from earl_mmdet.engine import checkpoint_trust
from earl_mmdet.engine.checkpoint import allow_unsafe_checkpoint_load, load_from_local
from earl_mmdet.engine.checkpoint_trust import CheckpointKeyError
from earl_mmdet.engine.hooks import TrustOwnCheckpointsHook

ROOT = Path(__file__).resolve().parents[2]


class _Exec:
    """Unpickling this runs ``code`` (stands for any code a foreign pickle may carry)."""

    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self):
        return (exec, (self.code,))


def plant_evil(path: Path, marker: Path) -> Path:
    """A checkpoint at ``path`` whose full unpickling writes ``marker``."""
    code = f'open({str(marker)!r}, "w").write("pwned")'
    torch.save({'state_dict': {'w': torch.ones(2)}, 'meta': _Exec(code)}, path)
    return path


def forge_entry(path: Path, key: bytes) -> None:
    """Write a manifest entry for ``path`` signed with ``key`` (an attacker's guess)."""
    digest = checkpoint_trust.file_sha256(path)
    tag = hmac.new(key, f'{path.name}\0{digest}'.encode(), 'sha256').hexdigest()
    manifest = path.parent / checkpoint_trust.MANIFEST_NAME
    entries = json.loads(manifest.read_text()) if manifest.exists() else {}
    entries[path.name] = dict(sha256=digest, hmac=tag)
    manifest.write_text(json.dumps(entries))


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    monkeypatch.setenv(checkpoint_trust.KEY_ENV, str(tmp_path / 'keys' / 'checkpoint.key'))
    monkeypatch.delenv('EARL_MMDET_ALLOW_UNSAFE_LOAD', raising=False)
    allow_unsafe_checkpoint_load(False)


def _runner(work: Path):
    """The part of mmengine's Runner the hook uses; saves as Runner.save_checkpoint does."""

    def save_checkpoint(out_dir, filename, **kwargs):
        torch.save({'state_dict': {'w': torch.zeros(2)}}, join_path(out_dir, filename))

    return types.SimpleNamespace(
        work_dir=str(work), hooks=[], rank=0, save_checkpoint=save_checkpoint
    )


def _run_with_hook(work: Path, during=None) -> TrustOwnCheckpointsHook:
    """before_run, every training callback, ``during()``, one save, after_run."""
    runner = _runner(work)
    hook = TrustOwnCheckpointsHook()
    hook.before_run(runner)
    if during:
        during()
    hook.after_train_iter(runner, 0)
    hook.after_train_epoch(runner)
    runner.save_checkpoint(str(work), 'epoch_1.pth')
    hook.after_train_iter(runner, 1)
    hook.after_train_epoch(runner)
    hook.after_train(runner)
    hook.after_run(runner)
    return hook


def _refused(path: Path, marker: Path) -> None:
    assert not checkpoint_trust.is_trusted(path)
    with pytest.raises(RuntimeError, match='Refusing'):
        load_from_local(str(path))
    assert not marker.exists()


def _copied_in_during_run(tmp_path, work, marker):
    # A file copied into the work dir while the run trains (mtime after the run's start).
    evil = plant_evil(tmp_path / 'outside.pth', marker)
    target = work / 'copied.pth'
    _run_with_hook(work, during=lambda: target.write_bytes(evil.read_bytes()))
    return target


def _future_mtime(tmp_path, work, marker):
    # Unpacked before the run with a modification time in the future.
    target = plant_evil(work / 'future.pth', marker)
    later = time.time() + 86400
    os.utime(target, (later, later))
    _run_with_hook(work)
    return target


def _symlink_in_work_dir(tmp_path, work, marker):
    # A symlink in the work dir to a foreign file touched during the run.
    evil = plant_evil(tmp_path / 'outside.pth', marker)
    link = work / 'link.pth'
    link.symlink_to(evil)
    _run_with_hook(work, during=lambda: os.utime(evil))
    return link


def _key_file(content: bytes, mode: int) -> Path:
    """Write the signing key file as a careless or hostile situation left it."""
    key = checkpoint_trust.key_path()
    key.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    key.write_bytes(content)
    key.chmod(mode)
    return key


def _forged_with(key: bytes, work: Path, marker: Path) -> Path:
    target = plant_evil(work / 'forged.pth', marker)
    forge_entry(target, key)
    return target


def _empty_key_forged(tmp_path, work, marker):
    # checkpoint.key left empty (kill or full disk between create and write), and a
    # manifest forged with the empty key.
    _key_file(b'', 0o600)
    return _forged_with(b'', work, marker)


def _short_key_forged(tmp_path, work, marker):
    # A truncated 4-byte key is guessable: never a key.
    _key_file(b'\0' * 4, 0o600)
    return _forged_with(b'\0' * 4, work, marker)


def _world_writable_key(tmp_path, work, marker):
    # A key anyone may overwrite: the attacker wrote a key of their own into it.
    _key_file(b'k' * 32, 0o666)
    return _forged_with(b'k' * 32, work, marker)


def _foreign_owned_key(tmp_path, work, marker):
    # A key file owned by somebody else (who therefore knows it).
    if os.geteuid() != 0:
        pytest.skip('chown to another user needs root')
    os.chown(_key_file(b'f' * 32, 0o600), 4321, 4321)
    return _forged_with(b'f' * 32, work, marker)


def _symlinked_key(tmp_path, work, marker):
    # The key path is a symlink to a file the attacker wrote.
    theirs = tmp_path / 'their.key'
    theirs.write_bytes(b's' * 32)
    theirs.chmod(0o600)
    key = checkpoint_trust.key_path()
    key.parent.mkdir(mode=0o700, parents=True)
    key.symlink_to(theirs)
    return _forged_with(b's' * 32, work, marker)


ATTACKS = [
    pytest.param(_copied_in_during_run, id='copied-in-during-run'),
    pytest.param(_future_mtime, id='future-mtime'),
    pytest.param(_symlink_in_work_dir, id='symlink-in-work-dir'),
    pytest.param(_empty_key_forged, id='empty-key-forged-manifest'),
    pytest.param(_short_key_forged, id='short-key-forged-manifest'),
    pytest.param(_world_writable_key, id='world-writable-key'),
    pytest.param(_foreign_owned_key, id='foreign-owned-key'),
    pytest.param(_symlinked_key, id='symlinked-key'),
]


@pytest.mark.parametrize('attack', ATTACKS)
def test_planted_checkpoint_is_not_trusted(attack, tmp_path):
    work = tmp_path / 'work'
    work.mkdir()
    marker = tmp_path / 'marker.txt'
    target = attack(tmp_path, work, marker)
    _refused(target, marker)


def test_the_saved_checkpoint_is_signed(tmp_path):
    """The one file the runner saved is trusted, nothing else in the folder is."""
    work = tmp_path / 'work'
    work.mkdir()
    (work / 'other.pth').write_bytes(b'x')
    hook = _run_with_hook(work, during=lambda: os.utime(work / 'other.pth'))
    assert hook.signed == [str(work / 'epoch_1.pth')]
    manifest = json.loads((work / checkpoint_trust.MANIFEST_NAME).read_text())
    assert set(manifest) == {'epoch_1.pth'}
    assert load_from_local(str(work / 'epoch_1.pth'))['state_dict']['w'].shape == (2,)


def test_symlink_at_the_save_path_is_not_signed(tmp_path):
    """A symlink planted where the run saves is written through; its target is not signed."""
    work = tmp_path / 'work'
    work.mkdir()
    outside = tmp_path / 'outside.pth'
    outside.write_bytes(b'')
    (work / 'epoch_1.pth').symlink_to(outside)
    hook = _run_with_hook(work)
    assert hook.signed == []
    assert not (tmp_path / checkpoint_trust.MANIFEST_NAME).exists()
    assert not (work / checkpoint_trust.MANIFEST_NAME).exists()


@pytest.mark.parametrize(
    'mode, content',
    [
        pytest.param(0o666, b'k' * 32, id='world-writable'),  # never repaired silently
        pytest.param(0o640, b'k' * 32, id='group-readable'),
    ],
)
def test_signing_with_an_unsafe_key_is_an_error(tmp_path, mode, content):
    _key_file(content, mode)
    path = tmp_path / 'own.pth'
    torch.save({'w': torch.ones(1)}, path)
    with pytest.raises(CheckpointKeyError, match='group or others'):
        checkpoint_trust.mark_trusted(path)


@pytest.mark.parametrize('content', [b'', b'abc'], ids=['empty', 'short'])
def test_empty_or_short_own_key_is_replaced_by_a_fresh_key(tmp_path, content):
    key = _key_file(content, 0o600)
    fresh = checkpoint_trust.load_or_create_key()
    assert len(fresh) == checkpoint_trust.KEY_BYTES and key.read_bytes() == fresh


def test_key_folder_writable_by_others_is_refused(tmp_path, monkeypatch):
    shared = tmp_path / 'shared'
    shared.mkdir()
    shared.chmod(0o777)  # no sticky bit: anyone could swap the key
    monkeypatch.setenv(checkpoint_trust.KEY_ENV, str(shared / 'checkpoint.key'))
    with pytest.raises(CheckpointKeyError, match='writable'):
        checkpoint_trust.load_or_create_key()


def test_kill_during_key_creation_leaves_no_key(tmp_path, monkeypatch):
    """A process dying before the key's bytes are written leaves no (empty) key behind."""
    code = (
        'import os, secrets, signal\n'
        'from earl_mmdet.engine import checkpoint_trust\n'
        'secrets.token_bytes = lambda n: os.kill(os.getpid(), signal.SIGKILL)\n'
        'checkpoint_trust.load_or_create_key()\n'
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, '-c', code], env=env, timeout=60)
    assert proc.returncode == -9
    key = checkpoint_trust.key_path()
    assert not key.exists()
    assert len(checkpoint_trust.load_or_create_key()) == checkpoint_trust.KEY_BYTES


def test_concurrent_key_creation_agrees(tmp_path):
    """Four processes creating the key at once all sign with the same key."""
    code = (
        'from earl_mmdet.engine import checkpoint_trust\n'
        'print(checkpoint_trust.load_or_create_key().hex())\n'
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = [
        subprocess.Popen([sys.executable, '-c', code], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    keys = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert len(keys) == 1 and bytes.fromhex(keys.pop()) == checkpoint_trust.key_path().read_bytes()
    assert oct(checkpoint_trust.key_path().stat().st_mode & 0o777) == '0o600'


def test_file_swapped_after_the_check_is_not_loaded(tmp_path, monkeypatch):
    """The bytes checked are the bytes unpickled: a swap after reading changes nothing."""
    work = tmp_path / 'work'
    work.mkdir()
    _run_with_hook(work)
    own = work / 'epoch_1.pth'
    marker = tmp_path / 'marker.txt'
    real_status = checkpoint_trust.trust_status

    def swap_then_check(path, data=None):
        plant_evil(own, marker)  # the attacker wins the race right after the read
        return real_status(path, data)

    monkeypatch.setattr('earl_mmdet.engine.checkpoint.trust_status', swap_then_check)
    assert load_from_local(str(own))['state_dict']['w'].tolist() == [0.0, 0.0]
    assert not marker.exists()


# ---------------------------------------------------------------------------------------
# End to end: tools/train.py signs only what it saved; tools/test.py refuses the rest.

PLANT_HOOK = '''
import shutil
from mmdet.registry import HOOKS
from mmengine.hooks import Hook


@HOOKS.register_module()
class PlantDuringRun(Hook):
    """Copies a foreign checkpoint into the work dir while the run trains."""

    def __init__(self, source):
        self.source = source

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        shutil.copy(self.source, runner.work_dir + '/copied.pth')
'''


def _tool(env: dict, name: str, *args) -> subprocess.CompletedProcess:
    cmd = [sys.executable, f'tools/{name}.py', *map(str, args)]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """One 1-epoch training with three planted checkpoints: (tmp, work, env, marker)."""
    from tests.tiny_data import make_tiny_coco, tiny_retinanet_config

    tmp = tmp_path_factory.mktemp('attack_e2e')
    marker = tmp / 'marker.txt'
    data = make_tiny_coco(tmp / 'data', num_images=4)
    work = tmp / 'work'
    work.mkdir()
    evil = plant_evil(tmp / 'evil_source.pth', marker)
    future = plant_evil(work / 'future.pth', marker)
    later = time.time() + 86400
    os.utime(future, (later, later))
    (work / 'link.pth').symlink_to(evil)
    (tmp / 'plant_hook.py').write_text(PLANT_HOOK)
    cfg = tiny_retinanet_config(data, str(work), max_epochs=1)
    with open(cfg, 'a') as f:
        f.write(
            "custom_imports = dict(imports=['earl_mmdet', 'plant_hook'], "
            'allow_failed_imports=False)\n'
            f'custom_hooks = [dict(type="PlantDuringRun", source={str(evil)!r})]\n'
        )
    env = dict(
        os.environ,
        OMP_NUM_THREADS='1',
        PYTHONPATH=f'{ROOT}{os.pathsep}{tmp}',
        EARL_MMDET_KEY_FILE=str(tmp / 'keys' / 'checkpoint.key'),
    )
    env.pop('EARL_MMDET_ALLOW_UNSAFE_LOAD', None)
    proc = _tool(env, 'train', cfg, '--work-dir', work)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (work / 'copied.pth').is_file() and not marker.exists()
    return tmp, work, env, cfg, marker


def _test_tool(trained, checkpoint: Path) -> subprocess.CompletedProcess:
    tmp, work, env, cfg, _ = trained
    return _tool(env, 'test', cfg, checkpoint, '--work-dir', tmp / 'eval')


@pytest.mark.parametrize(
    'name',
    [
        pytest.param('copied.pth', id='copied-in-during-run'),
        pytest.param('future.pth', id='future-mtime'),
        pytest.param('link.pth', id='symlink'),
        pytest.param('forged.pth', id='empty-key-forged-manifest'),
    ],
)
def test_train_then_test_tool_refuses_planted_checkpoints(trained, name):
    tmp, work, env, cfg, marker = trained
    manifest = json.loads((work / checkpoint_trust.MANIFEST_NAME).read_text())
    assert set(manifest) == {'epoch_1.pth'}, manifest
    checkpoint = work / name
    if name == 'forged.pth':
        key = tmp / 'keys' / 'checkpoint.key'
        saved = key.read_bytes()
        key.write_bytes(b'')
        plant_evil(checkpoint, marker)
        forge_entry(checkpoint, b'')
        try:
            proc = _test_tool(trained, checkpoint)
        finally:
            key.write_bytes(saved)
            manifest_path = work / checkpoint_trust.MANIFEST_NAME
            entries = json.loads(manifest_path.read_text())
            entries.pop('forged.pth', None)
            manifest_path.write_text(json.dumps(entries))
    else:
        proc = _test_tool(trained, checkpoint)
    assert proc.returncode != 0
    assert 'Refusing to fully unpickle' in proc.stdout + proc.stderr
    assert not marker.exists()
