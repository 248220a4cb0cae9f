"""Seeded multi-rater cases and every number the aggregators, EM models and the rater report
compute on them, for the parity test of the sparse (per-image) implementations.

``tests/test_core/crowd_parity.json.gz`` holds :func:`outputs` of every case in
:data:`CASES` as computed by the dense implementations of commit db2678b (tables sized
clusters x all raters of the file), written by::

    PYTHONPATH=. python -c "from tests.test_core.crowd_cases import dump; dump()"

Rewrite it only on purpose: ``test_crowd_scale.py`` holds the code to it (to 1e-9).
"""

from __future__ import annotations

import gzip
import json
import os.path as osp
import warnings
from typing import Any

import numpy as np

from earl_core.fusion.aggregators import build_aggregator
from earl_core.fusion.em import RaterEM
from earl_core.fusion.matching import cluster_boxes
from earl_core.fusion.presence_em import PresenceEM
from earl_core.metrics.rater_report import pairwise_f1, rater_report
from earl_core.structures import Detections

GOLDEN = osp.join(osp.dirname(__file__), 'crowd_parity.json.gz')

#: name -> (seed, images, rater pool, most raters per image, classes, grid, spread).
#: grid: integer coordinates on a 2-px grid (exact IoU ties, duplicate boxes); spread: box
#: jitter relative to the object size (0.25: components that are no cliques).
CASES = {
    'small': (0, 12, 6, 4, 3, False, 0.05),
    'ties': (1, 12, 8, 5, 2, True, 0.05),
    'crowd': (2, 4, 30, 30, 3, False, 0.25),
    'one_class': (3, 10, 5, 3, 1, False, 0.1),
    'sparse_readers': (4, 30, 40, 3, 3, False, 0.1),
}


def object_layout(
    rng: np.random.Generator,
    n: int,
    grid: bool,
    grid_cells: tuple[int, int],
    centres: tuple[float, float],
    sizes: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray]:
    """Centres and sizes, (n, 2) px each, of ``n`` objects: on a 10-px grid (centres in the
    cells ``grid_cells``, sizes 20-40 px: exact IoU ties) or continuous (uniform in the
    ``centres`` and ``sizes`` ranges)."""
    if grid:
        return rng.integers(*grid_cells, (n, 2)) * 10.0, rng.integers(2, 5, (n, 2)) * 10.0
    return rng.uniform(*centres, (n, 2)), rng.uniform(*sizes, (n, 2))


def make_case(
    seed: int,
    n_images: int,
    n_raters: int,
    max_raters_per_image: int,
    k: int,
    grid: bool,
    spread: float,
) -> tuple[list[Detections], Detections]:
    """Images of a case, and one more image read by a rater not in the pool."""
    rng = np.random.default_rng(seed)
    pool = [f'r{i:02d}' for i in range(n_raters)]
    images = []
    for i in range(n_images + 1):
        if i == n_images:  # the extra image: an unseen rater among those who read it
            read_by = ['unseen'] + list(rng.choice(pool, min(2, n_raters), replace=False))
        elif i == 1:
            read_by = []  # nobody read it
        else:
            n_read = int(rng.integers(1, max_raters_per_image + 1))
            read_by = [str(r) for r in rng.choice(pool, n_read, replace=False)]
        n_obj = int(rng.integers(0, 5)) if i != 2 else 0  # image 2: read, no box
        ctr, size = object_layout(rng, n_obj, grid, (2, 12), (20, 180), (10, 60))
        truth = rng.integers(0, k, n_obj)
        boxes, labels, rids = [], [], []
        for r in read_by:
            for o in range(n_obj):
                if rng.random() >= 0.75:
                    continue
                if grid:
                    c = ctr[o] + rng.integers(-1, 2, 2) * 2.0
                    s = size[o]
                else:
                    c = ctr[o] + rng.normal(0, spread, 2) * size[o]
                    s = size[o] * np.exp(rng.normal(0, spread, 2))
                lab = int(truth[o]) if rng.random() < 0.75 else int(rng.integers(0, k))
                for _ in range(2 if rng.random() < 0.1 else 1):  # twice on one object
                    boxes.append([*(c - s / 2), *(c + s / 2)])
                    labels.append(lab)
                    rids.append(r)
            if rng.random() < 0.3:  # a false positive somewhere
                xy = rng.uniform(0, 160, 2)
                if grid:
                    xy = np.round(xy / 2) * 2
                boxes.append([*xy, *(xy + 30)])
                labels.append(int(rng.integers(0, k)))
                rids.append(r)
        perm = rng.permutation(len(boxes))
        images.append(
            Detections.from_raters(
                np.asarray(boxes, np.float64).reshape(-1, 4)[perm],
                np.asarray(labels, np.int64)[perm],
                np.asarray(rids, dtype=object)[perm] if rids else np.zeros(0, str),
                tuple(read_by),
                width=300.0,
                height=300.0,
                image_id=i,
            )
        )
    return images[:-1], images[-1]


