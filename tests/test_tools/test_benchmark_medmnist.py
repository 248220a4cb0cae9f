"""The MED-MNIST study: its plan, statistics and report (earl_core.study.benchmark) and
tools/benchmark_medmnist.py's options, report-only rebuild and resumability (run as a
subprocess)."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest

from earl_core.study import benchmark as bm
from earl_mmdet.utils.cli import train_log_status
from tests.test_tools.run_tool import run_tool

ROOT = Path(__file__).resolve().parents[2]


def _tool(*args: object) -> subprocess.CompletedProcess:
    return run_tool('benchmark_medmnist', *args)


def _run_dir(out: Path, method: str, seed: int, p: float = 0.8, e: int = 6) -> Path:
    """Where the tool keeps a run (``OUT/runs/<Run.key>``)."""
    return out / 'runs' / bm.Run(method, seed, p, e).key


def test_t_interval_matches_scipy():
    from scipy import stats

    x = [0.61, 0.64, 0.59, 0.66, 0.63]
    mean, lo, hi = bm.t_interval(x)
    ref = stats.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=stats.sem(x))
    assert mean == pytest.approx(np.mean(x))
    assert (lo, hi) == pytest.approx(ref)
    one = bm.t_interval([0.5])
    assert one[0] == 0.5 and math.isnan(one[1]) and math.isnan(one[2])


@pytest.mark.parametrize(
    'lo, hi, words',
    [
        (-0.01, 0.02, 'no detectable difference'),
        (0.0, 0.02, 'no detectable difference'),
        (0.001, 0.02, 'better'),
        (-0.03, -0.002, 'worse'),
        (math.nan, math.nan, 'one seed: no interval'),
    ],
)
def test_verdict(lo, hi, words):
    assert bm.verdict(lo, hi) == words


def _result(method, seed, m40, m, p=0.8, e=6):
    return dict(method=method, seed=seed, proficiency=p, epochs=e, metrics=dict(mAP_40=m40, mAP=m))


def test_summarize_pairs_by_seed_and_reports_intervals():
    na = [0.80, 0.82, 0.81, 0.79]
    # seed-to-seed spread large, paired difference small but consistent (+0.01 +- 0.001)
    earl = [v + 0.01 + d for v, d in zip(na, (0.001, -0.001, 0.0, 0.0005))]
    results = [_result('na', s, v, v - 0.2) for s, v in enumerate(na)]
    results += [_result('wbf-earl', s, v, v - 0.2) for s, v in enumerate(earl)]
    results.append(_result('wbf-earl', 7, 0.99, 0.9))  # no NA partner: not in the pairing
    summary = bm.summarize(results)
    rows = {r['method']: r for r in summary['rows']}
    assert [r['method'] for r in summary['rows']] == ['na', 'wbf-earl']
    assert rows['wbf-earl']['n'] == 5 and rows['na']['n'] == 4
    diff = rows['wbf-earl']['mAP_40_vs_na']
    assert diff['n'] == 4
    assert diff['mean'] == pytest.approx(np.mean(np.subtract(earl, na)))
    assert diff['verdict'] == 'better'
    # unpaired, the same numbers would not separate: the NA interval overlaps EARL's mean
    assert rows['na']['mAP_40']['hi'] > rows['wbf-earl']['mAP_40']['values'][0]
    assert 'mAP_40_vs_na' not in rows['na']


def test_summarize_verdict_none_when_interval_covers_zero():
    results = [_result('na', s, v, v) for s, v in enumerate([0.8, 0.82, 0.81])]
    results += [_result('wbf', s, v, v) for s, v in enumerate([0.81, 0.80, 0.815])]
    rows = {r['method']: r for r in bm.summarize(results)['rows']}
    assert rows['wbf']['mAP_vs_na']['verdict'] == 'no detectable difference'
    md = bm.markdown(bm.summarize(results), dict(command='x', date='d', device='cpu', machine='m'))
    assert 'no detectable difference' in md and '| WBF (no EARL) | 3 |' in md


def test_plan_is_seed_major_with_raters_last():
    runs = bm.plan(['na', 'wbf-earl', 'rater', 'ensemble'], 3, 1, [0.8], 6, {0.8: ['R1', 'R2']})
    keys = [r.key for r in runs]
    assert keys[:6] == [f'p0.8_e6/{m}/seed{s}' for s in range(3) for m in ('na', 'wbf-earl')]
    assert keys[6:] == [
        'p0.8_e6/rater-R1/seed0',
        'p0.8_e6/rater-R2/seed0',
        'p0.8_e6/ensemble/seed0',
    ]


def test_dry_run_options_pick_the_rater_by_its_fusion_key(tmp_path):
    """The per-rater runs set the fusion method of the dataset (not a pipeline index); EM
    fits on the dataset's own images, so it needs no option."""
    proc = _tool(
        '--out', str(tmp_path), '--methods', 'em-earl', 'rater', '--seeds', '1',
        '--rater-seeds', '1', '--epochs', '6', '--dry-run',
        '--data-args', '--num-train 4 --num-val 2 --num-test 2',
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    runs = {line.split()[0]: opts.split() for line, opts in zip(lines, lines[1:])}
    rater = runs['p0.8_e6/rater-R2/seed0']
    assert 'train_dataloader.dataset.fusion.method=rater:R2' in rater
    assert 'randomness.seed=0' in rater and 'train_cfg.max_epochs=6' in rater
    em = runs['p0.8_e6/em-earl/seed0']
    assert not [o for o in em if 'fusion' in o or 'pipeline' in o or 'fit_ann_file' in o]


def test_every_method_has_a_config(tmp_path):
    """The loss-policy methods run like the others: each trained method names its config."""
    proc = _tool(
        '--out', str(tmp_path), '--methods', *bm.METHODS, '--seeds', '1', '--rater-seeds', '1',
        '--epochs', '6', '--dry-run', '--data-args', '--num-train 4 --num-val 2 --num-test 2',
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = [line.split() for line in proc.stdout.splitlines() if not line.startswith(' ')]
    keys = {run[0]: run[1:] for run in runs}
    for method in ('wbf-soft', 'wbf-ignore', 'presence-em-earl', 'em-earl'):
        config = keys[f'p0.8_e6/{method}/seed0'][0]
        assert config == f'configs/medmnist/yolox_nano_{method}_20e_medmnist-cpu.py'
        assert (ROOT / config).is_file()
    assert all(m in bm.LABELS for m in bm.METHODS if m != 'rater')


def test_report_only_rebuilds_from_finished_runs(tmp_path):
    for s, (a, b) in enumerate([(0.8, 0.81), (0.82, 0.84)]):
        for method, v in (('na', a), ('wbf-earl', b)):
            d = _run_dir(tmp_path, method, s)
            d.mkdir(parents=True)
            (d / 'result.json').write_text(json.dumps(_result(method, s, v, v - 0.2)))
    proc = _tool('--out', str(tmp_path), '--report-only')
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / 'results.json').read_text())
    assert len(data['runs']) == 4
    md = (tmp_path / 'results.md').read_text()
    assert 'WBF + EARL (paper)' in md and '+0.0150' in md
    assert (tmp_path / 'methods_p0.8_e6.png').stat().st_size > 0
    # the same report from the results.json alone (a committed study's file)
    other = tmp_path / 'again'
    proc = _tool('--out', other, '--report-only', '--runs-json', tmp_path / 'results.json')
    assert proc.returncode == 0, proc.stderr
    assert json.loads((other / 'results.json').read_text())['summary'] == data['summary']
    # continuing from it needs the data settings of the study it came from (none recorded)
    proc = _tool('--out', tmp_path / 'next', '--runs-json', tmp_path / 'results.json')
    assert proc.returncode == 1 and 'are not this study folder' in proc.stderr
    assert not (tmp_path / 'next' / 'data').exists()  # refused before generating data


