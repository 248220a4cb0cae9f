"""The MED-MNIST study: every method x paired seeds, with intervals, resumable.

    python tools/benchmark_medmnist.py [--out work_dirs/benchmark] [--seeds 5]
        [--rater-seeds 2] [--epochs 12] [--methods na wbf wbf-earl ...] [--jobs 1]
        [--device auto|cpu|cuda] [--quick] [--sweep] [--report-only]

Methods (configs/medmnist/yolox_nano_*_medmnist-cpu.py, a 2.2 M-parameter YOLOX at 128 px):

    na        every rater's box is a ground-truth box (the paper's NA baseline)
    rater     one model per rater (rater-R1, rater-R2, ...)
    ensemble  WBF of the per-rater models' predictions (needs 'rater'; no training)
    mv        majority vote (quorum > R/2), stock head
    wbf       WBF-fused boxes, stock head
    wbf-earl  WBF-fused boxes + EARL head, c = T/R (the paper's method)
    em-earl   EM rater reliabilities + weighted fusion + EARL head, c = posterior

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

``--quick``: one seed, na / wbf / wbf-earl, 2 epochs (a smoke run, <= 10 min on 2 cores).
``--sweep``: proficiency p in {0.6, 0.7, 0.8, 0.9} for na / wbf / wbf-earl / em-earl.
``--jobs N`` runs N trainings at once (each with its share of the CPU threads); on a
machine with a GPU, ``--device cuda --jobs 6`` shares the GPU between them.
"""

from __future__ import annotations

import argparse
import json
import math
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

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
sys.path.insert(0, osp.join(ROOT, 'tools'))  # _common, ensemble_predictions

from _common import filter_third_party_warnings, medmnist_cfg_options  # noqa: E402

CONFIG_DIR = 'configs/medmnist'
CONFIGS = {
    'na': 'yolox_nano_na_20e_medmnist-cpu.py',
    'mv': 'yolox_nano_mv_20e_medmnist-cpu.py',
    'wbf': 'yolox_nano_wbf_20e_medmnist-cpu.py',
    'wbf-earl': 'yolox_nano_wbf-earl_20e_medmnist-cpu.py',
    'em-earl': 'yolox_nano_em-earl_20e_medmnist-cpu.py',
    'rater': 'yolox_nano_rater-R1_20e_medmnist-cpu.py',
}
ALL_METHODS = ('na', 'rater', 'ensemble', 'mv', 'wbf', 'wbf-earl', 'em-earl')
LABELS = {
    'na': 'NA (all raters’ boxes)',
    'ensemble': 'WBF ensemble of per-rater models',
    'mv': 'Majority vote',
    'wbf': 'WBF (no EARL)',
    'wbf-earl': 'WBF + EARL (paper)',
    'em-earl': 'EM-weighted WBF + EARL',
}
#: Extra paired comparisons reported beside "vs NA": (method, reference).
EXTRA_PAIRS = (
    ('wbf-earl', 'wbf'),
    ('em-earl', 'wbf-earl'),
    ('mv', 'wbf'),
    ('wbf-earl', 'ensemble'),
)
SWEEP_P = (0.6, 0.7, 0.8, 0.9)
SWEEP_METHODS = ('na', 'wbf', 'wbf-earl', 'em-earl')
METRICS = ('mAP_40', 'mAP')  # DetectionMAPMetric keys (unprefixed)
#: Fusion transform position in the medmnist configs' train pipeline.
FUSION_INDEX = 2
ENSEMBLE_IOU = 0.55  # tools/ensemble_predictions.py default


@dataclass(frozen=True)
class Run:
    """One training run (or the ensemble, which trains nothing)."""

    method: str  # 'na', 'rater-R2', 'ensemble', ...
    seed: int
    proficiency: float
    epochs: int

    @property
    def key(self) -> str:
        return f'p{self.proficiency:g}_e{self.epochs}/{self.method}/seed{self.seed}'


@dataclass
class Study:
    """How the runs are executed (each run carries its own method/seed/p/epochs)."""

    out: str
    device: str
    jobs: int
    workers: int = 0
    lock: str | None = None


# ----------------------------------------------------------------------------- statistics


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean and two-sided t-interval of the mean; (mean, nan, nan) for fewer than 2 values."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if x.size < 2:
        return mean, math.nan, math.nan
    from scipy.stats import t

    half = float(t.ppf(0.5 + level / 2, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size))
    return mean, mean - half, mean + half


