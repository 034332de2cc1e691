"""Run a suite: every (objective × optimizer × seed) cell, resumable, with a progress bar.

Cells already in the results store are skipped, so re-running a killed run finishes it
without recomputing anything. Objectives are built only when one of their cells is pending.

The cells are computed by an :mod:`executor <optbench.runner.executors>` (in-process by
default, or local processes, or Ray). Whatever the executor, a cell is computed by the same
function, :func:`compute_task`, from the suite and the run's settings: workers build the
objectives themselves (and keep the last few built per process), compute a cell and return
its trace; the driver (:func:`run_plan`) alone writes to the results store, one file per
cell, atomically, so a retried or duplicated computation can never be stored twice.

Before anything is written, :func:`validate_plan` checks the whole suite (every objective's
fields, files, checksums and sizes, and every optimizer on every objective it runs on), and
the driver takes the run directory's lock (:mod:`optbench.locks`); ``run.json`` is read and
written only under it. A cell whose optimizer or objective produces NaN/inf fails alone: its
one-line error (objective, optimizer, seed, first bad state) is recorded in the store, the
other cells run on, and :func:`run_plan` raises :class:`CellsFailed` at the end.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import sys
import tarfile
import tempfile
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from optbench.locks import DirectoryLock
from optbench.optimizers import REGISTRY
from optbench.optimizers.base import Iterate, OptimizerError, PolicyOptimizer, make_optimizer, parse_spec, spec_needs_context
from optbench.optimizers.plugins import import_modules, load_entry_points
from optbench.runner.drive import run_optimizer
from optbench.runner.executors import Executor, ExecutorError, InProcessExecutor, Shared, worker_device
from optbench.runner.provenance import provenance
from optbench.runner.store import ResultsStore, compact, config_hash, slug
from optbench.suites.sources import SOURCES, BuiltObjective, build_objective, check_objective, resolve_context
from optbench.suites.spec import DEFAULT_SETTINGS, OptimizerEntry, Suite, SuiteError, check_seeds


@dataclass
class RunPlan:
    """A suite with its settings resolved, the optimizers chosen, and its cells listed."""

    suite: Suite
    settings: dict[str, Any]
    optimizers: tuple[OptimizerEntry, ...]

    def budget(self, entry: OptimizerEntry) -> int:
        """Iterations for ``entry``: ``--iterations`` if given, else its own budget or the
        suite's, capped by the ``[quick]`` budget under ``--quick``."""
        if self.settings.get("iterations_override") is not None:
            return self.settings["iterations_override"]
        own = self.settings["iterations"] if entry.iterations is None else entry.iterations
        cap = self.settings.get("iterations_cap")
        return own if cap is None else min(own, cap)

    def cells(self) -> list[tuple[str, OptimizerEntry, int]]:
        return [(o.name, e, s) for o in self.suite.objectives for e in self.optimizers if e.runs_on(o.name)
                for s in self.settings["seeds"]]

    def config(self) -> dict[str, Any]:
        """Everything that determines the results (not the device or output directory)."""
        return {
            "suite": self.suite.name,
            "suite_file": (self.suite.directory / "suite.toml").read_text(),
            "objectives": [o.name for o in self.suite.objectives],
            "settings": {k: v for k, v in self.settings.items() if k != "device"},
            "optimizers": [{"label": e.label, "spec": e.spec, "iterations": self.budget(e)} for e in self.optimizers],
        }

    def default_out(self, results_root: Path = Path("results/runs")) -> Path:
        return results_root / f"{slug(self.suite.name)}-{config_hash(self.config())}"


