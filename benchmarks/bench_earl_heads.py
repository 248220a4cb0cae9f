"""Benchmark: training-step time of the EARL heads, per loss policy, against mmdet's stock heads.

For RetinaNet-R50-FPN, YOLOX-S, RTMDet-tiny, ATSS-R50-FPN and GFL-R50-FPN (the model
sections of mmdet's own configs, no pretrained weights, 14 classes as VinDr-CXR), a stock
model and one EARL twin per loss policy (``earl_cfg=dict(policy=...)``, other options at
their defaults), all with the same parameters, run a full training step (forward, loss,
backward, SGD step) on the same batch: ``--batch`` random images of ``--size`` px with 3-8
boxes each and per-box confidence c in {1/3, 2/3, 1}, so that ``'soft'`` has targets q < 1
and ``'ignore'`` (``ignore_below=0.5``) turns the c = 1/3 boxes into ignore regions. The SGD
step has lr = 0 so that every variant keeps identical parameters (and so identical
assignments) throughout. The variants alternate within each repeat (the order reverses
every other repeat). The script prints, per model and policy, the median step time of
``--repeat`` repeats, the ratio of the medians EARL / stock (acceptance: <= 1.05) and the
median of the per-repeat ratios (robust to drift of a shared machine), then, as an HTML
comment, each variant's total loss at its first step (the policies change it: each path ran).

Run (heavy: wrap it so that it does not compete with other jobs)::

    flock /tmp/heavy.lock .venv/bin/python benchmarks/bench_earl_heads.py

About 8 minutes on two CPU cores with the defaults (batch 4 x 256 px, 15 repeats, 2 warm-up
steps; five models, three policies). ``--models`` and ``--policies`` select a subset;
``--head-only`` times the head alone (its forward, loss and backward on fixed neck
features). ``--quick`` (batch 2 x 128 px, 7 repeats, 1 warm-up step) is a smoke-level check
of the same comparison for a code change, about a minute on two CPU cores.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import platform
import statistics
import time
from pathlib import Path

import mmdet
import torch
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData

import earl_mmdet  # noqa: F401  (registers the EARL heads)
from earl_mmdet.models.earl_weights import EARL_POLICIES, EARLConfig

NUM_CLASSES = 14
MMDET_CONFIGS = Path(mmdet.__file__).parent / '.mim' / 'configs'
#: model name -> (mmdet config, EARL head type)
MODELS_TO_RUN = {
    'RetinaNet-R50-FPN': ('retinanet/retinanet_r50_fpn_1x_coco.py', 'EARLRetinaHead'),
    'YOLOX-S': ('yolox/yolox_s_8xb8-300e_coco.py', 'EARLYOLOXHead'),
    'RTMDet-tiny': ('rtmdet/rtmdet_tiny_8xb32-300e_coco.py', 'EARLRTMDetSepBNHead'),
    'ATSS-R50-FPN': ('atss/atss_r50_fpn_1x_coco.py', 'EARLATSSHead'),
    'GFL-R50-FPN': ('gfl/gfl_r50_fpn_1x_coco.py', 'EARLGFLHead'),
}
DEFAULT_MODELS = list(MODELS_TO_RUN)


def make_batch(batch: int, size: int, seed: int) -> dict:
    """Random images and gt boxes with their confidence, as a data preprocessor's input."""
    g = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for _ in range(batch):
        inputs.append(torch.randint(0, 256, (3, size, size), generator=g, dtype=torch.uint8))
        n = int(torch.randint(3, 9, (1,), generator=g))
        wh = torch.rand(n, 2, generator=g) * size * 0.4 + size * 0.05
        xy = torch.rand(n, 2, generator=g) * (size - wh)
        gt = InstanceData(
            bboxes=torch.cat([xy, xy + wh], 1),
            labels=torch.randint(0, NUM_CLASSES, (n,), generator=g),
            confidence=torch.randint(1, 4, (n,), generator=g).float() / 3.0,
        )
        s = DetDataSample(
            metainfo=dict(
                img_shape=(size, size),
                ori_shape=(size, size),
                scale_factor=(1, 1),
                pad_shape=(size, size),
            )
        )
        s.gt_instances = gt
        samples.append(s)
    return dict(inputs=inputs, data_samples=samples)


def build_variants(base: str, earl_type: str, policies: list[str], device: str) -> dict:
    """The stock model and one EARL twin per policy, all with the stock model's parameters."""
    cfg = Config.fromfile(str(MMDET_CONFIGS / base))
    model_cfg = cfg.model
    model_cfg.backbone.init_cfg = None
    model_cfg.bbox_head.num_classes = NUM_CLASSES
    if model_cfg.data_preprocessor.get('batch_augments'):
        model_cfg.data_preprocessor.batch_augments = None  # same input size every step
    torch.manual_seed(0)
    # SyncBN (RTMDet) -> BN, as a single-process run uses it
    stock = revert_sync_batchnorm(MODELS.build(copy.deepcopy(model_cfg))).to(device)
    variants = {'stock': stock}
    for policy in policies:
        earl_cfg = copy.deepcopy(model_cfg)
        earl_cfg.bbox_head.type = earl_type
        earl_cfg.bbox_head.earl_cfg = dict(policy=policy)
        earl = revert_sync_batchnorm(MODELS.build(earl_cfg)).to(device)
        earl.load_state_dict(stock.state_dict())
        variants[policy] = earl
    return variants