def verdict(lo: float, hi: float) -> str:
    """Words for a difference's interval (method minus baseline)."""
    if math.isnan(lo) or math.isnan(hi):
        return 'one seed: no interval'
    if lo <= 0.0 <= hi:
        return 'no detectable difference'
    return 'better' if lo > 0 else 'worse'


def paired_diff(a: dict[int, dict], b: dict[int, dict], metric: str) -> dict | None:
    """Mean and t-interval of a - b over the seeds both have (None without a common seed)."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return None
    diffs = [a[s]['metrics'][metric] - b[s]['metrics'][metric] for s in seeds]
    m, lo, hi = t_interval(diffs)
    return dict(mean=m, lo=lo, hi=hi, n=len(diffs), verdict=verdict(lo, hi))


def summarize(results: Sequence[dict], baseline: str = 'na') -> dict:
    """Per (proficiency, epochs, method): mean/CI per metric and paired diffs to baseline."""
    groups: dict[tuple, dict[str, dict[int, dict]]] = {}
    for r in results:
        grp = groups.setdefault((r['proficiency'], r['epochs']), {})
        grp.setdefault(r['method'], {})[r['seed']] = r
    out, pairs = [], []
    for (p, e), methods in sorted(groups.items()):
        base = methods.get(baseline, {})
        for method in sorted(methods, key=_method_order):
            runs = methods[method]
            row: dict[str, Any] = dict(
                proficiency=p, epochs=e, method=method, seeds=sorted(runs), n=len(runs)
            )
            for m in METRICS:
                vals = [runs[s]['metrics'][m] for s in sorted(runs)]
                mean, lo, hi = t_interval(vals)
                row[m] = dict(mean=mean, lo=lo, hi=hi, sd=_sd(vals), values=vals)
                if method != baseline and (d := paired_diff(runs, base, m)):
                    row[f'{m}_vs_{baseline}'] = d
                boot = [runs[s].get('bootstrap', {}).get(m) for s in sorted(runs)]
                boot = [b for b in boot if b]
                if boot:
                    row[f'{m}_bootstrap'] = boot[0]
            out.append(row)
        for a, b in EXTRA_PAIRS:
            if a in methods and b in methods and b != baseline:
                row = dict(proficiency=p, epochs=e, method=a, reference=b)
                for m in METRICS:
                    row[m] = paired_diff(methods[a], methods[b], m)
                if all(row[m] for m in METRICS):
                    pairs.append(row)
    summary = dict(baseline=baseline, rows=out, pairs=pairs)
    summary['sweep'] = sweep_table(summary, baseline)
    return summary


def sweep_table(summary: dict, baseline: str = 'na') -> list[dict]:
    """The proficiency sweep: per epochs with two or more proficiencies, per method, the
    mean and the paired difference to ``baseline`` at each p over the same seeds at every p
    (the seeds that method and the baseline both have at all of them), so that the columns
    differ only in p. Seed 0's bootstrap SE of the difference (test-set noise only) is kept
    for one-seed columns."""
    rows = summary['rows']
    out = []
    for e in sorted({r['epochs'] for r in rows}):
        grp = {(r['proficiency'], r['method']): r for r in rows if r['epochs'] == e}
        ps = sorted({p for p, _ in grp})
        if len(ps) < 2:
            continue
        for method in sorted({m for _, m in grp}, key=_method_order):
            if not all((p, method) in grp and (p, baseline) in grp for p in ps):
                continue
            seeds = set.intersection(
                *(set(grp[p, method]['seeds']) & set(grp[p, baseline]['seeds']) for p in ps)
            )
            if not seeds:
                continue
            entry: dict[str, Any] = dict(epochs=e, method=method, seeds=sorted(seeds), cells={})
            for p in ps:
                cell = {}
                for m in METRICS:
                    r, b = grp[p, method], grp[p, baseline]
                    vals = [v for s, v in zip(r['seeds'], r[m]['values']) if s in seeds]
                    base = [v for s, v in zip(b['seeds'], b[m]['values']) if s in seeds]
                    mean = t_interval(vals)[0]
                    cell[m] = dict(mean=mean)
                    if method != baseline:
                        d, lo, hi = t_interval(np.subtract(vals, base))
                        cell[m]['diff'] = dict(mean=d, lo=lo, hi=hi, verdict=verdict(lo, hi))
                        boot = r.get(f'{m}_bootstrap') or {}
                        if seeds == {0} and 'diff_se' in boot:  # bootstraps are seed 0's
                            cell[m]['diff']['boot_se'] = boot['diff_se']
                entry['cells'][p] = cell
            out.append(entry)
    return out


def _sd(vals: Sequence[float]) -> float:
    return float(np.std(vals, ddof=1)) if len(vals) > 1 else math.nan


def _method_order(method: str) -> tuple[int, str]:
    base = 'rater' if method.startswith('rater-') else method
    return (ALL_METHODS.index(base) if base in ALL_METHODS else len(ALL_METHODS), method)


# ----------------------------------------------------------------------------- scoring


def _quiet_metric_log() -> None:
    """The metric logs its per-class tables at INFO: keep the study's output to its lines."""
    import logging

    from mmengine.logging import MMLogger

    MMLogger.get_current_instance().setLevel(logging.WARNING)


