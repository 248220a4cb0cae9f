"""Checkpoint loading under torch >= 2.6: own checkpoints resume, foreign pickles never run."""

from __future__ import annotations

import collections
import json
import os

import numpy as np
import pytest
import torch

from earl_mmdet.core import checkpoint_trust
from earl_mmdet.engine.checkpoint import allow_unsafe_checkpoint_load, load_checkpoint_file

MARKER_ENV = 'EARL_TEST_MARKER'


class _Evil:
    """Unpickling this writes a marker file: stands for arbitrary code execution."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (_write_marker, (self.marker,))


def _write_marker(path: str) -> str:
    with open(path, 'w') as f:
        f.write('pwned')
    return 'pwned'


@pytest.fixture(autouse=True)
def _isolated_key(tmp_path, monkeypatch):
    monkeypatch.setenv(checkpoint_trust.KEY_ENV, str(tmp_path / 'key' / 'checkpoint.key'))
    monkeypatch.delenv('EARL_MMDET_ALLOW_UNSAFE_LOAD', raising=False)
    allow_unsafe_checkpoint_load(False)
    yield
    allow_unsafe_checkpoint_load(False)


def _evil_checkpoint(tmp_path):
    marker = tmp_path / 'marker.txt'
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'w': torch.ones(2)}, 'meta': _Evil(str(marker))}, path)
    assert not marker.exists()
    return path, marker


def test_malicious_checkpoint_does_not_run(tmp_path):
    path, marker = _evil_checkpoint(tmp_path)
    with pytest.raises(RuntimeError, match='Refusing to fully unpickle'):
        load_checkpoint_file(str(path))
    assert not marker.exists()


def test_malicious_checkpoint_through_mmengine_loader(tmp_path):
    """The path every runner takes (load_from, resume) goes through our scheme."""
    from mmengine.runner.checkpoint import CheckpointLoader

    import earl_mmdet  # noqa: F401  (registers the scheme)

    path, marker = _evil_checkpoint(tmp_path)
    with pytest.raises(RuntimeError, match='Refusing'):
        CheckpointLoader.load_checkpoint(str(path), map_location='cpu')
    assert not marker.exists()


def test_forged_manifest_is_not_trusted(tmp_path):
    """An attacker who ships a manifest next to the file cannot forge our HMAC."""
    path, marker = _evil_checkpoint(tmp_path)
    digest = checkpoint_trust.file_sha256(path)
    (tmp_path / checkpoint_trust.MANIFEST_NAME).write_text(
        json.dumps({'evil.pth': {'sha256': digest, 'hmac': '0' * 64}})
    )
    assert not checkpoint_trust.is_trusted(path)
    with pytest.raises(RuntimeError):
        load_checkpoint_file(str(path))
    assert not marker.exists()


def test_own_checkpoint_loads_fully(tmp_path):
    path = tmp_path / 'epoch_1.pth'
    obj = {'meta': collections.OrderedDict(step=np.int64(3)), 'state_dict': {'w': torch.ones(1)}}
    torch.save(obj, path)
    with pytest.raises(RuntimeError):  # numpy scalar: weights_only refuses it
        load_checkpoint_file(str(path))
    checkpoint_trust.mark_trusted(path)
    assert checkpoint_trust.is_trusted(path)
    loaded = load_checkpoint_file(str(path))
    assert loaded['meta']['step'] == 3


def test_tampered_own_checkpoint_is_refused(tmp_path):
    path = tmp_path / 'epoch_1.pth'
    torch.save({'w': torch.ones(1)}, path)
    checkpoint_trust.mark_trusted(path)
    evil, marker = _evil_checkpoint(tmp_path)
    os.replace(evil, path)  # same name, different bytes
    assert not checkpoint_trust.is_trusted(path)
    with pytest.raises(RuntimeError):
        load_checkpoint_file(str(path))
    assert not marker.exists()


def test_plain_weights_load_safely(tmp_path):
    path = tmp_path / 'weights.pth'
    torch.save({'state_dict': {'w': torch.arange(3.0)}}, path)
    assert torch.equal(load_checkpoint_file(str(path))['state_dict']['w'], torch.arange(3.0))


def test_explicit_opt_in_warns(tmp_path):
    path = tmp_path / 'meta.pth'
    torch.save({'meta': np.int64(1)}, path)
    allow_unsafe_checkpoint_load(True)
    with pytest.warns(UserWarning, match='arbitrary code'):
        assert load_checkpoint_file(str(path))['meta'] == 1


def test_missing_file():
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        load_checkpoint_file('/nonexistent/nope.pth')
