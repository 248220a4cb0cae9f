"""Install earl-mmdet: ``pip install -e .`` inside an environment that has mmdet 3.x."""

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
        'eval': ['faster-coco-eval>=1.6'],
        'dev': ['pytest', 'hypothesis', 'ruff', 'ensemble-boxes==1.0.9'],
    },
    license='Apache-2.0',
)
