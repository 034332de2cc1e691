"""Integrity of run directories (issue 23, issue 22 items 2 and 5): racing writers, whole-suite
validation before the first cell, degenerate requests, file-system errors, NaN/inf cells.

Everything runs on tiny analytic suites written into the test's directory; racing writers
are forked processes started together at a barrier."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sys
from pathlib import Path

import pytest
import torch

from optbench.cli import main
from optbench.locks import DirectoryLock, LockError
from optbench.objectives.analytic import AnalyticQ
from optbench.objectives.policy_objective import PolicyObjective
from optbench.suites.sources import BuiltObjective, fields_of, number, positive_int, source

ROOT = Path(__file__).resolve().parents[1]
FORK = multiprocessing.get_context("fork")

OBJ = ('[[objectives]]\nname = "{name}"\nsource = "analytic"\nprofile = "quadratic"\nstate_dim = 3\naction_dim = 2\n'
       'alpha = 0.1\n')
SETTINGS = "[settings]\nstates = 2\niterations = 2\nseeds = [0]\nscore_samples = 16\n"


def write_suite(directory: Path, objectives: str, optimizers: str = '["adam"]', settings: str = SETTINGS) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "suite.toml").write_text(f'name = "tiny"\noptimizers = {optimizers}\n{settings}\n{objectives}')
    return directory


def run_args(suite: Path, out: Path, *extra: str) -> list[str]:
    return ["run", "--suite", str(suite), "--out", str(out), "--no-plots", *extra]


def one_line_error(capsys, rc: int) -> str:
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert err.startswith("error:") and "\n" not in err and "Traceback" not in err, err
    return err


def parse_error(capsys, argv: list[str]) -> str:
    """An argparse error: one line, exit code 2."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    return one_line_error(capsys, exc.value.code)


# ------------------------------------------------------------------------------ races
def _race(barrier, argv: list[str], log: str) -> None:
    """A forked writer: wait for the other, then run ``optbench ARGV`` with stderr to ``log``."""
    sys.stdout = open(os.devnull, "w")
    sys.stderr = open(log, "w")
    barrier.wait()
    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = exc.code
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(int(rc or 0))


@pytest.mark.slow
def test_racing_runs_with_other_configurations_never_mix(tmp_path):
    """Two `optbench run` with --seeds 0 and --seeds 1, started together on one new --out,
    many times: one writes the run, the other is refused in one line (naming the holder, or
    the other configuration); every stored cell belongs to the configuration of run.json.
    In-process: the forked writers are daemonic and may not start a worker pool."""
    suite = write_suite(tmp_path / "suite", OBJ.format(name="q"))
    refused = 0
    for trial in range(8):
        out = tmp_path / f"run{trial}"
        barrier = FORK.Barrier(2)
        procs = []
        for seed in (0, 1):
            log = str(tmp_path / f"log{trial}-{seed}")
            procs.append((FORK.Process(target=_race, args=(barrier, run_args(suite, out, "--seeds", str(seed), "--executor", "inprocess"), log), daemon=True), log))
        for p, _ in procs:
            p.start()
        for p, _ in procs:
            p.join(120)
        codes = [p.exitcode for p, _ in procs]
        assert sorted(codes) == [0, 2], codes
        loser = Path(procs[codes.index(2)][1]).read_text().strip()
        assert loser.startswith("error:") and "\n" not in loser, loser
        if "is being written by pid" in loser:
            refused += 1
            assert " on host " in loser and "started" in loser, loser
        else:
            assert "different configuration" in loser, loser
        seeds = json.loads((out / "run.json").read_text())["config"]["settings"]["seeds"]
        stored = [json.loads(p.read_text())["seed"] for p in (out / "cells").glob("*.json")]
        assert stored and set(stored) <= set(seeds), (seeds, stored)
        assert not (out / ".lock").exists()
    assert refused >= 1, "the writers never overlapped; the race was not exercised"


def _hold_lock_then_wait(directory: str, ready) -> None:
    lock = DirectoryLock(directory, "run directory").acquire()
    ready.set()
    signal.pause()
    lock.release()


def test_stale_lock_of_a_killed_run_is_taken_over(tmp_path, capsys):
    suite = write_suite(tmp_path / "suite", OBJ.format(name="q"))
    out = tmp_path / "run"
    ready = FORK.Event()
    holder = FORK.Process(target=_hold_lock_then_wait, args=(str(out), ready), daemon=True)
    holder.start()
    try:
        assert ready.wait(60)
        assert main(run_args(suite, out)) == 2  # held by a live process: refused, naming it
        err = capsys.readouterr().err
        assert f"is being written by pid {holder.pid} on host" in err and "\n" not in err.strip(), err
        assert not (out / "run.json").exists()
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.join()
    assert (out / ".lock").exists()  # left behind by the killed process
    assert main(run_args(suite, out)) == 0
    printed = capsys.readouterr().out
    assert f"taking over the lock of {out} left by pid {holder.pid}" in printed
    assert (out / "run.json").exists() and not (out / ".lock").exists()


