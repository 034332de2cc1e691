"""Helpers shared by the benchmark scripts (imported by them; not a benchmark itself).

* :func:`machine`: the record of where and on what code a result was measured (CPU, cores,
  torch threads, load, date, git commit and the measured code's uncommitted changes), stored
  with every result file and read back by ``summary.py``;
* :class:`ObjectiveTimer`: the time a run spends inside the objective's evaluations, measured
  in the run itself;
* :func:`burst`, :func:`interleaved` (clocks by name in :data:`CLOCKS`): seconds per call of
  functions timed in interleaved rounds.

torch and optbench are imported where needed, so that ``summary.py`` (git helpers only)
starts without them.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from pathlib import Path
from typing import Callable

from optbench import backends

ROOT = Path(__file__).resolve().parents[1]
# what a benchmark measures: a change here makes a result stale (benchmarks/ itself excluded)
CODE_PATHS = ("optbench", "suites")
# the evaluation methods of PolicyObjective an optimizer calls (scoring is not one of them)
EVAL_METHODS = ("soft_values", "estimate", "value_and_grad")


def git(*args: str, root: Path = ROOT) -> str:
    """Output of ``git -C root ARGS`` (raises ``OSError`` or ``subprocess.SubprocessError``)."""
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=True,
                          timeout=30).stdout.strip()


def blob(path: str, root: Path = ROOT) -> str | None:
    """Git's hash of the working-tree file ``path`` (``None``: no such file)."""
    return git("hash-object", "--", path, root=root) if (root / path).is_file() else None


def git_state(root: Path = ROOT) -> dict:
    """HEAD's commit and, for the tracked files under :data:`CODE_PATHS` that differ from it,
    their content hashes: enough for ``summary.py`` to tell whether the measured code has
    changed since (``None`` outside a git checkout)."""
    try:
        changed = git("diff", "--name-only", "HEAD", "--", *CODE_PATHS, root=root).splitlines()
        return {"commit": git("rev-parse", "HEAD", root=root), "uncommitted": {f: blob(f, root) for f in changed}}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "uncommitted": None}


def machine() -> dict:
    """Where, when and on which code a result was measured."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        load = list(os.getloadavg())
    except OSError:
        load = None
    return {"python": platform.python_version(), "torch": torch.__version__, "cpu": cpu, "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "loadavg": load,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "backends": backends.state(),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **git_state()}


class ObjectiveTimer:
    """Accumulates, while active, the time spent inside ``PolicyObjective``'s evaluation
    methods (:data:`EVAL_METHODS`, or ``methods``; any instance, subsets included): a run's
    Q-evaluation time, measured in the run itself. Nested calls (``value_and_grad`` →
    ``estimate`` → ``soft_values``) count once. ``clock``: ``time.perf_counter`` (wall
    clock) or ``time.thread_time`` (this thread's CPU time)."""

    def __init__(self, methods: tuple[str, ...] = EVAL_METHODS, clock: Callable[[], float] = time.perf_counter):
        self.methods, self.clock = methods, clock
        self.seconds = 0.0
        self.calls = 0
        self._depth = 0

    def _wrap(self, orig):
        timer = self

        def timed(obj, *args, **kwargs):
            if timer._depth:
                return orig(obj, *args, **kwargs)
            timer._depth += 1
            tic = timer.clock()
            try:
                return orig(obj, *args, **kwargs)
            finally:
                timer.seconds += timer.clock() - tic
                timer.calls += 1
                timer._depth -= 1

        return timed

    def __enter__(self) -> "ObjectiveTimer":
        from optbench.objectives.policy_objective import PolicyObjective

        self._orig = {m: PolicyObjective.__dict__[m] for m in self.methods}
        for m, orig in self._orig.items():
            setattr(PolicyObjective, m, self._wrap(orig))
        return self

    def __exit__(self, *exc) -> None:
        from optbench.objectives.policy_objective import PolicyObjective

        for m, orig in self._orig.items():
            setattr(PolicyObjective, m, orig)


# ---------------------------------------------------------------------------------- timing
CLOCKS = {"cpu": time.thread_time, "wall": time.perf_counter}


def burst(fn: Callable[[], object], min_time: float, clock: Callable[[], float] = time.perf_counter) -> float:
    """Seconds per call over a burst of at least ``min_time`` seconds of ``clock``."""
    reps, tic = 0, clock()
    while True:
        fn()
        reps += 1
        elapsed = clock() - tic
        if elapsed >= min_time:
            return elapsed / reps


def interleaved(fns: dict[str, Callable[[], object]], rounds: int, min_time: float,
                clock: str = "wall") -> dict[str, dict[str, float]]:
    """Best and median seconds per call of every function, timed in interleaved rounds so
    that load from other processes falls on all of them alike. ``clock="cpu"``: this
    thread's CPU time (with one torch thread all the work runs on it), which leaves out the
    time the thread waits for a core on a shared machine."""
    for fn in fns.values():
        fn()  # warm up
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            times[k].append(burst(fn, min_time, CLOCKS[clock]))
    return {k: {"best": min(v), "median": statistics.median(v)} for k, v in times.items()}
