"""Every config in configs/ loads, builds and runs one training iteration on tiny data.

The configs are rewritten only where the machine forces it: data paths point at a tiny
generated set in the config's own layout (MED-MNIST or VinDr-CXR), batch 2, no workers,
no pretrained download, one epoch of one iteration, no validation.
"""

from __future__ import annotations

import json
import os.path as osp
import re
from pathlib import Path

import pytest

from tests.tiny_data import make_tiny_coco

ROOT = Path(__file__).resolve().parents[1]
#: Runnable configs; configs/_base_/ holds their parts (a model or a dataset alone).
CONFIGS = sorted(
    str(p.relative_to(ROOT)) for p in (ROOT / 'configs').rglob('*.py') if '_base_' not in p.parts
)


def _layout(tmp_path: Path, class_names: tuple[str, ...], raters: tuple[str, ...]) -> Path:
    """A tiny set in the converters' layout: train.json (multi-rater), val/test.json gold."""
    data = make_tiny_coco(
        tmp_path / 'src', num_images=2, size=64, num_classes=3, num_raters=len(raters)
    )
    root = tmp_path / 'data'
    for split in ('train', 'val', 'test'):
        (root / 'images' / split).mkdir(parents=True, exist_ok=True)
        for f in Path(data['img_dir']).iterdir():
            (root / 'images' / split / f.name).write_bytes(f.read_bytes())
    cats = [dict(id=i + 1, name=name) for i, name in enumerate(class_names)]
    for name, src in (
        ('train.json', data['multi']),
        ('val.json', data['gold']),
        ('test.json', data['gold']),
    ):
        d = json.loads(Path(src).read_text())
        d['categories'] = cats
        for im in d['images']:
            if 'annotators' in im:
                im['annotators'] = list(raters)
        for ann in d['annotations']:
            if 'annotator_id' in ann:
                ann['annotator_id'] = raters[int(ann['annotator_id'][1:]) - 1]
        (root / name).write_text(json.dumps(d))
    return root


def _set_data_root(node, root: str, ann: str):
    """Point every data_root / ann_file under the config at the tiny set."""
    if isinstance(node, dict):
        for key, value in list(node.items()):
            if key == 'data_root':
                node[key] = root
            elif key == 'ann_file' and isinstance(value, str):
                node[key] = ann
            elif key == 'data_prefix':
                node[key] = dict(img=osp.join(root, 'images', osp.splitext(ann)[0]) + '/')
            else:
                _set_data_root(value, root, ann)
    elif isinstance(node, list):
        for item in node:
            _set_data_root(item, root, ann)


def _shrink(node):
    """128 px instead of 640-1333 px: the same transforms, a CPU-sized iteration."""
    if isinstance(node, dict):
        if node.get('type') == 'Resize':
            node['scale'] = (128, 128)
        if node.get('type') in ('Mosaic', 'MixUp'):
            node['img_scale'] = (128, 128)
        if node.get('type') == 'RandomAffine':
            node['border'] = (-64, -64)
        for value in node.values():
            _shrink(value)
    elif isinstance(node, list):
        for item in node:
            _shrink(item)


@pytest.mark.parametrize('config', CONFIGS)
def test_config_trains_one_iteration(config, tmp_path):
    from mmengine.config import Config
    from mmengine.runner import Runner

    import earl_mmdet  # noqa: F401

    cfg = Config.fromfile(str(ROOT / config))
    from mmdet.datasets import CocoDataset

    classes = tuple(cfg.get('classes', None) or CocoDataset.METAINFO['classes'])
    raters = ('R8', 'R9', 'R10') if 'vindr' in config else ('R1', 'R2', 'R3')
    root = str(_layout(tmp_path, classes, raters)) + '/'
    _set_data_root(cfg.train_dataloader, root, 'train.json')
    _shrink(cfg.train_dataloader)
    cfg.train_dataloader.batch_size = 2
    cfg.train_dataloader.num_workers = 0
    cfg.train_dataloader.persistent_workers = False
    cfg.train_dataloader.pop('batch_sampler', None)
    cfg.model.backbone.init_cfg = None  # no pretrained download offline
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1, val_interval=10)
    cfg.val_dataloader = cfg.val_evaluator = cfg.val_cfg = None
    cfg.param_scheduler = []
    cfg.custom_hooks = [h for h in cfg.get('custom_hooks', []) if h['type'] != 'EMAHook']
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=1000, save_last=False)
    cfg.work_dir = str(tmp_path / 'work')
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter >= 1


def _load(config: str):
    from mmengine.config import Config

    return Config.fromfile(str(ROOT / config))


