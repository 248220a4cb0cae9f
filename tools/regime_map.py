"""The regime map: for each single kind of rater noise, which method wins (issue 16).

    python tools/regime_map.py [--out work_dirs/regime_map] [--epochs 24]
        [--cells clean flips ...] [--methods na wbf wbf-earl ...] [--jobs 1] [--lock L]
        [--bootstrap B] [--quick] [--dry-run] [--report-only]

Cells (earl_core/study/regime.py, where the levels and their measurements are): the
powered study's 96 px data (``--preset study-vindr-like``) with every rater noise off, then
exactly one switched on:

    clean          no noise (the control)
    flips          wrong labels
    misses         faint digits missed by every rater, any digit by one
    clutter-fp     clutter boxed as digits (false positives)
    jitter         heavy-tailed box noise, loose and tight raters
    heterogeneous  one clean expert, two weak raters with all four noises
    vindr-like     the preset itself (every noise at once)

Each cell is one study folder, ``OUT/cells/<cell>``, run by the study tool as a subprocess:

    tools/benchmark_medmnist.py --out OUT/cells/<cell> --preset study-vindr-like
        --data-args "<the cell's flags>" --seeds 1 --epochs E --methods ...

(resumable: finished runs are skipped), then ``tools/analyze_raters.py`` on the cell's
``data/p*/train.json`` (numpy only, seconds) gives its rater statistics in
``OUT/cells/<cell>/raters/report.json``: the figures a user reads off the same report of
their own data (partner rate, same label among partners, partner IoU, boxes per rater and
image, mean agreement T, spread of the raters' F1).

Writes ``OUT/regime.json`` (cells, flags, statistics, each method's mAP@0.4 and
mAP@[.5:.95], the winner and its margin over WBF + EARL), ``OUT/regime.md`` (one table)
and ``OUT/regime_map.png`` (cells x methods heat map of method - WBF + EARL, winner
outlined). One run per cell and method: leads, not verdicts.

``--dry-run`` prints the cells, their flags and the commands and runs nothing;
``--report-only`` rebuilds the report from what ``OUT`` holds; ``--quick`` is a smoke run
(tiny data, 2 epochs, NA and WBF + EARL; use its own ``--out``: a study folder keeps one
data setting).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import os.path as osp
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from _common import check_output_paths, child_env, filter_third_party_warnings

from earl_core.io import safe_output
from earl_core.study import regime as rg

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
#: The powered study's schedule: converged at 96 px (docs/results.md, learning curves).
DEFAULT_EPOCHS = 24
#: --quick: tiny data on top of each cell's flags, 2 epochs, 2 methods.
QUICK_DATA_ARGS = ('--num-train', '16', '--num-val', '4', '--num-test', '8')
QUICK_METHODS = ('na', 'wbf-earl')


def cell_dir(out: str, name: str) -> str:
    """The cell's study folder."""
    return osp.join(out, 'cells', name)


def data_args(cell: Any, quick: bool) -> str:
    """The cell's ``--data-args`` value (with the tiny-data flags under ``--quick``)."""
    return ' '.join([*rg.cell_flags(cell), *(QUICK_DATA_ARGS if quick else ())])


def study_command(args: argparse.Namespace, cell: Any) -> list[str]:
    """The study tool's command line for one cell (run from the repository root)."""
    cmd = ['tools/benchmark_medmnist.py', '--out', cell_dir(args.out, cell.name)]
    cmd += ['--preset', rg.PRESET, f'--data-args={data_args(cell, args.quick)}']
    cmd += ['--seeds', str(args.seeds), '--epochs', str(args.epochs), '--methods', *args.methods]
    passed = [  # the study tool's own flags, given only when set here (True: a switch)
        ('--data-seed', args.data_seed),
        ('--data-seed-follows-seed', args.data_seed_follows_seed or None),
        ('--val-interval', args.val_interval),
        ('--ema', args.ema),
        ('--jobs', args.jobs),
        ('--threads', args.threads),
        ('--lock', args.lock),
        ('--bootstrap', args.bootstrap or None),
    ]
    for flag, value in passed:
        if value is True:
            cmd.append(flag)
        elif value is not None:
            cmd += [flag, str(value)]
    return cmd


def analyze_command(train_json: str, out: str) -> list[str]:
    """The rater report of a cell's training raters."""
    return ['tools/analyze_raters.py', train_json, '--out', out, '--no-plots']


