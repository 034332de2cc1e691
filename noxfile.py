"""nox sessions: `nox -s tests` (the test suite), `nox -s run` (the main benchmark job) and
`nox -s r8` (the learning-curve tables and plots of results/r8 from results/r8/summary.json).

torch is installed first, pinned to the CPU build available here (2.13.0); the package's own
requirement is a range, which 2.13.0 satisfies, so nothing larger is pulled in.
"""

import nox

TORCH = "torch==2.13.0"
nox.options.sessions = ["tests"]


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    session.install(TORCH)
    session.install("-e", ".[test]")
    session.run("pytest", "-q", *session.posargs, env={"OMP_NUM_THREADS": "1"})


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