def _dicts(node):
    """Every dict under ``node``, ``node`` included, depth first."""
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from _dicts(value)
    elif isinstance(node, list):
        for item in node:
            yield from _dicts(item)


def _datasets(node):
    """Every dataset config dict under ``node`` (wrappers and the datasets they wrap)."""
    return [d for d in _dicts(node) if 'pipeline' in d and 'type' in d]


@pytest.mark.parametrize('config', CONFIGS)
def test_fusion_is_a_dataset_argument_and_pipelines_are_mmdet_ones(config):
    """No FuseAnnotations step left; the multi-rater dataset loads with a stock LoadAnnotations."""
    cfg = _load(config)
    multi = [d for d in _datasets(cfg.train_dataloader) if d['type'] == 'MultiRaterCocoDataset']
    assert len(multi) == 1, config
    for dataset in _datasets(cfg.to_dict()):
        assert 'FuseAnnotations' not in [t['type'] for t in dataset['pipeline']], config
    assert 'LoadAnnotations' in [t['type'] for t in multi[0]['pipeline']]
    fusion = multi[0].get('fusion')
    assert fusion is None or isinstance(fusion, dict) and 'method' in fusion


def _bases(path: Path) -> list[Path]:
    """The repository config files ``path`` inherits from, transitively."""
    from mmengine.config import Config

    out = []
    for base in Config._get_base_files(str(path)):
        if '::' not in base:
            parent = (path.parent / base).resolve()
            out += [parent, *_bases(parent)]
    return out


@pytest.mark.parametrize('config', CONFIGS)
def test_stock_baselines_do_not_inherit_from_earl_configs(config):
    heads = str(_load(config).model)
    if 'EARL' in heads:
        return
    for base in _bases(ROOT / config):
        assert not re.search(r"type\s*=\s*['\"]EARL", base.read_text()), (config, base)


def test_medmnist_fusion_is_one_override_of_the_na_baseline():
    """The study tool switches methods with train_dataloader.dataset.fusion: pin the names."""
    fusions = {
        c: _load(c).train_dataloader.dataset.get('fusion')
        for c in CONFIGS
        if c.startswith('configs/medmnist/yolox_nano_')
    }
    base = 'configs/medmnist/yolox_nano_{}_20e_medmnist-cpu.py'
    assert fusions[base.format('na')] is None
    assert fusions[base.format('mv')] == dict(method='mv', confidence='agreement')
    wbf = dict(method='wbf', iou_thr=0.4, confidence='agreement_ratio')
    assert fusions[base.format('wbf')] == fusions[base.format('wbf-earl')] == wbf
    assert fusions[base.format('em-earl')] == dict(method='em', confidence='posterior')
    assert fusions[base.format('presence-em-earl')] == dict(
        method='presence_em', confidence='presence'
    )
    assert fusions[base.format('wbf-soft')] == fusions[base.format('wbf-ignore')] == wbf
    assert fusions[base.format('rater-R1')] == dict(method='rater:R1')
    # the mechanism ablations of the v3 study: the paper's boxes, or presence-EM's
    assert fusions[base.format('wbf-earl-wsum')] == fusions[base.format('wbf-earl-obj')] == wbf
    assert fusions[base.format('wbf-earl-na-like')] == dict(wbf, confidence='agreement')
    assert fusions[base.format('presence-em')] == fusions[base.format('presence-em-earl')]


@pytest.mark.parametrize(
    'method, other, earl_cfg',
    [
        # earl_cfg None: the EARL head's defaults, the paper's settings
        ('wbf-soft', 'wbf-earl', dict(policy='soft')),
        ('wbf-ignore', 'wbf-earl', dict(policy='ignore', ignore_below=0.5)),
        ('presence-em-earl', 'em-earl', None),
        # the v3 study's ablations of how c enters the loss
        ('wbf-earl-wsum', 'wbf-earl', dict(normalize='weight_sum')),
        ('wbf-earl-obj', 'wbf-earl', dict(terms=('cls', 'bbox', 'obj'))),
        (
            'wbf-earl-na-like',
            'wbf-earl',
            dict(terms=('cls', 'bbox', 'obj'), normalize='weight_sum'),
        ),
    ],
)
def test_medmnist_policy_configs_differ_from_their_sibling_in_one_place(method, other, earl_cfg):
    """The loss-policy configs change the head's policy (or the fusion) only."""
    base = 'configs/medmnist/yolox_nano_{}_20e_medmnist-cpu.py'
    cfg, sib = _load(base.format(method)).to_dict(), _load(base.format(other)).to_dict()
    assert cfg['model']['bbox_head']['type'] == sib['model']['bbox_head']['type'] == 'EARLYOLOXHead'
    assert cfg['model']['bbox_head'].pop('earl_cfg', None) == earl_cfg
    assert sib['model']['bbox_head'].pop('earl_cfg', None) is None  # the paper's method
    cfg['train_dataloader']['dataset'].pop('fusion')
    sib['train_dataloader']['dataset'].pop('fusion')
    assert cfg == sib