def singletons_case() -> tuple[list[Detections], Detections]:
    """One image of 60 boxes that overlap nothing (3 raters), and one unseen-rater image."""
    rng = np.random.default_rng(5)
    xy = np.stack(np.divmod(np.arange(60), 8), 1) * 40.0
    im = Detections.from_raters(
        np.concatenate([xy, xy + 20], 1),
        rng.integers(0, 3, 60),
        rng.choice(['a', 'b', 'c'], 60),
        ('a', 'b', 'c'),
        image_id=0,
    )
    extra = Detections.from_raters(
        [[0, 0, 20, 20], [1, 0, 21, 20]], [0, 1], ['a', 'z'], ('z', 'a'), image_id=1
    )
    return [im], extra


def all_cases() -> dict[str, tuple[list[Detections], Detections]]:
    out = {name: make_case(*args) for name, args in CASES.items()}
    out['singletons'] = singletons_case()
    return out


def plain(x: Any) -> Any:
    """JSON-able copy: arrays and tuples to lists, numpy scalars to Python, floats to 12
    significant digits."""
    if isinstance(x, dict):
        return {str(k): plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [plain(v) for v in x]
    if isinstance(x, np.ndarray):
        return plain(x.tolist())
    if isinstance(x, np.generic):
        return plain(x.item())
    if isinstance(x, float) and np.isfinite(x):
        return float(f'{x:.12g}')  # 12 digits: the test compares to 1e-9
    return x


def _fused(res) -> dict:
    return dict(
        boxes=res.boxes,
        labels=res.labels,
        confidence=res.confidence,
        agreement=res.agreement,
        num_raters=res.num_raters,
        members=[m.tolist() for m in res.members],
        member_raters=[list(m) for m in res.member_raters],
    )


def aggregator_specs(pool_rater: str) -> dict[str, Any]:
    """The specs whose results the parity test holds (every aggregator, several modes)."""
    return {
        'na': 'na',
        'rater': dict(type=f'rater:{pool_rater}', on_missing='skip'),
        'mv': 'mv',
        'mv_union_half': dict(type='mv', quorum=0.5, box_mode='union', class_agnostic=False),
        'wbf': 'wbf',
        'wbf_fused_score': dict(type='wbf', confidence='fused_score'),
        'em': 'em',
        'em_fused_prof': dict(type='em', confidence='fused_score', box_averaging='proficiency'),
        'em_keep': dict(type='em', drop_no_object=False, confidence='agreement_ratio'),
        'em_complete': dict(type='em', linkage='complete', iou_thr=0.3),
        'presence_em': 'presence_em',
        'presence_em_post': dict(
            type='presence_em', confidence='posterior', box_averaging='uniform'
        ),
    }


def outputs(images: list[Detections], extra: Detections) -> dict[str, Any]:
    """Everything the parity test compares, for one case."""
    warnings.simplefilter('ignore')
    out: dict[str, Any] = {}
    k = 1 + max(int(im.labels.max()) for im in images if len(im.labels))
    out['clusters'] = [
        [
            [c.tolist() for c in cluster_boxes(im.boxes, im.rater_ids, 0.4, lab, link)]
            for link in ('average', 'complete', 'single')
            for lab in (None, im.labels)
        ]
        for im in images + [extra]
    ]
    em = RaterEM(num_classes=k).fit(images)
    out['em'] = dict(
        summary=em.summary(),
        expected_counts=em.expected_counts_,
        fp_label_dist=em.fp_label_dist_,
        posterior=[em.posterior(im)[1] for im in images + [extra]],
        weights={kind: em.rater_weights(kind) for kind in ('box', 'proficiency', 'uniform')},
    )
    pe = PresenceEM(num_classes=k).fit(images)
    post = [pe.posterior(im) for im in images + [extra]]
    out['presence_em'] = dict(
        summary=pe.summary(),
        trace=pe.objective_trace_,
        posterior=[[p.presence, p.label_posterior] for p in post],
    )
    rater = sorted({r for im in images for r in im.raters})[0]
    out['aggregators'] = {}
    for name, spec in aggregator_specs(rater).items():
        agg = build_aggregator(spec).fit(images)
        out['aggregators'][name] = [_fused(agg(im)) for im in images + [extra]]
    raters = sorted({r for im in images for r in im.raters})
    f1, shared = pairwise_f1(images, raters, 0.5)
    out['pairwise_f1'] = dict(raters=raters, f1=f1, shared=shared)
    rep = rater_report(images, class_names=[f'c{i}' for i in range(k)])
    rep.pop('pairwise_f1')  # its matrix is held above (pairwise_f1 of every rater)
    out['report'] = rep
    if len(images) <= 12:
        rep = rater_report(images, aggregator='em', class_names=[f'c{i}' for i in range(k)])
        out['report_em_per_rater'] = rep['per_rater']
    return plain(out)


def dump() -> None:
    """Write :data:`GOLDEN` from the code on the path (see the module docstring)."""
    data = {name: outputs(*case) for name, case in all_cases().items()}
    with gzip.open(GOLDEN, 'wt', encoding='utf-8', compresslevel=9) as f:
        json.dump(data, f, separators=(',', ':'))


def load_golden() -> dict[str, Any]:
    """The outputs of the dense implementations (see the module docstring)."""
    with gzip.open(GOLDEN, 'rt', encoding='utf-8') as f:
        return json.load(f)