TINY = '--num-train 4 --num-val 2 --num-test 2'


def test_continues_from_a_committed_results_json(tmp_path):
    """A study run in parts on other machines: the next part takes the finished runs of the
    committed results.json and plans only the rest; other data settings are refused."""
    first = tmp_path / 'first'
    args = ('--methods', 'na', 'wbf-earl', '--seeds', '2', '--epochs', '6', '--data-args', TINY)
    proc = _tool('--out', first, *args, '--dry-run')
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((first / 'study.json').read_text()) == dict(
        preset='cpu', data_seed=0, data_args=TINY.split()
    )
    for method, v in (('na', 0.8), ('wbf-earl', 0.82)):
        d = _run_dir(first, method, 0)
        d.mkdir(parents=True)
        (d / 'result.json').write_text(json.dumps(_result(method, 0, v, v - 0.2)))
    assert _tool('--out', first, '--report-only').returncode == 0
    committed = tmp_path / 'committed.json'
    committed.write_text((first / 'results.json').read_text())
    assert json.loads(committed.read_text())['meta']['study']['data_args'] == TINY.split()
    md = (first / 'results.md').read_text()
    assert f'- data: `tools/make_medmnist.py --preset cpu`, data seed 0, extra flags: {TINY}' in md
    assert 'p in the headings is not used' not in md

    second = tmp_path / 'second'
    proc = _tool('--out', second, *args, '--runs-json', committed, '--dry-run')
    assert proc.returncode == 0, proc.stderr[-3000:]
    marks = {line.split()[0]: line for line in proc.stdout.splitlines() if line.startswith('p0')}
    assert marks['p0.8_e6/na/seed0'].endswith('(in --runs-json)')
    assert marks['p0.8_e6/wbf-earl/seed0'].endswith('(in --runs-json)')
    assert not marks['p0.8_e6/na/seed1'].endswith(')')
    assert not (second / 'runs').exists()  # a dry run writes no results

    # the same folder with another preset (or data flags) would pool two studies: refused
    proc = _tool('--out', first, *args, '--preset', 'vindr-like', '--dry-run')
    assert proc.returncode == 1 and "preset: 'cpu' -> 'vindr-like'" in proc.stderr
    # and a results.json of other data is not taken
    proc = _tool('--out', tmp_path / 'third', *args[:-1], '--num-train 5', '--runs-json', committed)
    assert proc.returncode == 1 and 'are not this study folder' in proc.stderr