def score_predictions(preds: dict, gold_path: str, gold: dict) -> dict[str, float]:
    """mAP@0.4 / mAP@[.5:.95] (and the rest of the metric's scalars) of one prediction set."""
    from ensemble_predictions import evaluate

    _quiet_metric_log()
    scalars, _ = evaluate(preds, gold_path, gold)
    return {k: float(v) for k, v in scalars.items()}


def bootstrap_scores(
    preds_by_method: dict[str, dict],
    gold: dict,
    num: int,
    seed: int = 0,
    baseline: str = 'na',
) -> dict[str, dict[str, dict]]:
    """Bootstrap over gold test images: SE of each method's metrics and of its diff to NA.

    The same resampled image sets are used for every method (paired).
    """
    import tempfile

    from ensemble_predictions import evaluate

    _quiet_metric_log()
    rng = np.random.default_rng(seed)
    tmp = tempfile.mkdtemp(prefix='earl_boot_')
    images = gold['images']
    by_img: dict[Any, list] = {}
    for a in gold['annotations']:
        by_img.setdefault(a['image_id'], []).append(a)
    draws: dict[str, dict[str, list[float]]] = {
        m: {k: [] for k in METRICS} for m in preds_by_method
    }
    empty = (np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64))
    for _ in range(num):
        pick = rng.integers(0, len(images), len(images))
        new_images, new_anns, remap = [], [], []
        for new_id, i in enumerate(pick.tolist(), start=1):
            im = dict(images[i], id=new_id)
            new_images.append(im)
            remap.append((new_id, images[i]['id']))
            for a in by_img.get(images[i]['id'], []):
                new_anns.append(dict(a, id=len(new_anns) + 1, image_id=new_id))
        sample = dict(gold, images=new_images, annotations=new_anns)
        sample_path = osp.join(tmp, 'sample.json')
        with open(sample_path, 'w') as f:
            json.dump(sample, f)
        for method, preds in preds_by_method.items():
            resampled = {new: preds.get(old, empty) for new, old in remap}
            scalars, _ = evaluate(resampled, sample_path, sample)
            for k in METRICS:
                draws[method][k].append(float(scalars[k]))
    out: dict[str, dict[str, dict]] = {}
    for method, d in draws.items():
        out[method] = {}
        for k in METRICS:
            entry = dict(se=float(np.std(d[k], ddof=1)), num=num)
            if baseline in draws and method != baseline:
                diff = np.asarray(d[k]) - np.asarray(draws[baseline][k])
                entry['diff_se'] = float(np.std(diff, ddof=1))
            out[method][k] = entry
    return out


# ----------------------------------------------------------------------------- running


def data_dir(out: str, p: float) -> str:
    return osp.join(out, 'data', f'p{p:g}')


def ensure_data(out: str, p: float, data_seed: int, extra: Sequence[str] = ()) -> str:
    d = data_dir(out, p)
    if osp.isfile(osp.join(d, 'meta.json')):
        return d
    cmd = ['tools/make_medmnist.py', '--preset', 'cpu', '--out', d]
    cmd += ['--seed', str(data_seed), '--proficiency', str(p), '--overwrite', *extra]
    print(f'generating MED-MNIST (cpu preset, p = {p:g}) in {d}', flush=True)
    _python(cmd, log=None, env=_env(1, 'cpu'))
    return d


