"""Benchmark: training-step time of the EARL heads against mmdet's stock heads.

For RetinaNet-R50-FPN and YOLOX-S (the model sections of mmdet's own configs, no
pretrained weights, 14 classes as VinDr-CXR), a stock model and its EARL twin with the same
parameters run a full training step (forward, loss, backward, SGD step) on the same batch:
``--batch`` random images of ``--size`` px with 3-8 boxes each and per-box confidence
c in {1/3, 2/3, 1}. The SGD step has lr = 0 so that both models keep identical parameters
(and so identical assignments) throughout. The two variants alternate within each repeat
(which one goes first alternates too). The script prints the median step time of
``--repeat`` repeats, the ratio of the medians EARL / stock (acceptance: <= 1.03) and the
median of the per-repeat ratios (robust to drift of a shared machine).

Run (heavy: wrap it so that it does not compete with other jobs)::

    flock /tmp/heavy.lock .venv/bin/python benchmarks/bench_earl_heads.py

``--quick`` (batch 2 x 128 px, 7 repeats, 1 warm-up step) is a smoke-level check of the
same comparison for a code change, about a minute on two CPU cores.
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
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData

import earl_mmdet  # noqa: F401  (registers the EARL heads)

NUM_CLASSES = 14
MMDET_CONFIGS = Path(mmdet.__file__).parent / '.mim' / 'configs'
MODELS_TO_RUN = {
    'RetinaNet-R50-FPN': ('retinanet/retinanet_r50_fpn_1x_coco.py', 'EARLRetinaHead'),
    'YOLOX-S': ('yolox/yolox_s_8xb8-300e_coco.py', 'EARLYOLOXHead'),
}


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


def build_pair(base: str, earl_type: str, device: str) -> tuple:
    cfg = Config.fromfile(str(MMDET_CONFIGS / base))
    model_cfg = cfg.model
    model_cfg.backbone.init_cfg = None
    model_cfg.bbox_head.num_classes = NUM_CLASSES
    if model_cfg.data_preprocessor.get('batch_augments'):
        model_cfg.data_preprocessor.batch_augments = None  # same input size every step
    torch.manual_seed(0)
    stock = MODELS.build(copy.deepcopy(model_cfg)).to(device)
    model_cfg.bbox_head.type = earl_type
    earl = MODELS.build(model_cfg).to(device)
    earl.load_state_dict(stock.state_dict())
    return stock, earl


def step(model, optim, data) -> float:
    if data['inputs'].is_cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    optim.zero_grad()
    losses = model.loss(data['inputs'], data['data_samples'])
    total = sum(sum(v) if isinstance(v, (list, tuple)) else v for v in losses.values())
    total.backward()
    optim.step()
    if data['inputs'].is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--batch', type=int, default=4)
    parser.add_argument('--size', type=int, default=256)
    parser.add_argument('--repeat', type=int, default=15)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--models', nargs='+', default=list(MODELS_TO_RUN))
    parser.add_argument(
        '--quick', action='store_true', help='batch 2 x 128 px, 7 repeats, 1 warm-up step'
    )
    args = parser.parse_args()
    if args.quick:
        args.batch, args.size, args.repeat, args.warmup = 2, 128, 7, 1
    torch.set_num_threads(args.threads)
    init_default_scope('mmdet')

    print(
        f'# bench_earl_heads {datetime.datetime.now():%Y-%m-%d %H:%M}, '
        f'{platform.processor() or platform.machine()}, torch {torch.__version__}, '
        f'device {args.device}, threads {args.threads}, '
        f'batch {args.batch} x {args.size} px, repeats {args.repeat} (median)'
    )
    print('| model | stock step (s) | EARL step (s) | EARL / stock | median paired ratio |')
    print('|---|---|---|---|---|')
    for name in args.models:
        base, earl_type = MODELS_TO_RUN[name]
        stock, earl = build_pair(base, earl_type, args.device)
        raw = make_batch(args.batch, args.size, seed=0)
        data = stock.data_preprocessor(copy.deepcopy(raw), True)
        # lr = 0: the step does all the work of a real one, but both models keep the same
        # parameters, so their assignments (SimOTA's dynamic k) and costs stay identical
        optims = {m: torch.optim.SGD(m.parameters(), lr=0.0, momentum=0.9) for m in (stock, earl)}
        times: dict[str, list[float]] = {'stock': [], 'earl': []}
        for model in (stock, earl):
            model.train()
            for _ in range(args.warmup):
                step(model, optims[model], data)
        for r in range(args.repeat):
            order = [('stock', stock), ('earl', earl)]
            if r % 2:
                order.reverse()
            for key, model in order:
                times[key].append(step(model, optims[model], data))
        t_stock, t_earl = statistics.median(times['stock']), statistics.median(times['earl'])
        paired = statistics.median(e / s for e, s in zip(times['earl'], times['stock']))
        print(
            f'| {name} | {t_stock:.4f} | {t_earl:.4f} | {t_earl / t_stock:.3f} | {paired:.3f} |',
            flush=True,
        )


if __name__ == '__main__':
    main()
