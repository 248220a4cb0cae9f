"""Install earl-mmdet: two packages, ``earl_core`` and ``earl_mmdet``.

``earl_core`` (truth inference, rater statistics, metrics maths, simulators) needs only
numpy, scipy and pycocotools: ``pip install -e .``.

``earl_mmdet`` (the mmdet adapter) needs, as mmdet itself does, PyTorch installed first for
your platform (https://pytorch.org), then the OpenMMLab stack: ``pip install -U openmim &&
mim install "mmengine>=0.10,<1.0" "mmcv>=2.0.0,<2.2.0" && pip install "mmdet>=3.3.0,<3.4"``
(or ``pip install -e .[mmdet]`` where an mmcv wheel exists for your torch). ``make install``
does all of it on a CPU machine.
"""

from setuptools import find_packages, setup

setup(
    name='earl-mmdet',
    version='0.2.0',
    description='MMDetection 3 plugin: train detectors from the boxes of several annotators '
    '(truth inference + Expert Agreement Re-weighted Loss).',
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=['earl_core', 'earl_core.*', 'earl_mmdet', 'earl_mmdet.*']),
    python_requires='>=3.9',
    install_requires=['numpy', 'scipy', 'pycocotools'],
    extras_require={
        'mmdet': ['mmengine>=0.10,<1.0', 'mmcv>=2.0.0,<2.2.0', 'mmdet>=3.3.0,<3.4'],
        'data': ['mlxtend', 'pydicom', 'pillow', 'tqdm'],
        'plots': ['matplotlib'],
        'eval': ['faster-coco-eval>=1.6'],
        'dev': ['pytest', 'hypothesis', 'ruff', 'ensemble-boxes==1.0.9'],
    },
    license='Apache-2.0',
)