def step(model, optim, data, feats: tuple | None = None) -> tuple[float, float]:
    """One training step (with ``feats``: the head's forward, loss and backward on those
    fixed neck features only); returns its wall-clock time and the total loss."""
    if data['inputs'].is_cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    optim.zero_grad()
    if feats is None:
        losses = model.loss(data['inputs'], data['data_samples'])
    else:
        losses = model.bbox_head.loss(feats, data['data_samples'])
    total = sum(sum(v) if isinstance(v, (list, tuple)) else v for v in losses.values())
    total.backward()
    optim.step()
    if data['inputs'].is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - t0, float(total.detach())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--batch', type=int, default=4)
    parser.add_argument('--size', type=int, default=256)
    parser.add_argument('--repeat', type=int, default=15)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--models', nargs='+', default=DEFAULT_MODELS, choices=list(MODELS_TO_RUN))
    parser.add_argument(
        '--policies', nargs='+', default=list(EARL_POLICIES), choices=list(EARL_POLICIES)
    )
    parser.add_argument(
        '--head-only',
        action='store_true',
        help='time the head alone: bbox_head.loss and its backward on fixed neck features',
    )
    parser.add_argument(
        '--quick', action='store_true', help='batch 2 x 128 px, 7 repeats, 1 warm-up step'
    )
    args = parser.parse_args()
    if args.quick:
        args.batch, args.size, args.repeat, args.warmup = 2, 128, 7, 1
    torch.set_num_threads(args.threads)
    init_default_scope('mmdet')

    raw = make_batch(args.batch, args.size, seed=0)
    confidence = torch.cat([s.gt_instances.confidence for s in raw['data_samples']])
    ignore_below = EARLConfig().ignore_below
    print(
        f'# bench_earl_heads {datetime.datetime.now():%Y-%m-%d %H:%M}, '
        f'{platform.processor() or platform.machine()}, torch {torch.__version__}, '
        f'mmdet {mmdet.__version__}, device {args.device}, threads {args.threads}, '
        f'batch {args.batch} x {args.size} px, repeats {args.repeat} (median), '
        f'warm-up {args.warmup}{", head only" if args.head_only else ""}; '
        f'{confidence.numel()} boxes, {int((confidence < 1).sum())} with c < 1, '
        f'{int((confidence < ignore_below).sum())} ignored (c < {ignore_below})'
    )
    print(
        '| model | policy | stock step (s) | EARL step (s) | EARL / stock | median paired ratio |'
    )
    print('|---|---|---|---|---|---|')
    for name in args.models:
        base, earl_type = MODELS_TO_RUN[name]
        variants = build_variants(base, earl_type, args.policies, args.device)
        for model in variants.values():
            model.train()  # before the features: ResNet's norm_eval applies from train() on
        data = variants['stock'].data_preprocessor(copy.deepcopy(raw), True)
        feats = None
        if args.head_only:  # the same parameters everywhere: one set of features serves all
            with torch.no_grad():
                feats = tuple(f.detach() for f in variants['stock'].extract_feat(data['inputs']))
        # lr = 0: the step does all the work of a real one, but every variant keeps the same
        # parameters, so their assignments (SimOTA's dynamic k ...) and costs stay identical
        optims = {
            key: torch.optim.SGD(m.parameters(), lr=0.0, momentum=0.9)
            for key, m in variants.items()
        }
        times: dict[str, list[float]] = {key: [] for key in variants}
        first_loss = {}
        for key, model in variants.items():
            for _ in range(args.warmup):
                first_loss.setdefault(key, step(model, optims[key], data, feats)[1])
        for r in range(args.repeat):
            order = list(variants.items())
            if r % 2:
                order.reverse()
            for key, model in order:
                times[key].append(step(model, optims[key], data, feats)[0])
        t_stock = statistics.median(times['stock'])
        for policy in args.policies:
            t_earl = statistics.median(times[policy])
            paired = statistics.median(e / s for e, s in zip(times[policy], times['stock']))
            print(
                f'| {name} | {policy} | {t_stock:.4f} | {t_earl:.4f} | {t_earl / t_stock:.3f} '
                f'| {paired:.3f} |',
                flush=True,
            )
        # the policies do change the loss (c < 1 in the batch): a check that each path ran
        print(
            f'<!-- {name} total loss at the first step: '
            + ', '.join(f'{key} {loss:.4f}' for key, loss in first_loss.items())
            + ' -->',
            flush=True,
        )


if __name__ == '__main__':
    main()
