"""earl_core is framework-free and fast to import; the old earl_mmdet.core paths still work.

Each check runs in a fresh interpreter, because this test process has torch and mmdet
loaded already.
"""

from __future__ import annotations

import json
import os
import pkgutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import earl_core

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ('torch', 'mmdet', 'mmengine', 'mmcv', 'earl_mmdet', 'matplotlib', 'cv2', 'numba')
MODULES = sorted(
    m.name for m in pkgutil.walk_packages(earl_core.__path__, prefix='earl_core.') if m.name
)
#: Old path -> new path (docs/migration.md's table).
MOVED = {
    'earl_mmdet.core.coco_io': 'earl_core.io.coco',
    'earl_mmdet.core.fusion': 'earl_core.fusion.wbf',
    'earl_mmdet.core.aggregators': 'earl_core.fusion.aggregators',
    'earl_mmdet.core.rater_report': 'earl_core.metrics.rater_report',
    'earl_mmdet.core.medmnist': 'earl_core.sources.medmnist',
    'earl_mmdet.evaluation.sequential': 'earl_core.study.sequential',
    'earl_mmdet.core.earl_weights': 'earl_mmdet.models.earl_weights',
    'earl_mmdet.datasets.multi_annotator_coco': 'earl_mmdet.datasets.multi_rater_coco',
}


def _python(code: str) -> str:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run(
        [sys.executable, '-c', code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_every_core_module_imports_without_torch_or_mmdet():
    assert len(MODULES) >= 25  # the walk found the package (a typo would find nothing)
    code = (
        'import importlib, json, sys\n'
        f'for m in {MODULES!r}: importlib.import_module(m)\n'
        f'print(json.dumps(sorted({{m for m in sys.modules if m.split(".")[0] in {HEAVY!r}}})))\n'
    )
    assert json.loads(_python(code)) == []


def test_core_imports_in_under_a_second():
    """`import earl_core` and its fusion, I/O and metrics: < 1 s (best of three runs)."""
    code = (
        'import time; t = time.perf_counter()\n'
        'import earl_core, earl_core.fusion.aggregators, earl_core.io.coco, '
        'earl_core.metrics.rater_report\n'
        'print(time.perf_counter() - t)\n'
    )
    best = min(float(_python(code)) for _ in range(3))
    assert best < 1.0, f'earl_core imports in {best:.2f} s'


@pytest.mark.parametrize('old,new', sorted(MOVED.items()))
def test_old_path_is_the_new_module_with_a_warning(old, new):
    code = (
        'import importlib, warnings\n'
        'warnings.simplefilter("always")\n'
        'with warnings.catch_warnings(record=True) as w:\n'
        f'    old = importlib.import_module({old!r})\n'
        f'new = importlib.import_module({new!r})\n'
        'assert old is new, (old, new)\n'
        f'msgs = [str(x.message) for x in w if issubclass(x.category, FutureWarning)]\n'
        f'assert any({old!r} in m and {new!r} in m for m in msgs), msgs\n'
    )
    _python(code)


def test_from_old_package_import_gives_the_new_module():
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', FutureWarning)
        from earl_mmdet.core import coco_io, medmnist_raters
    import earl_core.io.coco
    import earl_core.sources.medmnist_raters

    assert coco_io is earl_core.io.coco
    assert medmnist_raters is earl_core.sources.medmnist_raters


def test_no_tool_edits_import_machinery():
    for path in sorted((ROOT / 'tools').glob('*.py')):
        text = path.read_text(encoding='utf-8')
        for needle in ('module_from_spec', 'sys.modules[', 'import_light', 'ModuleSpec('):
            assert needle not in text, f'{path.name} uses {needle}'


def _third_party_imports(package: str) -> tuple[set[str], set[str]]:
    """(module-level, inside functions) top-level names of the non-stdlib imports."""
    import ast

    top, lazy = set(), set()
    for path in (ROOT / package).rglob('*.py'):
        tree = ast.parse(path.read_text(encoding='utf-8'))
        module_level = set(map(id, tree.body))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                root = name.split('.')[0]
                if root in sys.stdlib_module_names or root in ('earl_core', 'earl_mmdet'):
                    continue
                (top if id(node) in module_level else lazy).add(root)
    return top, lazy


def test_setup_declares_what_the_core_imports():
    """Module-level imports of earl_core are install_requires; imports inside functions
    are install_requires or an extra (the PyPI name where it differs from the module)."""
    import ast

    tree = ast.parse((ROOT / 'setup.py').read_text(encoding='utf-8'))
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and n.keywords)
    kw = {
        k.arg: ast.literal_eval(k.value)
        for k in call.keywords
        if k.arg in ('install_requires', 'extras_require')
    }
    packages = next(k.value for k in call.keywords if k.arg == 'packages')
    assert "'earl_core'" in ast.unparse(packages)
    pypi = {'pillow': 'PIL', 'faster-coco-eval': 'faster_coco_eval'}

    def modules(reqs):
        names = {r.split(';')[0].split('>')[0].split('<')[0].split('=')[0].strip() for r in reqs}
        return {pypi.get(n, n) for n in names}

    required = modules(kw['install_requires'])
    extras = set().union(*(modules(v) for v in kw['extras_require'].values()))
    top, lazy = _third_party_imports('earl_core')
    assert top <= required, f'earl_core imports at module level, undeclared: {top - required}'
    assert lazy <= required | extras, f'undeclared lazy imports: {lazy - required - extras}'


MAX_PACKAGE_FILE_LINES = 600


def test_no_package_file_is_over_600_lines():
    """A package file past 600 lines mixes concerns (issue #28): split it by subject."""
    long = {
        str(path.relative_to(ROOT)): n
        for package in ('earl_core', 'earl_mmdet')
        for path in sorted((ROOT / package).rglob('*.py'))
        if (n := len(path.read_text(encoding='utf-8').splitlines())) > MAX_PACKAGE_FILE_LINES
    }
    assert not long, f'package files over {MAX_PACKAGE_FILE_LINES} lines: {long}'
