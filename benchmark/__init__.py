"""A reproduction benchmark suite for He, Zhang, Ren, Sun, "Deep Residual Learning for Image
Recognition" (CVPR 2016, arXiv:1512.03385)."""

__version__ = "0.1.0"
