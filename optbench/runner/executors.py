"""Executors: where the tasks of a run are computed (in-process, local processes, Ray).

A run is a list of independent tasks (a benchmark cell, an objective record, an agent to
train) and one task function ``fn(context, task, on_iteration) -> result``. ``context`` is
what every task needs (the suite, the settings); it is shipped to each worker once (local
processes) or stored once in Ray's object store, never once per task. The executor computes
the tasks and yields ``(index, result)`` as they finish; the **caller (the driver) alone
writes results** — workers return data and write nothing to the results store.

* :class:`InProcessExecutor`: one task after another in the calling process, with
  per-iteration progress (``on_iteration``); for debugging, and what ``auto`` picks where
  workers cannot pay (one usable core, a GPU device).
* :class:`ProcessExecutor`: a pool of ``spawn``-started local processes, each with its own
  torch thread count (1 by default), started once per :meth:`~Executor.run` (one run of
  ``optbench run``/``tune``) and reused for all its tasks; never more workers than tasks.
  A worker that dies breaks the pool (``BrokenProcessPool``): the pool is rebuilt and the
  tasks that had not delivered a result are resubmitted, at most ``retries`` times each.
* ``auto`` (:func:`make_executor`; the default of ``optbench run`` and ``tune``): one
  1-thread worker per usable core (:func:`usable_cores`), in-process on one core. Workers
  receive the parent's back-end state (:func:`optbench.backends.apply`), so every process
  computes the same bits as an in-process run.
* :class:`RayExecutor`: Ray tasks on a local cluster or an existing one (``address``).
  A worker that dies is retried by Ray (``max_retries``); exceptions raised by the task
  itself (a bad setting, NaN from an optimizer) are not retried and reach the caller as
  the original exception.

No task is counted twice: a task delivers at most one result to the driver (a Ray task has
one return value however often it was retried; a pool task is resubmitted only when its
future failed, i.e. delivered nothing), and the driver writes each result to a file named
by the task (one file per cell) with an atomic replace.
"""

from __future__ import annotations

import os
import pickle
import sys
from abc import ABC, abstractmethod
from collections import deque
from typing import Any, Callable, Iterator, Sequence

from optbench import backends

TaskFn = Callable[[Any, Any, "Callable[[int], None] | None"], Any]
EXECUTORS = ("auto", "inprocess", "processes", "ray")


class ExecutorError(RuntimeError):
    """A task that could not be computed (its workers kept dying), or an unusable executor."""


class Shared:
    """A value every task may read, shipped once (see :meth:`Executor.share`)."""

    def __init__(self, value: Any):
        self._value = value

    def get(self) -> Any:
        return self._value


class Executor(ABC):
    """Computes tasks and yields ``(index, result)`` as they finish (in any order)."""

    name: str = "?"
    #: ``True`` if ``fn`` receives a per-iteration callback (in-process only); remote
    #: executors report progress per finished task.
    reports_iterations: bool = False
    #: ``True`` if workers may run on other machines (so suite files are shipped along).
    remote_filesystem: bool = False
    #: torch threads of each worker (``None``: the caller's setting; in-process only)
    threads: int | None = None

    def share(self, value: Any) -> Shared:
        """Wrap a large value read by some tasks; with Ray it goes to the object store once."""
        return Shared(value)

    @abstractmethod
    def run(self, fn: TaskFn, context: Any, tasks: Sequence[Any], *,
            local_hook: Callable[[int, Any], Callable[[int], None] | None] | None = None) -> Iterator[tuple[int, Any]]:
        """Compute ``fn(context, task, cb)`` for every task; yield ``(index, result)``.

        ``local_hook(index, task)`` is called before each task by in-process executors and
        returns the per-iteration callback ``cb`` (``None`` elsewhere).
        """

    def close(self) -> None:
        """Release workers (and a Ray cluster this executor started)."""

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def describe(self) -> str:
        return self.name


class InProcessExecutor(Executor):
    name = "inprocess"
    reports_iterations = True

    def run(self, fn, context, tasks, *, local_hook=None):
        for i, task in enumerate(tasks):
            cb = local_hook(i, task) if local_hook is not None else None
            yield i, fn(context, task, cb)


# ---------------------------------------------------------------------------------- worker side
_WORKER: dict[str, Any] = {}


def _pool_init(context_blob: bytes, threads: int, sys_path: list[str], backend_state: dict) -> None:
    for p in sys_path:
        if p not in sys.path:
            sys.path.append(p)
    import torch

    torch.set_num_threads(threads)
    backends.apply(backend_state)  # the parent's back-ends: the same bits in every process
    _WORKER["context"] = pickle.loads(context_blob)


def _pool_call(fn: TaskFn, task: Any) -> Any:
    return fn(_WORKER["context"], task, None)


def _ray_call(fn: TaskFn, context: Any, task: Any, threads: int, backend_state: dict) -> Any:
    import torch

    if _WORKER.get("threads") != threads:
        torch.set_num_threads(threads)
        _WORKER["threads"] = threads
    backends.apply(backend_state)
    return fn(context, task, None)


