"""Checkpoint loading under torch >= 2.6: own checkpoints resume, foreign pickles never run."""

from __future__ import annotations

import collections
import io
import json
import os
import os.path as osp
import subprocess
import sys
import textwrap
import types
from pathlib import Path
from urllib.parse import urlparse

import mmengine
import numpy as np
import pytest
import torch
from mmengine.runner import checkpoint as mm_checkpoint
from mmengine.runner.checkpoint import CheckpointLoader

from earl_mmdet.engine import checkpoint as ckpt_module
from earl_mmdet.engine import checkpoint_trust
from earl_mmdet.engine.checkpoint import (
    allow_unsafe_checkpoint_load,
    install_safe_loaders,
    load_checkpoint_file,
    restore_loaders,
    safe_loaders,
)
from earl_mmdet.engine.hooks import TrustOwnCheckpointsHook

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
    """Own key, no opt-in, and the safe loaders installed as the tools install them."""
    monkeypatch.setenv(checkpoint_trust.KEY_ENV, str(tmp_path / 'key' / 'checkpoint.key'))
    monkeypatch.delenv('EARL_MMDET_ALLOW_UNSAFE_LOAD', raising=False)
    allow_unsafe_checkpoint_load(False)
    with safe_loaders():
        yield
    allow_unsafe_checkpoint_load(False)


def _refused(path, marker) -> None:
    """Loading ``path`` raises and runs none of its code."""
    with pytest.raises(RuntimeError):
        load_checkpoint_file(str(path))
    assert not marker.exists()


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
    _refused(path, marker)


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
    _refused(path, marker)


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


# --- every scheme mmengine registers, without network ------------------------------------

MMENGINE_HUB = Path(mmengine.__path__[0]) / 'hub'


def _hub_table(name: str) -> dict:
    return json.loads((MMENGINE_HUB / name).read_text())


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """torch.hub's cache in a temporary TORCH_HOME: a file there is what a download left."""
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    monkeypatch.setattr(torch.hub, '_hub_dir', None)
    return tmp_path / 'torch' / 'hub' / 'checkpoints'


def _plant(obj, url: str, cache: Path) -> Path:
    """Put ``obj`` where torch.hub's download of ``url`` lands."""
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / os.path.basename(urlparse(url).path)
    torch.save(obj, path)
    return path


def _evil(tmp_path) -> tuple[dict, Path]:
    marker = tmp_path / 'marker.txt'
    return {'state_dict': {'w': torch.ones(2)}, 'meta': _Evil(str(marker))}, marker


# (checkpoint as a user writes it, the URL mmengine's tables map it to)
URL_CASES = [
    # a URL given directly (tools/test.py CONFIG https://.../x.pth, load_from)
    pytest.param('https://example.com/m/x.pth', 'https://example.com/m/x.pth', id='https'),
    pytest.param('http://example.com/x.pth', 'http://example.com/x.pth', id='http'),
    # mmdet configs' `init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet50')`
    pytest.param(
        'torchvision://resnet18', _hub_table('torchvision_0.12.json')['resnet18'], id='torchvision'
    ),
    # the deprecated spelling of the same scheme
    pytest.param(
        'modelzoo://resnet50', _hub_table('torchvision_0.12.json')['resnet50'], id='modelzoo'
    ),
    # OpenMMLab's model zoo
    pytest.param(
        'open-mmlab://vgg16_caffe', _hub_table('openmmlab.json')['vgg16_caffe'], id='open-mmlab'
    ),
    # the other spelling, through a deprecated name that mmengine renames first
    pytest.param(
        'openmmlab://resnet50_caffe',
        _hub_table('openmmlab.json')[_hub_table('deprecated.json')['resnet50_caffe']],
        id='openmmlab-deprecated-name',
    ),
    # mmcls backbones
    pytest.param('mmcls://vgg11', _hub_table('mmcls.json')['vgg11'], id='mmcls'),
]


