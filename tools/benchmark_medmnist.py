"""The MED-MNIST study: every method x paired seeds, with intervals, resumable.

    python tools/benchmark_medmnist.py [--out work_dirs/benchmark] [--seeds 5]
        [--rater-seeds 2] [--epochs 12] [--methods na wbf wbf-earl ...] [--jobs 1]
        [--device auto|cpu|cuda] [--quick] [--sweep] [--report-only]
        [--data-seed-follows-seed] [--val-interval N] [--ema config|ema|swa]

Methods (configs/medmnist/yolox_nano_*_medmnist-cpu.py, a 2.2 M-parameter YOLOX at 128 px):

    na                every rater's box is a ground-truth box (the paper's NA baseline)
    rater             one model per rater (rater-R1, rater-R2, ...)
    ensemble          WBF of the per-rater models' predictions (needs 'rater'; no training)
    mv                majority vote (quorum > R/2), stock head
    wbf               WBF-fused boxes, stock head
    wbf-earl          WBF-fused boxes + EARL head, c = T/R (the paper's method)
    em-earl           EM rater reliabilities + weighted fusion + EARL head, c = posterior
    wbf-soft          WBF-fused boxes + EARL head, policy 'soft': class target IoU x c
    wbf-ignore        WBF-fused boxes + EARL head, policy 'ignore': boxes with c = T/R < 0.5
                      are ignore regions (neither positive nor negative), the rest weigh 1
    presence-em-earl  presence-aware EM (rater sensitivity, false positives) + weighted
                      fusion + EARL head, c = P(real object)

Ablations of how c enters the loss (docs/study_v3_design.md; run only when named):

    wbf-earl-wsum     wbf-earl with the weight-sum normaliser (normalize='weight_sum')
    wbf-earl-obj      wbf-earl with objectness weighted by c too (terms cls, bbox, obj)
    wbf-earl-na-like  WBF boxes weighted as NA weights them: w = T on cls, box and
                      objectness, weight-sum normaliser
    presence-em       presence-em-earl's boxes on the stock head (every box weight 1)

Challengers that landed after the pilot (run only when named):

    bayes-soft        Bayesian rater model (variational EM) + soft class targets
    bayes-loop-soft   bayes-soft with the detector in the loop (DetectorRaterHook: after 5
                      warm-up epochs the detector joins the raters, refit every 2 epochs)

Design: the data are generated once per proficiency (``tools/make_medmnist.py --preset cpu``,
data seed fixed); seed k drives initialisation, data order and augmentation of *every*
method (``randomness.seed=k``), so methods are compared seed by seed (paired). Each run
trains with ``tools/train.py``, predicts the gold test set (1,000 images, digits never seen
in training) with ``tools/test.py --out preds.pkl`` and is scored by
``DetectionMAPMetric`` (mAP@0.4 101-point, mAP@[.5:.95]). A finished run leaves
``result.json`` in its folder and is skipped next time, so the study can run in parts.
``--bootstrap B`` adds, for seed 0, a bootstrap over test images (B resamples) of each
method's mAP and of its difference to NA: the test set's own sampling noise, reported
beside the seed spread.

Writes ``OUT/results.json`` (every run + summaries), ``OUT/results.md`` (mean and 95 %
t-interval over seeds; paired differences to NA with their intervals, and the verdict
"no detectable difference" where an interval covers 0) and ``OUT/*.png`` plots.

The v3 study's options (docs/study_v3_design.md; without them a run gets the pilot's
options exactly): ``--data-seed-follows-seed`` gives every replicate its own data (seed k
on data seed ``--data-seed`` + k, cached as ``OUT/data/seed<S>/p<p>``), so a conclusion
holds beyond one draw of images, raters and test set; ``--val-interval N`` validates on the
gold validation set every N epochs and keeps the curve in each ``result.json``
(``val_curve``: epoch, mAP, mAP_40; the report tabulates and plots it; validation does
not change the training, RandomStateHook restores the random state after it);
``--ema ema|swa`` tests weights that really average the last ``--ema-window`` (default
0.2) of the iterations instead of the configs' ExpMomentumEMA, whose newest iterate
weighs 0.32 after a 24-epoch run (earl_mmdet/engine/averaging.py; every ``result.json``
records what its weights average, ``ema``). ``OUT/study.json`` records the data seed
setting and ``--ema``, and a folder refuses runs with other settings.

``--quick``: one seed, na / wbf / wbf-earl, 2 epochs (a smoke run, <= 10 min on 2 cores).
``--sweep``: proficiency p in {0.6, 0.7, 0.8, 0.9} for na / wbf / wbf-earl / em-earl.
``--jobs N`` runs N trainings at once (each with its share of the CPU threads); on a
machine with a GPU, ``--device cuda --jobs 6`` shares the GPU between them.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import os.path as osp
import re
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import numpy as np
from _common import (
    check_output_paths,
    child_env,
    filter_third_party_warnings,
    fusion_cfg_options,
    heavy_job_slot,
    image_size_cfg_options,
    input_size,
    machine_description,
    medmnist_cfg_options,
    read_config,
    train_log_status,
)

from earl_core.cli import add_choice_argument
from earl_core.io import safe_output
from earl_core.study.benchmark import (
    METHODS,
    STUDY_METHODS,
    Run,
    markdown,
    method_family,
    method_rater,
    plan,
    plots,
    rater_method,
    summarize,
    val_curve_from_log,
)
from earl_mmdet.engine.averaging import EMA_MODES, ema_record, ema_setup
from earl_mmdet.evaluation.predictions import (
    bootstrap_scores,
    fuse_predictions,
    load_predictions,
    score_predictions,
)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG_DIR = 'configs/medmnist'
CONFIGS = {
    'na': 'yolox_nano_na_20e_medmnist-cpu.py',
    'mv': 'yolox_nano_mv_20e_medmnist-cpu.py',
    'wbf': 'yolox_nano_wbf_20e_medmnist-cpu.py',
    'wbf-earl': 'yolox_nano_wbf-earl_20e_medmnist-cpu.py',
    'em-earl': 'yolox_nano_em-earl_20e_medmnist-cpu.py',
    'wbf-soft': 'yolox_nano_wbf-soft_20e_medmnist-cpu.py',
    'wbf-ignore': 'yolox_nano_wbf-ignore_20e_medmnist-cpu.py',
    'presence-em-earl': 'yolox_nano_presence-em-earl_20e_medmnist-cpu.py',
    'rater': 'yolox_nano_rater-R1_20e_medmnist-cpu.py',
    # the mechanism ablations (docs/study_v3_design.md)
    'wbf-earl-wsum': 'yolox_nano_wbf-earl-wsum_20e_medmnist-cpu.py',
    'wbf-earl-obj': 'yolox_nano_wbf-earl-obj_20e_medmnist-cpu.py',
    'wbf-earl-na-like': 'yolox_nano_wbf-earl-na-like_20e_medmnist-cpu.py',
    'presence-em': 'yolox_nano_presence-em_20e_medmnist-cpu.py',
    # challengers that landed after the pilot (issue 27)
    'bayes-soft': 'yolox_nano_bayes-soft_20e_medmnist-cpu.py',
    'bayes-loop-soft': 'yolox_nano_bayes-loop-soft_20e_medmnist-cpu.py',
}

SWEEP_P = (0.6, 0.7, 0.8, 0.9)
SWEEP_METHODS = ('na', 'wbf', 'wbf-earl', 'em-earl')
ENSEMBLE_IOU = 0.55  # tools/ensemble_predictions.py default


@dataclass(frozen=True)
class DataSpec:
    """The data of a study: ``tools/make_medmnist.py --preset PRESET --seed S ARGS``.

    With ``follows_seed`` every replicate has its own data: seed k trains on data drawn
    with data seed ``data_seed + k`` (images, raters, test set), so a conclusion holds
    beyond one draw; otherwise every seed shares data seed ``data_seed`` (the pilot).
    """

    preset: str = 'cpu'
    data_seed: int = 0
    args: tuple[str, ...] = ()
    follows_seed: bool = False

    def seed_of(self, run: Run) -> int:
        """The data seed ``run`` trains and is tested on."""
        return self.data_seed + run.seed if self.follows_seed else self.data_seed

    def settings(self) -> dict:
        """What ``OUT/study.json`` records (the pilot's keys; more only when set)."""
        out: dict[str, Any] = dict(
            preset=self.preset, data_seed=self.data_seed, data_args=list(self.args)
        )
        if self.follows_seed:
            out['data_seed_follows_seed'] = True
        return out


@dataclass
class Study:
    """How the runs are executed (each run carries its own method/seed/p/epochs)."""

    out: str
    device: str
    jobs: int
    workers: int = 0
    lock: str | None = None
    threads: int | None = None  # per training; None: the CPU cores shared among the jobs
    data: DataSpec = DataSpec()
    val_interval: int = 0  # validate on the gold validation set every N epochs (0: never)
    ema: str = 'config'  # one of EMA_MODES
    ema_window: float = 0.2  # 'ema' / 'swa': the share of the iterations averaged


# ----------------------------------------------------------------------------- running


def data_dir(out: str, p: float, data_seed: int | None = None) -> str:
    """``OUT/data/p<p>`` (one data seed for the study) or ``OUT/data/seed<S>/p<p>`` (data
    seed S of a study whose data follow the seed)."""
    if data_seed is None:
        return osp.join(out, 'data', f'p{p:g}')
    return osp.join(out, 'data', f'seed{data_seed}', f'p{p:g}')


def run_data_dir(out: str, data: DataSpec, run: Run) -> str:
    """The data folder ``run`` trains on."""
    return data_dir(out, run.proficiency, data.seed_of(run) if data.follows_seed else None)


def ensure_data(
    out: str,
    p: float,
    data_seed: int,
    extra: Sequence[str] = (),
    preset: str = 'cpu',
    per_seed: bool = False,
) -> str:
    """Generate the data once (``meta.json``, written last, marks a finished set); the
    generator gives the same bytes for the same seed and flags."""
    d = data_dir(out, p, data_seed if per_seed else None)
    if osp.isfile(osp.join(d, 'meta.json')):
        return d
    cmd = ['tools/make_medmnist.py', '--preset', preset, '--out', d]
    cmd += ['--seed', str(data_seed), '--proficiency', str(p), '--overwrite', *extra]
    print(
        f'generating MED-MNIST ({preset} preset, p = {p:g}, data seed {data_seed}) in {d}',
        flush=True,
    )
    _python(cmd, log=None, env=_env(1, 'cpu'))
    return d


def ensure_study_data(
    out: str, data: DataSpec, proficiencies: Sequence[float], seeds: int
) -> dict[float, list[str]]:
    """Generate the data of seeds ``0..seeds-1`` at every p (one set per data seed and p;
    one per p when the data do not follow the seed). Returns the raters per p, checked to
    be the same in every data seed (the plan names one model per rater)."""
    raters_by_p: dict[float, list[str]] = {}
    for p in proficiencies:
        data_seeds = sorted({data.seed_of(Run('na', s, p, 0)) for s in range(seeds)})
        for seed in data_seeds:
            d = ensure_data(out, p, seed, data.args, data.preset, data.follows_seed)
            ids = rater_ids(d)
            if raters_by_p.setdefault(p, ids) != ids:
                raise SystemExit(
                    f'{d}/train.json: raters {ids} differ from those of the other data seeds '
                    f'({raters_by_p[p]}); a study of per-rater models needs the same raters'
                )
    return raters_by_p


def check_settings(out: str, settings: dict) -> None:
    """Record the study's data settings in ``OUT/study.json``; refuse other settings later.

    The runs of one folder are paired and pooled, so they must share their data: a second
    call with another preset, data seed or data flags would mix two studies.
    """
    path = osp.join(out, 'study.json')
    if osp.isfile(path):
        with open(path) as f:
            before = json.load(f)
        if before != settings:
            changed = sorted(k for k in {*before, *settings} if before.get(k) != settings.get(k))
            raise SystemExit(
                f'{path}: this study folder was made with other data settings '
                f'({", ".join(f"{k}: {before.get(k)!r} -> {settings.get(k)!r}" for k in changed)})'
                '; use another --out'
            )
        return
    _write_json(path, settings)


def canvas_of(d: str) -> int:
    """The image side (pixels) the data in ``d`` were generated at (its meta.json)."""
    with open(osp.join(d, 'meta.json')) as f:
        return int(json.load(f)['args']['canvas'])


def rater_ids(d: str) -> list[str]:
    with open(osp.join(d, 'train.json')) as f:
        train = json.load(f)
    ids = {str(a['annotator_id']) for a in train['annotations']}
    for im in train['images']:
        ids.update(str(r) for r in im.get('annotators', []))
    return sorted(ids)


def cfg_options(
    run: Run,
    d: str,
    workers: int = 0,
    val_interval: int = 0,
    ema: str = 'config',
    ema_window: float = 0.2,
) -> list[str]:
    """The ``--cfg-options`` of ``run``'s training and test on the data in ``d``.

    ``val_interval`` > 0 validates on the gold validation set every that many epochs (the
    curve of :func:`read_val_curve`); ``ema`` other than ``'config'`` replaces the config's
    EMA (:func:`ema_setup`). The defaults give the pilot's options exactly.
    """
    val = val_interval > 0
    opts = medmnist_cfg_options(d, run.epochs, run.seed, val=val, val_interval=val_interval or None)
    opts += [
        f'default_hooks.checkpoint.interval={run.epochs}',
        f'train_dataloader.num_workers={workers}',
        f'train_dataloader.persistent_workers={workers > 0}',
        f'test_dataloader.num_workers={workers}',
        f'test_dataloader.persistent_workers={workers > 0}',
        'default_hooks.logger.interval=50',
    ]
    if val:
        opts += [
            f'val_dataloader.num_workers={workers}',
            f'val_dataloader.persistent_workers={workers > 0}',
        ]
    cfg = _config(config_of(run))
    canvas = canvas_of(d)
    if canvas != input_size(cfg):  # e.g. 96 px study data, 128 px configs
        loaders = ('train_dataloader', 'test_dataloader') + (('val_dataloader',) if val else ())
        opts += image_size_cfg_options(cfg, canvas, loaders)
    if (rater := method_rater(run.method)) is not None:  # one config for every rater
        opts += fusion_cfg_options(cfg, method=f'rater:{rater}')
    if ema != 'config':
        hooks = cfg.get('custom_hooks')
        opts += ema_setup(hooks, train_iters(cfg, d, run.epochs), ema, ema_window)[0]
    return opts


def train_iters(cfg: Any, d: str, epochs: int) -> int:
    """Training iterations of ``epochs`` on the data in ``d``: one batch per
    ``train_dataloader.batch_size`` images of ``train.json`` (the last one partial)."""
    with open(osp.join(d, 'train.json')) as f:
        images = len(json.load(f)['images'])
    batch = int(cfg['train_dataloader']['batch_size'])
    return epochs * -(-images // batch)


@functools.cache
def _config(config: str) -> Any:
    return read_config(osp.join(ROOT, config), None, False)


def config_of(run: Run) -> str:
    """The config a training run trains (relative to the repository root)."""
    return osp.join(CONFIG_DIR, CONFIGS[method_family(run.method)])


def _env(threads: int, device: str) -> dict[str, str]:
    env = child_env(ROOT, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    if device == 'cpu':
        env['CUDA_VISIBLE_DEVICES'] = ''
    return env


_CHILDREN: set[subprocess.Popen] = set()
_ACTIVE_LOGS: set[str] = set()  # logs being written (for the heartbeat)


def _python(args: list[str], log: str | None, env: dict[str, str]) -> None:
    cmd = [sys.executable, *args]
    if log is not None:
        _ACTIVE_LOGS.add(log)
    with open(log or os.devnull, 'w') as f:
        out = None if log is None else f
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=out)
        _CHILDREN.add(proc)
        try:
            proc.wait()
        finally:
            _CHILDREN.discard(proc)
            _ACTIVE_LOGS.discard(log or '')
    if proc.returncode != 0:
        where = f' (log: {log})' if log else ''
        raise RuntimeError(f'failed with exit code {proc.returncode}: {" ".join(args)}{where}')


def run_dir(out: str, run: Run) -> str:
    return osp.join(out, 'runs', run.key)


def load_result(out: str, run: Run) -> dict | None:
    path = osp.join(run_dir(out, run), 'result.json')
    if not osp.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def _write_json(path: str, obj: Any) -> None:
    # Temporary file + rename: a killed run never leaves a half-written result.
    safe_output.write_json(path, obj, indent=1)


def _gold(d: str) -> tuple[str, dict]:
    path = osp.join(d, 'test.json')
    with open(path) as f:
        return path, json.load(f)


def train_and_score(study: Study, run: Run, threads: int) -> dict:
    with heavy_job_slot(study.lock):  # the --jobs trainings share it; see its docstring
        return _train_and_score(study, run, threads)


def _train_and_score(study: Study, run: Run, threads: int) -> dict:
    d = run_data_dir(study.out, study.data, run)
    wd = run_dir(study.out, run)
    os.makedirs(wd, exist_ok=True)
    config = config_of(run)
    opts = cfg_options(run, d, study.workers, study.val_interval, study.ema, study.ema_window)
    env = _env(threads, study.device)
    before = set(os.listdir(wd))
    t0 = time.time()
    _python(
        ['tools/train.py', config, '--work-dir', wd, '--cfg-options', *opts],
        osp.join(wd, 'train.log'),
        env,
    )
    t1 = time.time()
    extra: dict[str, Any] = {}
    if study.val_interval:
        extra['val_interval'] = study.val_interval
        extra['val_curve'] = read_val_curve(wd, before)
    ckpt = osp.join(wd, f'epoch_{run.epochs}.pth')
    preds_path = osp.join(wd, 'preds.pkl')
    test = ['tools/test.py', config, ckpt, '--work-dir', wd, '--out', preds_path]
    _python([*test, '--cfg-options', *opts], osp.join(wd, 'test.log'), env)
    t2 = time.time()
    gold_path, gold = _gold(d)
    metrics = score_predictions(load_predictions(preds_path, gold), gold_path, gold)
    cfg = _config(config)
    result = run_record(
        run,
        study,
        metrics,
        config=config,
        cfg_options=opts,
        train_s=round(t1 - t0, 1),
        test_s=round(t2 - t1, 1),
        threads=threads,
        data_seed=study.data.seed_of(run),
        ema=ema_record(
            cfg.get('custom_hooks'), train_iters(cfg, d, run.epochs), study.ema, study.ema_window
        ),
        **extra,
    )
    if os.environ.get('EARL_BENCH_KEEP_CKPT') != '1':
        for name in os.listdir(wd):
            if name.endswith('.pth'):
                os.remove(osp.join(wd, name))
    _write_json(osp.join(wd, 'result.json'), result)
    return result


def run_record(run: Run, study: Study, metrics: dict, **extra: Any) -> dict:
    """A finished run's ``result.json``: what identifies it, its metrics, and ``extra``."""
    return dict(
        method=run.method,
        seed=run.seed,
        proficiency=run.proficiency,
        epochs=run.epochs,
        metrics=metrics,
        device=study.device,
        finished=time.strftime('%Y-%m-%d %H:%M:%S'),
        **extra,
    )


def read_val_curve(wd: str, before: set[str]) -> list[dict]:
    """The validation curve of the training that wrote ``wd``'s newest run folder (one of
    those not in ``before``): mmengine's scalar log ``<timestamp>/vis_data/<timestamp>.json``
    (:func:`~earl_core.study.benchmark.val_curve_from_log`).

    Raises:
        RuntimeError: no new run folder, or its log holds no validation.
    """
    stamps = sorted(n for n in set(os.listdir(wd)) - before if re.fullmatch(r'\d{8}_\d{6}', n))
    if not stamps:
        raise RuntimeError(f'{wd}: the training left no <timestamp> folder with its log')
    path = osp.join(wd, stamps[-1], 'vis_data', f'{stamps[-1]}.json')
    try:
        with open(path) as f:
            curve = val_curve_from_log(f)
    except OSError as e:
        raise RuntimeError(f'{path}: no scalar log ({e})') from e
    if not curve:
        raise RuntimeError(f'{path}: no validation results (coco/mAP) in the scalar log')
    return curve


def ensemble_predictions(out: str, run: Run, members: Sequence[str], gold: dict) -> dict:
    """WBF (IoU ENSEMBLE_IOU) of the member runs' test predictions for ``run``'s seed."""
    preds = [
        load_predictions(
            osp.join(run_dir(out, Run(m, run.seed, run.proficiency, run.epochs)), 'preds.pkl'),
            gold,
        )
        for m in members
    ]
    return fuse_predictions(preds, gold, iou_thr=ENSEMBLE_IOU)


def ensemble_and_score(study: Study, run: Run, raters: Sequence[str]) -> dict:
    d = run_data_dir(study.out, study.data, run)
    gold_path, gold = _gold(d)
    members = [rater_method(r) for r in raters]
    fused = ensemble_predictions(study.out, run, members, gold)
    metrics = score_predictions(fused, gold_path, gold)
    wd = run_dir(study.out, run)
    os.makedirs(wd, exist_ok=True)
    result = run_record(
        run,
        study,
        metrics,
        members=members,
        wbf_iou_thr=ENSEMBLE_IOU,
        train_s=0.0,
        test_s=0.0,
        data_seed=study.data.seed_of(run),
    )
    _write_json(osp.join(wd, 'result.json'), result)
    return result


class Progress:
    """Prints one line per finished run with the elapsed time and an ETA, and a heartbeat
    with the running trainings' own ETA every ``heartbeat_s`` seconds."""

    def __init__(self, total: int, jobs: int) -> None:
        self.total, self.jobs, self.done, self.durations = total, jobs, 0, []
        self.t0 = time.time()
        self.lock = threading.Lock()
        self.heartbeat_s, self.last_beat = 60.0, time.time()

    def heartbeat(self) -> None:
        if time.time() - self.last_beat < self.heartbeat_s:
            return
        self.last_beat = time.time()
        for log in list(_ACTIVE_LOGS):
            status = train_log_status(log)
            name = osp.relpath(osp.dirname(log), osp.join(osp.dirname(log), '..', '..', '..'))
            print(
                f'  ... {name}: {status or osp.basename(log)} '
                f'({self.done}/{self.total} done, elapsed {(time.time() - self.t0) / 60:.1f} min)',
                flush=True,
            )

    def finished(self, run: Run, result: dict) -> None:
        with self.lock:
            self.done += 1
            took = result.get('train_s', 0) + result.get('test_s', 0)
            if took > 0:
                self.durations.append(took)
            left = self.total - self.done
            eta = ''
            if self.durations and left:
                eta_s = float(np.mean(self.durations)) * left / self.jobs
                eta = f', ETA {eta_s / 60:.1f} min'
            m = result['metrics']
            print(
                f'[{self.done}/{self.total}] {run.key}: mAP@0.4 {m["mAP_40"]:.4f} '
                f'mAP {m["mAP"]:.4f} ({took / 60:.1f} min; elapsed '
                f'{(time.time() - self.t0) / 60:.1f} min{eta})',
                flush=True,
            )


def execute(study: Study, runs: list[Run], raters_by_p: dict[float, list[str]]) -> None:
    todo = [r for r in runs if load_result(study.out, r) is None]
    print(
        f'{len(runs)} runs planned, {len(runs) - len(todo)} already done, {len(todo)} to run '
        f'({study.jobs} at a time, device {study.device})',
        flush=True,
    )
    trainings = [r for r in todo if r.method != 'ensemble']
    ensembles = [r for r in todo if r.method == 'ensemble']
    progress = Progress(len(todo), study.jobs)
    threads = study.threads or max(1, (os.cpu_count() or 1) // study.jobs)
    failures = []
    if trainings:
        pool = ThreadPoolExecutor(max_workers=study.jobs)
        try:
            futures = {pool.submit(train_and_score, study, r, threads): r for r in trainings}
            print(f'started {min(study.jobs, len(trainings))} run(s) ...', flush=True)
            pending = set(futures)
            while pending:  # short waits: a signal reaches the main thread promptly
                done, pending = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
                progress.heartbeat()
                for fut in done:
                    run = futures[fut]
                    try:
                        progress.finished(run, fut.result())
                    except Exception as exc:  # keep the other runs going; report at the end
                        failures.append((run, exc))
                        print(f'FAILED {run.key}: {exc}', flush=True)
        except BaseException:  # Ctrl-C / timeout: stop the trainings, keep finished results
            pool.shutdown(wait=False, cancel_futures=True)
            for child in list(_CHILDREN):
                child.terminate()
            raise
        pool.shutdown()
    for run in ensembles:
        raters = raters_by_p[run.proficiency]
        members = [Run(rater_method(r), run.seed, run.proficiency, run.epochs) for r in raters]
        missing = [m.key for m in members if load_result(study.out, m) is None]
        if missing:
            failures.append((run, RuntimeError(f'members not trained: {missing}')))
            continue
        progress.finished(run, ensemble_and_score(study, run, raters))
    if failures:
        raise SystemExit(f'{len(failures)} run(s) failed: ' + ', '.join(r.key for r, _ in failures))


def add_bootstrap(study: Study, runs: list[Run], num: int) -> None:
    """Bootstrap over test images for seed 0 of each (proficiency, epochs) group."""
    groups: dict[tuple, list[Run]] = {}
    for r in runs:
        if r.seed == 0:
            groups.setdefault((r.proficiency, r.epochs), []).append(r)
    for members in groups.values():
        results = {r: load_result(study.out, r) for r in members}
        if all(res is not None and 'bootstrap' in res for res in results.values()):
            continue
        d = run_data_dir(study.out, study.data, members[0])
        _, gold = _gold(d)
        preds = {}
        for r in members:
            pkl = osp.join(run_dir(study.out, r), 'preds.pkl')
            if r.method == 'ensemble':
                preds[r.method] = ensemble_predictions(study.out, r, results[r]['members'], gold)
            elif osp.isfile(pkl):
                preds[r.method] = load_predictions(pkl, gold)
        t0 = time.time()
        print(f'bootstrap over test images: {num} resamples x {len(preds)} methods', flush=True)
        boot = bootstrap_scores(preds, gold, num)
        print(f'bootstrap done in {(time.time() - t0) / 60:.1f} min', flush=True)
        for r in members:
            if r.method in boot and results[r] is not None:
                results[r]['bootstrap'] = boot[r.method]
                _write_json(osp.join(run_dir(study.out, r), 'result.json'), results[r])


def read_runs_json(path: str, settings: dict) -> list[dict]:
    """The finished runs of ``path`` (a results.json, e.g. a committed one), checked to come
    from a study with these data ``settings`` (``OUT/study.json``)."""
    with open(path) as f:
        data = json.load(f)
    theirs = data.get('meta', {}).get('study')
    if theirs != settings:
        raise SystemExit(
            f"{path}: its data settings ({theirs}) are not this study folder's ({settings}); "
            'a study continues only from runs on the same data'
        )
    return data['runs']


def import_runs(out: str, results: Sequence[dict], runs: Sequence[Run], source: str) -> int:
    """Write the ``results`` that this plan has and ``OUT/runs`` lacks into ``OUT/runs``: a
    study continues from its committed results on another machine or in another session.
    Returns how many were taken. Imported runs carry no predictions, so a bootstrap or an
    ensemble over them needs their members rerun."""
    wanted = {r.key for r in runs}
    taken = 0
    for res in results:
        run = Run(res['method'], res['seed'], res['proficiency'], res['epochs'])
        if run.key in wanted and load_result(out, run) is None:
            os.makedirs(run_dir(out, run), exist_ok=True)
            _write_json(osp.join(run_dir(out, run), 'result.json'), dict(res, imported_from=source))
            taken += 1
    print(f'{taken} finished run(s) taken from {source}', flush=True)
    return taken


def report(out: str, command: str, device: str, runs_json: str | None = None) -> dict:
    """Summarise the finished runs under ``OUT/runs`` (or those of a results.json file)."""
    results = []
    runs_root = osp.join(out, 'runs')
    if runs_json:
        with open(runs_json) as f:
            results = json.load(f)['runs']
    for dirpath, _, files in [] if runs_json else os.walk(runs_root):
        if 'result.json' in files:
            with open(osp.join(dirpath, 'result.json')) as f:
                results.append(json.load(f))
    if not results:
        raise SystemExit(f'no finished runs in {runs_json or runs_root}')
    summary = summarize(results)
    meta = dict(
        command=command,
        date=time.strftime('%Y-%m-%d %H:%M %Z'),
        device=device,
        machine=machine_description(),
    )
    settings = osp.join(out, 'study.json')
    if runs_json:
        with open(runs_json) as f:
            study_settings = json.load(f).get('meta', {}).get('study')
    elif osp.isfile(settings):
        with open(settings) as f:
            study_settings = json.load(f)
    else:
        study_settings = None
    if study_settings:
        meta['study'] = study_settings
    _write_json(osp.join(out, 'results.json'), dict(meta=meta, summary=summary, runs=results))
    md = markdown(summary, meta)
    safe_output.atomic_write(osp.join(out, 'results.md'), md + '\n')
    pngs = plots(summary, out)
    print('\n' + md)
    print(f'written: {osp.join(out, "results.json")}, {osp.join(out, "results.md")}, {pngs}')
    return summary


# ----------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument('--out', default='work_dirs/benchmark', help='study folder (resumable)')
    p.add_argument('--methods', nargs='+', choices=METHODS, help='default: all')
    p.add_argument('--seeds', type=int, default=5, help='paired seeds 0..N-1 (default 5)')
    p.add_argument(
        '--rater-seeds', type=int, default=2, help='seeds for rater/ensemble (default 2)'
    )
    p.add_argument('--epochs', type=int, default=12, help='training epochs (default 12)')
    p.add_argument('--proficiency', type=float, nargs='+', default=[0.8], help='rater p')
    p.add_argument('--data-seed', type=int, default=0, help='MED-MNIST generation seed')
    p.add_argument(
        '--preset',
        default='cpu',
        help='tools/make_medmnist.py preset of the data (default cpu; the powered study: '
        "'study' and 'study-vindr-like', 96 px)",
    )
    p.add_argument(
        '--data-args', default='', help='extra make_medmnist.py flags, e.g. "--num-train 64"'
    )
    p.add_argument(
        '--data-seed-follows-seed',
        action='store_true',
        help='each replicate a fresh draw of data, raters and test set: seed k trains on data '
        'seed DATA_SEED + k (OUT/data/seed<S>/p<p>); default: every seed on data seed '
        'DATA_SEED (the pilot)',
    )
    p.add_argument(
        '--val-interval',
        type=int,
        default=0,
        metavar='N',
        help="validate on the gold validation set every N epochs and after the last; each run's "
        'result.json keeps the curve (val_curve: epoch, mAP, mAP_40). Default 0: none',
    )
    add_choice_argument(
        p,
        '--ema',
        EMA_MODES,
        help="the averaged weights that are tested: 'config' the config's EMA (ExpMomentumEMA, "
        "which barely averages: the pilot); 'ema' an EMA whose span is --ema-window of the "
        "iterations; 'swa' the uniform mean of the last --ema-window of the iterates",
    )
    p.add_argument(
        '--ema-window',
        type=float,
        default=0.2,
        help="share of the training iterations that --ema 'ema' / 'swa' average (default 0.2)",
    )
    p.add_argument('--jobs', type=int, default=1, help='trainings at once (default 1)')
    p.add_argument(
        '--threads',
        type=int,
        help='CPU threads per training (default: cores / --jobs); e.g. 1 when two studies '
        'share a 2-core machine',
    )
    p.add_argument(
        '--workers',
        type=int,
        default=0,
        help='data-loader workers per run (default 0: fastest on 2 cores, measured)',
    )
    p.add_argument(
        '--lock',
        help='a lock file shared by the trainings (e.g. /tmp/heavy.lock): a run starts only '
        'while nobody holds it; `flock -x F flock -x F.running CMD` runs CMD alone once the '
        'running trainings end',
    )
    p.add_argument('--device', default='auto', choices=['auto', 'cpu', 'cuda'])
    p.add_argument('--bootstrap', type=int, default=0, help='test-image resamples (seed 0)')
    p.add_argument('--quick', action='store_true', help='1 seed, na/wbf/wbf-earl, 2 epochs')
    p.add_argument('--sweep', action='store_true', help='p in 0.6..0.9, na/wbf/wbf-earl/em-earl')
    p.add_argument('--report-only', action='store_true', help='only rebuild the report')
    p.add_argument(
        '--runs-json',
        help='with --report-only: report the runs of this results.json (e.g. '
        'docs/results_medmnist.json) instead of OUT/runs; otherwise: take its finished runs '
        'into OUT/runs first (continue a committed study)',
    )
    p.add_argument(
        '--dry-run', action='store_true', help='print the plan (runs, their options) and stop'
    )
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.rater_seeds, args.epochs = 1, 0, 2
        args.methods = args.methods or ['na', 'wbf', 'wbf-earl']
    if args.sweep:
        if args.proficiency == [0.8]:
            args.proficiency = list(SWEEP_P)
        args.methods = args.methods or list(SWEEP_METHODS)
    args.methods = args.methods or list(STUDY_METHODS)
    if 'ensemble' in args.methods and 'rater' not in args.methods:
        p.error('ensemble needs the rater runs: add rater to --methods')
    if min(args.seeds, args.jobs, args.threads or 1) < 1 or args.rater_seeds < 0:
        p.error('--seeds, --jobs and --threads must be >= 1, --rater-seeds >= 0')
    if args.epochs < 2:
        p.error('--epochs must be >= 2 (1 warm-up epoch + cosine schedule)')
    if args.val_interval < 0:
        p.error(f'--val-interval must be >= 0, got {args.val_interval}')
    if not 0 < args.ema_window <= 1:
        p.error(f'--ema-window must lie in (0, 1], got {args.ema_window}')
    check_output_paths(p, folders=[('--out', args.out)])
    return args


def study_settings(args: argparse.Namespace) -> tuple[DataSpec, dict]:
    """The study's data and what ``OUT/study.json`` records: the data settings, and the
    training settings that change results (``--ema`` other than 'config'). Recorded only
    when set, so the pilot's folders and committed files keep matching."""
    data = DataSpec(
        args.preset, args.data_seed, tuple(args.data_args.split()), args.data_seed_follows_seed
    )
    settings = data.settings()
    if args.ema != 'config':
        settings['ema'] = dict(mode=args.ema, window=args.ema_window)
    return data, settings


def _sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f'signal {signum}')


def main(argv: Sequence[str] | None = None) -> None:
    filter_third_party_warnings()
    args = parse_args(argv)
    import signal

    signal.signal(signal.SIGTERM, _sigterm)  # `timeout` / a scheduler: stop children too
    device = args.device
    if device == 'auto':
        import torch

        device = 'cuda' if torch.cuda.is_available() else 'cpu'
    command = 'python tools/benchmark_medmnist.py ' + ' '.join(
        sys.argv[1:] if argv is None else argv
    )
    os.makedirs(args.out, exist_ok=True)
    if not args.report_only:
        data, settings = study_settings(args)
        committed = read_runs_json(args.runs_json, settings) if args.runs_json else []
        check_settings(args.out, settings)
        raters_by_p = ensure_study_data(args.out, data, args.proficiency, args.seeds)
        runs = plan(
            args.methods, args.seeds, args.rater_seeds, args.proficiency, args.epochs, raters_by_p
        )
        train = dict(val_interval=args.val_interval, ema=args.ema, ema_window=args.ema_window)
        if args.dry_run:  # each run and the --cfg-options its training gets
            given = {
                Run(c['method'], c['seed'], c['proficiency'], c['epochs']).key for c in committed
            }
            for r in runs:
                config = config_of(r) if r.method != 'ensemble' else ''
                done = '(done)' if load_result(args.out, r) else ''
                print(r.key, config, done or ('(in --runs-json)' if r.key in given else ''))
                if r.method != 'ensemble':
                    d = run_data_dir(args.out, data, r)
                    print('   ', ' '.join(cfg_options(r, d, args.workers, **train)))
            return
        if committed:
            import_runs(args.out, committed, runs, args.runs_json)
        study = Study(
            args.out, device, args.jobs, args.workers, args.lock, args.threads, data, **train
        )
        execute(study, runs, raters_by_p)
        if args.bootstrap:
            add_bootstrap(study, runs, args.bootstrap)
    report(args.out, command, device, args.runs_json if args.report_only else None)


if __name__ == '__main__':
    main()
