"""Tests of tools/browse_dataset.py."""

from __future__ import annotations

import numpy as np
import pytest

from earl_mmdet.utils import draw as tool
from tests.test_datasets.utils import write_set
from tests.test_tools.run_tool import run_tool


def test_render_colours_per_rater_and_fused_panel():
    img = np.zeros((60, 80, 3), np.uint8)
    out = tool.render(
        img,
        np.array([[5, 5, 30, 30], [40, 10, 70, 50]], np.float32),
        np.array([0, 1]),
        ['r1', 'r2'],
        ['r1', 'r2', 'r3'],
        np.array([[6, 6, 31, 31]], np.float32),
        np.array([0]),
        np.array([2.0], np.float32),
        ('a', 'b'),
    )
    assert out.shape[1] == 2 * 80 + 8 and out.shape[0] > 60
    left, right = out[:60, :80], out[:60, 88:]
    for k in range(2):  # each rater's colour is drawn in the left panel only
        colour = np.array(tool.rater_colour(k), np.uint8)
        assert (left == colour).all(-1).any()
        assert not (right == colour).all(-1).any()
    assert (right == np.array(tool.FUSED_COLOUR, np.uint8)).all(-1).any()
    legend = out[60:]
    assert (legend == np.array(tool.rater_colour(2), np.uint8)).all(-1).any()  # r3: no box


def test_render_fused_conf_is_the_old_name_of_fused_confidence():
    # render(fused_conf=) (until 0.2) keeps working until 0.3, with a FutureWarning
    args = (
        np.zeros((60, 80, 3), np.uint8),
        np.array([[5, 5, 30, 30]], np.float32),
        np.array([0]),
        ['r1'],
        ['r1'],
        np.array([[6, 6, 31, 31]], np.float32),
        np.array([0]),
    )
    new = tool.render(*args, fused_confidence=np.array([1.0], np.float32), classes=('a',))
    with pytest.warns(FutureWarning, match='fused_conf=.*fused_confidence='):
        old = tool.render(*args, fused_conf=np.array([1.0], np.float32), classes=('a',))
    np.testing.assert_array_equal(old, new)


def test_cli_writes_pngs(tmp_path):
    pytest.importorskip('mmdet')
    import cv2

    data_dir = tmp_path / 'data'
    data_dir.mkdir()
    write_set(str(data_dir))
    cfg = tmp_path / 'cfg.py'
    cfg.write_text(
        "custom_imports = dict(imports=['earl_mmdet'], allow_failed_imports=False)\n"
        'train_dataloader = dict(dataset=dict(type="MultiImageMixDataset", pipeline=[], '
        f'dataset=dict(type="MultiRaterCocoDataset", data_root={str(data_dir)!r}, '
        'ann_file="ann.json", data_prefix=dict(img=""), '
        'pipeline=[dict(type="LoadImageFromFile"), '
        'dict(type="FuseAnnotations", method="wbf", iou_thr=0.4)])))\n'
    )
    out = tmp_path / 'out'
    proc = run_tool('browse_dataset', cfg, '--out', out, '--num', 3)
    assert proc.returncode == 0, proc.stderr
    files = sorted(p.name for p in out.iterdir())
    assert files == ['00000_img1.png', '00001_img2.png', '00002_img3.png']
    img = cv2.imread(str(out / files[0]))
    assert img.shape[1] == 2 * 64 + 8