def rater_ids(d: str) -> list[str]:
    with open(osp.join(d, 'train.json')) as f:
        train = json.load(f)
    ids = {str(a['annotator_id']) for a in train['annotations']}
    for im in train['images']:
        ids.update(str(r) for r in im.get('annotators', []))
    return sorted(ids)


def cfg_options(run: Run, d: str, workers: int = 0) -> list[str]:
    root = d.rstrip('/') + '/'
    opts = medmnist_cfg_options(d, run.epochs, run.seed, val=False)
    opts += [
        f'default_hooks.checkpoint.interval={run.epochs}',
        f'train_dataloader.num_workers={workers}',
        f'train_dataloader.persistent_workers={workers > 0}',
        f'test_dataloader.num_workers={workers}',
        f'test_dataloader.persistent_workers={workers > 0}',
        'default_hooks.logger.interval=50',
    ]
    if run.method == 'em-earl':
        opts.append(
            f'train_dataloader.dataset.pipeline.{FUSION_INDEX}.fit_ann_file={root}train.json'
        )
    if run.method.startswith('rater-'):
        rater = run.method[len('rater-') :]
        opts.append(f'train_dataloader.dataset.pipeline.{FUSION_INDEX}.method=rater:{rater}')
    return opts


def _env(threads: int, device: str) -> dict[str, str]:
    env = dict(os.environ)
    env['OMP_NUM_THREADS'] = str(threads)
    env['MKL_NUM_THREADS'] = str(threads)
    env['PYTHONPATH'] = ROOT + (os.pathsep + env['PYTHONPATH'] if env.get('PYTHONPATH') else '')
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
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, path)  # a killed run never leaves a half-written result


def _gold(d: str) -> tuple[str, dict]:
    path = osp.join(d, 'test.json')
    with open(path) as f:
        return path, json.load(f)


def train_and_score(study: Study, run: Run, threads: int) -> dict:
    if not study.lock:
        return _train_and_score(study, run, threads)
    import fcntl

    with open(study.lock, 'a') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # wait for other heavy jobs on a shared machine
        try:
            return _train_and_score(study, run, threads)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _train_and_score(study: Study, run: Run, threads: int) -> dict:
    from ensemble_predictions import load_predictions

    d = data_dir(study.out, run.proficiency)
    wd = run_dir(study.out, run)
    os.makedirs(wd, exist_ok=True)
    base = 'rater' if run.method.startswith('rater-') else run.method
    config = osp.join(CONFIG_DIR, CONFIGS[base])
    opts = cfg_options(run, d, study.workers)
    env = _env(threads, study.device)
    t0 = time.time()
    _python(
        ['tools/train.py', config, '--work-dir', wd, '--cfg-options', *opts],
        osp.join(wd, 'train.log'),
        env,
    )
    t1 = time.time()
    ckpt = osp.join(wd, f'epoch_{run.epochs}.pth')
    preds_path = osp.join(wd, 'preds.pkl')
    test = ['tools/test.py', config, ckpt, '--work-dir', wd, '--out', preds_path]
    _python([*test, '--cfg-options', *opts], osp.join(wd, 'test.log'), env)
    t2 = time.time()
    gold_path, gold = _gold(d)
    metrics = score_predictions(load_predictions(preds_path, gold), gold_path, gold)
    result = dict(
        method=run.method,
        seed=run.seed,
        proficiency=run.proficiency,
        epochs=run.epochs,
        config=config,
        cfg_options=opts,
        metrics=metrics,
        train_s=round(t1 - t0, 1),
        test_s=round(t2 - t1, 1),
        device=study.device,
        threads=threads,
        finished=time.strftime('%Y-%m-%d %H:%M:%S'),
    )
    if os.environ.get('EARL_BENCH_KEEP_CKPT') != '1':
        for name in os.listdir(wd):
            if name.endswith('.pth'):
                os.remove(osp.join(wd, name))
    _write_json(osp.join(wd, 'result.json'), result)
    return result


def ensemble_predictions(out: str, run: Run, members: Sequence[str], gold: dict) -> dict:
    """WBF (IoU ENSEMBLE_IOU) of the member runs' test predictions for ``run``'s seed."""
    from ensemble_predictions import fuse_predictions, load_predictions

    preds = [
        load_predictions(
            osp.join(run_dir(out, Run(m, run.seed, run.proficiency, run.epochs)), 'preds.pkl'),
            gold,
        )
        for m in members
    ]
    return fuse_predictions(preds, gold, iou_thr=ENSEMBLE_IOU)