def test_study_preset_trains_the_configs_at_its_canvas(tmp_path):
    """--preset study: 96 px data; the 128 px configs get their pipelines resized."""
    proc = _tool(
        '--out', tmp_path, '--methods', 'wbf-earl', '--seeds', '1', '--epochs', '6',
        '--preset', 'study', '--data-args', TINY, '--dry-run',
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    opts = proc.stdout.splitlines()[-1].split()
    assert 'train_dataloader.dataset.pipeline.2.scale=(96,96)' in opts
    assert 'test_dataloader.dataset.pipeline.2.size=(96,96)' in opts
    meta = json.loads((tmp_path / 'data' / 'p0.8' / 'meta.json').read_text())
    assert meta['args']['canvas'] == 96 and meta['args']['preset'] == 'study'


def test_rejects_ensemble_without_raters():
    proc = _tool('--methods', 'na', 'ensemble')
    assert proc.returncode == 2 and 'ensemble needs the rater runs' in proc.stderr


@pytest.mark.slow
def test_end_to_end_tiny_study_resumes(tmp_path):
    """Two tiny trainings, then a second call that finds them done and trains nothing."""
    args = ['--out', tmp_path, '--data-args', '--num-train 32 --num-val 8 --num-test 16']
    args += ['--epochs', 2, '--seeds', 1, '--methods', 'na', 'wbf-earl']
    first = run_tool('benchmark_medmnist', *args, timeout=3600)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert '[2/2]' in first.stdout
    second = run_tool('benchmark_medmnist', *args, timeout=3600)
    assert second.returncode == 0
    assert '2 already done, 0 to run' in second.stdout
    data = json.loads((tmp_path / 'results.json').read_text())
    assert sorted(r['method'] for r in data['runs']) == ['na', 'wbf-earl']


def test_log_status_reads_the_last_mmengine_line(tmp_path):
    log = tmp_path / 'train.log'
    log.write_text(
        '11/26 02:45:01 - mmengine - INFO - Epoch(train) [1][50/94]  lr: 1e-3  eta: 0:03:10  x\n'
        '11/26 02:46:01 - mmengine - INFO - Epoch(train) [2][ 50/94]  lr: 1e-3  eta: 0:02:05  x\n'
    )
    assert train_log_status(str(log)) == 'epoch 2 iter 50/94, run eta 0:02:05'
    assert train_log_status(str(tmp_path / 'missing.log')) is None


def test_earl_effect_is_paired_against_wbf():
    wbf = [0.80, 0.83, 0.78]
    results = [_result('na', s, 0.8, 0.6) for s in range(3)]
    results += [_result('wbf', s, v, v) for s, v in enumerate(wbf)]
    results += [_result('wbf-earl', s, v - 0.02, v) for s, v in enumerate(wbf)]
    summary = bm.summarize(results)
    (pair,) = summary['pairs']
    assert (pair['method'], pair['reference']) == ('wbf-earl', 'wbf')
    assert pair['mAP_40']['mean'] == pytest.approx(-0.02)
    assert pair['mAP_40']['verdict'] == 'worse' and pair['mAP']['mean'] == pytest.approx(0.0)
    md = bm.markdown(summary, dict(command='x', date='d', device='cpu', machine='m'))
    assert 'WBF + EARL (paper) − WBF (no EARL)' in md


def test_sweep_table_compares_the_same_seeds_at_every_p(tmp_path):
    results = []
    for s in range(5):  # p = 0.8 has five seeds, the other p only seed 0
        results += [_result('na', s, 0.80 + 0.01 * s, 0.60), _result('wbf', s, 0.70, 0.50)]
        results.append(_result('wbf-earl', s, 0.82 + 0.01 * s, 0.61 + 0.01 * s))
    for p, shift in ((0.6, -0.1), (0.9, 0.05)):
        results += [
            _result('na', 0, 0.80 + shift, 0.60 + shift, p=p),
            _result('wbf-earl', 0, 0.83 + shift, 0.60 + shift, p=p),
        ]
    results[-1]['bootstrap'] = dict(
        mAP_40=dict(se=0.01, num=9, diff_se=0.004), mAP=dict(se=0.01, num=9)
    )
    results.append(_result('mv', 0, 0.5, 0.4))  # only at p = 0.8: not in the sweep
    summary = bm.summarize(results)
    sweep = {r['method']: r for r in summary['sweep']}
    assert set(sweep) == {'na', 'wbf-earl'}
    earl = sweep['wbf-earl']
    assert earl['seeds'] == [0] and sorted(earl['cells']) == [0.6, 0.8, 0.9]
    # p = 0.8 uses seed 0 only, like the other columns (not the five-seed mean 0.84)
    assert earl['cells'][0.8]['mAP_40']['mean'] == pytest.approx(0.82)
    assert earl['cells'][0.8]['mAP_40']['diff']['mean'] == pytest.approx(0.02)
    assert earl['cells'][0.6]['mAP']['diff']['mean'] == pytest.approx(0.0)
    assert earl['cells'][0.9]['mAP_40']['diff']['boot_se'] == 0.004
    assert earl['cells'][0.9]['mAP_40']['diff']['verdict'] == 'one seed: no interval'
    md = bm.markdown(summary, dict(command='x', date='d', device='cpu', machine='m'))
    assert '## Proficiency sweep, 6 epochs' in md
    assert '| WBF + EARL (paper) | 0 | 0.7300 (+0.0300) | 0.8200 (+0.0200) |' in md
    assert '0.8800 (+0.0300 ± 0.0040 test-set SE)' in md
    assert any(p.endswith('sweep_e6.png') for p in bm.plots(summary, str(tmp_path)))


def test_wbf_earl_is_paired_against_the_rater_ensemble():
    results = [_result('na', s, 0.8, 0.6) for s in range(2)]
    results += [_result('ensemble', s, 0.75, 0.55 + 0.01 * s) for s in range(2)]
    results += [_result('wbf-earl', s, 0.78, 0.60) for s in range(3)]
    pairs = bm.summarize(results)['pairs']
    (pair,) = [r for r in pairs if r['reference'] == 'ensemble']
    assert pair['method'] == 'wbf-earl' and pair['mAP_40']['n'] == 2
    assert pair['mAP_40']['mean'] == pytest.approx(0.03)


@pytest.mark.parametrize('sd', [0.0, 0.004, 0.01, 0.014, 0.03, 0.05])
@pytest.mark.parametrize('half', [0.01, 0.02])
def test_seeds_for_half_width_is_the_smallest_n(sd, half):
    from scipy.stats import t

    n = bm.seeds_for_half_width(sd, half)

    def width(k):
        return t.ppf(0.975, k - 1) * sd / math.sqrt(k)

    assert n >= 2 and width(n) <= half
    assert n == 2 or width(n - 1) > half
    # by brute force from 2 upwards
    assert n == next(k for k in range(2, 100_000) if width(k) <= half)


def test_seeds_for_half_width_edges():
    assert bm.seeds_for_half_width(math.nan) is None
    assert bm.seeds_for_half_width(1.0, 0.001, max_seeds=100) is None
    with pytest.raises(ValueError):
        bm.seeds_for_half_width(-0.1)
    with pytest.raises(ValueError):
        bm.seeds_for_half_width(0.01, 0.0)


def test_power_table_in_report():
    # paired differences with SD 0.02: about 18 seeds for +-0.01
    rng = np.random.default_rng(0)
    na = rng.uniform(0.5, 0.6, 5)
    diff = np.array([0.02, -0.01, 0.03, 0.0, -0.02])
    results = [_result('na', s, v, v) for s, v in enumerate(na)]
    results += [_result('wbf-earl', s, v + d, v + d) for s, (v, d) in enumerate(zip(na, diff))]
    summary = bm.summarize(results)
    row = bm.power_rows(summary, 0.8, 6)[0]
    assert row['sd'] == pytest.approx(np.std(diff, ddof=1))
    assert row['seeds_needed'] == bm.seeds_for_half_width(np.std(diff, ddof=1))
    md = bm.markdown(summary, dict(command='x', date='d', device='cpu', machine='m'))
    assert f'| {row["name"]} | 5 | {row["sd"]:.4f} |' in md and 'seeds for ±0.01' in md
    upper = bm.sd_upper_bound(row['sd'], 5)
    assert row['seeds_needed_upper'] == bm.seeds_for_half_width(upper) > row['seeds_needed']
    # mAP@0.4 beside: here the mAP@0.4 differences are the mAP ones, so SD and seeds agree
    assert (
        row['sd_40'] == pytest.approx(row['sd']) and row['seeds_needed_40'] == row['seeds_needed']
    )
    assert md.splitlines()[
        [i for i, x in enumerate(md.splitlines()) if row['name'] in x][-1]
    ].endswith(
        f'| {row["seeds_needed"]} | {row["seeds_needed_upper"]} | {row["sd"]:.4f} '
        f'| {row["seeds_needed"]} |'
    )


@pytest.mark.parametrize('n', [3, 8, 20])
def test_sd_upper_bound_covers_the_true_sd_at_its_level(n):
    """Over many simulated pilots of n normal values, the 80 % upper bound of the SD lies
    above the true SD in 80 % of them (a chi-square quantile on the wrong side fails)."""
    rng = np.random.default_rng(n)
    sds = rng.normal(0.0, 0.02, size=(20_000, n)).std(axis=1, ddof=1)
    covered = np.mean([bm.sd_upper_bound(sd, n) >= 0.02 for sd in sds])
    assert covered == pytest.approx(0.8, abs=0.01)
    assert math.isnan(bm.sd_upper_bound(0.01, 1)) and math.isnan(bm.sd_upper_bound(math.nan, 5))


def test_report_names_realistic_data_whose_p_is_unused():
    meta = dict(command='x', date='d', device='cpu', machine='m')
    study = dict(preset='study-vindr-like', data_seed=3, data_args=[])
    md = bm.markdown(bm.summarize([_result('na', 0, 0.5, 0.3)]), dict(meta, study=study))
    assert '--preset study-vindr-like`, data seed 3, extra flags: none' in md
    assert 'realistic raters: the p in the headings is not used' in md


def _study(diffs: dict[str, list[float]], seeds: int = 6) -> dict:
    """Fabricated runs: WBF+EARL at 0.6 + small seed effects, every other method at
    WBF+EARL plus its listed paired differences (mAP@[.5:.95])."""
    ref = 0.6 + 0.01 * np.sin(np.arange(seeds))
    results = [_result('wbf-earl', s, v, v) for s, v in enumerate(ref)]
    for method, d in diffs.items():
        results += [_result(method, s, v + x, v + x) for s, (v, x) in enumerate(zip(ref, d))]
    return bm.summarize(results)


ALT = np.array([1, -1, 1, -1, 1, -1], dtype=float)


@pytest.mark.parametrize(
    'diffs, best, yes, plain_yes',
    [
        # a clear win of 0.03: yes
        (dict(na=[0.0] * 6, mv=list(0.03 + 0.002 * ALT)), 'mv', 'yes', True),
        # 0.03 on average but seed noise of 0.03: the data cannot decide
        (dict(na=[0.0] * 6, mv=list(0.03 + 0.03 * ALT)), 'mv', 'not shown', False),
        # above zero for sure, but every adjusted upper bound below the 0.02 margin: no
        (dict(na=[0.0] * 6, mv=list(0.012 + 0.001 * ALT)), 'mv', 'no', False),
        # above zero only before picking the best of three is accounted for: not shown
        (dict(na=[0.0] * 6, mv=list(0.025 + 0.0205 * ALT), wbf=[0.0] * 6), 'mv', 'not shown', True),
        # below the margin on average, but an upper bound above it: not shown, never no
        (dict(na=[0.0] * 6, mv=list(0.012 + 0.02 * ALT)), 'mv', 'not shown', False),
        # NA is a method too: NA - WBF+EARL is the negated WBF+EARL - NA
        (dict(na=list(0.04 + 0.003 * ALT), mv=[0.0] * 6), 'na', 'yes', True),
    ],
)
def test_the_plain_answer_against_wbf_earl(diffs, best, yes, plain_yes):
    from scipy import stats

    summary = _study(diffs)
    a = bm.answer(summary, 0.8, 6)
    assert a['best']['method'] == best and a['k'] == len(diffs)
    assert (a['answer'], a['plain_yes']) == (yes, plain_yes)
    d = np.asarray(diffs[best])
    half = stats.t.ppf(1 - 0.025 / len(diffs), d.size - 1) * d.std(ddof=1) / np.sqrt(d.size)
    assert a['best']['mean'] == pytest.approx(d.mean())
    assert (a['best']['adj_lo'], a['best']['adj_hi']) == pytest.approx(
        (d.mean() - half, d.mean() + half)
    )
    assert (a['best']['lo'], a['best']['hi']) == pytest.approx(bm.t_interval(d)[1:])
    md = bm.markdown(summary, dict(command='x', date='d', device='cpu', machine='m'))
    assert f'with its interval above zero? **{yes}**' in md
    assert ('Without the adjustment the answer would be yes' in md) == (plain_yes and yes != 'yes')


def test_no_answer_without_two_paired_seeds():
    assert bm.answer(_study(dict(na=[0.01])), 0.8, 6) is None


# ----------------------------------------------------------------------------- v3 options


def _dry_run_options(stdout: str) -> dict[str, list[str]]:
    """``--dry-run`` output: run key -> its --cfg-options."""
    lines = stdout.splitlines()
    return {
        line.split()[0]: opts.split()
        for line, opts in zip(lines, lines[1:])
        if line.startswith('p') and opts.startswith(' ')
    }


def test_default_options_are_the_committed_pilots(tmp_path):
    """Without the new flags a run gets exactly the options the pilot's runs recorded (data
    root aside): the committed study can be continued by the same tool."""
    proc = _tool(
        '--out', tmp_path, '--preset', 'study', '--proficiency', '0.7', '--methods', 'na',
        'wbf-earl', '--seeds', '1', '--epochs', '24', '--data-args', TINY, '--dry-run',
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    planned = _dry_run_options(proc.stdout)
    committed = json.loads((ROOT / 'docs' / 'results_study_paper.json').read_text())['runs']
    ours = f'{tmp_path}/data/p0.7/'
    for run in (r for r in committed if r['seed'] == 0):
        theirs = [o.replace('work_dirs/study_paper/data/p0.7/', ours) for o in run['cfg_options']]
        assert planned[f'p0.7_e24/{run["method"]}/seed0'] == theirs, run['method']


def _committed_studies() -> list[str]:
    """Every committed result file of the tool (``meta``, ``runs``, ``summary``), under docs/."""
    found = []
    for path in sorted((ROOT / 'docs').rglob('*.json')):
        data = json.loads(path.read_text())
        if isinstance(data, dict) and {'meta', 'runs', 'summary'} <= set(data):
            found.append(str(path.relative_to(ROOT / 'docs')))
    return found


def test_every_committed_study_is_found():
    names = _committed_studies()
    assert {'results_study_paper.json', 'results_study_vindr.json', 'results_medmnist.json'} <= set(
        names
    )
    assert any(n.startswith('study_v3/') for n in names), names


@pytest.mark.parametrize('name', _committed_studies())
def test_committed_study_summaries_rebuild_identically(tmp_path, name):
    """Each committed study's summary is what the committed code makes of its runs."""
    committed = json.loads((ROOT / 'docs' / name).read_text())
    proc = _tool('--out', tmp_path, '--report-only', '--runs-json', ROOT / 'docs' / name)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rebuilt = json.loads((tmp_path / 'results.json').read_text())
    # NaN-safe comparison: the same JSON text
    assert json.dumps(rebuilt['summary'], sort_keys=True) == json.dumps(
        committed['summary'], sort_keys=True
    )
    if not any('val_curve' in r for r in committed['runs']):
        assert 'curves' not in rebuilt['summary']  # runs without curves give no curve summary


def test_data_follow_the_seed_with_val_curve_and_ema_options(tmp_path):
    """--data-seed-follows-seed: seed k on data seed DATA_SEED + k, one cached set per data
    seed, the same bytes for the same seed; --val-interval and --ema set their options."""
    a = tmp_path / 'a'
    args = ('--preset', 'study', '--methods', 'wbf-earl', '--epochs', '24', '--data-args', TINY)
    proc = _tool(
        '--out', a, *args, '--seeds', '2', '--data-seed', '3', '--data-seed-follows-seed',
        '--val-interval', '4', '--ema', 'ema', '--dry-run',
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = json.loads((a / 'study.json').read_text())
    assert study == dict(
        preset='study', data_seed=3, data_args=TINY.split(), data_seed_follows_seed=True,
        ema=dict(mode='ema', window=0.2),
    )  # fmt: skip
    opts = _dry_run_options(proc.stdout)
    for seed, data_seed in ((0, 3), (1, 4)):
        o = opts[f'p0.8_e24/wbf-earl/seed{seed}']
        root = f'{a}/data/seed{data_seed}/p0.8/'
        assert f'data_root={root}' in o and f'val_evaluator.ann_file={root}val.json' in o
        assert f'randomness.seed={seed}' in o
        # validation every 4 epochs, at the data's 96 px, no workers
        assert 'train_cfg.val_interval=4' in o and 'val_cfg=None' not in o
        assert 'val_dataloader.dataset.pipeline.1.scale=(96,96)' in o
        assert 'val_dataloader.num_workers=0' in o
        # 4 images = 1 iteration per epoch, 24 iterations: W = round(0.2 x 24) = 5
        assert o[-2:] == [
            'custom_hooks.0.ema_type=ExponentialMovingAverage',
            f'custom_hooks.0.momentum={2 / 6}',
        ]
    train = [(a / 'data' / f'seed{s}' / 'p0.8' / 'train.json').read_bytes() for s in (3, 4)]
    assert train[0] != train[1]  # each replicate its own draw
    # another study folder: data seed 4 again, byte for byte
    b = tmp_path / 'b'
    proc = _tool('--out', b, *args, '--seeds', '1', '--data-seed', '4', '--dry-run')
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ('train.json', 'val.json', 'test.json', 'meta.json'):
        assert (b / 'data' / 'p0.8' / name).read_bytes() == (
            a / 'data' / 'seed4' / 'p0.8' / name
        ).read_bytes(), name


@pytest.mark.parametrize(
    'first, second, message',
    [
        # fresh data per replicate, then one data seed for all: two studies in one folder
        (('--data-seed-follows-seed',), (), 'data_seed_follows_seed: True -> None'),
        # and the other way round
        ((), ('--data-seed-follows-seed',), 'data_seed_follows_seed: None -> True'),
        # another averaged model changes every result
        ((), ('--ema', 'swa'), "ema: None -> {'mode': 'swa', 'window': 0.2}"),
        (('--ema', 'swa'), ('--ema', 'swa', '--ema-window', '0.1'), "'window': 0.2} -> {'mode'"),
    ],
)
def test_refuses_mixing_data_or_averaging_settings(tmp_path, first, second, message):
    args = ('--out', tmp_path, '--methods', 'na', '--seeds', '1', '--data-args', TINY)
    assert _tool(*args, *first, '--dry-run').returncode == 0
    proc = _tool(*args, *second, '--dry-run')
    assert proc.returncode == 1 and message in proc.stderr, proc.stderr[-2000:]


def test_the_pilot_is_not_continued_with_fresh_data(tmp_path):
    proc = _tool(
        '--out', tmp_path, '--preset', 'study', '--proficiency', '0.7', '--methods', 'na',
        '--seeds', '1', '--data-seed-follows-seed', '--runs-json',
        ROOT / 'docs' / 'results_study_paper.json', '--dry-run',
    )  # fmt: skip
    assert proc.returncode == 1 and 'are not this study folder' in proc.stderr
    assert not (tmp_path / 'data').exists()


@pytest.mark.parametrize(
    'args, message',
    [
        (('--val-interval', '-1'), '--val-interval must be >= 0'),
        (('--ema-window', '0'), r'--ema-window must lie in (0, 1]'),
        (('--ema', 'last'), "invalid choice: 'last'"),
    ],
)
def test_rejects_bad_new_options(args, message):
    proc = _tool(*args)
    assert proc.returncode == 2 and message in proc.stderr


def test_ablations_run_only_when_named(tmp_path):
    proc = _tool('--out', tmp_path, '--seeds', '1', '--data-args', TINY, '--dry-run')
    assert proc.returncode == 0, proc.stderr[-3000:]
    planned = {
        line.split()[0].split('/')[1] for line in proc.stdout.splitlines() if line.startswith('p0')
    }
    raters = {'rater-R1', 'rater-R2', 'rater-R3'}
    assert planned == set(bm.STUDY_METHODS) - {'rater'} | raters
    assert not planned & set(bm.ABLATION_METHODS)
    assert not planned & set(bm.CHALLENGER_METHODS)


# ----------------------------------------------------------------------------- curves


@pytest.mark.parametrize(
    'lines, curve',
    [
        # train lines are skipped; a validation line is one point
        (
            ['{"loss": 2.0, "step": 94}', '{"coco/mAP_40": 0.7, "coco/mAP": 0.4, "step": 4}'],
            [dict(epoch=4, mAP=0.4, mAP_40=0.7)],
        ),
        # sorted by epoch; a repeated epoch keeps its last line; blank lines ignored
        (
            [
                '{"coco/mAP_40": 0.8, "coco/mAP": 0.5, "step": 8}',
                '',
                '{"coco/mAP_40": 0.7, "coco/mAP": 0.4, "step": 4}',
                '{"coco/mAP_40": 0.9, "coco/mAP": 0.6, "step": 8}',
            ],
            [dict(epoch=4, mAP=0.4, mAP_40=0.7), dict(epoch=8, mAP=0.6, mAP_40=0.9)],
        ),
        # no validation at all
        (['{"loss": 2.0, "step": 94}'], []),
    ],
)
def test_val_curve_from_log(lines, curve):
    assert bm.val_curve_from_log(lines) == curve


@pytest.mark.parametrize(
    'lines, message',
    [
        (['{"loss": 2.0}', 'not json'], 'scalar log line 2: not JSON'),
        (['{"coco/mAP": 0.4, "step": 4}'], r"line 1: validation line without \['coco/mAP_40'\]"),
        (['{"coco/mAP": 0.4, "coco/mAP_40": 0.7}'], r"line 1: validation line without \['step'\]"),
    ],
)
def test_val_curve_from_log_names_the_bad_line(lines, message):
    with pytest.raises(ValueError, match=message):
        bm.val_curve_from_log(lines)


def test_curves_are_summarised_reported_and_plotted(tmp_path):
    results = []
    for s, shift in enumerate((0.0, 0.02)):
        for method, base in (('na', 0.5), ('wbf-earl', 0.45)):
            r = _result(method, s, base + 0.3, base, e=24)
            r['val_curve'] = [
                dict(epoch=ep, mAP=base - 0.1 * (24 - ep) / 24 + shift, mAP_40=base + 0.3)
                for ep in (8, 16, 24)
            ]
            results.append(r)
    results.append(_result('mv', 0, 0.7, 0.4, e=24))  # no curve: not in the table
    summary = bm.summarize(results)
    (na, earl) = summary['curves']
    assert (na['method'], earl['method'], na['seeds']) == ('na', 'wbf-earl', [0, 1])
    last = earl['points'][-1]
    assert last['epoch'] == 24 and last['n'] == 2
    assert last['mAP']['values'] == pytest.approx([0.45, 0.47])
    assert (last['mAP']['min'], last['mAP']['max']) == pytest.approx((0.45, 0.47))
    md = bm.markdown(summary, dict(command='x', date='d', device='cpu', machine='m'))
    assert '| method | seeds | epoch 8 | epoch 16 | epoch 24 |' in md
    assert '| WBF + EARL (paper) | 0,1 |' in md and '0.460 [0.450, 0.470] / 0.750 |' in md
    assert any(p.endswith('curves_p0.8_e24.png') for p in bm.plots(summary, str(tmp_path)))


def test_the_answer_line_has_map40_beside():
    diffs = dict(na=[0.0] * 6, mv=list(0.03 + 0.002 * ALT))
    md = bm.markdown(_study(diffs), dict(command='x', date='d', device='cpu', machine='m'))
    mean = float(np.mean(diffs['mv']))  # mAP@0.4 = mAP in the fabricated runs
    assert f'Its mAP@0.4 difference: {mean:+.4f} [' in md
