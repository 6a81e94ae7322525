from setuptools import find_packages, setup

setup(
    name='vitdense',
    version='0.1.0',
    description='Dense prediction (mmdet / mmseg) with vision-transformer-era backbones',
    packages=find_packages(include=['vitdense', 'vitdense.*']),
    python_requires='>=3.10',
    # The stack (torch, mmcv with compiled ops, mmdet, mmseg, timm) is installed by tools/install.sh:
    # mmcv 2.1.0 must be built from source against the installed torch, which pip cannot resolve here.
    install_requires=[],
)
