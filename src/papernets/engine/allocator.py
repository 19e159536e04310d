"""The CPU memory allocator: let glibc's malloc keep freed memory for the next step instead of handing it back.

A training step on the CPU allocates and frees the same large activation and gradient buffers every step. glibc
serves a request above its mmap threshold (at most 32 MiB, however its dynamic rule raises it) with a fresh
``mmap`` and unmaps it on ``free``, so every step touches every page of those buffers anew: a page fault and a page
of zeros from the kernel for each 4 KiB. On the 2-core machines the project is measured on, the memory-bound
operators of a depthwise network (batch-norm backward, ReLU6 backward) spent much of their time there: with freed
memory kept, the small-image forms at 28 px, batch 128, trained 1.05-1.52x as many images per second (MobileNetV2
x1.39, EfficientNet-B0 x1.52; ``docs/results/malloc_cache.md``, written by ``benchmarks/malloc_cache.py``).
PyTorch's own CPU tuning guide reaches the same end by preloading jemalloc or tcmalloc; this does it without a
library or an environment variable, through glibc's ``mallopt``:

- ``M_MMAP_MAX = 0``: no request is served by ``mmap``; every one comes from the heap, whose freed chunks the
  next request of the step reuses;
- ``M_TRIM_THRESHOLD`` = 2 GiB - 1: ``free`` does not shrink the heap, so the memory stays with the process, as
  PyTorch's CUDA caching allocator keeps its blocks. ``malloc_trim(0)`` still gives it back
  (``bench/profile.py`` does so before measuring a peak).

``set_malloc_cache(False)`` sets the values glibc's dynamic rule settles on once a large buffer has been freed
(mmap threshold 32 MiB, trim threshold 64 MiB, mmap allowed) and hands the heap's free memory back
(``malloc_trim(0)``): glibc cannot be told to start its dynamic rule again, so this is the nearest state to a
process that never called ``mallopt``, and what the plain side of ``benchmarks/vs_plain.py`` runs under after a
papernets round (a fresh process is the faithful
"before": ``benchmarks/malloc_cache.py`` runs each side in its own). The setting is for the whole process (and the
data-loader workers it forks later). The runtime (``engine/runtime.py``) turns it on for every CPU training run
unless ``train.malloc_cache: false``, and leaves it off for evaluation alone (``eval``, ``predict``), where it
measured no faster; on a C library other than glibc it is unavailable, and the runtime says so.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import platform

__all__ = ["available", "set_malloc_cache", "malloc_cache_enabled", "UNAVAILABLE"]

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -3, -4  # glibc's malloc.h
KEEP_TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int
GLIBC_MMAP_THRESHOLD_MAX = 32 * 2**20  # DEFAULT_MMAP_THRESHOLD_MAX on 64-bit: where the dynamic rule stops
GLIBC_MMAP_MAX = 65536  # DEFAULT_MMAP_MAX
UNAVAILABLE = "needs glibc's malloc (mallopt)"

_state: dict[str, bool] = {"enabled": False}


@functools.cache
def _libc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.mallopt.restype = ctypes.c_int
    except (OSError, AttributeError):
        return None
    return libc


def available() -> bool:
    """Whether this process's C library is glibc, whose malloc ``set_malloc_cache`` tunes."""
    return _libc() is not None


def set_malloc_cache(on: bool) -> None:
    """Keep freed memory in the process (``on``) or return to glibc's settled defaults; see the module docstring.
    Raises RuntimeError where the C library is not glibc or refuses a setting."""
    libc = _libc()
    if libc is None:
        raise RuntimeError(f"the CPU malloc cache {UNAVAILABLE}; this Python runs on "
                           f"{platform.system()} with {platform.libc_ver()[0] or 'an unknown C library'}")
    if on:
        settings = [(M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, KEEP_TRIM_THRESHOLD)]
    else:
        settings = [(M_MMAP_THRESHOLD, GLIBC_MMAP_THRESHOLD_MAX), (M_TRIM_THRESHOLD, 2 * GLIBC_MMAP_THRESHOLD_MAX),
                    (M_MMAP_MAX, GLIBC_MMAP_MAX)]
    for param, value in settings:
        if libc.mallopt(param, value) != 1:
            raise RuntimeError(f"glibc's mallopt({param}, {value}) failed")
    if not on:
        libc.malloc_trim(0)
    _state["enabled"] = on


def malloc_cache_enabled() -> bool:
    """Whether ``set_malloc_cache(True)`` is in force in this process."""
    return _state["enabled"]