def test_lock_refuses_a_second_holder_in_the_same_process_and_is_idempotent(tmp_path):
    a = DirectoryLock(tmp_path / "d", "run directory").acquire()
    with pytest.raises(LockError, match=f"pid {os.getpid()}"):
        DirectoryLock(tmp_path / "d", "run directory").acquire()
    a.acquire()  # already held: nothing happens
    a.release()
    a.release()
    assert not (tmp_path / "d").exists()  # the lock created it; nothing else was written
    with DirectoryLock(tmp_path / "d"):
        (tmp_path / "d" / "x").write_text("x")
    assert (tmp_path / "d" / "x").exists() and not (tmp_path / "d" / ".lock").exists()


# ------------------------------------------------------------------------------ validation
BAD_OBJECTIVES = {
    "action_dim 0": ("source = \"random-network\"\nstate_dim = 3\naction_dim = 0\nalpha = 0.1\n", "action_dim"),
    "action_dim -1": ("source = \"random-network\"\nstate_dim = 3\naction_dim = -1\nalpha = 0.1\n", "action_dim"),
    "ensemble_size 0": ("source = \"random-network\"\nstate_dim = 3\naction_dim = 2\nalpha = 0.1\nensemble_size = 0\n",
                        "ensemble_size"),
    "state_dim 3.5": ("source = \"analytic\"\nprofile = \"quadratic\"\nstate_dim = 3.5\naction_dim = 2\nalpha = 0.1\n",
                      "state_dim"),
    "negative alpha": ("source = \"analytic\"\nprofile = \"quadratic\"\nstate_dim = 3\naction_dim = 2\nalpha = -0.1\n",
                       "alpha"),
    "nan alpha": ("source = \"analytic\"\nprofile = \"quadratic\"\nstate_dim = 3\naction_dim = 2\nalpha = nan\n", "alpha"),
    "source typo": ("source = \"analytc\"\nprofile = \"quadratic\"\nstate_dim = 3\naction_dim = 2\nalpha = 0.1\n",
                    "unknown source 'analytc'"),
    "package path typo": ("source = \"package\"\npackage = \"packages/hoper-direct\"\n", "packages/hoper-direct"),
}


@pytest.mark.parametrize("case", sorted(BAD_OBJECTIVES))
def test_a_bad_last_objective_fails_before_anything_is_written(tmp_path, capsys, case):
    body, field = BAD_OBJECTIVES[case]
    objectives = OBJ.format(name="a") + OBJ.format(name="b") + f'[[objectives]]\nname = "last"\n{body}'
    suite = write_suite(tmp_path / "suite", objectives)
    out = tmp_path / "run"
    err = one_line_error(capsys, main(run_args(suite, out)))
    assert str(suite / "suite.toml") in err and "'last'" in err and field in err, err
    assert not out.exists()  # no run.json, no lock, no directory


@pytest.mark.parametrize("entry,message", [
    ('[{ spec = "adam", iterations = true }]', "optimizers[0].iterations must be a positive integer, got True"),
    ('["adam(lr=\'x\')"]', "adam: setting lr must be a finite number > 0, got 'x'"),
    ('["cem(elites=0)"]', "cem: setting elites must be an integer >= 1"),
])
def test_bad_optimizer_entries_fail_before_anything_is_written(tmp_path, capsys, entry, message):
    suite = write_suite(tmp_path / "suite", OBJ.format(name="a"), optimizers=entry)
    out = tmp_path / "run"
    err = one_line_error(capsys, main(run_args(suite, out)))
    assert message in err, err
    assert not out.exists()


def test_iterations_true_in_settings_is_refused(tmp_path, capsys):
    suite = write_suite(tmp_path / "suite", OBJ.format(name="a"), settings="[settings]\niterations = true\n")
    err = one_line_error(capsys, main(run_args(suite, tmp_path / "run")))
    assert "[settings].iterations must be of type int, got True" in err and str(suite / "suite.toml") in err


