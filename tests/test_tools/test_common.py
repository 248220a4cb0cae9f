"""earl_mmdet.utils.cli (what the tools share): config reading (data_root=DIR), the data
check, the warning filters, output-path checks, the fusion key of a config."""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import pytest

from earl_mmdet.utils import cli as C

ROOT = Path(__file__).resolve().parents[2]
CARD = str(ROOT / 'configs' / 'earl_yolo_vindr.py')
AUTOCAST = (
    '`torch.cuda.amp.autocast(args...)` is deprecated. Please use '
    '`torch.amp.autocast("cuda", args...)` instead.'
)


def _roots(node, out):
    if isinstance(node, dict):
        for k, v in node.items():
            if k in ('data_root', 'ann_file') and isinstance(v, str):
                out.append((k, v))
            else:
                _roots(v, out)
    elif isinstance(node, list):
        for v in node:
            _roots(v, out)
    return out


def test_data_root_option_moves_every_dataset_and_evaluator():
    cfg = C.read_config(CARD, {'data_root': 'elsewhere/x'}, import_custom_modules=False)
    d = cfg._cfg_dict.to_dict()
    parts = [d[k] for k in ('train_dataloader', 'val_dataloader', 'test_dataloader')]
    parts += [d['val_evaluator'], d['test_evaluator']]
    paths = _roots(parts, [])
    roots = {v for k, v in paths if k == 'data_root'}
    assert roots == {'elsewhere/x/'}, paths
    assert cfg.val_evaluator.ann_file == 'elsewhere/x/test.json'
    assert cfg.train_dataloader.dataset.dataset.ann_file == 'train.json'


def test_explicit_options_win_over_the_moved_root():
    opts = {'data_root': 'a/', 'test_evaluator.ann_file': 'b/gold.json'}
    cfg = C.read_config(CARD, opts, import_custom_modules=False)
    assert cfg.test_evaluator.ann_file == 'b/gold.json'
    assert cfg.train_dataloader.dataset.dataset.data_root == 'a/'


def _vindr_layout(root: Path, images: bool) -> None:
    for split in ('train', 'test'):
        (root / f'{split}.json').write_text(json.dumps(dict(images=[], annotations=[])))
        if images:
            (root / 'images' / split).mkdir(parents=True)


@pytest.mark.parametrize(
    'mode, layout, missing',
    [
        # nothing there: the training annotations are named first
        ('train', None, 'train.json: annotation file not found (train_dataloader'),
        # JSON converted without PNGs: the image folder is named
        ('train', 'json', 'images/train/: image folder not found (train_dataloader'),
        # testing needs only the test split
        ('test', None, 'test.json: annotation file not found (test_dataloader'),
        # everything there: silent
        ('train', 'full', None),
        ('test', 'full', None),
    ],
)
def test_check_data(tmp_path, mode, layout, missing):
    if layout is not None:
        _vindr_layout(tmp_path, images=layout == 'full')
    cfg = C.read_config(CARD, {'data_root': str(tmp_path)}, import_custom_modules=False)
    if missing is None:
        C.check_data(cfg, CARD, mode)
        return
    with pytest.raises(SystemExit) as e:
        C.check_data(cfg, CARD, mode)
    line = str(e.value)
    assert line.startswith(f'error: {tmp_path}/{missing}'), line
    assert '\n' not in line
    assert 'docs/vindr.md' in line and 'tools/make_vindr_sample.py' in line


# --cfg-options through a tool (tools/_check_data.py parses them as tools/train.py does):
# (id, the option, exit code, stderr fragment). mmengine's DictAction deletes every space of
# a value, so 'my scans' became 'myscans': a run could read another folder.
CFG_OPTION_CASES = [
    # a data_root with a space is kept: the data there is found, nothing printed
    pytest.param('data_root={root}/my scans', 0, '', id='data_root-with-space'),
    # quoted as a shell user might: the quotes go, the space stays
    pytest.param('data_root="{root}/my scans/"', 0, '', id='data_root-quoted'),
    # a list item with a space cannot be parsed by mmengine: refused, not rewritten
    pytest.param(
        'train_dataloader.dataset.metainfo.classes=[Aortic enlargement, Other]',
        2,
        "an item of this list holds a space, which mmengine's list parser would delete",
        id='list-item-with-space',
    ),
    # no '=': one line, not a traceback
    pytest.param('data_root', 2, 'expected KEY=VALUE', id='no-equals-sign'),
]


@pytest.mark.parametrize('option, code, msg', CFG_OPTION_CASES)
def test_cfg_options_keep_spaces_or_refuse(tmp_path, option, code, msg):
    from tests.test_tools.run_tool import run_tool

    (tmp_path / 'my scans').mkdir()
    _vindr_layout(tmp_path / 'my scans', images=True)
    proc = run_tool('_check_data', 'train', CARD, '--cfg-options', option.format(root=tmp_path))
    assert proc.returncode == code, proc.stderr
    assert msg in proc.stderr and 'Traceback' not in proc.stderr
    if code == 0:
        assert proc.stderr == ''


