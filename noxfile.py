"""nox sessions: `nox -s tests` (the test suite), `nox -s run` (the main benchmark job) and
`nox -s r8` (the learning-curve tables and plots of results/r8 from results/r8/summary.json) and
`nox -s reference` (regenerate the committed reference runs under results/ from the current code).

torch is installed first, pinned to the CPU build available here (2.13.0); the package's own
requirement is a range, which 2.13.0 satisfies, so nothing larger is pulled in.
"""

import shutil

import nox

TORCH = "torch==2.13.0"
nox.options.sessions = ["tests"]


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    session.install(TORCH)
    session.install("-e", ".[test]")
    env = {"OMP_NUM_THREADS": "1"}
    if session.posargs:  # e.g. `nox -s tests -- -m 'not slow'`: the fast tier only
        session.run("pytest", "-q", *session.posargs, env=env)
    else:  # both tiers, as README's test command
        session.run("pytest", "-q", env=env)
        session.run("pytest", "-q", "-m", "slow", env=env)


@nox.session(python="3.11")
def run(session: nox.Session) -> None:
    session.install(TORCH)
    session.install("-e", ".")
    session.run("optbench", "run", "--suite", *(session.posargs or ["mujoco-states"]))


@nox.session(python="3.11")
def r8(session: nox.Session) -> None:
    """results/r8/learning_curves.{md,json} and its plots, from results/r8/summary.json (and the
    gap files in results/r8/gap/, if any); docs/learning-curves.md."""
    session.install(TORCH)
    session.install("-e", ".")
    session.run("optbench", "curves", "analyze", "results/r8/summary.json", "--out", "results/r8", *session.posargs)


REFERENCE_RUNS = {  # suite -> its committed reference run (made with the suite's own settings)
    "synthetic": "results/synthetic/run",
    "mujoco-states": "results/mujoco-states/run",
    "transfer": "results/transfer/run",
}


@nox.session(python="3.11")
def reference(session: nox.Session) -> None:
    """Regenerate reference runs in fresh directories, so run.json records the commit and the
    suite hash that tests/test_provenance.py checks: `nox -s reference -- synthetic` (default:
    all of REFERENCE_RUNS; `mujoco-states-tuning` re-runs `optbench tune --suite mujoco-states`
    into results/mujoco-states/tuning-run, which also rewrites the suite's tuning.json)."""
    session.install(TORCH)
    session.install("-e", ".")
    for name in session.posargs or sorted(REFERENCE_RUNS):
        if name == "mujoco-states-tuning":
            out = "results/mujoco-states/tuning-run"
            shutil.rmtree(out, ignore_errors=True)
            session.run("optbench", "tune", "--suite", "mujoco-states", "--executor", "processes", "--out", out)
            continue
        out = REFERENCE_RUNS[name]
        shutil.rmtree(out, ignore_errors=True)
        session.run("optbench", "run", "--suite", name, "--executor", "processes", "--out", out)
        session.run("optbench", "show", out, "--markdown", f"results/{name}/tables.md")