@pytest.mark.parametrize(('checkpoint', 'url'), URL_CASES)
def test_url_checkpoint_in_hub_cache_does_not_run(checkpoint, url, tmp_path, hub_cache):
    obj, marker = _evil(tmp_path)
    cached = _plant(obj, url, hub_cache)
    with pytest.raises(RuntimeError, match='Refusing to fully unpickle') as err:
        CheckpointLoader.load_checkpoint(checkpoint, map_location='cpu')
    assert str(cached) in str(err.value)
    assert not marker.exists()


@pytest.mark.parametrize(('checkpoint', 'url'), URL_CASES)
def test_url_checkpoint_plain_weights_load(checkpoint, url, hub_cache):
    _plant({'state_dict': {'backbone.w': torch.arange(3.0)}}, url, hub_cache)
    loaded = CheckpointLoader.load_checkpoint(checkpoint, map_location='cpu')
    key = 'w' if checkpoint.startswith('mmcls://') else 'backbone.w'  # mmcls strips 'backbone.'
    assert torch.equal(loaded['state_dict'][key], torch.arange(3.0))


def test_url_checkpoint_opt_in_is_logged(tmp_path, hub_cache):
    """The switch still works for URLs, and says so each time."""
    obj, marker = _evil(tmp_path)
    _plant(obj, 'https://example.com/x.pth', hub_cache)
    allow_unsafe_checkpoint_load(True)
    with pytest.warns(UserWarning, match='arbitrary code'):
        CheckpointLoader.load_checkpoint('https://example.com/x.pth', map_location='cpu')
    assert marker.exists()  # the user asked for it


def test_unknown_model_name_is_a_clear_error(hub_cache):
    with pytest.raises(ValueError, match="'resnet1888' is not in the table of torchvision://"):
        CheckpointLoader.load_checkpoint('torchvision://resnet1888')


def test_open_mmlab_local_file_does_not_run(tmp_path, monkeypatch):
    """open_mmlab.json in the mmengine home may map a name to a file under that home."""
    home = tmp_path / 'mmengine_home'
    home.mkdir()
    monkeypatch.setenv('MMENGINE_HOME', str(home))
    (home / 'open_mmlab.json').write_text(json.dumps({'mine': 'weights/mine.pth'}))
    (home / 'weights').mkdir()
    obj, marker = _evil(tmp_path)
    torch.save(obj, home / 'weights' / 'mine.pth')
    with pytest.raises(RuntimeError, match='Refusing.*mine.pth'):
        CheckpointLoader.load_checkpoint('open-mmlab://mine')
    assert not marker.exists()


class _FakeBackend:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def get(self, filepath):
        return self.data


@pytest.mark.parametrize(
    'checkpoint',
    [
        pytest.param('s3://bucket/evil.pth', id='s3'),
        pytest.param('cluster1:s3://bucket/evil.pth', id='s3-with-cluster'),
        pytest.param('petrel://bucket/evil.pth', id='petrel'),
    ],
)
def test_file_backend_checkpoint_does_not_run(checkpoint, tmp_path, monkeypatch):
    """s3:// and petrel:// go through mmengine's file backends: pointed at local bytes here."""
    obj, marker = _evil(tmp_path)
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    seen = []

    def fake_backend(filename, backend_args=None):
        seen.append(filename)
        return _FakeBackend(buffer.getvalue())

    monkeypatch.setattr(mm_checkpoint, 'get_file_backend', fake_backend)
    with pytest.raises(RuntimeError, match='Refusing'):
        CheckpointLoader.load_checkpoint(checkpoint)
    assert seen == [checkpoint]
    assert not marker.exists()


def test_pavi_checkpoint_does_not_run(tmp_path, monkeypatch):
    obj, marker = _evil(tmp_path)

    class Model:
        name = 'evil.pth'

        def download(self, path):
            torch.save(obj, path)

    modelcloud = types.SimpleNamespace(get=lambda name: Model())
    monkeypatch.setitem(sys.modules, 'pavi', types.SimpleNamespace(modelcloud=modelcloud))
    with pytest.raises(RuntimeError, match='Refusing'):
        CheckpointLoader.load_checkpoint('pavi://project/evil')
    assert not marker.exists()