def plan_run(suite: Suite, *, optimizers: list[str] | None = None, iterations: int | None = None,
             seeds: list[int] | None = None, states: int | None = None, quick: bool = False,
             device: str = "cpu") -> RunPlan:
    """Resolve settings: defaults < suite ``[settings]`` < ``[quick]`` (if ``quick``) < explicit options."""
    settings = {**DEFAULT_SETTINGS, **suite.settings, **(suite.quick if quick else {})}
    settings["iterations_cap"] = settings["iterations"] if quick else None
    if iterations is not None and iterations < 1:
        raise SuiteError(f"--iterations must be >= 1 (iteration 0 is the start, scored in every run), got {iterations}")
    settings["iterations_override"] = iterations
    if seeds is not None:
        check_seeds(seeds, "--seeds")
        settings["seeds"] = list(seeds)
    if states is not None:
        if states < 1:
            raise SuiteError(f"--states must be >= 1, got {states}")
        settings["states"] = states
    settings["device"] = device
    entries = suite.optimizers
    if optimizers:
        by_label = {e.label: e for e in suite.optimizers}
        chosen = []
        for name in optimizers:
            if name in by_label:
                chosen.append(by_label[name])
            else:
                make_optimizer(name)  # a spec outside the suite: must build, else a one-line error
                chosen.append(OptimizerEntry(name, name))
        entries = tuple(chosen)
    for e in entries:  # fail early, before any work, on a bad spec
        if not spec_needs_context(e.spec):  # amortized ones (and warm starts from them) need their objective's package
            make_optimizer(e.spec)
    return RunPlan(suite, settings, tuple(entries))


def validate_plan(plan: RunPlan) -> None:
    """Check the whole plan before the first cell runs, so that a suite that does not
    validate writes nothing: every objective (source, fields, files, checksums, sizes; see
    :func:`~optbench.suites.sources.check_objective`) and every optimizer on every
    objective it runs on (learned ones built from their package and checked for the
    objective's state and action sizes). :class:`SuiteError` naming the suite file, the
    objective and the field, or the optimizer."""
    suite = plan.suite
    where = suite.directory / "suite.toml"
    shapes: dict[str, dict[str, Any]] = {}
    for entry in suite.objectives:
        try:
            shapes[entry.name] = check_objective(entry, suite, plan.settings)
        except SuiteError as exc:
            raise SuiteError(f"invalid suite {where}: {exc}") from None
    for e in plan.optimizers:
        name = parse_spec(e.spec)[0]
        if name not in REGISTRY or not REGISTRY[name].amortized:
            continue  # built once by plan_run already
        for objective in (o.name for o in suite.objectives if e.runs_on(o.name)):
            shape = shapes[objective]
            context = {k: v for k, v in shape.items() if k == "package"}
            try:
                optimizer = make_optimizer(e.spec, **{**context, **resolve_context(dict(e.context), suite, objective)})
            except (OptimizerError, SuiteError, ValueError) as exc:
                raise SuiteError(f"invalid suite {where}: optimizer {e.label!r} on objective {objective!r}: {exc}") from None
            net = getattr(optimizer, "network", None)
            dims = (getattr(net, "state_dim", None), getattr(net, "action_dim", None))
            want = (shape.get("state_dim"), shape.get("action_dim"))
            if None not in dims and None not in want and dims != want:
                raise SuiteError(f"invalid suite {where}: optimizer {e.label!r}'s network expects {dims[0]}-dim states and "
                                 f"{dims[1]}-dim actions, but objective {objective!r} has {want[0]} and {want[1]}")


def objective_record(name: str, built: BuiltObjective, start_scores: torch.Tensor) -> dict[str, Any]:
    obj = built.objective
    rec: dict[str, Any] = {
        "name": name, "states": obj.batch_size, "state_dim": obj.state_dim, "action_dim": obj.action_dim,
        "alpha": compact(obj.alpha) if obj.alpha.dim() else float(obj.alpha), "beta": obj.beta,
        "score_samples": obj.score_noise.shape[1], "start_scores": compact(start_scores), "info": built.info,
    }
    if built.optimum is not None:
        rec["optimum"] = {
            "exact": compact(built.optimum.value),
            "scored": compact(obj.score(built.optimum.params.to(obj.device))),
            "params": compact(built.optimum.params),
            "mode_values": compact(built.optimum.mode_values),
            "mode_params": compact(built.optimum.modes),
        }
    return rec


