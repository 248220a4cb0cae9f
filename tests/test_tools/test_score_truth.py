"""tools/score_truth.py on the tiny multi-rater file and a hand-written gold file."""

from __future__ import annotations

import json

import pytest

from tests.test_tools.test_fuse_annotations import load_tool, tiny_multirater

tool = load_tool('score_truth')


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


def test_scores_each_aggregator(tmp_path, capsys):
    src = tiny_multirater(tmp_path / 'multi.json')
    gold = _gold(tmp_path / 'gold.json')
    out = tmp_path / 'truth.json'
    res = tool.main([str(src), str(gold), '--methods', 'na', 'mv', 'wbf', '--out', str(out)])
    # na: R1/R2 cats and both image-3 dogs are right, R3's far dog is not
    assert (res['na']['boxes'], res['na']['correct'], res['na']['covered']) == (5, 4, 2)
    # mv keeps the two agreed boxes, both right
    assert (res['mv']['boxes'], res['mv']['correct'], res['mv']['recall']) == (2, 2, 1.0)
    # wbf, c = T/R: cat 2/3 (right), far dog 1/3 (wrong), image-3 dog 2/2 (right)
    assert res['wbf']['precision'] == pytest.approx(2 / 3)
    assert res['wbf']['weighted_precision'] == pytest.approx((2 / 3 + 1) / 2)
    assert json.loads(out.read_text())['wbf']['boxes'] == 3
    table = capsys.readouterr().out
    assert '| wbf | 3 | 66.7 % | 100.0 % | 83.3 % |' in table
    # R3's far dog overlaps no gold box: the one false positive of wbf (a T=1 box)
    assert res['wbf']['false_positives'] == 1 and res['wbf']['missed'] == 0
    assert '| method | false positives | missed |' in table
    assert '| wbf | 33.3 % | 0.0 % |' in table


def test_gold_without_the_image_is_a_clear_error(tmp_path):
    src = tiny_multirater(tmp_path / 'multi.json')
    gold = _gold(tmp_path / 'gold.json', drop='b.png')
    with pytest.raises(SystemExit, match="gold.json: no image with file_name 'b.png'"):
        tool.main([str(src), str(gold), '--methods', 'na'])


@pytest.mark.parametrize(
    'name, config',
    [
        ('na', 'yolox_nano_na_20e_medmnist-cpu.py'),
        ('mv', 'yolox_nano_mv_20e_medmnist-cpu.py'),
        ('wbf', 'yolox_nano_wbf_20e_medmnist-cpu.py'),
        ('wbf', 'yolox_nano_wbf-earl_20e_medmnist-cpu.py'),
        ('em', 'yolox_nano_em-earl_20e_medmnist-cpu.py'),
        ('presence_em', 'yolox_nano_presence-em-earl_20e_medmnist-cpu.py'),
    ],
)
def test_aggregators_are_the_configs_fusion(name, config):
    """CONFIG_AGGREGATORS restates the configs' dataset fusion: pin it to them."""
    from mmengine.config import Config

    from earl_mmdet.core.aggregators import build_aggregator
    from tests.test_tools.test_fuse_annotations import ROOT

    cfg = Config.fromfile(str(ROOT / 'configs' / 'medmnist' / config))
    # No fusion = every rater's box with c = 1, the dataset's 'na'.
    fusion = dict(cfg.train_dataloader.dataset.get('fusion') or dict(method='na'))
    expected = build_aggregator(fusion.pop('method'), **fusion).get_params()
    assert build_aggregator(tool.CONFIG_AGGREGATORS[name]).get_params() == expected


def test_every_medmnist_preset(tmp_path, capsys):
    """score_truth runs on each preset's training files (small runs)."""
    mm_tool = load_tool('make_medmnist')
    small = ['--num-train', '30', '--num-val', '1', '--num-test', '1', '--canvas', '128']
    for preset in ('paper', 'authors', 'cpu', 'vindr-like'):
        out = tmp_path / preset
        extra = ['--digit-size', '20', '44'] if preset in ('paper', 'authors') else []
        mm_tool.main(['--out', str(out), '--preset', preset, *small, *extra])
        res = tool.main([str(out / 'train.json'), str(out / 'train_gold.json'), '--methods', 'wbf'])
        assert res['wbf']['boxes'] > 0 and res['wbf']['gold_boxes'] > 0
        if preset == 'vindr-like':  # raters box clutter: false positives
            assert res['wbf']['false_positives'] > 0
        elif preset != 'authors':  # the paper's raters box objects only, IoU > p = 0.8
            assert res['wbf']['false_positives'] == 0