def _python(cmd: list[str], log: str | None = None) -> int:
    """Run ``python CMD`` from the repository root (output to ``log`` or to ours)."""
    if log is None:
        return subprocess.run([sys.executable, *cmd], cwd=ROOT, env=child_env(ROOT)).returncode
    with open(log, 'w') as f:
        return subprocess.run(
            [sys.executable, *cmd],
            cwd=ROOT,
            env=child_env(ROOT),
            stdout=f,
            stderr=subprocess.STDOUT,
        ).returncode


def train_json_of(out: str, name: str) -> str | None:
    """The cell's ``data/p*/train.json`` (None before the study generated it); with a data
    seed per replicate (``data/seed<S>/p*/``), that of the lowest data seed: the cell's rater
    statistics are those of its first draw."""
    found = sorted(glob.glob(osp.join(cell_dir(out, name), 'data', 'p*', 'train.json')))
    if not found:
        per_seed = glob.glob(osp.join(cell_dir(out, name), 'data', 'seed*', 'p*', 'train.json'))
        seed_of = lambda p: int(osp.basename(osp.dirname(osp.dirname(p)))[4:])  # noqa: E731
        found = sorted(per_seed, key=seed_of)[:1]
    if len(found) > 1:
        raise SystemExit(
            f'{cell_dir(out, name)}/data: several data folders ({", ".join(found)}); '
            'a regime cell has one'
        )
    return found[0] if found else None


def rater_statistics(out: str, name: str) -> dict | None:
    """The cell's :func:`~earl_core.study.regime.cell_statistics`, running
    ``tools/analyze_raters.py`` first when its report is missing (None without data)."""
    report = osp.join(cell_dir(out, name), 'raters', 'report.json')
    if not osp.isfile(report):
        train = train_json_of(out, name)
        if train is None:
            return None
        folder = osp.dirname(report)
        os.makedirs(folder, exist_ok=True)
        log = osp.join(folder, 'analyze.log')
        if _python(analyze_command(train, folder), log) != 0:
            raise SystemExit(f'{train}: tools/analyze_raters.py failed (log: {log})')
    with open(report) as f:
        rep = json.load(f)
    try:
        return rg.cell_statistics(rep)
    except KeyError as e:
        raise SystemExit(f'{report}: no field {e} (a report of tools/analyze_raters.py?)') from None


def cell_results(out: str, name: str, epochs: int) -> list[dict]:
    """The finished runs (``result.json``) of the cell at ``epochs``."""
    results = []
    for path in sorted(glob.glob(osp.join(cell_dir(out, name), 'runs', '*', '*', '*'))):
        path = osp.join(path, 'result.json')
        if not osp.isfile(path):
            continue
        with open(path) as f:
            res = json.load(f)
        missing = [k for k in ('method', 'seed', 'epochs', 'metrics') if k not in res]
        if missing:
            raise SystemExit(f'{path}: no field {missing[0]!r} (not a study result.json)')
        if res['epochs'] == epochs:
            results.append(res)
    return results


def run_cells(args: argparse.Namespace, cells: Sequence[Any]) -> list[str]:
    """Run each cell's study and rater report; returns the cells that failed."""
    failed = []
    for k, cell in enumerate(cells, start=1):
        print(f'=== cell {k}/{len(cells)}: {cell.name} ({cell.description})', flush=True)
        if _python(study_command(args, cell)) != 0:
            print(f'FAILED cell {cell.name}: the study tool exited with an error', flush=True)
            failed.append(cell.name)
        rater_statistics(args.out, cell.name)
    return failed


def report(args: argparse.Namespace, cells: Sequence[Any], command: str) -> list[dict]:
    """Write ``OUT/regime.json``, ``OUT/regime.md`` and ``OUT/regime_map.png``."""
    stats = {c.name: rater_statistics(args.out, c.name) for c in cells}
    results = {c.name: cell_results(args.out, c.name, args.epochs) for c in cells}
    if not any(stats.values()) and not any(results.values()):
        raise SystemExit(f'{args.out}/cells: no cell has data or finished runs yet')
    methods = sorted(args.methods, key=rg.MAP_METHODS.index)
    rows = rg.regime_summary(cells, stats, results, methods)
    meta = dict(
        command=command,
        date=time.strftime('%Y-%m-%d %H:%M %Z'),
        epochs=args.epochs,
        preset=rg.PRESET,
        quick_data_args=list(QUICK_DATA_ARGS) if args.quick else [],
        methods=methods,
    )
    safe_output.write_json(osp.join(args.out, 'regime.json'), dict(meta=meta, cells=rows), indent=1)
    md = rg.markdown(rows, methods, meta)
    safe_output.atomic_write(osp.join(args.out, 'regime.md'), md)
    png = rg.plot(rows, methods, osp.join(args.out, 'regime_map.png'))
    print('\n' + md)
    print(f'written: {args.out}/regime.json, {args.out}/regime.md, {png}')
    return rows


