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


# ---------------------------------------------------------------------------------- GEMM rate
def gemm_fns(n: int) -> dict[str, Callable[[], object]]:
    """An ``n × n`` float32 matrix product by each of torch's CPU kernels: ``torch.mm`` (MKL),
    oneDNN's linear, and oneDNN's linear with the weight packed once (as the frozen Q-ensembles
    keep theirs); ``2 n³`` FLOPs per call."""
    import torch

    from optbench.backends import onednn

    a, b = torch.randn(n, n), torch.randn(n, n)
    b_t, zero = b.t().contiguous(), torch.zeros(n)
    b_packed = torch.ops.mkldnn._reorder_linear_weight(b_t, None) if onednn._packing() else b_t
    return {"mkl": lambda: torch.mm(a, b),
            "onednn": lambda: torch.ops.mkldnn._linear_pointwise(a, b_t, zero, "none", [], ""),
            "onednn packed": lambda: torch.ops.mkldnn._linear_pointwise(a, b_packed, zero, "none", [], "")}


def gemm_rate(n: int = 2048, rounds: int = 5, min_time: float = 0.2) -> dict:
    """The machine's float32 matrix-product rate in this process (at its torch thread count):
    GFLOP/s of the best round of the fastest kernel (:func:`gemm_fns`), and of each kernel. A
    figure measured beside a wall-clock result lets a reader scale it to another machine."""
    import torch

    t = interleaved(gemm_fns(n), rounds=rounds, min_time=min_time, clock="wall")
    by_kernel = {k: 2 * n**3 / v["best"] / 1e9 for k, v in t.items()}
    return {"gflops": max(by_kernel.values()), "by_kernel": by_kernel, "n": n, "threads": torch.get_num_threads(),
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


# ---------------------------------------------------------------------------------- whole commands
def _tree_pss_kb(root: int) -> int:
    """Memory (kB) of ``root`` and its descendants together: the sum of their proportional set
    sizes (``Pss``: each shared page, such as torch's libraries mapped by every worker, divided
    among the processes that map it), or of their ``VmRSS`` where ``smaps_rollup`` is unreadable."""
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    parent[int(entry)] = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    tree, frontier = {root}, [root]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parent.items() if pp == p and c not in tree]
        tree.update(kids)
        frontier += kids
    total = 0
    for pid in tree:
        for path, key in ((f"/proc/{pid}/smaps_rollup", "Pss"), (f"/proc/{pid}/status", "VmRSS")):
            try:
                with open(path) as fh:
                    total += next(int(line.split()[1]) for line in fh if line.startswith(key + ":"))
                break
            except (OSError, StopIteration, ValueError, IndexError):
                continue
    return total


def run_command(cmd: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
                poll: float = 0.25) -> dict:
    """Run ``cmd`` as a whole process (output kept for errors only) and measure it from outside:
    wall clock (``perf_counter`` around start and reaping), CPU seconds of the process and the
    descendants it reaped (``wait4``), the largest single process's peak resident memory (the
    kernel's ``ru_maxrss`` over the process and its reaped workers), and the peak memory of the
    whole process tree (:func:`_tree_pss_kb`, sampled every ``poll`` seconds; where ``/proc`` is
    missing, ``None``)."""
    import subprocess
    import tempfile
    import threading

    with tempfile.TemporaryFile() as out:
        tic = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        peak_tree: list[int | None] = [0 if os.path.isdir("/proc") else None]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(poll):
                try:
                    total = _tree_pss_kb(proc.pid)
                except OSError:
                    continue
                peak_tree[0] = max(peak_tree[0], total)

        sampler = threading.Thread(target=sample, daemon=True) if peak_tree[0] is not None else None
        if sampler is not None:
            sampler.start()
        _, status, ru = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - tic
        done.set()
        if sampler is not None:
            sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        tail = out.read().decode(errors="replace")[-3000:]
    return {"wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "peak_rss_mb": ru.ru_maxrss / 1024,
            "peak_tree_pss_mb": None if peak_tree[0] is None else peak_tree[0] / 1024,
            "returncode": proc.returncode, "output_tail": tail}


def worker_startup_probe(context: object, task: object, on_iteration: object) -> float:
    """A task for :func:`worker_startup`: imports what a run's worker imports to compute a cell."""
    import optbench.runner.grid  # noqa: F401  (torch, the optimizers, the objective sources)

    return time.perf_counter()