def worker_device(device: str) -> str:
    """The device a task should use inside its worker: in a Ray worker that was given GPUs,
    Ray restricts ``CUDA_VISIBLE_DEVICES`` to them, so any ``cuda[:N]`` means ``cuda``."""
    if device.startswith("cuda") and "ray" in sys.modules:
        import ray

        if ray.is_initialized():
            try:
                if ray.get_runtime_context().worker.mode == ray.WORKER_MODE and ray.get_gpu_ids():
                    return "cuda"
            except Exception:  # not inside a Ray worker
                pass
    return device


# ---------------------------------------------------------------------------------- local processes
def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS reports one, which a
    container or ``taskset`` can make smaller than ``os.cpu_count()``)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity API (macOS, Windows)
        return os.cpu_count() or 1


class ProcessExecutor(Executor):
    """``workers`` spawned processes (default: one per usable core), ``threads`` torch threads each."""

    name = "processes"

    def __init__(self, workers: int | None = None, *, threads: int = 1, retries: int = 3):
        if workers is not None and workers < 1:
            raise ExecutorError(f"--workers must be >= 1, got {workers}")
        self.workers = workers or usable_cores()
        self.threads = threads
        self.retries = retries

    def describe(self) -> str:
        return f"processes ({self.workers} workers × {self.threads} thread{'s' * (self.threads > 1)})"

    def _pool(self, context: Any, size: int):
        """A pool of ``size`` workers, each holding ``context`` and the parent's back-end state."""
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        return ProcessPoolExecutor(size, mp_context=mp.get_context("spawn"), initializer=_pool_init,
                                   initargs=(pickle.dumps(context), self.threads, list(sys.path), backends.state()))

    def run(self, fn, context, tasks, *, local_hook=None):
        from concurrent.futures import FIRST_COMPLETED, wait
        from concurrent.futures.process import BrokenProcessPool

        todo = deque(range(len(tasks)))
        size = min(self.workers, len(tasks))  # a worker without a task would only pay its start-up
        attempts = [0] * len(tasks)
        in_flight: dict[Any, int] = {}
        pool = None
        finished = False
        try:
            while todo or in_flight:
                if pool is None:  # once per run (again only after a worker died)
                    pool = self._pool(context, size)
                broken = False
                while todo and len(in_flight) < size + 1:
                    try:
                        fut = pool.submit(_pool_call, fn, tasks[todo[0]])
                    except BrokenProcessPool:  # a worker died since the last wait; the task never started
                        broken = True
                        break
                    in_flight[fut] = todo.popleft()
                done, _ = wait(in_flight, return_when=FIRST_COMPLETED) if in_flight else (set(), set())
                for fut in done:
                    i = in_flight.pop(fut)
                    try:
                        result = fut.result()
                    except BrokenProcessPool:
                        broken = True
                        todo.appendleft(i)
                        attempts[i] += 1
                        continue
                    yield i, result
                if broken:  # every task still in flight died with the pool: collect what finished, redo the rest
                    for fut, i in list(in_flight.items()):
                        try:
                            result = fut.result()
                        except BrokenProcessPool:
                            todo.appendleft(i)
                            attempts[i] += 1
                        else:
                            yield i, result
                    in_flight.clear()
                    pool.shutdown(wait=True, cancel_futures=True)
                    pool = None
                    over = [i for i in todo if attempts[i] > self.retries]
                    if over:
                        raise ExecutorError(f"a worker process died {attempts[over[0]]} times while computing "
                                            f"{_describe(tasks[over[0]])}; giving up (retries={self.retries})")
            finished = True
        finally:
            if pool is not None:
                for fut in in_flight:
                    fut.cancel()
                if not finished:  # an error or interrupt: do not wait for cells whose results nobody reads
                    for proc in list(getattr(pool, "_processes", {}).values()):
                        proc.terminate()
                pool.shutdown(wait=True, cancel_futures=True)