# ------------------------------------------------------------------------------ tasks
@dataclass(frozen=True)
class ObjectiveTask:
    """Build an objective and return its record (sizes, α, start scores, known optimum)."""

    objective: str

    def describe(self) -> str:
        return f"objective {self.objective}"


@dataclass(frozen=True)
class CellTask:
    """Run one optimizer entry with one seed on one objective; returns ``(trace, meta)``."""

    objective: str
    entry: OptimizerEntry
    seed: int
    iterations: int

    def describe(self) -> str:
        return f"cell {self.objective} · {self.entry.label} · seed {self.seed}"


@dataclass(frozen=True)
class GridContext:
    """What every task of a run needs; shipped to each worker once.

    ``plugins`` are modules outside optbench that register optimizers or objective sources
    used by the run (imported in workers, with the directory they were found in as a
    fallback ``sys.path`` entry). ``bundle`` is the suite directory as a tar archive for
    workers on machines that do not see it (Ray); ``bundle_digest`` identifies its content.
    """

    suite: Suite
    settings: dict[str, Any]
    token: str
    plugins: tuple[tuple[str, str], ...] = ()
    bundle: Shared | None = None
    bundle_digest: str | None = None


@dataclass(frozen=True)
class CellFailure:
    """What a cell that failed returns instead of its trace: its one-line error."""

    message: str


class CellsFailed(OptimizerError):
    """Raised by :func:`run_plan` after a run in which some cells failed (the others are stored)."""

    def __init__(self, message: str, store: ResultsStore, failures: list[dict[str, Any]]):
        super().__init__(message)
        self.store, self.failures = store, failures


def first_bad_state(values: torch.Tensor) -> tuple[int, int] | None:
    """``(number of states, first state)`` whose row of ``values [B, ...]`` holds NaN/inf, or ``None``."""
    bad = (~torch.isfinite(values.detach())).reshape(values.shape[0], -1).any(-1)
    if not bad.any():
        return None
    return int(bad.sum()), int(bad.nonzero()[0, 0])


class _Located(OptimizerError):
    """A NaN/inf failure whose message already names the first bad state."""


class _FiniteGuard(PolicyOptimizer):
    """An optimizer as seen by :func:`run_optimizer`, failing on the first non-finite estimate
    with the state it appeared at, and keeping the last estimate (to locate a NaN/inf score)."""

    def __init__(self, inner: PolicyOptimizer):
        super().__init__()
        self.inner, self.name, self.last, self.iteration = inner, inner.name, None, 0

    def label(self) -> str:
        return self.inner.label()

    def initial_estimate(self, objective: Any) -> Iterate | None:  # a warm start's own start
        return self.inner.initial_estimate(objective)

    def trained_budget(self) -> int | None:
        return self.inner.trained_budget()

    def iterate(self, objective: Any, start: torch.Tensor, iterations: int,
                generator: torch.Generator) -> Iterator[torch.Tensor | Iterate]:
        steps = self.inner.iterate(objective, start, iterations, generator)
        try:
            for t, out in enumerate(steps, 1):
                self.iteration = t
                params = out.params if isinstance(out, Iterate) else out
                bad = first_bad_state(params)
                if bad is not None:
                    raise _Located(f"{self.label()} produced NaN/inf parameters at iteration {t} for {bad[0]} "
                                   f"state(s), the first at state {bad[1]}")
                self.last = params.detach()
                yield out
        finally:
            steps.close()