def dry_run(args: argparse.Namespace, cells: Sequence[Any]) -> None:
    """Print each cell, its flags and the commands; run and write nothing."""
    for cell in cells:
        print(f'{cell.name}: {cell.description} [{cell.noise}]')
        print(f'  flags: {data_args(cell, args.quick) or "(none: the preset itself)"}')
        print('  study: python ' + shlex.join(study_command(args, cell)))
        train = osp.join(cell_dir(args.out, cell.name), 'data', 'p0.8', 'train.json')
        raters = osp.join(cell_dir(args.out, cell.name), 'raters')
        print('  raters: python ' + shlex.join(analyze_command(train, raters)))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument('--out', default='work_dirs/regime_map', help='map folder (resumable)')
    p.add_argument('--cells', nargs='+', choices=rg.CELL_NAMES, help='default: all, in order')
    p.add_argument(
        '--methods',
        nargs='+',
        choices=rg.MAP_METHODS,
        help=f'default: {" ".join(rg.DEFAULT_METHODS)} (must include wbf-earl)',
    )
    p.add_argument(
        '--epochs',
        type=int,
        default=DEFAULT_EPOCHS,
        help=f'training epochs of every run (default {DEFAULT_EPOCHS})',
    )
    p.add_argument(
        '--seeds',
        type=int,
        default=1,
        help='replicates per cell and method (default 1: an exploratory map, leads only; '
        '3 or more give paired intervals)',
    )
    p.add_argument('--data-seed', type=int, help="the study tool's --data-seed")
    p.add_argument(
        '--data-seed-follows-seed',
        action='store_true',
        help="the study tool's flag: every replicate its own draw of data and raters",
    )
    p.add_argument('--val-interval', type=int, help="the study tool's --val-interval")
    p.add_argument(
        '--ema', choices=('config', 'ema', 'swa'), help="the study tool's --ema (averaged weights)"
    )
    p.add_argument('--jobs', type=int, help="the study tool's --jobs (trainings at once)")
    p.add_argument('--threads', type=int, help="the study tool's --threads (per training)")
    p.add_argument('--lock', help="the study tool's --lock (flock file around each run)")
    p.add_argument(
        '--bootstrap', type=int, default=0, help='test-image resamples per cell (default 0)'
    )
    p.add_argument(
        '--quick',
        action='store_true',
        help='smoke run: ' + ' '.join(QUICK_DATA_ARGS) + ', 2 epochs, na and wbf-earl',
    )
    p.add_argument('--dry-run', action='store_true', help='print cells and commands, run nothing')
    p.add_argument('--report-only', action='store_true', help='only rebuild the report')
    args = p.parse_args(argv)
    check_output_paths(p, folders=[('--out', args.out)])
    if args.quick:
        args.epochs = 2
        args.methods = args.methods or list(QUICK_METHODS)
    args.methods = list(dict.fromkeys(args.methods or rg.DEFAULT_METHODS))
    if rg.REFERENCE not in args.methods:
        p.error(f'--methods must include {rg.REFERENCE}: the map shows each method minus it')
    if args.epochs < 2:
        p.error(f'--epochs must be >= 2 (1 warm-up epoch + cosine schedule), got {args.epochs}')
    for flag in ('jobs', 'threads', 'seeds', 'val_interval'):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            p.error(f'--{flag.replace("_", "-")} must be >= 1, got {getattr(args, flag)}')
    if args.bootstrap < 0:
        p.error(f'--bootstrap must be >= 0, got {args.bootstrap}')
    args.cells = list(dict.fromkeys(args.cells or rg.CELL_NAMES))
    args.out = osp.abspath(args.out)  # the subprocesses run from the repository root
    args.lock = args.lock and osp.abspath(args.lock)
    return args


def main(argv: Sequence[str] | None = None) -> None:
    filter_third_party_warnings()
    args = parse_args(argv)
    cells = [rg.cell_by_name(n) for n in args.cells]
    if args.dry_run:
        dry_run(args, cells)
        return
    command = 'python tools/regime_map.py ' + shlex.join(sys.argv[1:] if argv is None else argv)
    os.makedirs(args.out, exist_ok=True)
    failed = [] if args.report_only else run_cells(args, cells)
    report(args, cells, command)
    if failed:
        raise SystemExit(f'{len(failed)} cell(s) failed: {", ".join(failed)}')


if __name__ == '__main__':
    main()