def test_learned_optimizer_of_another_size_is_refused_before_the_first_cell(tmp_path, capsys):
    """The iterative network of a Hopper package (11/3) on a HalfCheetah objective (17/6)."""
    packages = ROOT / "suites" / "mujoco-states" / "packages"
    objectives = (OBJ.format(name="a") + '[[objectives]]\nname = "hc"\nsource = "package"\n'
                  f'package = "{packages / "halfcheetah-direct"}"\n')
    optimizers = f'["adam", {{ spec = "iterative", package = "{packages / "hopper-iterative"}", objectives = ["hc"] }}]'
    suite = write_suite(tmp_path / "suite", objectives, optimizers=optimizers)
    err = one_line_error(capsys, main(run_args(suite, tmp_path / "run")))
    assert "expects 11-dim states and 3-dim actions" in err and "'hc' has 17 and 6" in err, err
    assert not (tmp_path / "run").exists()


@source("test-broken")
def _broken(entry, suite, settings):
    raise ValueError(f"objective {entry.name!r} cannot be built (a test source)")


def test_a_run_that_fails_before_storing_anything_leaves_nothing(tmp_path, capsys):
    suite = write_suite(tmp_path / "suite", '[[objectives]]\nname = "x"\nsource = "test-broken"\n')
    out = tmp_path / "run"
    err = one_line_error(capsys, main(run_args(suite, out)))
    assert "cannot be built" in err
    assert not out.exists()
    out.mkdir()  # an existing, empty --out stays, without run.json or lock
    one_line_error(capsys, main(run_args(suite, out)))
    assert out.is_dir() and not any(out.iterdir())


# ------------------------------------------------------------------------------ degenerate requests
@pytest.mark.parametrize("seeds,message", [
    ("", "names no seed"),
    ("5..1", "empty range '5..1'"),
    ("0,0", "repeats seed(s) [0]"),
    ("0,x", "expected integers like 0,1,2 or 0..4"),
])
def test_degenerate_seed_lists_are_refused(tmp_path, capsys, seeds, message):
    suite = write_suite(tmp_path / "suite", OBJ.format(name="a"))
    err = parse_error(capsys, run_args(suite, tmp_path / "run", "--seeds", seeds))
    assert "argument --seeds" in err and message in err, err
    assert not (tmp_path / "run").exists()


def test_zero_iterations_and_zero_episodes_are_refused(tmp_path, capsys):
    suite = write_suite(tmp_path / "suite", OBJ.format(name="a"))
    err = one_line_error(capsys, main(run_args(suite, tmp_path / "run", "--iterations", "0")))
    assert "--iterations must be >= 1" in err
    assert not (tmp_path / "run").exists()
    err = parse_error(capsys, ["evaluate", str(tmp_path), "--episodes", "0"])
    assert "argument --episodes: must be >= 1, got 0" in err
    err = parse_error(capsys, ["train", "--task", "Hopper-v5", "--out", str(tmp_path / "t"), "--checkpoint-every", "0"])
    assert "argument --checkpoint-every: must be >= 1" in err


def test_repeated_seeds_in_a_suite_are_refused(tmp_path, capsys):
    suite = write_suite(tmp_path / "suite", OBJ.format(name="a"), settings="[settings]\nseeds = [1, 1]\n")
    err = one_line_error(capsys, main(run_args(suite, tmp_path / "run")))
    assert "[settings].seeds repeats seed(s) [1]" in err


# ------------------------------------------------------------------------------ file-system errors and paths
@pytest.fixture
def unwritable(tmp_path) -> Path:
    """A directory this process cannot create files in (a read-only directory; as root, whom
    permissions do not stop, a directory of sysfs)."""
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    for d in (ro, Path("/sys/kernel")):
        try:
            (d / "probe").mkdir()
        except OSError:
            yield d
            ro.chmod(0o755)
            return
        (d / "probe").rmdir()
    ro.chmod(0o755)
    pytest.skip("no unwritable directory available")


def test_unwritable_out_and_markdown_give_one_line_errors(tmp_path, capsys, unwritable):
    suite = write_suite(tmp_path / "suite", OBJ.format(name="a"))
    err = one_line_error(capsys, main(run_args(suite, unwritable / "run")))
    assert str(unwritable / "run") in err
    good = tmp_path / "good"
    assert main(run_args(suite, good)) == 0
    before = {p.name: p.read_bytes() for p in (good / "cells").iterdir()}
    capsys.readouterr()
    err = one_line_error(capsys, main(["show", str(good), "--markdown", str(unwritable / "tables.md")]))
    assert str(unwritable) in err
    assert before == {p.name: p.read_bytes() for p in (good / "cells").iterdir()}


