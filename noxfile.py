"""nox sessions: `nox -s tests` (the test suite) and `nox -s run` (the main benchmark job).

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