def _checked_run(optimizer: PolicyOptimizer, obj, task: "CellTask", settings: dict[str, Any],
                 on_iteration: Callable[[int], None] | None, keep_params_at: list[int] = ()):
    """:func:`run_optimizer` for one cell; a NaN/inf estimate or score comes back as a
    :class:`CellFailure` naming objective, optimizer, seed and the first bad state, and so
    does a numerical failure inside the optimizer (torch's ``RuntimeError``, e.g. an Adam step
    that overflows float32)."""
    where = f"{task.objective} · {task.entry.label} · seed {task.seed}"
    guard = _FiniteGuard(optimizer)
    try:
        trace = run_optimizer(guard, obj, task.iterations, seed=task.seed, score_at=settings["score_at"],
                              on_iteration=on_iteration, keep_params_at=list(keep_params_at))
    except _Located as exc:
        return CellFailure(f"cell {where}: {exc}")
    except OptimizerError as exc:  # e.g. a NaN/inf score of a finite estimate: which state?
        message = str(exc)
        bad = first_bad_state(obj.score(guard.last)) if guard.last is not None else None
        if bad is not None:
            message += f" ({bad[0]} state(s), the first at state {bad[1]})"
        return CellFailure(f"cell {where}: {message}")
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return CellFailure(f"cell {where}: {optimizer.label()} failed at iteration {guard.iteration + 1}: "
                           f"{type(exc).__name__}: {first}")
    for i, row in zip(trace.iterations, trace.scores):
        bad = first_bad_state(row.unsqueeze(-1))
        if bad is not None:
            return CellFailure(f"cell {where}: the objective's scored J is NaN/inf at iteration {i} for {bad[0]} "
                               f"state(s), the first at state {bad[1]}")
    return trace


_BUILT: "OrderedDict[tuple[str, str], BuiltObjective]" = OrderedDict()
_BUILT_MAX = 4  # objectives kept per worker process (tasks arrive grouped by objective)
_EXTRACTED: dict[str, Path] = {}
_LOCAL_DIGEST: dict[str, str | None] = {}


def compute_task(ctx: GridContext, task: ObjectiveTask | CellTask,
                 on_iteration: Callable[[int], None] | None = None) -> Any:
    """Compute one task of a run (in whatever process the executor chose)."""
    _import_plugins(ctx.plugins)
    suite = _worker_suite(ctx)
    settings = {**ctx.settings, "device": worker_device(ctx.settings["device"])}
    built = _built_objective(ctx, suite, settings, task.objective)
    obj = built.objective
    if isinstance(task, ObjectiveTask):
        return objective_record(task.objective, built, obj.score(obj.initial_params()))
    entry = task.entry
    optimizer = make_optimizer(entry.spec, **{**built.context, **resolve_context(dict(entry.context), suite, task.objective)})
    trained = optimizer.trained_budget()  # a learned optimizer's estimate at its trained budget is kept (R3)
    with torch.inference_mode(False):
        trace = _checked_run(optimizer, obj, task, settings, on_iteration, keep_params_at=[trained] if trained else [])
    if isinstance(trace, CellFailure):
        return trace
    return trace, {"spec": entry.spec, "settings": optimizer.settings(), "amortized": optimizer.amortized,
                   "stochastic": optimizer.stochastic}


def _built_objective(ctx: GridContext, suite: Suite, settings: dict[str, Any], name: str) -> BuiltObjective:
    key = (ctx.token, name)
    if key in _BUILT:
        _BUILT.move_to_end(key)
        return _BUILT[key]
    entry = next(o for o in suite.objectives if o.name == name)
    built = build_objective(entry, suite, settings)
    _BUILT[key] = built
    while len(_BUILT) > _BUILT_MAX:
        _BUILT.popitem(last=False)
    return built


def _import_plugins(plugins: tuple[tuple[str, str], ...]) -> None:
    load_entry_points(strict=False)  # installed plugins (the driver reported any that fail)
    import_modules(plugins)