def test_out_that_is_a_file_and_a_cells_path_that_cannot_be_created(tmp_path, capsys):
    suite = write_suite(tmp_path / "suite", OBJ.format(name="a") + OBJ.format(name="b"))
    (tmp_path / "file").write_text("not a directory")
    err = one_line_error(capsys, main(run_args(suite, tmp_path / "file")))
    assert "exists and is not a directory" in err
    assert (tmp_path / "file").read_text() == "not a directory"
    out = tmp_path / "run"  # cells/ blocked by a file: the objectives are written, then a one-line error
    out.mkdir()
    (out / "cells").write_text("in the way")
    err = one_line_error(capsys, main(run_args(suite, out)))
    assert "cells" in err
    assert len(list((out / "objectives").glob("*.json"))) >= 1 and (out / "run.json").exists()
    (out / "cells").unlink()
    assert main(run_args(suite, out)) == 0  # the same command finishes the run


def test_plot_that_cannot_be_written_keeps_the_cells(tmp_path, capsys):
    suite = write_suite(tmp_path / "suite", OBJ.format(name="a"))
    out = tmp_path / "run"
    (out / "j_vs_iteration.png").mkdir(parents=True)
    err = one_line_error(capsys, main(["run", "--suite", str(suite), "--out", str(out)]))
    assert "j_vs_iteration" in err
    assert len(list((out / "cells").glob("*.json"))) == 1


@pytest.mark.parametrize("name", ["with spaces", "ünïcødé-ρυν"])
def test_paths_with_spaces_and_non_ascii_work(tmp_path, capsys, name):
    suite = write_suite(tmp_path / f"suite {name}", OBJ.format(name="a"))
    out = tmp_path / name / "run"
    assert main(run_args(suite, out)) == 0
    assert main(["show", str(out), "--markdown", str(tmp_path / name / "tables ü.md")]) == 0
    assert "# tiny: results" in (tmp_path / name / "tables ü.md").read_text()


# ------------------------------------------------------------------------------ NaN/inf cells
class NanForMarkedStates(AnalyticQ):
    """A quadratic analytic Q that returns NaN on states whose first coordinate is > 100."""

    def __call__(self, states, actions):
        q = super().__call__(states, actions)
        return torch.where((states[:, 0] > 100).view(1, -1, 1), torch.full_like(q, float("nan")), q)


@source("test-nan-states", fields={"state_dim": positive_int, "action_dim": positive_int, "alpha": number(0)},
        optional={"bad": (positive_int, 2)})
def _nan_states(entry, suite, settings):
    f = fields_of(entry)
    q = NanForMarkedStates("quadratic", f["state_dim"], f["action_dim"])
    states = torch.randn(settings["states"], f["state_dim"], generator=torch.Generator().manual_seed(0))
    states[f["bad"]:, 0] = 1000.0  # states bad.. are marked
    return BuiltObjective(PolicyObjective(q, states, f["alpha"], score_samples=settings["score_samples"],
                                          score_seed=settings["score_seed"], name=entry.name))


def test_nan_objective_and_diverging_adam_fail_their_cells_only(tmp_path, capsys):
    objectives = (OBJ.format(name="good") + '[[objectives]]\nname = "nan"\nsource = "test-nan-states"\nstate_dim = 3\n'
                  'action_dim = 2\nalpha = 0.1\nbad = 2\n')
    settings = "[settings]\nstates = 4\niterations = 3\nseeds = [0, 1]\nscore_samples = 16\n"
    suite = write_suite(tmp_path / "suite", objectives, optimizers='["adam", "cem(population=20,elites=5)"]',
                        settings=settings)
    out = tmp_path / "run"
    err = one_line_error(capsys, main(run_args(suite, out, "--optimizers", "adam,cem(population=20,elites=5),adam(lr=3e37)")))
    assert err.startswith("error: 8 of 12 cells failed") and "cell " in err, err
    failed = {p.name for p in (out / "failed").glob("*.json")}
    stored = {p.name for p in (out / "cells").glob("*.json")}
    assert stored == {"good__adam__s0.json", "good__adam__s1.json", "good__cem_population=20,elites=5__s0.json",
                      "good__cem_population=20,elites=5__s1.json"}, stored
    assert len(failed) == 8 and not failed & stored
    errors = {json.loads((out / "failed" / n).read_text())["error"] for n in failed}
    for seed in (0, 1):
        adam_nan = next(e for e in errors if e.startswith(f"cell nan · adam · seed {seed}:"))
        assert "NaN/inf at iteration 1" in adam_nan and "2 state(s), the first at state 2" in adam_nan, adam_nan
        cem_nan = next(e for e in errors if e.startswith(f"cell nan · cem(population=20,elites=5) · seed {seed}:"))
        assert "the first at state 2" in cem_nan, cem_nan
        diverged = next(e for e in errors if e.startswith(f"cell good · adam(lr=3e37) · seed {seed}:"))
        assert "NaN/inf at iteration 2" in diverged and "the first at state" in diverged, diverged
    assert main(["show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "8 failed cell(s)" in shown and "cell nan · adam · seed 1" in shown