# ---------------------------------------------------------------------------------- Ray
class RayExecutor(Executor):
    """Ray tasks (``num_cpus`` / ``num_gpus`` each) on the cluster at ``address``.

    ``address=None``: join the cluster this process is already connected to, else the one
    named by ``RAY_ADDRESS``, else start a local one with ``workers`` CPUs (default: all
    cores), which :meth:`close` shuts down again. ``workers`` also caps the tasks in flight.
    """

    name = "ray"
    remote_filesystem = True

    def __init__(self, workers: int | None = None, *, address: str | None = None, threads: int = 1,
                 retries: int = 3, num_cpus: float = 1, num_gpus: float = 0):
        try:
            import ray
        except ImportError:
            raise ExecutorError("--executor ray needs Ray: pip install 'optbench[ray]'") from None
        if workers is not None and workers < 1:
            raise ExecutorError(f"--workers must be >= 1, got {workers}")
        self.workers, self.threads, self.retries = workers, threads, retries
        self.num_cpus, self.num_gpus = num_cpus, num_gpus
        self._started = False
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"log_to_driver": False, "logging_level": "ERROR"}
            if address is None and not os.environ.get("RAY_ADDRESS"):
                kwargs.update(num_cpus=workers or os.cpu_count() or 1, include_dashboard=False)
                self._started = True
            try:
                ray.init(address=address, **kwargs)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise ExecutorError(f"cannot connect to Ray at {address or os.environ.get('RAY_ADDRESS')}: {first}") from None
        self._ray = ray

    def describe(self) -> str:
        res = self._ray.cluster_resources()
        return (f"ray ({int(res.get('CPU', 0))} CPUs{', %g GPUs' % res['GPU'] if res.get('GPU') else ''} "
                f"in {len([n for n in self._ray.nodes() if n.get('Alive')])} node(s))")

    def share(self, value: Any) -> Shared:
        return _RayShared(self._ray.put(value))

    def run(self, fn, context, tasks, *, local_hook=None):
        ray = self._ray
        from ray.exceptions import RayTaskError

        gpus = ray.cluster_resources().get("GPU", 0)
        if self.num_gpus > 0 and gpus < self.num_gpus:
            raise ExecutorError(f"each task needs {self.num_gpus:g} GPU(s) (--device cuda) but the Ray cluster "
                                f"has {gpus:g}")

        remote = ray.remote(_ray_call).options(num_cpus=self.num_cpus, num_gpus=self.num_gpus,
                                               max_retries=self.retries, retry_exceptions=False)
        context_ref = ray.put(context)
        limit = self.workers or len(tasks)
        queue = deque(range(len(tasks)))
        pending: dict[Any, int] = {}
        try:
            while queue or pending:
                while queue and len(pending) < limit:
                    i = queue.popleft()
                    pending[remote.remote(fn, context_ref, tasks[i], self.threads, backends.state())] = i
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    i = pending.pop(ref)
                    try:
                        result = ray.get(ref)
                    except RayTaskError as exc:  # the task raised: hand back its own exception, not retried
                        cause = getattr(exc, "cause", None)
                        if isinstance(cause, BaseException):
                            raise cause from None
                        raise ExecutorError(f"{_describe(tasks[i])} failed: {str(exc).splitlines()[0]}") from None
                    except ray.exceptions.RayError as exc:  # worker/node died more often than max_retries
                        raise ExecutorError(f"{_describe(tasks[i])} failed after {self.retries} retries: "
                                            f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}") from None
                    yield i, result
        finally:
            for ref in pending:
                try:
                    ray.cancel(ref, force=True)
                except Exception:
                    pass

    def close(self) -> None:
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()
        self._started = False


class _RayShared(Shared):
    def __init__(self, ref: Any):
        self._ref = ref
        self._value = None

    def get(self) -> Any:
        if self._value is None:
            import ray

            self._value = ray.get(self._ref)
        return self._value

    def __getstate__(self):
        return {"_ref": self._ref, "_value": None}


def _describe(task: Any) -> str:
    return task.describe() if hasattr(task, "describe") else repr(task)


def make_executor(kind: str = "inprocess", *, workers: int | None = None, address: str | None = None,
                  threads: int | None = None, device: str = "cpu", gpus_per_task: float | None = None,
                  retries: int = 3) -> Executor:
    """Build an executor by name (``auto``, ``inprocess``, ``processes``, ``ray``).

    ``threads``: torch threads per worker (default 1 for worker pools). ``gpus_per_task``
    (Ray): GPUs reserved by each task, default 1 when ``device`` is CUDA, else 0.
    ``auto``: local processes, ``workers`` of them (default: usable cores ÷ ``threads``), each
    with ``threads`` threads; in-process when that leaves one worker or ``device`` is not the
    CPU (processes would share the one device and pay their start-up for nothing).
    """
    if kind == "auto":
        if address is not None:
            raise ExecutorError("--address needs --executor ray")
        if threads is not None and threads < 1:
            raise ExecutorError(f"--threads must be >= 1, got {threads}")
        if workers is not None and workers < 1:
            raise ExecutorError(f"--workers must be >= 1, got {workers}")
        n = workers or max(1, usable_cores() // (threads or 1))
        if n == 1 or device != "cpu":
            return InProcessExecutor()
        return ProcessExecutor(n, threads=threads or 1, retries=retries)
    if kind == "inprocess":
        if workers not in (None, 1) or address is not None:
            raise ExecutorError("--workers and --address need --executor processes or ray")
        return InProcessExecutor()
    if address is not None and kind != "ray":
        raise ExecutorError("--address needs --executor ray")
    if threads is not None and threads < 1:
        raise ExecutorError(f"--threads must be >= 1, got {threads}")
    if kind == "processes":
        return ProcessExecutor(workers, threads=threads or 1, retries=retries)
    if kind == "ray":
        gpus = (1.0 if device.startswith("cuda") else 0.0) if gpus_per_task is None else gpus_per_task
        return RayExecutor(workers, address=address, threads=threads or 1, retries=retries, num_gpus=gpus)
    raise ExecutorError(f"unknown executor {kind!r}; choose one of {', '.join(EXECUTORS)}")
