"""Executors: local processes and a real local Ray cluster give the stored results of an
in-process run, bit for bit, even when a worker is killed part-way through a cell."""

from __future__ import annotations

import io
import json
import os
import signal
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest

from optbench.cli import main
from optbench.optimizers.adam import Adam
from optbench.optimizers.base import PolicyOptimizer, register
from optbench.runner.executors import ExecutorError, InProcessExecutor, ProcessExecutor, Shared, make_executor
from optbench.runner.grid import (CellsFailed, GridContext, ObjectiveTask, compute_task, directory_digest, plan_run, run_plan,
                                  suite_bundle)
from optbench.suites.spec import load_suite

MARKER = "OPTBENCH_TEST_KILL_MARKER"
DRIVER = "OPTBENCH_TEST_DRIVER_PID"

SUITE = """
name = "executor-test"
optimizers = ["adam(lr=0.05)", "test-kill-once(lr=0.05)", "cmaes"]

[settings]
states = 4
iterations = 6
seeds = [0, 1]
score_samples = 64
score_at = "all"

[[objectives]]
name = "quadratic"
source = "analytic"
profile = "quadratic"
state_dim = 11
action_dim = 3
alpha = 0.05

[[objectives]]
name = "randnet"
source = "random-network"
state_dim = 11
action_dim = 3
alpha = 0.05
output_scale = 20.0
seed = 1
"""
CELLS = {(o, opt, s) for o in ("quadratic", "randnet")
         for opt in ("adam(lr=0.05)", "test-kill-once(lr=0.05)", "cmaes") for s in (0, 1)}


@register("test-kill-once")
class KillOnce(Adam):
    """Adam that SIGKILLs its own worker process at iteration 3 of the first cell to get
    there (a marker file, created exclusively, makes it happen once per test); never in the
    test process itself."""

    def iterate(self, objective, start, iterations, generator):
        for t, lam in enumerate(super().iterate(objective, start, iterations, generator), 1):
            marker = os.environ.get(MARKER)
            if t == 3 and marker and str(os.getpid()) != os.environ.get(DRIVER):
                try:
                    fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                except FileExistsError:
                    pass
                else:
                    os.write(fd, str(os.getpid()).encode())
                    os.close(fd)
                    os.kill(os.getpid(), signal.SIGKILL)
            yield lam


@register("test-nan")
class NaNAfterTwo(PolicyOptimizer):
    def iterate(self, objective, start, iterations, generator):
        for t in range(iterations):
            yield start if t < 2 else start * float("nan")


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    d = tmp_path_factory.mktemp("suite")
    (d / "suite.toml").write_text(SUITE)
    return load_suite(str(d))


@pytest.fixture(scope="module")
def reference(suite, tmp_path_factory):
    """The stored results of an in-process run of the suite."""
    out = tmp_path_factory.mktemp("inprocess") / "run"
    run_plan(plan_run(suite), out, show_progress=False)
    return stored(out)


def stored(run: Path) -> tuple[dict, dict]:
    """Cells (without wall-clock fields) and objective records of a run directory."""
    cells = {}
    for p in sorted((run / "cells").glob("*.json")):
        cell = json.loads(p.read_text())
        cell.pop("seconds")
        cells[p.name] = cell
    objectives = {p.name: json.loads(p.read_text()) for p in sorted((run / "objectives").glob("*.json"))}
    return cells, objectives


def check_same_as_inprocess(out: Path, reference: tuple[dict, dict]) -> None:
    cells, objectives = stored(out)
    assert {(c["objective"], c["optimizer"], c["seed"]) for c in cells.values()} == CELLS  # none missing
    assert len(cells) == len(CELLS)  # none duplicated
    assert (cells, objectives) == reference


def killed_worker(marker: Path) -> int:
    assert marker.exists(), "the kill never happened"
    pid = int(marker.read_text())
    assert pid != os.getpid()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    return pid


