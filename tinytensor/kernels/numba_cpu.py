"""Compatibility name of the compiled kernels: :mod:`tinytensor.kernels.numba` (one module per family).

Knobs live in the family modules, e.g. ``tinytensor.kernels.numba.attention_blas._ATTN_BLAS_MAX`` and
``tinytensor.kernels.numba._common._PAR_MIN``: set them there (``benchmarks.ab_step --toggle``).
"""
from .numba import *  # noqa: F401,F403  (the kernel names of spec.KERNELS, set_num_threads, warmup)
from .numba import __all__  # noqa: F401
