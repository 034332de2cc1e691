"""The syntax of optimizer spec strings, and the error every bad spec or optimizer raises.

``"adam"``, ``"adam(lr=0.05)"``, ``"scipy:L-BFGS-B(maxcor=5)"``, ``"direct+adam(lr=0.1)"``. Suites,
optimizers, the runner and the report tables all read specs, so the grammar lives here, below
all of them, with nothing but the standard library: reading a spec (a report table naming an
optimizer's kind) never imports torch, an objective or an optimizer.
"""

from __future__ import annotations

import ast
import re
from typing import Any


class OptimizerError(ValueError):
    """A bad optimizer name or setting, or an optimizer that produced NaN/inf."""


_SPEC = re.compile(r"^\s*(?P<name>[A-Za-z_][\w\-]*(?:\+[A-Za-z_][\w\-]*)?)(?::(?P<method>[\w\-.]+))?\s*(?:\((?P<args>.*)\))?\s*$")


def parse_spec(spec: str) -> tuple[str, str | None, dict[str, Any]]:
    """``"cem(population=100,elites=10)"`` -> ``("cem", None, {...})``;
    ``"scipy:L-BFGS-B"`` -> ``("scipy", "L-BFGS-B", {})``; a warm start ``"direct+adam(lr=0.1)"``
    -> ``("direct+adam", None, {"lr": 0.1})`` (the settings are the second optimizer's)."""
    m = _SPEC.match(spec)
    if not m:
        raise OptimizerError(f"malformed optimizer spec {spec!r} (expected NAME, NAME:METHOD or NAME(key=value,...))")
    kwargs: dict[str, Any] = {}
    if m["args"]:
        try:
            call = ast.parse(f"f({m['args']})", mode="eval").body
            assert isinstance(call, ast.Call) and not call.args
            kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}
        except (SyntaxError, ValueError, AssertionError):
            raise OptimizerError(f"malformed settings in optimizer spec {spec!r}") from None
    return m["name"], m["method"], kwargs


def format_spec(name: str, method: str | None, kwargs: dict[str, Any]) -> str:
    """The inverse of :func:`parse_spec`: ``("adam", None, {"lr": 0.03})`` -> ``"adam(lr=0.03)"``."""
    head = name if method is None else f"{name}:{method}"
    return head if not kwargs else head + "(" + ",".join(f"{k}={v!r}" for k, v in kwargs.items()) + ")"


__all__ = ["OptimizerError", "format_spec", "parse_spec"]