def test_filters_hide_only_the_listed_third_party_warnings():
    torch = pytest.importorskip('torch')
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter('always')
        C.filter_third_party_warnings()
        torch.meshgrid(torch.arange(2), torch.arange(2))  # torch's own call site: hidden
        mmdet_head = 'mmdet.models.dense_heads.yolox_head'
        warnings.warn_explicit(AUTOCAST, FutureWarning, 'yolox_head.py', 1, module=mmdet_head)
        # the same deprecation in other code (ours) is not hidden
        warnings.warn_explicit(AUTOCAST, FutureWarning, 'ours.py', 1, module='earl_mmdet.x')
        # same text, other category: not hidden
        warnings.warn_explicit(AUTOCAST, UserWarning, 'yolox_head.py', 2, module=mmdet_head)
        warnings.warn('earl-mmdet: a warning of the project', UserWarning, stacklevel=1)
        warnings.warn('another library is deprecated', FutureWarning, stacklevel=1)
    shown = [(w.category.__name__, str(w.message)[:30]) for w in rec]
    assert shown == [
        ('FutureWarning', AUTOCAST[:30]),
        ('UserWarning', AUTOCAST[:30]),
        ('UserWarning', 'earl-mmdet: a warning of the pr'[:30]),
        ('FutureWarning', 'another library is deprecated'[:30]),
    ], shown


def test_kaggle_submission_scales_back_to_dicom_pixels(tmp_path):
    """tools/test.py --kaggle-submission: boxes go back to DICOM pixels when the test file
    holds orig_width / orig_height (tools/convert_vindr.py --resize)."""
    from mmengine.config import Config

    images = [
        dict(id=1, file_name='abc.png', width=320, height=256, orig_width=2560, orig_height=2048),
        dict(id=2, file_name='plain.png', width=64, height=64),  # not resized: no entry
    ]
    (tmp_path / 'test.json').write_text(json.dumps(dict(images=images)))
    cfg = Config(
        dict(test_dataloader=dict(dataset=dict(data_root=str(tmp_path), ann_file='test.json')))
    )
    assert C.dicom_scales(cfg) == {'abc': (8.0, 8.0)}


@pytest.mark.parametrize(
    'files, folders, msg',
    [
        ([('--out', '{dir}')], [], '--out {dir} is a folder'),
        ([], [('--work-dir', '{file}')], '--work-dir {file} is an existing file'),
        ([('--out', '{file}/x.json')], [], '--out {file}/x.json: {file} is a file, not a folder'),
    ],
)
def test_check_output_paths_refuses_unwritable_paths(tmp_path, capsys, files, folders, msg):
    existing = tmp_path / 'exists.txt'
    existing.write_text('keep me')
    fill = dict(file=str(existing), dir=str(tmp_path))
    parser = argparse.ArgumentParser()
    with pytest.raises(SystemExit) as e:
        C.check_output_paths(
            parser,
            files=[(flag, path.format(**fill)) for flag, path in files],
            folders=[(flag, path.format(**fill)) for flag, path in folders],
        )
    assert e.value.code == 2
    assert msg.format(**fill) in capsys.readouterr().err
    # None and writable paths pass
    C.check_output_paths(parser, files=[('--out', None), ('--out', str(tmp_path / 'new.json'))])


def _rater_set(**fusion):
    return dict(type='MultiRaterCocoDataset', ann_file='train.json', **fusion)


def test_fusion_key_looks_through_dataset_wrappers():
    plain = dict(train_dataloader=dict(dataset=_rater_set(fusion=dict(method='wbf'))))
    assert C.fusion_key(plain) == 'train_dataloader.dataset.fusion'
    mixed = dict(
        train_dataloader=dict(
            dataset=dict(type='MultiImageMixDataset', dataset=_rater_set(fusion=None))
        )
    )
    assert C.fusion_key(mixed) == 'train_dataloader.dataset.dataset.fusion'
    assert C.fusion_cfg_options(mixed, method='rater:R2', iou_thr=0.5) == [
        'train_dataloader.dataset.dataset.fusion.method=rater:R2',
        'train_dataloader.dataset.dataset.fusion.iou_thr=0.5',
    ]
    with pytest.raises(ValueError, match='CocoDataset'):
        C.fusion_key(dict(train_dataloader=dict(dataset=dict(type='CocoDataset'))))
    with pytest.raises(ValueError, match='no val_dataloader.dataset'):
        C.fusion_key(plain, loader='val_dataloader')


def test_set_fusion_updates_the_wrapped_dataset_in_place():
    inner = _rater_set(fusion=dict(method='wbf', iou_thr=0.4))
    cfg = dict(train_dataloader=dict(dataset=dict(type='RepeatDataset', dataset=inner)))
    assert C.set_fusion(cfg, method='mv') == dict(method='mv', iou_thr=0.4)
    assert inner['fusion'] == dict(method='mv', iou_thr=0.4)
    raw = _rater_set(fusion=None)  # raw raters' boxes: the settings given are the fusion
    assert C.set_fusion(dict(train_dataloader=dict(dataset=raw)), method='wbf') == dict(
        method='wbf'
    )


