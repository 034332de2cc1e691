"""`optbench run/show/list` end to end on the synthetic suite: tables, bad input, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from optbench.cli import main
from optbench.optimizers.base import PolicyOptimizer, register

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
SMALL = ["run", "--suite", "synthetic", "--optimizers", "adam,cmaes", "--iterations", "6", "--states", "4", "--seeds", "0,1"]


def optbench(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "optbench.cli", *args], capture_output=True, text=True,
                          env=ENV, timeout=timeout)


def results(run: Path) -> dict[str, dict]:
    """Stored cells without wall-clock fields (which differ between runs by nature)."""
    out = {}
    for p in sorted((run / "cells").glob("*.json")):
        cell = json.loads(p.read_text())
        cell.pop("seconds")
        out[p.name] = cell
    return out


@pytest.mark.slow
def test_quick_synthetic_run_prints_tables_and_writes_results(tmp_path):
    out = tmp_path / "run"
    proc = optbench("run", "--suite", "synthetic", "--quick", "--out", str(out), timeout=300)
    assert proc.returncode == 0, proc.stderr
    for name in ("quadratic-a3", "multimodal-a2", "saturating-a6", "randnet-ant"):
        assert name in proc.stdout
    for label in ("adam(lr=0.01)", "cmaes", "pycma", "nevergrad:OnePlusOne", "scipy:L-BFGS-B"):
        assert label in proc.stdout
    assert "it→90%" in proc.stdout and "J_ref = known optimum" in proc.stdout
    assert (out / "j_vs_iteration.png").stat().st_size > 10_000 and (out / "j_vs_time.png").exists()
    run = json.loads((out / "run.json").read_text())
    assert run["environment"]["versions"]["torch"] and run["config"]["settings"]["states"] == 8
    shown = optbench("show", str(out))
    assert shown.returncode == 0 and "quadratic-a3" in shown.stdout


@pytest.mark.slow
def test_same_seed_same_stored_results_bit_for_bit(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert main([*SMALL, "--out", str(a), "--no-plots"]) == 0
    assert main([*SMALL, "--out", str(b), "--no-plots"]) == 0
    assert results(a) == results(b) and len(results(a)) == 6 * 2 * 2


@pytest.mark.slow
def test_killed_run_resumes_without_recomputing(tmp_path):
    reference, out = tmp_path / "reference", tmp_path / "killed"
    assert main([*SMALL, "--out", str(reference), "--no-plots"]) == 0
    proc = subprocess.Popen([sys.executable, "-m", "optbench.cli", *SMALL, "--out", str(out), "--no-plots"],
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((out / "cells").glob("*.json"))) < 3:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = {p.name: (p.stat().st_mtime_ns, p.read_text()) for p in (out / "cells").glob("*.json")}
    assert 3 <= len(done) < 24, "the kill must land part-way through the run"
    assert main([*SMALL, "--out", str(out), "--no-plots"]) == 0
    for name, (mtime, text) in done.items():  # finished cells were not recomputed
        p = out / "cells" / name
        assert p.stat().st_mtime_ns == mtime and p.read_text() == text
    assert results(out) == results(reference)


@pytest.mark.parametrize("args,message", [
    (["run", "--suite", "nosuch"], "unknown suite 'nosuch'"),
    (["run", "--suite", "synthetic", "--optimizers", "adam,nosuch"], "unknown optimizer 'nosuch'"),
    (["run", "--suite", "synthetic", "--iterations", "-3"], "--iterations must be >= 1"),
    (["run", "--suite", "synthetic", "--states", "0"], "--states must be >= 1"),
    (["run", "--suite", "synthetic", "--device", "cuda:7"], "CUDA is not available"),
    (["show", "/nonexistent/run"], "not an optbench run directory"),
])
@pytest.mark.slow
def test_bad_input_gives_one_line_error(tmp_path, args, message):
    proc = optbench(*args, "--out", str(tmp_path / "r")) if args[0] == "run" else optbench(*args)
    assert proc.returncode == 2
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "r" / "cells").exists()


MALFORMED = {
    "not toml": "name = [",
    "no objectives": 'name = "x"\noptimizers = ["adam"]\n',
    "unknown field": 'name = "x"\noptimizers = ["adam"]\ncolour = 1\n[[objectives]]\nname = "o"\nsource = "analytic"\n',
    "bad setting type": 'name = "x"\noptimizers = ["adam"]\n[settings]\nstates = "many"\n[[objectives]]\nname = "o"\nsource = "analytic"\n',
    "unknown source": 'name = "x"\noptimizers = ["adam"]\n[[objectives]]\nname = "o"\nsource = "nowhere"\n',
    "missing field": 'name = "x"\noptimizers = ["adam"]\n[[objectives]]\nname = "o"\nsource = "analytic"\nprofile = "quadratic"\n',
    "package table names no objective": ('name = "x"\noptimizers = [{ spec = "direct", package = { p = "pkg" } }]\n[[objectives]]\n'
                                         'name = "o"\nsource = "analytic"\nprofile = "quadratic"\nstate_dim = 2\naction_dim = 1\nalpha = 0.1\n'),
    "pattern matches no objective": 'name = "x"\noptimizers = [{ spec = "adam", objectives = ["p*"] }]\n[[objectives]]\nname = "o"\nsource = "analytic"\n',
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_suite_file(tmp_path, case):
    suite = tmp_path / "bad"
    suite.mkdir()
    (suite / "suite.toml").write_text(MALFORMED[case])
    proc = optbench("run", "--suite", str(suite), "--out", str(tmp_path / "r"))
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert ("malformed suite file" in proc.stderr or "objective 'o'" in proc.stderr) and "Traceback" not in proc.stderr
    assert not (tmp_path / "r" / "cells").exists()


def test_optimizer_objectives_accept_patterns(tmp_path):
    """`objectives` entries may be shell-style patterns; they expand, in suite order, to names."""
    from optbench.suites.spec import load_suite

    obj = '[[objectives]]\nname = "{}"\nsource = "analytic"\nprofile = "quadratic"\nstate_dim = 2\naction_dim = 1\nalpha = 0.1\n'
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "suite.toml").write_text(
        'name = "s"\noptimizers = [{ spec = "adam", objectives = ["b/*", "a/x"] }, "cem"]\n'
        + "".join(obj.format(n) for n in ["a/x", "a/y", "b/x", "b/y"]))
    adam, cem = load_suite(str(tmp_path / "s")).optimizers
    assert adam.objectives == ("b/x", "b/y", "a/x")
    assert [n for n in ["a/x", "a/y", "b/x", "b/y"] if adam.runs_on(n)] == ["a/x", "b/x", "b/y"]
    assert cem.objectives == () and cem.runs_on("a/y")


@register("test-diverge")
class Diverges(PolicyOptimizer):
    def iterate(self, objective, start, iterations, generator):
        for t in range(iterations):
            yield start if t < 2 else start * float("nan")


def test_optimizer_nan_stops_run_without_corrupting_results(tmp_path, capsys):
    out = tmp_path / "r"
    args = ["run", "--suite", "synthetic", "--iterations", "4", "--states", "2", "--no-plots", "--out", str(out)]
    assert main([*args, "--optimizers", "adam,test-diverge"]) == 2
    err = capsys.readouterr().err
    assert "test-diverge produced NaN/inf parameters at iteration 3" in err
    cells = list((out / "cells").glob("*.json"))
    assert cells and all("test-diverge" not in p.name for p in cells)
    for p in cells:
        json.loads(p.read_text())  # every stored cell is whole


@pytest.mark.slow
def test_list_shows_suites_and_optimizers():
    proc = optbench("list")
    assert proc.returncode == 0 and "synthetic" in proc.stdout and "cmaes" in proc.stdout


@pytest.mark.slow
def test_quick_mujoco_states_runs_on_shipped_agents(tmp_path):
    proc = optbench("run", "--suite", "mujoco-states", "--quick", "--out", str(tmp_path / "r"), "--no-plots")
    assert proc.returncode == 0, proc.stderr
    assert "HalfCheetah-v5/direct" in proc.stdout and "cem (paper)" in proc.stdout


@pytest.mark.slow
def test_mujoco_states_with_iterations_override_prints_tables(tmp_path):
    # direct then runs 10 iterations, all but the first at no cost: its R2 row has no ratio
    proc = optbench("run", "--suite", "mujoco-states", "--iterations", "3", "--states", "2",
                    "--optimizers", "direct,iterative,adam (paper)", "--out", str(tmp_path / "r"), "--no-plots")
    assert proc.returncode == 0, proc.stderr
    assert "R2 · HalfCheetah-v5/iterative" in proc.stdout


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncate", "modify"])
def test_damaged_shipped_package_is_refused(tmp_path, damage):
    import shutil

    suite = tmp_path / "mujoco-states"
    shutil.copytree(Path(__file__).parents[1] / "suites" / "mujoco-states", suite)
    q = suite / "packages" / "hopper-direct" / "q.safetensors"
    data = bytearray(q.read_bytes())
    q.write_bytes(data[: len(data) // 2] if damage == "truncate" else data[:-1] + bytes([data[-1] ^ 1]))
    proc = optbench("run", "--suite", str(suite), "--quick", "--out", str(tmp_path / "r"), "--no-plots")
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "q.safetensors" in proc.stderr and "Traceback" not in proc.stderr
