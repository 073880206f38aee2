"""CIFAR-10 and ImageNet data: sources (``load_cifar10``) and loaders (``build_loaders``).

See ``docs/interfaces.md``; the paper's preprocessing lives in :mod:`benchmark.data.preprocess`.
"""

from benchmark.data.cifar import CLASS_NAMES, SOURCES, SPLITS, CifarData, load_cifar10, resolve_auto
from benchmark.data.loaders import LOADERS, build_loaders

__all__ = ["CLASS_NAMES", "LOADERS", "SOURCES", "SPLITS", "CifarData", "build_loaders", "load_cifar10",
           "resolve_auto"]