def _worker_suite(ctx: GridContext) -> Suite:
    """The suite, with its directory where this worker can read it: the driver's own path if
    it holds the same files, else the shipped bundle unpacked into a temporary directory."""
    if ctx.bundle is None:
        return ctx.suite
    here = str(ctx.suite.directory)
    if here not in _LOCAL_DIGEST:
        _LOCAL_DIGEST[here] = directory_digest(ctx.suite.directory) if ctx.suite.directory.is_dir() else None
    if _LOCAL_DIGEST[here] == ctx.bundle_digest:
        return ctx.suite
    if ctx.bundle_digest not in _EXTRACTED:
        target = Path(tempfile.mkdtemp(prefix="optbench-suite-"))
        with tarfile.open(fileobj=io.BytesIO(ctx.bundle.get()), mode="r") as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(target, filter="data")
            else:  # Python without extraction filters: the archive is our own, made by suite_bundle
                tar.extractall(target)
        _EXTRACTED[ctx.bundle_digest] = target
    return replace(ctx.suite, directory=_EXTRACTED[ctx.bundle_digest])


# ------------------------------------------------------------------------------ driver
BUNDLE_MAX_BYTES = 256 << 20


def _suite_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and not any(
        part.startswith(".") or part == "__pycache__" for part in p.relative_to(directory).parts))


def directory_digest(directory: Path) -> str:
    """Content hash of a suite directory (relative paths and file bytes)."""
    h = hashlib.sha256()
    for p in _suite_files(directory):
        h.update(str(p.relative_to(directory)).encode() + b"\0")
        h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def suite_bundle(directory: Path) -> bytes | None:
    """The suite directory as an uncompressed tar archive (``None`` if over 256 MB)."""
    files = _suite_files(directory)
    if sum(p.stat().st_size for p in files) > BUNDLE_MAX_BYTES:
        return None
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for p in files:
            tar.add(p, arcname=str(p.relative_to(directory)), recursive=False)
    return buf.getvalue()


def _plugins(plan: RunPlan) -> tuple[tuple[str, str], ...]:
    """Modules outside optbench that define the optimizers and objective sources of ``plan``."""
    names = {part for e in plan.optimizers for part in parse_spec(e.spec)[0].split("+")}  # warm starts: both parts
    modules = {REGISTRY[n].__module__ for n in names if n in REGISTRY}
    modules |= {SOURCES[o.source].__module__ for o in plan.suite.objectives if o.source in SOURCES}
    out = []
    for module in sorted(modules):
        if module == "optbench" or module.startswith("optbench."):
            continue
        if module == "__main__":
            raise ExecutorError("an optimizer or objective source of this run is defined in __main__; "
                                "define it in an importable module to run it in worker processes")
        file = getattr(sys.modules.get(module), "__file__", None)
        root = ""
        if file:
            path = Path(file).resolve()
            depth = module.count(".") + (path.name == "__init__.py")
            root = str(path.parents[depth])
        out.append((module, root))
    return tuple(out)


def run_plan(plan: RunPlan, out: Path, *, show_progress: bool = True, executor: Executor | None = None,
             echo: Callable[[str], Any] | None = None) -> ResultsStore:
    """Run every pending cell of ``plan`` into the store at ``out`` (with ``executor``,
    default in-process); finished cells are written as they arrive, by this process only.

    The plan is validated first (:func:`validate_plan`: nothing is written for a suite that
    does not validate); then ``out`` is locked (:class:`~optbench.locks.LockError` naming the
    holder if another process writes there) before ``run.json`` is checked or written. A run
    that fails before storing anything leaves neither ``run.json`` nor the lock behind.
    Raises :class:`CellsFailed` at the end if some cells failed. ``echo`` is told notes
    (a stale lock taken over)."""

    executor = executor or InProcessExecutor()
    validate_plan(plan)
    with DirectoryLock(out, "run directory", echo=echo):
        store = ResultsStore.create_or_resume(out, plan.config(), provenance(plan.suite))
        try:
            _run(plan, store, executor, show_progress)
        except BaseException:
            store.discard_if_empty()
            raise
    failures = [f for f in store.failures() if (f["objective"], f["optimizer"], f["seed"]) in
                {(o, e.label, s) for o, e, s in plan.cells()}]
    if failures:
        more = f"; and {len(failures) - 1} more (`optbench show {store.root}` lists them)" if len(failures) > 1 else ""
        raise CellsFailed(f"{len(failures)} of {len(plan.cells())} cells failed (finished cells are stored; re-running "
                          f"the command retries the failed ones): {failures[0]['error']}{more}", store, failures)
    return store