def ensemble_and_score(study: Study, run: Run, raters: Sequence[str]) -> dict:
    d = data_dir(study.out, run.proficiency)
    gold_path, gold = _gold(d)
    fused = ensemble_predictions(study.out, run, [f'rater-{r}' for r in raters], gold)
    metrics = score_predictions(fused, gold_path, gold)
    wd = run_dir(study.out, run)
    os.makedirs(wd, exist_ok=True)
    result = dict(
        method=run.method,
        seed=run.seed,
        proficiency=run.proficiency,
        epochs=run.epochs,
        members=[f'rater-{r}' for r in raters],
        wbf_iou_thr=ENSEMBLE_IOU,
        metrics=metrics,
        train_s=0.0,
        test_s=0.0,
        device=study.device,
        finished=time.strftime('%Y-%m-%d %H:%M:%S'),
    )
    _write_json(osp.join(wd, 'result.json'), result)
    return result


def plan(
    methods: Sequence[str],
    seeds: int,
    rater_seeds: int,
    proficiencies: Sequence[float],
    epochs: int,
    raters_by_p: dict[float, list[str]],
) -> list[Run]:
    """The runs, seed-major for the single-model methods first (so a study cut short has
    whole seeds of them), then the per-rater models and their ensembles."""
    runs = []
    for p in proficiencies:
        for s in range(seeds):
            runs += [Run(m, s, p, epochs) for m in methods if m not in ('rater', 'ensemble')]
        for s in range(min(seeds, rater_seeds)):
            if 'rater' in methods:
                runs += [Run(f'rater-{r}', s, p, epochs) for r in raters_by_p[p]]
            if 'ensemble' in methods:
                runs.append(Run('ensemble', s, p, epochs))
    return runs


_ETA = re.compile(r'Epoch\(train\)\s*\[(\d+)\]\[\s*(\d+)/(\d+)\].*?eta: ([0-9:]+)')