@pytest.mark.slow
def test_processes_executor_matches_inprocess_after_a_worker_dies(suite, reference, tmp_path, monkeypatch):
    marker = tmp_path / "killed.pid"
    monkeypatch.setenv(MARKER, str(marker))  # spawned workers inherit the environment
    monkeypatch.setenv(DRIVER, str(os.getpid()))
    out = tmp_path / "processes"
    with ProcessExecutor(2, threads=1) as ex:
        run_plan(plan_run(suite), out, show_progress=False, executor=ex)
    killed_worker(marker)
    check_same_as_inprocess(out, reference)


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A real local Ray cluster (2 CPUs) whose workers kill themselves once (see KillOnce)."""
    ray = pytest.importorskip("ray")
    marker = tmp_path_factory.mktemp("ray") / "killed.pid"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
             object_store_memory=100 << 20,
             runtime_env={"env_vars": {MARKER: str(marker), DRIVER: str(os.getpid())}})
    yield ray, marker
    ray.shutdown()


@pytest.mark.slow
def test_ray_cluster_matches_inprocess_after_a_worker_dies(ray_cluster, suite, reference, tmp_path):
    ray, marker = ray_cluster
    out = tmp_path / "ray"
    with make_executor("ray", workers=2) as ex:
        run_plan(plan_run(suite), out, show_progress=False, executor=ex)
    killed_worker(marker)
    check_same_as_inprocess(out, reference)
    with make_executor("ray", workers=2) as ex:  # resuming a finished run recomputes nothing
        before = {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")}
        run_plan(plan_run(suite), out, show_progress=False, executor=ex)
        assert before == {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")}
    assert ray.is_initialized()  # an executor leaves a cluster it did not start running


@pytest.mark.slow
def test_ray_cell_failure_reaches_the_driver_and_the_other_cells_are_stored(ray_cluster, suite, tmp_path):
    out = tmp_path / "nan"
    plan = plan_run(suite, optimizers=["adam", "test-nan"], iterations=4, seeds=[0])
    with make_executor("ray", workers=2) as ex, pytest.raises(CellsFailed, match="NaN/inf parameters at iteration 3") as err:
        run_plan(plan, out, show_progress=False, executor=ex)
    assert {f["optimizer"] for f in err.value.failures} == {"test-nan"}
    cells = list((out / "cells").glob("*.json"))
    assert cells and all("test-nan" not in p.name for p in cells)
    for p in cells:
        json.loads(p.read_text())  # every stored cell is whole


@pytest.mark.slow
def test_ray_refuses_cuda_on_a_cluster_without_gpus(ray_cluster, suite, tmp_path):
    plan = plan_run(suite, device="cuda")  # the driver needs no GPU; the workers would
    with make_executor("ray", device="cuda") as ex, pytest.raises(ExecutorError, match="GPU"):
        run_plan(plan, tmp_path / "cuda", show_progress=False, executor=ex)


def test_workers_unpack_the_shipped_suite_when_they_cannot_see_it(suite, tmp_path):
    plan = plan_run(suite)
    bundle = suite_bundle(suite.directory)
    with tarfile.open(fileobj=io.BytesIO(bundle)) as tar:
        assert tar.getnames() == ["suite.toml"]
    elsewhere = replace(suite, directory=tmp_path / "not-on-this-machine")
    ctx = GridContext(elsewhere, dict(plan.settings), "t", bundle=Shared(bundle),
                      bundle_digest=directory_digest(suite.directory))
    local = GridContext(suite, dict(plan.settings), "u")
    assert compute_task(ctx, ObjectiveTask("quadratic")) == compute_task(local, ObjectiveTask("quadratic"))


def test_bad_executor_options_give_one_line_errors(capsys, tmp_path):
    base = ["run", "--suite", "synthetic", "--quick", "--no-plots", "--out", str(tmp_path / "r")]
    assert main([*base, "--executor", "inprocess", "--workers", "2"]) == 2
    assert "--workers and --address need --executor processes or ray" in capsys.readouterr().err
    assert main([*base, "--executor", "processes", "--workers", "0"]) == 2
    assert "--workers must be >= 1" in capsys.readouterr().err
    assert main([*base, "--executor", "processes", "--address", "auto"]) == 2
    assert "--address needs --executor ray" in capsys.readouterr().err
    assert main([*base, "--workers", "0"]) == 2  # the default (auto) executor checks it too
    assert "--workers must be >= 1" in capsys.readouterr().err
    assert not (tmp_path / "r" / "cells").exists()
    with pytest.raises(ExecutorError):
        make_executor("dask")
    assert isinstance(make_executor(), InProcessExecutor)


@pytest.mark.slow
def test_train_grid_trains_every_task_and_seed(tmp_path, capsys):
    tiny = ["--steps", "200", "--random-steps", "150", "--batch-size", "16", "--hidden", "16,16",
            "--model-pretrain-updates", "5", "--eval-every", "100000", "--eval-episodes", "1", "--quiet"]
    out = tmp_path / "grid"
    assert main(["train-grid", "--tasks", "InvertedPendulum-v5", "--seeds", "0,1", "--out", str(out), *tiny]) == 0
    grid = json.loads((out / "grid.json").read_text())
    assert [(a["task"], a["seed"], a["step"]) for a in grid["agents"]] == [("InvertedPendulum-v5", 0, 200),
                                                                         ("InvertedPendulum-v5", 1, 200)]
    assert (out / "InvertedPendulum-v5-direct-s1" / "checkpoint.safetensors").is_file()
    assert main(["train-grid", "--tasks", "NoSuchTask-v9", "--out", str(out), *tiny]) == 2


SMALL = """
name = "executor-default-test"
optimizers = ["adam(lr=0.05)", "cem(population=20,elites=4)", "cmaes"]