@pytest.mark.parametrize('config', sorted((ROOT / 'configs' / 'medmnist').glob('*.py')))
def test_every_medmnist_config_has_a_fusion_key(config):
    """tools/benchmark_medmnist.py sets the fusion of these configs by its key."""
    cfg = C.read_config(str(config), None, import_custom_modules=False)
    assert C.fusion_key(cfg).endswith('dataset.fusion')


def _apply_cli_options(config: Path, opts: list[str]):
    """Read ``config`` with ``opts`` parsed as tools/train.py parses ``--cfg-options``."""
    parser = argparse.ArgumentParser()
    C.add_runner_args(parser)
    parsed = parser.parse_args(['--cfg-options', *opts]).cfg_options
    return C.read_config(str(config), parsed, import_custom_modules=False)


def _sizes(cfg, loader):
    pipeline = cfg[loader].dataset.pipeline
    return [
        tuple(step['scale' if step['type'] == 'Resize' else 'size'])
        for step in pipeline
        if step['type'] in C.SIZE_STEPS
    ]


@pytest.mark.parametrize(
    'name',
    [
        'yolox_nano_wbf-earl_20e_medmnist-cpu.py',
        'rtmdet_tiny_wbf_20e_medmnist-cpu.py',
        'faster-rcnn_r18_fpn_wbf_20e_medmnist-cpu.py',
    ],
)
def test_image_size_options_resize_every_pipeline(name):
    """The study trains the 128 px configs on 96 px data through these options."""
    config = ROOT / 'configs' / 'medmnist' / name
    loaders = ('train_dataloader', 'val_dataloader', 'test_dataloader')
    before = C.read_config(str(config), None, import_custom_modules=False)
    assert all(set(_sizes(before, loader)) == {(128, 128)} for loader in loaders)
    opts = C.image_size_cfg_options(before, 96, loaders)
    cfg = _apply_cli_options(config, opts)
    for loader in loaders:
        assert _sizes(cfg, loader) == [(96, 96), (96, 96)], loader
    # nothing else in the pipelines moved
    for loader in loaders:
        strip = [
            {k: v for k, v in s.items() if k not in ('scale', 'size')}
            for s in cfg[loader].dataset.pipeline
        ]
        orig = [
            {k: v for k, v in s.items() if k not in ('scale', 'size')}
            for s in before[loader].dataset.pipeline
        ]
        assert strip == orig


def test_image_size_options_refuse_a_pipeline_without_resize():
    cfg = dict(train_dataloader=dict(dataset=dict(pipeline=[dict(type='Pad', size=(8, 8))])))
    with pytest.raises(ValueError, match='no Resize step'):
        C.image_size_cfg_options(cfg, 96, ('train_dataloader',))
    wrapped = dict(
        train_dataloader=dict(
            dataset=dict(
                type='RepeatDataset', dataset=dict(pipeline=[dict(type='Resize', scale=(1, 1))])
            )
        )
    )
    assert C.image_size_cfg_options(wrapped, 64, ('train_dataloader',)) == [
        'train_dataloader.dataset.dataset.pipeline.0.scale=(64,64)'
    ]


def test_heavy_job_slot_lets_jobs_share_and_a_foreground_command_wait(tmp_path):
    """Study jobs under one --lock run together; a holder of the gate and of FILE.running
    (what `flock -x F flock -x F.running CMD` takes) keeps new jobs out and waits for the
    running ones, without being starved."""
    import fcntl
    import threading
    import time

    lock = str(tmp_path / 'heavy.lock')
    inside, most = [], [0]
    guard = threading.Lock()

    def job(hold: float) -> None:
        with C.heavy_job_slot(lock):
            with guard:
                inside.append(1)
                most[0] = max(most[0], len(inside))
            time.sleep(hold)
            with guard:
                inside.pop()

    jobs = [threading.Thread(target=job, args=(0.4,)) for _ in range(2)]
    for t in jobs:
        t.start()
    time.sleep(0.1)  # both are running now
    with open(lock, 'a') as gate, open(lock + '.running', 'a') as running:
        fcntl.flock(gate, fcntl.LOCK_EX)  # the foreground command takes the gate ...
        late = threading.Thread(target=job, args=(0.0,))
        late.start()  # ... so a new job waits at it
        t0 = time.monotonic()
        fcntl.flock(running, fcntl.LOCK_EX)  # ... and waits for the running jobs
        waited = time.monotonic() - t0
        assert not inside and most[0] == 2  # the two jobs ran together, and both ended
        assert waited > 0.15  # it did wait for them
        time.sleep(0.2)
        assert late.is_alive()  # the new job has not started while the command runs
        fcntl.flock(running, fcntl.LOCK_UN)
        fcntl.flock(gate, fcntl.LOCK_UN)
    late.join(5)
    for t in jobs:
        t.join(5)
    assert not late.is_alive()
    with C.heavy_job_slot(None):  # no lock: nothing to wait for
        pass