def _run(plan: RunPlan, store: ResultsStore, executor: Executor, show_progress: bool) -> ResultsStore:
    cells = plan.cells()
    pending = [c for c in cells if not store.has_cell(c[0], c[1].label, c[2])]
    tasks: list[ObjectiveTask | CellTask] = []
    for entry in plan.suite.objectives:
        mine = [CellTask(name, e, seed, plan.budget(e)) for name, e, seed in pending if name == entry.name]
        if not store.objective_path(entry.name).exists():
            tasks.append(ObjectiveTask(entry.name))
        tasks.extend(mine)
    suite = replace(plan.suite, directory=plan.suite.directory.resolve())
    token = f"{config_hash(plan.config())}:{plan.settings['device']}:{suite.directory}"
    ctx = GridContext(suite, dict(plan.settings), token)
    if not isinstance(executor, InProcessExecutor):
        ctx = replace(ctx, plugins=_plugins(plan))
    if executor.remote_filesystem and tasks:
        bundle = suite_bundle(suite.directory)
        if bundle is not None:
            ctx = replace(ctx, bundle=executor.share(bundle), bundle_digest=directory_digest(suite.directory))

    total = sum(t.iterations for t in tasks if isinstance(t, CellTask))
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("iterations"), TimeElapsedColumn(), TimeRemainingColumn(), disable=not show_progress,
                        transient=False)
    n_cells = sum(isinstance(t, CellTask) for t in tasks)
    where = "" if isinstance(executor, InProcessExecutor) else f" on {executor.describe()}"
    finished = 0
    with progress:
        bar = progress.add_task(f"{plan.suite.name}: {len(pending)}/{len(cells)} cells to run{where}", total=total)

        def local_hook(i: int, task: ObjectiveTask | CellTask) -> Callable[[int], None] | None:
            if isinstance(task, CellTask):
                progress.update(bar, description=f"{task.objective} · {task.entry.label} · seed {task.seed}")
            return lambda t: progress.advance(bar)

        try:
            with contextlib.closing(executor.run(compute_task, ctx, tasks, local_hook=local_hook)) as results:
                for i, result in results:
                    task = tasks[i]
                    if isinstance(task, ObjectiveTask):
                        store.save_objective(task.objective, result)
                        continue
                    if store.has_cell(task.objective, task.entry.label, task.seed):
                        continue  # never store a cell twice
                    if isinstance(result, CellFailure):
                        store.save_failure(task.objective, task.entry.label, task.seed, result.message)
                        progress.console.print(f"[red]failed[/]: {escape(result.message)}", highlight=False)
                    else:
                        trace, meta = result
                        store.save_cell(task.objective, task.entry.label, task.seed, trace, meta)
                    finished += 1
                    if not executor.reports_iterations:
                        progress.update(bar, advance=task.iterations,
                                        description=f"{plan.suite.name}: {finished}/{n_cells} cells{where}")
        finally:
            if isinstance(executor, InProcessExecutor):
                _BUILT.clear()
        progress.update(bar, description=f"{plan.suite.name}: done")
    return store


__all__ = ["CellFailure", "CellTask", "CellsFailed", "ExecutorError", "GridContext", "ObjectiveTask", "RunPlan",
           "compute_task", "objective_record", "plan_run", "run_plan", "validate_plan"]