[settings]
states = 4
iterations = 6
seeds = [0, 1]
score_samples = 64
score_at = "all"

[[objectives]]
name = "quadratic"
source = "analytic"
profile = "quadratic"
state_dim = 11
action_dim = 3
alpha = 0.05

[[objectives]]
name = "randnet"
source = "random-network"
state_dim = 11
action_dim = 3
alpha = 0.05
output_scale = 20.0
seed = 1
"""


@pytest.mark.slow
def test_default_executor_uses_every_core_and_stores_the_inprocess_bits(tmp_path):
    """`optbench run` without --executor: one 1-thread worker per usable core, and every stored
    cell and objective record equal, bit for bit (wall-clock fields aside), to `--executor inprocess`'s."""
    from optbench.cli import build_parser
    from optbench.cli.run_commands import executor_from_args
    from optbench.runner.executors import usable_cores

    (tmp_path / "suite").mkdir()
    (tmp_path / "suite" / "suite.toml").write_text(SMALL)
    base = ["run", "--suite", str(tmp_path / "suite"), "--no-plots"]
    with executor_from_args(build_parser().parse_args(base)) as ex:
        if usable_cores() >= 2:
            assert isinstance(ex, ProcessExecutor) and (ex.workers, ex.threads) == (usable_cores(), 1)
        else:
            assert isinstance(ex, InProcessExecutor)
    assert main([*base, "--out", str(tmp_path / "default")]) == 0
    assert main([*base, "--executor", "inprocess", "--out", str(tmp_path / "inprocess")]) == 0
    default, inprocess = stored(tmp_path / "default"), stored(tmp_path / "inprocess")
    assert len(default[0]) == 12 and len(default[1]) == 2
    assert default == inprocess


def test_default_executor_spawns_no_worker_on_one_core():
    """With one usable core (or a GPU device), `auto` computes in this process."""
    before = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(before)})
        assert isinstance(make_executor("auto"), InProcessExecutor)
    finally:
        os.sched_setaffinity(0, before)
    assert isinstance(make_executor("auto", device="cuda"), InProcessExecutor)
    assert isinstance(make_executor("auto", workers=1), InProcessExecutor)
    assert isinstance(make_executor("auto", workers=2), ProcessExecutor)


def _worker_pid(context, task, on_iteration):
    return os.getpid()


@pytest.mark.slow
def test_the_pool_starts_once_per_run_with_no_more_workers_than_tasks():
    """Workers' start-up is paid once per run: every task of a run lands on the same few
    processes, and a run with fewer tasks than cores starts fewer workers."""
    with ProcessExecutor(2, threads=1) as ex:
        pids = dict(ex.run(_worker_pid, None, list(range(12))))
        assert len(pids) == 12 and 1 <= len(set(pids.values())) <= 2 and os.getpid() not in pids.values()
        assert len(set(dict(ex.run(_worker_pid, None, [0])).values())) == 1
        assert list(ex.run(_worker_pid, None, [])) == []
