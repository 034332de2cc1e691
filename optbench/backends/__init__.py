"""CPU back-ends: process-wide speed settings, switched on once and explicitly.

Two settings change how optbench's tensors are computed, not what is computed:

* :mod:`optbench.backends.onednn`: the matrix products of the SAC update and of every frozen
  Q-ensemble on oneDNN's kernels (through torch's private ``torch.ops.mkldnn`` ops); about
  2x faster float32 products than torch's BLAS on AVX-512 CPUs, other float rounding;
* :mod:`optbench.backends.allocator`: glibc's ``mallopt`` settings that keep freed memory
  mapped (fewer page faults for the objective's repeated allocations).

Neither is on by default for a library user, and no constructor touches them. The command
line switches them on (:func:`enable`, once per process, before any work); a library user
calls :func:`enable` too, or sets ``OPTBENCH_BACKENDS=off`` / ``onednn``/``allocator``/
``all`` to decide without a probe. oneDNN is switched on only where its kernel exists, gives
float32 results, and a start-up probe (:func:`probe_onednn`: a 256-wide layer at 512 rows,
oneDNN against torch's product, best of several interleaved rounds) measured it faster on
this CPU; the measured ratio is kept in :func:`state`. Worker processes take the parent's
decision (:func:`apply`), never a probe of their own, so every process of a run computes
the same bits. :func:`state` goes into each run's ``run.json`` and into benchmark records.
"""

from __future__ import annotations

import os
import time
from typing import Any

import torch

from optbench.backends import allocator, onednn

# oneDNN is switched on when its products take at most this fraction of torch's
ONEDNN_MAX_TIME_RATIO = 0.9
ENV = "OPTBENCH_BACKENDS"

_state: dict[str, Any] = {"onednn": "off: not requested", "allocator": "off: not requested"}


def probe_onednn(rounds: int = 5, reps: int = 20) -> tuple[bool, str, float | None]:
    """Whether oneDNN's products are usable and faster here: ``(on, reason, time ratio)`` where
    the ratio is oneDNN's time ÷ torch's for a ``[512, 256] @ [256, 256]`` product with ReLU."""
    if not onednn.kernel_available():
        return False, "off: no usable oneDNN linear kernel in this torch", None
    g = torch.Generator().manual_seed(0)
    x, w, b = torch.randn(512, 256, generator=g), torch.randn(256, 256, generator=g), torch.randn(256, generator=g)
    best = {"onednn": float("inf"), "torch": float("inf")}
    fns = {"onednn": lambda: onednn._linear(x, w, b, relu=True),
           "torch": lambda: torch.nn.functional.linear(x, w, b).relu_()}
    for _ in range(rounds):
        for name, fn in fns.items():
            fn()
            tic = time.perf_counter()
            for _ in range(reps):
                fn()
            best[name] = min(best[name], (time.perf_counter() - tic) / reps)
    ratio = best["onednn"] / best["torch"]
    if ratio <= ONEDNN_MAX_TIME_RATIO:
        return True, "on", ratio
    return False, f"off: not faster here (oneDNN/torch time {ratio:.2f})", ratio


def enable(probe: bool = True) -> dict[str, Any]:
    """Switch on the back-ends that are available (and, for oneDNN, measured faster here);
    ``OPTBENCH_BACKENDS`` (``off``, ``onednn``, ``allocator``, ``all``) overrides the choice
    without a probe. Returns :func:`state`. Idempotent."""
    choice = os.environ.get(ENV, "").strip().lower()
    if choice and choice not in ("off", "onednn", "allocator", "all"):
        raise ValueError(f"{ENV}={choice!r}: expected off, onednn, allocator or all")
    want_onednn = choice in ("", "onednn", "all")
    want_allocator = choice in ("", "allocator", "all")
    if want_onednn and _state.get("onednn") != "on":
        if choice:  # forced: no probe, only the kernel check
            on = onednn.kernel_available()
            reason, ratio = ("on" if on else "off: no usable oneDNN linear kernel in this torch"), None
        elif probe:
            on, reason, ratio = probe_onednn()
        else:
            on, reason, ratio = onednn.kernel_available(), "on", None
        _set_onednn(on, reason if on or reason.startswith("off") else f"off: {reason}", ratio)
    elif not want_onednn:
        _set_onednn(False, f"off: {ENV}={choice}", None)
    if want_allocator:
        _state["allocator"] = allocator.apply()
    else:
        _state["allocator"] = f"off: {ENV}={choice}" if allocator.state() != "on" else "on"
    return state()


def _set_onednn(on: bool, reason: str, ratio: float | None) -> None:
    onednn.ENABLED = on
    _state["onednn"] = reason
    _state["onednn_time_ratio"] = ratio


def apply(settings: dict[str, Any]) -> None:
    """Take another process's :func:`state` (a worker of a run): the same back-ends, no probe."""
    if settings.get("onednn") == "on":
        _set_onednn(onednn.kernel_available(), "on", settings.get("onednn_time_ratio"))
    else:
        _set_onednn(False, settings.get("onednn", "off: not requested"), settings.get("onednn_time_ratio"))
    if settings.get("allocator") == "on":
        _state["allocator"] = allocator.apply()


def disable() -> None:
    """oneDNN off again (the allocator setting cannot be undone within a process)."""
    _set_onednn(False, "off: disabled", None)


def state() -> dict[str, Any]:
    """What is in effect: ``{"onednn": "on" | "off: why", "onednn_time_ratio": float | None,
    "allocator": "on" | "off: why"}``."""
    if onednn.ENABLED and onednn.kernel_available():  # the switch itself is the truth (tests flip it)
        dnn = "on"
    else:
        dnn = _state["onednn"] if _state["onednn"].startswith("off") else "off: disabled"
    return {"onednn": dnn, "onednn_time_ratio": _state.get("onednn_time_ratio"),
            "allocator": allocator.state() if allocator.state() == "on" else _state["allocator"]}


__all__ = ["enable", "apply", "disable", "state", "probe_onednn"]