def test_presence_em_ablation_is_its_earl_twin_on_the_stock_head():
    """configs/medmnist presence-em: the presence-EM boxes of presence-em-earl, stock head."""
    base = 'configs/medmnist/yolox_nano_{}_20e_medmnist-cpu.py'
    stock, earl = (_load(base.format(m)).to_dict() for m in ('presence-em', 'presence-em-earl'))
    assert stock['model']['bbox_head']['type'] == 'YOLOXHead'
    earl['model']['bbox_head'] = dict(earl['model']['bbox_head'], type='YOLOXHead')
    earl['model']['bbox_head'].pop('earl_cfg', None)
    assert stock == earl


#: The options of the paper's EARL (EARLConfig's defaults); a config states one only to change it.
PAPER_EARL_KEYS = ('terms', 'scale', 'gamma', 'floor', 'normalize', 'policy')


@pytest.mark.parametrize('config', CONFIGS)
def test_paper_earl_settings_are_stated_once_as_the_defaults(config):
    """The paper's settings live in EARLConfig's defaults, not written out in configs."""
    from earl_mmdet.models.earl_weights import EARLConfig

    paper = EARLConfig()
    cfg = _load(config).to_dict()
    earl_cfgs = [d['earl_cfg'] for d in _dicts(cfg) if isinstance(d.get('earl_cfg'), dict)]
    for earl_cfg in earl_cfgs:
        stated = [k for k in PAPER_EARL_KEYS if k in earl_cfg and earl_cfg[k] == getattr(paper, k)]
        assert not stated, (config, stated)


def _depth(path: str) -> int:
    """Levels of inheritance of a config file: 0 without ``_base_``, else 1 + its deepest
    base's; ``mmdet::`` bases count with their own bases, resolved as mmengine does."""
    from mmengine.config import Config

    depths = []
    for base in Config._get_base_files(path):
        if '::' in base:
            parent = Config._get_cfg_path(base, path)[0]
        else:
            parent = osp.join(osp.dirname(path), base)
        depths.append(_depth(parent))
    return 1 + max(depths) if depths else 0


def test_depth_counts_mmdets_own_levels():
    """The counter follows mmdet's chains: RTMDet-tiny -> -s -> -l -> mmdet's _base_ files."""
    import mmdet

    mmdet_configs = Path(mmdet.__file__).parent / '.mim' / 'configs'
    assert _depth(str(mmdet_configs / '_base_/default_runtime.py')) == 0
    assert _depth(str(mmdet_configs / 'yolox/yolox_s_8xb8-300e_coco.py')) == 1
    assert _depth(str(mmdet_configs / 'rtmdet/rtmdet_tiny_8xb32-300e_coco.py')) == 3


#: Every config file, the parts under configs/_base_/ included.
ALL_CONFIG_FILES = sorted(str(p.relative_to(ROOT)) for p in (ROOT / 'configs').rglob('*.py'))


@pytest.mark.parametrize('config', ALL_CONFIG_FILES)
def test_at_most_three_levels_of_inheritance(config):
    """mmdet's advice (at most 3), counted with mmdet's own bases."""
    assert _depth(str(ROOT / config)) <= 3


@pytest.mark.parametrize('config', ALL_CONFIG_FILES)
def test_each_config_folder_readme_names_its_configs(config):
    """configs/<folder>/README.md names every config in the folder; configs/_base_/README.md
    every base, by its path under _base_/."""
    path = ROOT / config
    folder = ROOT / 'configs' / '_base_' if '_base_' in path.parts else path.parent
    readme = folder / 'README.md'
    assert readme.is_file(), f'{readme.relative_to(ROOT)} is missing'
    assert str(path.relative_to(folder)) in readme.read_text(), (readme, config)


@pytest.mark.parametrize(
    'entry, config',
    [
        ('configs/earl_yolo_vindr.py', 'configs/vindr/yolox_s_wbf-earl_8xb8-50e_vindr.py'),
        ('configs/earl_retinanet_vindr.py', 'configs/vindr/retinanet_r50_fpn_wbf-earl_1x_vindr.py'),
    ],
)
def test_design_card_entries_are_their_named_configs(entry, config):
    """The card's paths build the same config as the properly named files."""
    assert _load(entry).to_dict() == _load(config).to_dict()
