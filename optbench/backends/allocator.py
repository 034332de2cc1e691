"""Keep freed memory in the process instead of handing it back to the OS after every call.

Why: glibc's allocator gives the top of its heap back to the OS (``brk``) as soon as more
than a small threshold of it is free, and serves blocks above its ``mmap`` threshold with
fresh mappings. A policy objective's call allocates and frees a few MB of activations and
gradients ([pairs, 256] float32 tensors), so with the defaults every call page-faults them
in again: on the development machine (2-core AMD EPYC, 1 torch thread) a 1000-pair
``value_and_grad`` took 5.2-6.4 ms with glibc's defaults and 3.2-3.4 ms with a 64 MB top pad
(``M_TOP_PAD``: glibc keeps that much free space at the top of the heap, so blocks come from
memory already mapped). Setting it fixes glibc's otherwise adaptive ``mmap`` threshold at
128 KB, so blocks up to 32 MB (glibc's maximum; a 10^4-pair piece's activations are ~10 MB)
are also told to come from the heap (``M_MMAP_THRESHOLD``): without that, a long benchmark
process served its larger pieces by fresh mappings again and ran them at half speed. SAC
updates gain 3-6 %. The values computed are the same.

The setting changes the whole process, so nothing applies it implicitly: :func:`apply` is
called by :func:`optbench.backends.enable` (the command line does that), once per process.
It does nothing off glibc (macOS, musl), and nothing when ``MALLOC_*`` settings are in the
environment (glibc read them at start; they rule), and says so in :func:`state`.
"""

from __future__ import annotations

import ctypes
import os
import sys
from typing import Callable, Mapping

M_TOP_PAD, M_MMAP_THRESHOLD = -2, -3  # glibc's mallopt parameter numbers
TOP_PAD_BYTES = 64 << 20
MMAP_THRESHOLD_BYTES = 32 << 20  # glibc's largest allowed value on 64-bit systems

_state: str = "off: not requested"


def _libc_mallopt() -> Callable[[int, int], int]:
    return ctypes.CDLL(None).mallopt


def apply(environ: Mapping[str, str] | None = None, platform: str | None = None,
          mallopt: Callable[[], Callable[[int, int], int]] = _libc_mallopt) -> str:
    """Ask glibc to keep :data:`TOP_PAD_BYTES` of free heap mapped and to serve blocks below
    :data:`MMAP_THRESHOLD_BYTES` from the heap; returns (and keeps) the resulting :func:`state`.
    Applied at most once per process; ``environ``/``platform``/``mallopt`` are for tests."""
    global _state
    if _state == "on":
        return _state
    environ = os.environ if environ is None else environ
    platform = sys.platform if platform is None else platform
    malloc_vars = sorted(k for k in environ if k.startswith("MALLOC_"))
    if malloc_vars:
        _state = f"off: {', '.join(malloc_vars)} set in the environment"
    elif not platform.startswith("linux"):
        _state = f"off: not glibc ({platform})"
    else:
        try:
            fn = mallopt()
            ok = bool(fn(M_TOP_PAD, TOP_PAD_BYTES)) and bool(fn(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
            _state = "on" if ok else "off: mallopt refused the settings"
        except (OSError, AttributeError):  # no mallopt in this C library
            _state = "off: no mallopt in this C library"
    return _state


def state() -> str:
    """``"on"``, or ``"off: <why>"``."""
    return _state


__all__ = ["apply", "state", "TOP_PAD_BYTES", "MMAP_THRESHOLD_BYTES"]
