"""tools/study_v3.py: the v3 rules from the committed runs, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from tests.test_tools.run_tool import ROOT, run_tool


def test_levers_on_the_committed_runs(tmp_path):
    md, js = tmp_path / 'levers.md', tmp_path / 'levers.json'
    proc = run_tool('study_v3', 'levers', '--out', md, '--json', js)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert md.read_text() == proc.stdout
    record = json.loads(js.read_text())
    assert record['inputs'] == ['docs/study_v3/lever_config.json', 'docs/study_v3/lever_swa.json']
    result = record['result']
    for mode in ('config', 'swa'):
        runs = json.loads((ROOT / f'docs/study_v3/lever_{mode}.json').read_text())['runs']
        x = [r['metrics']['mAP'] for r in runs if r['method'] == 'wbf-earl']
        sd = np.std(x, ddof=1)
        assert result['modes'][mode]['sd']['wbf-earl']['mAP'] == sd
        # printed with mAP@0.4 beside it
        sd40 = np.std([r['metrics']['mAP_40'] for r in runs if r['method'] == 'wbf-earl'], ddof=1)
        assert f'| `--ema {mode}` | {len(x)} | {sd:.4f} / {sd40:.4f} |' in proc.stdout
    line = (
        f'Result: `--ema {result["ema"]}`, test set {result["num_test"]}, {result["epochs"]} epochs'
    )
    assert line in proc.stdout


def test_answer_on_runs_in_progress(tmp_path):
    runs = [
        dict(method=m, seed=s, metrics=dict(mAP=0.4 + 0.01 * s, mAP_40=0.6))
        for m in ('na', 'wbf-earl', 'mv')
        for s in range(3)
    ]
    vindr = tmp_path / 'vindr.json'
    vindr.write_text(json.dumps(dict(meta={}, summary={}, runs=runs)))
    js = tmp_path / 'answer.json'
    proc = run_tool(
        'study_v3', 'answer', '--vindr', vindr, '--paper', tmp_path / 'none.json', '--json', js
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert 'Stage: stage 1 incomplete (0 of 5 replicates).' in out  # bayes-* etc. missing
    assert 'question (b) on vindr-like raters only' in out
    assert '**Answer' not in out  # nothing answered, not even "no"
    every = out.split('## Every method')[1].split('## What must run next')[0]
    assert '### vindr-like, stage 1 (replicates 0-2, every method)' in every
    assert '### vindr-like, every replicate' not in every  # the same replicates: one table
    # replicate s scores 0.4 + 0.01 s for every method: mean 0.41, interval t(0.975, 2) SE
    half = 4.302653 * 0.01 / np.sqrt(3)
    zero = '+0.0000 [+0.0000, +0.0000]'
    row = f'| Majority vote | 3 | 0.4100 [{0.41 - half:.4f}, {0.41 + half:.4f}] | 0.6000 '
    assert row + f'[0.6000, 0.6000] | {zero} | {zero} |' in every
    assert 'vindr-like 9 runs, 0.0 h (9 without recorded times)' in every
    assert json.loads(js.read_text())['result']['a']['K'] == 9


def test_refuses_bad_input(tmp_path):
    proc = run_tool('study_v3', 'answer', '--vindr', tmp_path / 'no.json')
    assert proc.returncode == 2 and 'no.json: not a readable results.json' in proc.stderr
    proc = run_tool('study_v3', 'levers', '--config', 'docs/study_v3/lever_swa.json')
    assert proc.returncode == 2 and "--ema config: runs averaged with ['swa']" in proc.stderr
    proc = run_tool('study_v3', 'levers', '--out', 'docs/study_v3/lever_swa.json')
    assert proc.returncode == 2 and 'unknown suffix' in proc.stderr


def test_imports_neither_torch_nor_mmdet():
    code = (
        'import sys, io, contextlib; sys.path.insert(0, "tools"); import study_v3\n'
        'with contextlib.redirect_stdout(io.StringIO()): study_v3.main(["levers"])\n'
        'print(sorted(m for m in ("torch", "mmdet", "mmengine", "earl_mmdet") if m in sys.modules))'
    )
    proc = subprocess.run(
        [sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == '[]'


def test_truth_of_every_replicate(tmp_path):
    """``truth`` scores each data seed's training truth, as tools/score_truth.py does."""
    from tests.test_tools.test_fuse_annotations import tiny_multirater
    from tests.test_tools.test_score_truth import _gold

    study = tmp_path / 'study'
    for seed in (1003, 1004):
        d = study / 'data' / f'seed{seed}' / 'p0.8'
        d.mkdir(parents=True)
        tiny_multirater(d / 'train.json')
        _gold(d / 'train_gold.json')
    (study / 'study.json').write_text(json.dumps(dict(preset='study-vindr-like', data_seed=1003)))
    md, js = tmp_path / 'truth.md', tmp_path / 'truth.json'
    args = ('--study', study, '--methods', 'na', 'wbf', '--out', md, '--json', js)
    proc = run_tool('study_v3', 'truth', *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert md.read_text() == proc.stdout
    assert '## Data seed 1003 (replicate 0)' in proc.stdout
    assert '## Data seed 1004 (replicate 1)' in proc.stdout
    record = json.loads(js.read_text())
    assert sorted(record['by_data_seed']) == ['1003', '1004']
    assert record['command'].startswith('python tools/study_v3.py truth --study ')
    # the same numbers as score_truth on one replicate
    d = study / 'data' / 'seed1004' / 'p0.8'
    one = tmp_path / 'one.json'
    proc = run_tool(
        'score_truth', d / 'train.json', d / 'train_gold.json', '--methods', 'na', 'wbf',
        '--out', one,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert record['by_data_seed']['1004'] == json.loads(one.read_text())
    assert record['by_data_seed']['1004']['wbf']['boxes'] == 3
    # a replicate without its gold file, and a folder that is no study, are clear errors
    (study / 'data' / 'seed1004' / 'p0.8' / 'train_gold.json').unlink()
    proc = run_tool('study_v3', 'truth', '--study', study)
    assert proc.returncode == 2 and 'train.json without train_gold.json' in proc.stderr
    proc = run_tool('study_v3', 'truth', '--study', tmp_path / 'empty')
    assert proc.returncode == 2 and 'not a study folder' in proc.stderr
