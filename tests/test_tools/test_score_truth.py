"""tools/score_truth.py on the tiny multi-rater file and a hand-written gold file."""

from __future__ import annotations

import json

import pytest

from earl_core.fusion.aggregators import CONFIG_AGGREGATORS, build_aggregator
from tests.test_tools.run_tool import ROOT, run_tool
from tests.test_tools.test_fuse_annotations import tiny_multirater


def score(*args, out):
    """``python tools/score_truth.py ARGS --out OUT``: (results read from OUT, stdout)."""
    proc = run_tool('score_truth', *args, '--out', out)
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text()), proc.stdout


def _gold(path, drop=None):
    # other image ids, other image order and other category order than the raters' file:
    # images are matched by file_name, categories by name
    images = [
        dict(id=30, file_name='c.png', width=100, height=100),
        dict(id=10, file_name='a.png', width=100, height=100),
        dict(id=20, file_name='b.png', width=100, height=100),
    ]
    images = [im for im in images if im['file_name'] != drop]
    data = dict(
        images=images,
        categories=[dict(id=1, name='dog'), dict(id=2, name='cat')],
        annotations=[
            dict(id=1, image_id=10, category_id=2, bbox=[0, 0, 10, 10]),
            dict(id=2, image_id=30, category_id=1, bbox=[20, 20, 10, 10]),
        ],
    )
    path.write_text(json.dumps(data))
    return path


def test_scores_each_aggregator(tmp_path):
    src = tiny_multirater(tmp_path / 'multi.json')
    gold = _gold(tmp_path / 'gold.json')
    out = tmp_path / 'truth.json'
    res, table = score(src, gold, '--methods', 'na', 'mv', 'wbf', out=out)
    # na: R1/R2 cats and both image-3 dogs are right, R3's far dog is not
    assert (res['na']['boxes'], res['na']['correct'], res['na']['covered']) == (5, 4, 2)
    # mv keeps the two agreed boxes, both right
    assert (res['mv']['boxes'], res['mv']['correct'], res['mv']['recall']) == (2, 2, 1.0)
    # wbf, c = T/R: cat 2/3 (right), far dog 1/3 (wrong), image-3 dog 2/2 (right)
    assert res['wbf']['precision'] == pytest.approx(2 / 3)
    assert res['wbf']['weighted_precision'] == pytest.approx((2 / 3 + 1) / 2)
    assert res['wbf']['boxes'] == 3
    assert '| wbf | 3 | 66.7 % | 100.0 % | 83.3 % |' in table
    # R3's far dog overlaps no gold box: the one false positive of wbf (a T=1 box)
    assert res['wbf']['false_positives'] == 1 and res['wbf']['missed'] == 0
    assert '| method | false positives | missed |' in table
    assert '| wbf | 33.3 % | 0.0 % |' in table


def test_gold_without_the_image_is_a_clear_error(tmp_path):
    src = tiny_multirater(tmp_path / 'multi.json')
    gold = _gold(tmp_path / 'gold.json', drop='b.png')
    proc = run_tool('score_truth', src, gold, '--methods', 'na')
    assert proc.returncode != 0
    assert "gold.json: no image with file_name 'b.png'" in proc.stderr


@pytest.mark.parametrize(
    'name, config',
    [
        ('na', 'yolox_nano_na_20e_medmnist-cpu.py'),
        ('mv', 'yolox_nano_mv_20e_medmnist-cpu.py'),
        ('wbf', 'yolox_nano_wbf_20e_medmnist-cpu.py'),
        ('wbf', 'yolox_nano_wbf-earl_20e_medmnist-cpu.py'),
        ('em', 'yolox_nano_em-earl_20e_medmnist-cpu.py'),
        ('presence_em', 'yolox_nano_presence-em-earl_20e_medmnist-cpu.py'),
        ('bayes', 'yolox_nano_bayes-soft_20e_medmnist-cpu.py'),
        ('bayes', 'yolox_nano_bayes-loop-soft_20e_medmnist-cpu.py'),
    ],
)
def test_aggregators_are_the_configs_fusion(name, config):
    """CONFIG_AGGREGATORS restates the configs' dataset fusion: pin it to them."""
    from mmengine.config import Config

    cfg = Config.fromfile(str(ROOT / 'configs' / 'medmnist' / config))
    # No fusion = every rater's box with c = 1, the dataset's 'na'.
    fusion = dict(cfg.train_dataloader.dataset.get('fusion') or dict(method='na'))
    expected = build_aggregator(fusion.pop('method'), **fusion).get_params()
    assert build_aggregator(CONFIG_AGGREGATORS[name]).get_params() == expected


def test_every_medmnist_preset(tmp_path):
    """score_truth runs on each preset's training files (small runs)."""
    small = ['--num-train', '30', '--num-val', '1', '--num-test', '1', '--canvas', '128']
    for preset in ('paper', 'authors', 'cpu', 'vindr-like'):
        out = tmp_path / preset
        extra = ['--digit-size', '20', '44'] if preset in ('paper', 'authors') else []
        proc = run_tool('make_medmnist', '--out', out, '--preset', preset, *small, *extra)
        assert proc.returncode == 0, proc.stderr
        res, _ = score(
            out / 'train.json', out / 'train_gold.json', '--methods', 'wbf', out=tmp_path / 'r.json'
        )
        assert res['wbf']['boxes'] > 0 and res['wbf']['gold_boxes'] > 0
        if preset == 'vindr-like':  # raters box clutter: false positives
            assert res['wbf']['false_positives'] > 0
        elif preset != 'authors':  # the paper's raters box objects only, IoU > p = 0.8
            assert res['wbf']['false_positives'] == 0