def test_every_registered_scheme_is_ours():
    """A scheme mmengine adds later would bypass the rule: this test names it."""
    foreign = {
        prefix: loader.__module__
        for prefix, loader in CheckpointLoader._schemes.items()
        if loader.__module__ != ckpt_module.__name__
    }
    assert not foreign


def test_pretrained_init_cfg_does_not_run(tmp_path, hub_cache):
    """A config's `init_cfg=dict(type='Pretrained', checkpoint='torchvision://...')`."""
    from mmdet.registry import MODELS

    obj, marker = _evil(tmp_path)
    _plant(obj, _hub_table('torchvision_0.12.json')['resnet18'], hub_cache)
    backbone = MODELS.build(
        dict(
            type='ResNet',
            depth=18,
            init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet18'),
        )
    )
    with pytest.raises(RuntimeError, match='Refusing to fully unpickle'):
        backbone.init_weights()
    assert not marker.exists()


# --- where the rule applies: asked for, never on import ---------------------------------


def test_import_changes_no_loader_and_no_nms():
    """`import earl_mmdet` registers components only: mmengine's checkpoint loaders and
    mmcv's nms are the same objects before and after (a fresh process)."""
    code = textwrap.dedent(
        """
        import sys
        import mmcv.ops, mmdet.models  # noqa: F401
        from mmengine.runner.checkpoint import CheckpointLoader
        nms_module = sys.modules['mmcv.ops.nms']
        before = dict(CheckpointLoader._schemes), nms_module.nms
        import earl_mmdet
        from mmdet.registry import DATASETS, HOOKS
        assert 'MultiRaterCocoDataset' in DATASETS and 'TrustOwnCheckpointsHook' in HOOKS
        after = dict(CheckpointLoader._schemes), nms_module.nms
        assert before[0] == after[0], 'checkpoint loaders changed on import'
        assert before[1] is after[1], 'mmcv nms changed on import'
        """
    )
    proc = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_install_and_restore(tmp_path):
    with safe_loaders():  # nested in the fixture's: restoring puts back the outer table
        restore_loaders({'': mm_checkpoint.load_from_local})
        assert not ckpt_module.safe_loaders_installed()
        path, marker = _evil_checkpoint(tmp_path)
        previous = install_safe_loaders()
        assert previous == {'': mm_checkpoint.load_from_local}
        assert ckpt_module.safe_loaders_installed()
        with pytest.raises(RuntimeError, match='Refusing'):
            CheckpointLoader.load_checkpoint(str(path), map_location='cpu')
        assert not marker.exists()
    assert ckpt_module.safe_loaders_installed()


def test_hook_installs_before_the_run_loads_and_restores_after(tmp_path):
    """mmengine's Runner calls before_run before init_weights and load_from / resume."""
    plain = {'': mm_checkpoint.load_from_local}

    def save_checkpoint(out_dir, filename, **kwargs):
        torch.save({'w': torch.ones(1)}, osp.join(out_dir, filename))

    runner = types.SimpleNamespace(
        work_dir=str(tmp_path), hooks=[], rank=0, save_checkpoint=save_checkpoint
    )
    hook = TrustOwnCheckpointsHook()
    with safe_loaders():
        restore_loaders(plain)
        hook.before_run(runner)
        assert ckpt_module.safe_loaders_installed()
        assert runner.save_checkpoint is not save_checkpoint  # wrapped: saves are reported
        hook.after_run(runner)
        assert dict(CheckpointLoader._schemes) == plain
        assert runner.save_checkpoint is save_checkpoint


def test_tools_install_the_loaders():
    """tools/train.py and tools/test.py load their config through load_config."""
    from earl_mmdet.utils.cli import load_config

    config = str(Path(__file__).resolve().parents[2] / 'configs' / 'earl_yolo_vindr.py')
    with safe_loaders():
        restore_loaders({'': mm_checkpoint.load_from_local})
        load_config(config, None, 'none')
        assert ckpt_module.safe_loaders_installed()
