"""The CPU back-ends (optbench.backends): off until switched on, switched on only by request,
recorded, and each fallback taken cleanly."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from optbench import backends
from optbench.backends import allocator, onednn
from optbench.objectives import PolicyObjective, QEnsemble


def _python(code: str, **env) -> dict:
    """Run ``code`` (which prints one JSON line) in a fresh interpreter."""
    import os

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, **env}, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_library_use_changes_neither_the_module_nor_the_process():
    """Building and using an objective leaves the user's module (requires_grad) and the process
    (oneDNN switch, glibc's malloc settings) as they were."""
    res = _python(
        "import json, torch\n"
        "from optbench.backends import allocator, onednn\n"
        "from optbench.objectives import PolicyObjective, QEnsemble\n"
        "q = QEnsemble(3, 2, hidden=(8,))\n"
        "obj = PolicyObjective(q, torch.zeros(4, 3), 0.1)\n"
        "obj.value_and_grad(obj.initial_params().unsqueeze(1), obj.noise(3))\n"
        "print(json.dumps({'grad': all(p.requires_grad for p in q.parameters()), 'onednn': onednn.ENABLED,"
        " 'allocator': allocator.state(), 'param_grads': all(p.grad is None for p in q.parameters())}))\n")
    assert res == {"grad": True, "onednn": False, "allocator": "off: not requested", "param_grads": True}


@pytest.mark.slow
def test_enable_switches_on_what_is_available_and_records_it():
    res = _python("import json; from optbench import backends; print(json.dumps(backends.enable()))")
    assert set(res) == {"onednn", "onednn_time_ratio", "allocator"}
    if onednn.kernel_available():
        assert res["onednn"] == "on" or res["onednn"].startswith("off: not faster here")
        assert res["onednn_time_ratio"] > 0
    assert res["allocator"] in ("on", "off: no mallopt in this C library") or res["allocator"].startswith("off: not glibc")


@pytest.mark.slow
def test_environment_overrides_without_a_probe():
    res = _python("import json; from optbench import backends; print(json.dumps(backends.enable()))",
                  OPTBENCH_BACKENDS="off")
    assert res["onednn"] == "off: OPTBENCH_BACKENDS=off" and res["allocator"] == "off: OPTBENCH_BACKENDS=off"
    res = _python("import json; from optbench import backends; print(json.dumps(backends.enable()))",
                  OPTBENCH_BACKENDS="onednn")
    assert res["onednn_time_ratio"] is None and res["allocator"].startswith("off")
    with pytest.raises(subprocess.CalledProcessError):
        _python("from optbench import backends; backends.enable()", OPTBENCH_BACKENDS="fast")


@pytest.mark.slow
def test_malloc_variables_in_the_environment_rule_and_are_reported():
    res = _python("import json; from optbench import backends; print(json.dumps(backends.enable()))",
                  MALLOC_ARENA_MAX="2")
    assert res["allocator"] == "off: MALLOC_ARENA_MAX set in the environment"


def test_allocator_fallbacks(monkeypatch):
    monkeypatch.setattr(allocator, "_state", "off: not requested")
    assert allocator.apply(environ={}, platform="darwin") == "off: not glibc (darwin)"

    def no_mallopt():
        raise AttributeError("mallopt")

    assert allocator.apply(environ={}, platform="linux", mallopt=no_mallopt) == "off: no mallopt in this C library"
    assert allocator.apply(environ={}, platform="linux", mallopt=lambda: (lambda *a: 0)) == \
        "off: mallopt refused the settings"
    assert allocator.state() == "off: mallopt refused the settings"


def test_no_onednn_kernel_falls_back_to_torch_products(monkeypatch):
    """A torch without the kernel: the probe says so, nothing is switched on, and a frozen
    ensemble computes the plain products."""
    monkeypatch.setattr(onednn, "_probed", None)
    monkeypatch.setattr(onednn, "_linear", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("no such op")))
    assert not onednn.kernel_available()
    on, reason, ratio = backends.probe_onednn()
    assert (on, ratio) == (False, None) and "no usable oneDNN" in reason
    monkeypatch.setattr(onednn, "ENABLED", True)
    assert not onednn.usable(torch.zeros(1))
    q = QEnsemble(3, 2, hidden=(8,)).requires_grad_(False)
    obj = PolicyObjective(q, torch.randn(4, 3), 0.1)
    value, grad = obj.value_and_grad(obj.initial_params().unsqueeze(1), obj.noise(3))
    assert torch.isfinite(value).all() and torch.isfinite(grad).all()


def test_other_devices_and_dtypes_take_the_plain_path(monkeypatch):
    """oneDNN applies to float32 CPU tensors only: a GPU (here the meta device, which every
    torch has) or float64 keeps torch's products."""
    monkeypatch.setattr(onednn, "ENABLED", True)
    assert not onednn.usable(torch.zeros(1, device="meta"))
    assert not onednn.usable(torch.zeros(1, dtype=torch.float64))


def test_workers_take_the_parents_state(monkeypatch):
    monkeypatch.setattr(onednn, "ENABLED", False)
    backends.apply({"onednn": "on", "onednn_time_ratio": 0.5, "allocator": "off: not requested"})
    assert onednn.ENABLED == onednn.kernel_available()
    assert backends.state()["onednn_time_ratio"] == 0.5
    backends.apply({"onednn": "off: OPTBENCH_BACKENDS=off", "allocator": "off"})
    assert not onednn.ENABLED and backends.state()["onednn"] == "off: OPTBENCH_BACKENDS=off"
