"""tools/fuse_annotations.py on a tiny multi-rater COCO file written to tmp_path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from earl_core.io.coco import load_multirater_coco
from tests.test_tools.run_tool import run_tool

ROOT = Path(__file__).resolve().parents[2]


def tiny_multirater(path: Path) -> Path:
    """3 images. Categories deliberately out of id order: label 0 = id 7, label 1 = id 3.

    image 1 (R1, R2, R3): R1 cat [0,0,10,10], R2 cat [1,0,10,10] (IoU .818), R3 dog far away.
    image 2 (R1, R2, R3): no box (a true negative).
    image 3 (R2, R3): R2 dog [20,20,10,10], R3 dog [21,20,10,10].
    """
    raters = {1: ['R1', 'R2', 'R3'], 2: ['R1', 'R2', 'R3'], 3: ['R2', 'R3']}
    boxes = [  # (image id, category id, bbox, rater)
        (1, 7, [0, 0, 10, 10], 'R1'),
        (1, 7, [1, 0, 10, 10], 'R2'),
        (1, 3, [50, 50, 10, 10], 'R3'),
        (3, 3, [20, 20, 10, 10], 'R2'),
        (3, 3, [21, 20, 10, 10], 'R3'),
    ]
    data = {
        'info': {'description': 'tiny'},
        'images': [
            dict(id=i, file_name=f'{"abc"[i - 1]}.png', width=100, height=100, annotators=r)
            for i, r in raters.items()
        ],
        'annotations': [
            dict(id=k + 1, image_id=i, category_id=c, bbox=b, annotator_id=r)
            for k, (i, c, b, r) in enumerate(boxes)
        ],
        'categories': [{'id': 7, 'name': 'cat'}, {'id': 3, 'name': 'dog'}],
    }
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def src(tmp_path):
    return tiny_multirater(tmp_path / 'multi.json')


def run(argv):
    """``python tools/fuse_annotations.py ARGV``: (exit status, stdout, stderr)."""
    proc = run_tool('fuse_annotations', *argv)
    return proc.returncode, proc.stdout, proc.stderr


def by_image(fused):
    out = {}
    for a in fused['annotations']:
        out.setdefault(a['image_id'], []).append(a)
    return out


@pytest.mark.parametrize(
    'args, expected',
    [
        # mv (strict majority): image 1 cat by R1+R2 (2 of 3), mean box; R3's dog dropped;
        # image 3 dog by both readers (2 of 2). Confidence c = T.
        (
            ['--method', 'mv', '--confidence', 'agreement'],
            {
                1: [(7, [0.5, 0, 10, 10], 2, 2.0, 3, ['R1', 'R2'])],
                3: [(3, [20.5, 20, 10, 10], 2, 2.0, 2, ['R2', 'R3'])],
            },
        ),
        # mv, default confidence: c = T / R.
        (
            ['--method', 'mv'],
            {
                1: [(7, [0.5, 0, 10, 10], 2, 2 / 3, 3, ['R1', 'R2'])],
                3: [(3, [20.5, 20, 10, 10], 2, 1.0, 2, ['R2', 'R3'])],
            },
        ),
        # na: every box, c = 1, T = 1.
        (
            ['--method', 'na'],
            {
                1: [
                    (7, [0, 0, 10, 10], 1, 1.0, 3, ['R1']),
                    (7, [1, 0, 10, 10], 1, 1.0, 3, ['R2']),
                    (3, [50, 50, 10, 10], 1, 1.0, 3, ['R3']),
                ],
                3: [
                    (3, [20, 20, 10, 10], 1, 1.0, 2, ['R2']),
                    (3, [21, 20, 10, 10], 1, 1.0, 2, ['R3']),
                ],
            },
        ),
        # one rater; image 3 (not read by R1) left out.
        (
            ['--method', 'rater:R1', '--on-missing', 'skip'],
            {1: [(7, [0, 0, 10, 10], 1, 1.0, 1, ['R1'])]},
        ),
    ],
)
def test_fuse_methods(src, tmp_path, args, expected):
    out = tmp_path / 'out' / 'fused.json'
    rc, stdout, err = run([src, out, *args])
    assert rc == 0, err
    fused = json.loads(out.read_text())
    got = {
        k: sorted(
            (
                a['category_id'],
                [round(v, 6) for v in a['bbox']],
                a['agreement'],
                round(a['score'], 6),
                a['num_raters'],
                a['raters'],
            )
            for a in v
        )
        for k, v in by_image(fused).items()
    }
    want = {
        k: sorted((c, [float(x) for x in b], t, round(s, 6), r, m) for c, b, t, s, r, m in v)
        for k, v in expected.items()
    }
    assert got == want
    for a in fused['annotations']:
        assert a['iscrowd'] == 0
        assert a['area'] == pytest.approx(a['bbox'][2] * a['bbox'][3])
    assert fused['categories'] == [{'id': 7, 'name': 'cat'}, {'id': 3, 'name': 'dog'}]
    ids = [im['id'] for im in fused['images']]
    assert ids == ([1, 2] if 'rater:R1' in args else [1, 2, 3])  # negatives kept
    assert 'fused' in stdout and 'T=1' in stdout or 'T=2' in stdout


def test_fused_file_loads_as_prefused(src, tmp_path):
    out = tmp_path / 'fused.json'
    rc, stdout, _ = run([src, out, '--method', 'mv', '--quorum', '1', '--confidence', 'agreement'])
    assert rc == 0
    coco = load_multirater_coco(out)
    assert coco.prefused and not coco.multi_rater
    assert coco.cat_ids == [7, 3]
    # quorum 1 keeps R3's lone dog too: image 1 has 2 boxes, c = T.
    assert sorted(coco.scores(0).tolist()) == [1.0, 2.0]
    assert len(coco.images[1].boxes) == 0
    fused = json.loads(out.read_text())
    assert fused['images'][0]['raters_read'] == ['R1', 'R2', 'R3']
    assert 'annotators' not in fused['images'][0]
    assert fused['info']['earl_fusion']['aggregator']['quorum'] == 1
    assert fused['info']['description'] == 'tiny'
    assert 'T=1: 1' in stdout and 'T=2: 2' in stdout


def test_fuse_em(src, tmp_path):
    out = tmp_path / 'fused.json'
    rc, _, err = run([src, out, '--method', 'em', '--confidence', 'posterior'])
    assert rc == 0, err
    fused = json.loads(out.read_text())
    assert all(0 < a['score'] <= 1 for a in fused['annotations'])
    assert {a['category_id'] for a in fused['annotations']} <= {7, 3}


@pytest.mark.parametrize('mode', ['presence', 'posterior'])
def test_fuse_presence_em(src, tmp_path, mode):
    out = tmp_path / 'fused.json'
    args = ['--method', 'presence_em', '--confidence', mode, '--box-averaging', 'uniform']
    rc, _, err = run([src, out, *args, '--max-iter', '50'])
    assert rc == 0, err
    fused = json.loads(out.read_text())
    agg = fused['info']['earl_fusion']['aggregator']
    assert (agg['type'], agg['confidence'], agg['max_iter']) == ('presence_em', mode, 50)
    assert fused['annotations'] and all(0 <= a['score'] <= 1 for a in fused['annotations'])
    assert {a['category_id'] for a in fused['annotations']} <= {7, 3}


def test_box_weights_flag_is_the_old_name_of_box_averaging(src, tmp_path):
    # --box-weights (until 0.2) keeps working until 0.3: warned, mapped to --box-averaging
    outs = []
    for flag in ('--box-averaging', '--box-weights'):
        outs.append(tmp_path / f'fused{flag}.json')
        args = ['--method', 'presence_em', '--max-iter', '5', flag, 'uniform']
        rc, _, err = run([src, outs[-1], *args])
        assert rc == 0, err
        assert ('--box-weights is deprecated' in err) == (flag == '--box-weights'), err
        agg = json.loads(outs[-1].read_text())['info']['earl_fusion']['aggregator']
        assert agg['box_averaging'] == 'uniform' and 'box_weights' not in agg
    assert [json.loads(o.read_text())['annotations'] for o in outs[:1]] == [
        json.loads(o.read_text())['annotations'] for o in outs[1:]
    ]


def test_fuse_wbf(src, tmp_path):
    pytest.importorskip('earl_core.fusion.wbf')
    out = tmp_path / 'fused.json'
    rc, stdout, err = run([src, out, '--method', 'wbf', '--iou-thr', '0.4', '--score', 'count'])
    assert rc == 0, err
    assert '--score is deprecated; use --confidence agreement' in err  # the old flag works
    got = sorted(
        (a['image_id'], a['category_id'], a['agreement'], a['score'])
        for a in json.loads(out.read_text())['annotations']
    )
    # label-wise WBF: image 1 cat T=2, dog T=1; image 3 dog T=2.
    assert got == [(1, 3, 1, 1.0), (1, 7, 2, 2.0), (3, 3, 2, 2.0)]


@pytest.mark.parametrize(
    'args, match',
    [
        (['--method', 'wbf', '--quorum', '2'], '--quorum does not apply to --method wbf'),
        (['--method', 'median'], 'unknown aggregator'),
        (['--method', 'rater:R1'], "rater 'R1' did not read image 3"),
        (['--method', 'mv', '--iou-thr', '1.5'], 'iou_thr'),
        (['--method', 'mv', '--confidence', 'posterior'], 'confidence must be one of'),
        (['--method', 'em', '--confidence', 'presence'], 'confidence must be one of'),
        (['--method', 'presence_em', '--keep-no-object'], '--keep-no-object does not apply'),
        (['--method', 'presence_em', '--box-averaging', 'proficiency'], "'box' or 'uniform'"),
    ],
)
def test_fuse_errors(src, tmp_path, args, match):
    rc, _, err = run([src, tmp_path / 'x.json', *args])
    assert rc == 2
    assert match in err
    assert not (tmp_path / 'x.json').exists()


def test_bad_input_file(tmp_path):
    rc, _, err = run([tmp_path / 'missing.json', tmp_path / 'x.json'])
    assert rc == 2 and 'not found' in err


def tool_help(name: str) -> subprocess.CompletedProcess:
    """``tools/<name>.py --help`` in a fresh interpreter (it must not need the package)."""
    return subprocess.run(
        [sys.executable, f'tools/{name}.py', '--help'],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_help_subprocess():
    proc = tool_help('fuse_annotations')
    assert proc.returncode == 0 and '--method' in proc.stdout and '--quorum' in proc.stdout
    assert '--confidence' in proc.stdout


def _edit(path: Path, edit) -> Path:
    """Apply ``edit`` to the parsed file; an edit that returns text replaces the file."""
    data = json.loads(path.read_text())
    text = edit(data)
    path.write_text(text if isinstance(text, str) else json.dumps(data))
    return path


def _unread_image_2(data):
    data['images'][1]['annotators'] = []  # image 2: nobody read it (no box either)


def test_unlabelled_image_stays_unlabelled_through_fusion(src, tmp_path):
    from earl_mmdet.datasets import MultiRaterCocoDataset

    _edit(src, _unread_image_2)
    out = tmp_path / 'fused.json'
    rc, stdout, err = run([src, out, '--method', 'wbf'])
    assert rc == 0, err
    assert 'images: 3 in, 3 out (1 unlabelled (nobody read them; raters_read []))' in stdout
    fused = json.loads(out.read_text())
    assert fused['images'][1]['raters_read'] == []
    assert load_multirater_coco(out).images[1].raters == ()  # not read by 'default'

    def kept(path):
        ds = MultiRaterCocoDataset(
            ann_file=str(path),
            data_root=str(tmp_path),
            data_prefix=dict(img=''),
            pipeline=[],
            filter_cfg=dict(filter_empty_gt=True),
        )
        return sorted(d['img_id'] for d in ds)

    assert kept(src) == kept(out) == [1, 3]  # the unread image is not a negative in either


def _rater_case(data):
    data['annotations'][1]['annotator_id'] = 'r2 '  # R2's box, spelled differently


def _zero_width_rater(data):
    data['annotations'][1]['annotator_id'] = 'R2\u200b'  # R2's box, an invisible character


def _per_rater_records(data):
    """Image 1 as one record per rater (ids 1, 11, 12), as per-rater exports hold it."""
    first = data['images'][0]
    first['annotators'] = ['R1']
    for new_id, rater in ((11, 'R2'), (12, 'R3')):
        data['images'].append({**first, 'id': new_id, 'annotators': [rater]})
    for a in data['annotations']:
        if a['image_id'] == 1 and a['annotator_id'] != 'R1':
            a['image_id'] = 11 if a['annotator_id'] == 'R2' else 12


# Hostile input: (edit of the tiny file, extra args, exit code, stderr fragment, stdout
# fragment when it succeeds).
HOSTILE = [
    # rater ids differing by case/space: an error naming both spellings
    pytest.param(
        _rater_case,
        [],
        2,
        "'R2' (image id=1 (index 0), field 'annotators[1]') vs 'r2 ' (annotation id=2",
        '',
        id='rater-collision',
    ),
    # ... or a counted repair when asked for: no new rater, R stays 3
    pytest.param(
        _rater_case,
        ['--normalize-rater-ids'],
        0,
        '',
        "input repairs: {'rater_id_normalized': 1}",
        id='rater-normalized',
    ),
    # a zero-width space in a rater id made a fourth rater (R 3 -> 4)
    pytest.param(
        _zero_width_rater,
        [],
        2,
        "'R2' (image id=1 (index 0), field 'annotators[1]') vs 'R2\\u200b' (annotation id=2",
        '',
        id='rater-zero-width',
    ),
    pytest.param(
        _zero_width_rater,
        ['--normalize-rater-ids'],
        0,
        '',
        "input repairs: {'rater_id_normalized': 1}",
        id='rater-zero-width-normalized',
    ),
    # one image record per rater: every box fused alone (T = 1) before
    pytest.param(
        _per_rater_records,
        [],
        2,
        "image id=11 (index 3), field 'file_name': 'a.png' is also the file of image id=1 "
        '(index 0)',
        '',
        id='per-rater-records',
    ),
    # ... merged when asked for: one image read by R1, R2, R3 again
    pytest.param(
        _per_rater_records,
        ['--merge-duplicate-images'],
        0,
        '',
        "input repairs: {'image_merged': 2}",
        id='per-rater-records-merged',
    ),
    # a box too thin to survive as float32 (WBF would drop it silently)
    pytest.param(
        lambda d: d['annotations'][0].update(bbox=[5, 0, 1e-300, 10]),
        [],
        2,
        "annotation id=1 (index 0), field 'bbox': box [5, 0, 1e-300, 10] is too thin",
        '',
        id='width-1e-300',
    ),
    # a 400-digit integer coordinate: OverflowError traceback before
    pytest.param(
        lambda d: json.dumps(d).replace('[0, 0, 10, 10]', f'[{"9" * 400}, 0, 10, 10]', 1),
        [],
        2,
        "annotation id=1 (index 0), field 'bbox': non-finite coordinate",
        '',
        id='coordinate-400-digits',
    ),
    # JSON nested 200,000 deep: RecursionError traceback before
    pytest.param(
        lambda d: '{"images": ' + '[' * 200_000 + ']' * 200_000 + '}',
        [],
        2,
        'JSON nested too deeply to read',
        '',
        id='json-nested-200000',
    ),
]


@pytest.mark.parametrize('edit,args,code,msg,summary', HOSTILE)
def test_hostile_input(src, tmp_path, edit, args, code, msg, summary):
    _edit(src, edit)
    out = tmp_path / 'fused.json'
    rc, stdout, err = run([src, out, '--method', 'wbf', *args])
    assert rc == code and msg in err, err
    if code:
        assert err.startswith(f'error: {src}: ') and err.count('\n') == 1, err  # one line
        assert not out.exists()
        return
    assert summary in stdout
    fused = json.loads(out.read_text())
    assert fused['images'][0]['raters_read'] == ['R1', 'R2', 'R3']
    assert {a['num_raters'] for a in fused['annotations'] if a['image_id'] == 1} == {3}
    assert {a['agreement'] for a in fused['annotations'] if a['image_id'] == 1} == {2, 1}


def test_output_is_a_folder(src, tmp_path):
    rc, _, stderr = run([src, tmp_path])
    assert rc != 0 and f'output {tmp_path} is a folder' in stderr


def test_quorum_above_r_warns(src, tmp_path):
    rc, stdout, stderr = run([src, tmp_path / 'x.json', '--method', 'mv', '--quorum', '7'])
    assert 'quorum 7 exceeds the R = 3 raters' in stderr
    assert rc == 0 and '5 rater boxes -> 0 fused' in stdout
