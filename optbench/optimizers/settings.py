"""Checks for optimizer settings given in spec strings (``adam(lr='x')``, ``cem(elites=0)``):
one-line :class:`~optbench.optimizers.base.OptimizerError` naming the optimizer, the
setting, what it must be and what it got, rather than whatever Python says when the value
is first used."""

from __future__ import annotations

import math
from typing import Any

from optbench.optimizers.base import OptimizerError


def number(who: str, name: str, value: Any, *, low: float | None = None, above: bool = False,
           high: float | None = None, below: bool = False, integer: bool = False) -> Any:
    """``value`` if it is a finite number (an integer with ``integer``; never a bool) in the
    range: ``>= low`` (``> low`` with ``above``) and ``<= high`` (``< high`` with ``below``)."""
    kinds = (int,) if integer else (int, float)
    ok = isinstance(value, kinds) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (low is None or (value > low if above else value >= low))
    ok = ok and (high is None or (value < high if below else value <= high))
    if not ok:
        want = "an integer" if integer else "a finite number"
        bounds = []
        if low is not None:
            bounds.append(f"{'>' if above else '>='} {low:g}")
        if high is not None:
            bounds.append(f"{'<' if below else '<='} {high:g}")
        raise OptimizerError(f"{who}: setting {name} must be {want}{' ' + ' and '.join(bounds) if bounds else ''}, "
                             f"got {value!r}")
    return value


__all__ = ["number"]