def _log_status(log: str) -> str | None:
    """'epoch 3 iter 50/94, eta 0:02:10' from the last mmengine line of a training log."""
    try:
        with open(log, 'rb') as f:
            f.seek(max(0, os.path.getsize(log) - 20000))
            tail = f.read().decode('utf-8', 'replace')
    except OSError:
        return None
    found = _ETA.findall(tail)
    if not found:
        return None
    epoch, it, n, eta = found[-1]
    return f'epoch {epoch} iter {it}/{n}, run eta {eta}'


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
            status = _log_status(log)
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
    threads = max(1, (os.cpu_count() or 1) // study.jobs)
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
        members = [Run(f'rater-{r}', run.seed, run.proficiency, run.epochs) for r in raters]
        missing = [m.key for m in members if load_result(study.out, m) is None]
        if missing:
            failures.append((run, RuntimeError(f'members not trained: {missing}')))
            continue
        progress.finished(run, ensemble_and_score(study, run, raters))
    if failures:
        raise SystemExit(f'{len(failures)} run(s) failed: ' + ', '.join(r.key for r, _ in failures))


def add_bootstrap(study: Study, runs: list[Run], num: int) -> None:
    """Bootstrap over test images for seed 0 of each (proficiency, epochs) group."""
    from ensemble_predictions import load_predictions

    groups: dict[tuple, list[Run]] = {}
    for r in runs:
        if r.seed == 0:
            groups.setdefault((r.proficiency, r.epochs), []).append(r)
    for (p, _), members in groups.items():
        results = {r: load_result(study.out, r) for r in members}
        if all(res is not None and 'bootstrap' in res for res in results.values()):
            continue
        d = data_dir(study.out, p)
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


# ----------------------------------------------------------------------------- reporting


def _fmt(x: float) -> str:
    return '–' if x is None or (isinstance(x, float) and math.isnan(x)) else f'{x:.4f}'


def _ci(entry: dict) -> str:
    if math.isnan(entry['lo']):
        return f'{_fmt(entry["mean"])}'
    return f'{_fmt(entry["mean"])} [{_fmt(entry["lo"])}, {_fmt(entry["hi"])}]'


def _diff(entry: dict | None) -> str:
    if not entry:
        return ''
    m, lo, hi = entry['mean'], entry['lo'], entry['hi']
    if math.isnan(lo):
        return f'{m:+.4f} ({entry["verdict"]})'
    return f'{m:+.4f} [{lo:+.4f}, {hi:+.4f}] ({entry["verdict"]})'


def markdown(summary: dict, meta: dict) -> str:
    lines = [
        '# MED-MNIST benchmark (generated by tools/benchmark_medmnist.py)',
        '',
        f'- command: `{meta["command"]}`',
        f'- finished: {meta["date"]}; device: {meta["device"]}; machine: {meta["machine"]}',
        '- mean over seeds with its 95 % t-interval; "vs NA" = the paired difference '
        '(same seed), mean and 95 % t-interval; "no detectable difference" where it covers 0.',
        '',
    ]
    rows = summary['rows']
    for p, e in sorted({(r['proficiency'], r['epochs']) for r in rows}):
        lines += [
            f'## p = {p:g}, {e} epochs',
            '',
            '| method | seeds | mAP@0.4 | mAP@[.5:.95] | mAP@0.4 vs NA | mAP@[.5:.95] vs NA |',
            '|---|---|---|---|---|---|',
        ]
        for r in rows:
            if (r['proficiency'], r['epochs']) != (p, e):
                continue
            name = LABELS.get(r['method'], r['method'])
            lines.append(
                f'| {name} | {r["n"]} | {_ci(r["mAP_40"])} | {_ci(r["mAP"])} | '
                f'{_diff(r.get("mAP_40_vs_na"))} | {_diff(r.get("mAP_vs_na"))} |'
            )
        pairs = [r for r in summary.get('pairs', []) if (r['proficiency'], r['epochs']) == (p, e)]
        if pairs:
            lines += [
                '',
                'Other paired differences (same seeds):',
                '',
                '| difference | seeds | mAP@0.4 | mAP@[.5:.95] |',
                '|---|---|---|---|',
            ]
            for r in pairs:
                name = f'{LABELS.get(r["method"], r["method"])} − {LABELS.get(r["reference"])}'
                lines.append(
                    f'| {name} | {r["mAP_40"]["n"]} | {_diff(r["mAP_40"])} | {_diff(r["mAP"])} |'
                )
        boots = [r for r in rows if (r['proficiency'], r['epochs']) == (p, e)]
        boots = [r for r in boots if r.get('mAP_bootstrap')]
        if boots:
            lines += [
                '',
                'Test-set sampling noise (seed 0, bootstrap over the gold test images): '
                'SE of the score / SE of the paired difference to NA.',
                '',
                '| method | resamples | mAP@0.4 SE | mAP@0.4 diff SE | mAP SE | mAP diff SE |',
                '|---|---|---|---|---|---|',
            ]
            for r in boots:
                b40, b = r['mAP_40_bootstrap'], r['mAP_bootstrap']
                lines.append(
                    f'| {LABELS.get(r["method"], r["method"])} | {b["num"]} | {b40["se"]:.4f} '
                    f'| {_fmt(b40.get("diff_se", math.nan))} | {b["se"]:.4f} '
                    f'| {_fmt(b.get("diff_se", math.nan))} |'
                )
        lines.append('')
    lines += _sweep_markdown(summary.get('sweep', []))
    return '\n'.join(lines)


def _sweep_cell(cell: dict) -> str:
    text = f'{cell["mean"]:.4f}'
    d = cell.get('diff')
    if d is None:
        return text
    if not math.isnan(d['lo']):
        return text + f' ({d["mean"]:+.4f} [{d["lo"]:+.4f}, {d["hi"]:+.4f}])'
    if 'boot_se' in d:
        return text + f' ({d["mean"]:+.4f} ± {d["boot_se"]:.4f} test-set SE)'
    return text + f' ({d["mean"]:+.4f})'


def _sweep_markdown(sweep: Sequence[dict]) -> list[str]:
    lines: list[str] = []
    for e in sorted({r['epochs'] for r in sweep}):
        rows = [r for r in sweep if r['epochs'] == e]
        ps = sorted(rows[0]['cells'])
        lines += [
            f'## Proficiency sweep, {e} epochs',
            '',
            'Each cell: the mean over the seeds listed (the same seeds at every p, so the '
            'columns differ only in p) and, in brackets, the paired difference to NA with '
            'its 95 % t-interval; with one seed, the bootstrap SE of that difference over '
            'the test images (test-set noise only, not training noise).',
            '',
        ]
        for m, title in zip(METRICS, ('mAP@0.4', 'mAP@[.5:.95]')):
            lines += [
                f'{title}:',
                '',
                '| method | seeds | ' + ' | '.join(f'p = {p:g}' for p in ps) + ' |',
                '|---|---|' + '---|' * len(ps),
            ]
            for r in rows:
                seeds = ','.join(str(s) for s in r['seeds'])
                cells = ' | '.join(_sweep_cell(r['cells'][p][m]) for p in ps)
                lines.append(f'| {LABELS.get(r["method"], r["method"])} | {seeds} | {cells} |')
            lines.append('')
    return lines


def plots(summary: dict, out: str) -> list[str]:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    rows = summary['rows']
    written = []
    for p, e in sorted({(r['proficiency'], r['epochs']) for r in rows}):
        grp = [r for r in rows if (r['proficiency'], r['epochs']) == (p, e)]
        fig, axes = plt.subplots(1, 2, figsize=(11, 0.5 * len(grp) + 1.8))
        for ax, m, title in zip(axes, METRICS, ('mAP@0.4', 'mAP@[.5:.95]')):
            for i, r in enumerate(grp):
                ent = r[m]
                ax.scatter(ent['values'], [i] * len(ent['values']), s=12, color='0.6', zorder=2)
                if not math.isnan(ent['lo']):
                    ax.errorbar(
                        ent['mean'],
                        i,
                        xerr=[[ent['mean'] - ent['lo']], [ent['hi'] - ent['mean']]],
                        fmt='o',
                        color='C0',
                        capsize=3,
                        zorder=3,
                    )
                else:
                    ax.plot(ent['mean'], i, 'o', color='C0', zorder=3)
            ax.set_yticks(range(len(grp)))
            ax.invert_yaxis()  # the table's order, top to bottom
            ax.set_yticklabels([LABELS.get(r['method'], r['method']) for r in grp])
            ax.set_title(f'{title} (mean, 95 % CI, seeds)')
            ax.grid(axis='x', alpha=0.3)
        fig.suptitle(f'MED-MNIST cpu preset, p = {p:g}, {e} epochs')
        fig.tight_layout()
        path = osp.join(out, f'methods_p{p:g}_e{e}.png')
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    for e in sorted({r['epochs'] for r in summary.get('sweep', [])}):
        sweep = [r for r in summary['sweep'] if r['epochs'] == e]
        fig, axes = plt.subplots(2, 2, figsize=(11, 7), sharex=True)
        for col, m, title in zip(range(2), METRICS, ('mAP@0.4', 'mAP@[.5:.95]')):
            for j, r in enumerate(sweep):
                ps = sorted(r['cells'])
                label = LABELS.get(r['method'], r['method'])
                means = [r['cells'][p][m]['mean'] for p in ps]
                axes[0, col].plot(ps, means, 'o-', label=label, color=f'C{j}')
                diffs = [r['cells'][p][m].get('diff') for p in ps]
                if diffs[0] is None:
                    continue
                y = np.array([d['mean'] for d in diffs])
                lo = np.array(
                    [
                        d['lo']
                        if not math.isnan(d['lo'])
                        else d['mean'] - 1.96 * d.get('boot_se', math.nan)
                        for d in diffs
                    ]
                )
                hi = np.array(
                    [
                        d['hi']
                        if not math.isnan(d['hi'])
                        else d['mean'] + 1.96 * d.get('boot_se', math.nan)
                        for d in diffs
                    ]
                )
                x = np.array(ps) + 0.006 * (j - len(sweep) / 2)  # dodge the error bars
                axes[1, col].errorbar(
                    x, y, yerr=[y - lo, hi - y], fmt='o-', capsize=3, color=f'C{j}', label=label
                )
            axes[0, col].set_title(f'{title}, mean over seeds {sweep[0]["seeds"]}')
            axes[1, col].axhline(0.0, color='0.3', lw=0.8)
            axes[1, col].set_title(f'{title}: difference to NA (95 % interval)')
            axes[1, col].set_xlabel('rater proficiency p')
            for ax in axes[:, col]:
                ax.grid(alpha=0.3)
        axes[0, 0].legend(fontsize=8)
        fig.suptitle(f'MED-MNIST cpu preset, proficiency sweep, {e} epochs')
        fig.tight_layout()
        path = osp.join(out, f'sweep_e{e}.png')
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def report(out: str, command: str, device: str) -> dict:
    results = []
    runs_root = osp.join(out, 'runs')
    for dirpath, _, files in os.walk(runs_root):
        if 'result.json' in files:
            with open(osp.join(dirpath, 'result.json')) as f:
                results.append(json.load(f))
    if not results:
        raise SystemExit(f'no finished runs under {runs_root}')
    summary = summarize(results)
    import platform

    meta = dict(
        command=command,
        date=time.strftime('%Y-%m-%d %H:%M %Z'),
        device=device,
        machine=f'{platform.machine()}, {os.cpu_count()} CPU cores',
    )
    _write_json(osp.join(out, 'results.json'), dict(meta=meta, summary=summary, runs=results))
    md = markdown(summary, meta)
    with open(osp.join(out, 'results.md'), 'w') as f:
        f.write(md + '\n')
    pngs = plots(summary, out)
    print('\n' + md)
    print(f'written: {osp.join(out, "results.json")}, {osp.join(out, "results.md")}, {pngs}')
    return summary


# ----------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument('--out', default='work_dirs/benchmark', help='study folder (resumable)')
    p.add_argument('--methods', nargs='+', choices=ALL_METHODS, help='default: all')
    p.add_argument('--seeds', type=int, default=5, help='paired seeds 0..N-1 (default 5)')
    p.add_argument(
        '--rater-seeds', type=int, default=2, help='seeds for rater/ensemble (default 2)'
    )
    p.add_argument('--epochs', type=int, default=12, help='training epochs (default 12)')
    p.add_argument('--proficiency', type=float, nargs='+', default=[0.8], help='rater p')
    p.add_argument('--data-seed', type=int, default=0, help='MED-MNIST generation seed')
    p.add_argument(
        '--data-args', default='', help='extra make_medmnist.py flags, e.g. "--num-train 64"'
    )
    p.add_argument('--jobs', type=int, default=1, help='trainings at once (default 1)')
    p.add_argument(
        '--workers',
        type=int,
        default=0,
        help='data-loader workers per run (default 0: fastest on 2 cores, measured)',
    )
    p.add_argument(
        '--lock', help='hold this file locked (flock) during each run, e.g. /tmp/heavy.lock'
    )
    p.add_argument('--device', default='auto', choices=['auto', 'cpu', 'cuda'])
    p.add_argument('--bootstrap', type=int, default=0, help='test-image resamples (seed 0)')
    p.add_argument('--quick', action='store_true', help='1 seed, na/wbf/wbf-earl, 2 epochs')
    p.add_argument('--sweep', action='store_true', help='p in 0.6..0.9, na/wbf/wbf-earl/em-earl')
    p.add_argument('--report-only', action='store_true', help='only rebuild the report')
    p.add_argument('--dry-run', action='store_true', help='print the plan and stop')
    args = p.parse_args(argv)
    if args.quick:
        args.seeds, args.rater_seeds, args.epochs = 1, 0, 2
        args.methods = args.methods or ['na', 'wbf', 'wbf-earl']
    if args.sweep:
        if args.proficiency == [0.8]:
            args.proficiency = list(SWEEP_P)
        args.methods = args.methods or list(SWEEP_METHODS)
    args.methods = args.methods or list(ALL_METHODS)
    if 'ensemble' in args.methods and 'rater' not in args.methods:
        p.error('ensemble needs the rater runs: add rater to --methods')
    if min(args.seeds, args.jobs) < 1 or args.rater_seeds < 0:
        p.error('--seeds and --jobs must be >= 1, --rater-seeds >= 0')
    if args.epochs < 2:
        p.error('--epochs must be >= 2 (1 warm-up epoch + cosine schedule)')
    return args


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
        raters_by_p = {}
        for p in args.proficiency:
            d = ensure_data(args.out, p, args.data_seed, args.data_args.split())
            raters_by_p[p] = rater_ids(d)
        runs = plan(
            args.methods, args.seeds, args.rater_seeds, args.proficiency, args.epochs, raters_by_p
        )
        if args.dry_run:
            for r in runs:
                print(r.key, '(done)' if load_result(args.out, r) else '')
            return
        study = Study(args.out, device, args.jobs, args.workers, args.lock)
        execute(study, runs, raters_by_p)
        if args.bootstrap:
            add_bootstrap(study, runs, args.bootstrap)
    report(args.out, command, device)


if __name__ == '__main__':
    main()
