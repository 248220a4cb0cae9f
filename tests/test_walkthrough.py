"""docs/walkthrough.md names every package file that runs on one box's way (RetinaNet).

The path is traced: a multi-rater COCO file is loaded by ``MultiRaterCocoDataset`` with
the paper's fusion, one image goes through the pipeline, and ``EARLRetinaHead.loss`` runs on
it. Every file of ``earl_core/`` and ``earl_mmdet/`` that executes code on the way (module
imports excluded: everything is imported before the trace starts) must be in the
walkthrough's table, and every file of the table must run.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import torch
from mmdet.registry import DATASETS, MODELS
from mmengine.registry import init_default_scope

import earl_mmdet  # noqa: F401  (registration)

from .test_datasets.utils import write_set
from .test_models.earl_head_utils import CHANNELS, STRIDES, retina_kwargs

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ('earl_core', 'earl_mmdet')


def _walkthrough_files() -> set[str]:
    text = (ROOT / 'docs' / 'walkthrough.md').read_text(encoding='utf-8')
    rows = re.findall(r'^\| \d+ \| `([^`]+\.py)` \|', text, flags=re.M)
    assert rows, 'docs/walkthrough.md: no numbered table rows'
    return set(rows)


def _trace_one_box(tmp_path) -> set[str]:
    init_default_scope('mmdet')
    ann = write_set(str(tmp_path))
    cfg = dict(
        type='MultiRaterCocoDataset',
        data_root=str(tmp_path),
        ann_file=ann,
        data_prefix=dict(img=''),
        fusion=dict(method='wbf', iou_thr=0.4, confidence='agreement_ratio'),
        pipeline=[
            dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations', with_bbox=True),
            dict(type='Resize', scale=(64, 64), keep_ratio=False),
            dict(type='PackMultiRaterInputs'),
        ],
    )
    head = MODELS.build(dict(type='EARLRetinaHead', **retina_kwargs()))
    ran: set[str] = set()
    roots = tuple(str(ROOT / p) + '/' for p in PACKAGES)

    def tracer(frame, event, arg):
        name = frame.f_code.co_filename
        if event == 'call' and name.startswith(roots):
            ran.add(str(Path(name).relative_to(ROOT)))
        return None

    sys.setprofile(None)
    old = sys.gettrace()
    sys.settrace(tracer)
    try:
        dataset = DATASETS.build(cfg)
        item = dataset[0]
        sample = item['data_samples']
        # what mmdet's DetDataPreprocessor adds when it batches the image
        sample.set_metainfo(dict(pad_shape=(64, 64), batch_input_shape=(64, 64)))
        feats = tuple(torch.rand(1, CHANNELS, 64 // s, 64 // s) for s in STRIDES)
        head.loss(feats, [sample])
    finally:
        sys.settrace(old)
    return ran


def test_walkthrough_names_every_file_that_runs(tmp_path):
    ran = _trace_one_box(tmp_path)
    named = _walkthrough_files()
    assert ran == named, (
        f'ran but not named: {sorted(ran - named)}; named but not run: {sorted(named - ran)}'
    )
