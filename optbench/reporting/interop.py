"""``optbench export-run RUN --format ioh|coco|csv --out DIR``: a stored run in the formats of
the analysers the field uses.

What a run holds (:mod:`optbench.runner.store`): per cell (objective × optimizer × seed) the
scored ``J`` of every state at the scored iterations, and per-iteration costs for all states
together. The exports map them as follows (and say so inside the files):

* a **run** of the analysers is one (optimizer, seed, state); a **function** is an objective
  (ids 1, 2, … in the order of ``run.json``), an **instance** is a state (``state index + 1``:
  both analysers number instances from 1), the **dimension** is ``|λ| = 2|A|``;
* **evaluations** are Q-evaluations per state: ``1 + cumulative Q-evaluations / B`` (the store
  keeps costs for all ``B`` states of a cell together, so a state's share is the cell's total
  over ``B``, exact for optimizers that run all states in lockstep, an average for the
  library optimizers that freeze converged states); the ``1 +`` makes the start ``λ₀`` the
  first evaluation, as both formats count from 1. Iterations whose count does not advance
  (the direct optimizer costs no Q-evaluations) keep only their last scored value;
* **values**: IOHprofiler gets ``raw_y = J`` (maximization); COCO gets ``f = −J`` against a
  reference ``f_opt = −J_ref`` per state, ``J_ref`` the best scored ``J`` any optimizer of the
  run reached on that state (start included), so ``f − f_opt = J_ref − J ≥ 0``;
* the CSV long format has one row per (objective, optimizer, seed, state, scored iteration)
  with the cumulative costs per state (:func:`cell_costs`) and ``J``.

Readers: IOHprofiler's ``iohinspector`` reads the ``ioh`` export (tested) and the ``coco``
export (tested); COCO's own ``cocopp`` cannot: it maps a suite name to one of its BBOB test
beds (fixed functions, dimensions and targets) and refuses any other suite name
(``docs/bring-your-own.md``).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from optbench.runner.store import ResultsStore, StoreError, slug

FORMATS = ("ioh", "coco", "csv")
IOH_VERSION = "0.3.22"  # the IOHprofiler JSON layout written (ioh's logger.Analyzer of that version)


def cell_costs(cell: dict[str, Any]) -> dict[str, np.ndarray]:
    """Per-iteration costs of a stored cell, for all its states together (arrays of length
    ``budget``): ``q_evals``, ``grad_evals``, ``seconds``, and any further per-iteration cost a
    newer store keeps under ``cell["costs"]`` (e.g. FLOPs). The one place exports read costs."""
    out = {k: np.asarray(cell[k], dtype=np.float64) for k in ("q_evals", "grad_evals", "seconds") if k in cell}
    extra = cell.get("costs")
    if isinstance(extra, dict):
        for k, v in extra.items():
            if isinstance(v, list) and all(isinstance(x, (int, float)) for x in v):
                out[k] = np.asarray(v, dtype=np.float64)
    return out


def _cumulative_at(per_iteration: np.ndarray, iterations: list[int]) -> np.ndarray:
    """Cumulative cost after each of ``iterations`` (0 = before the first)."""
    cum = np.concatenate([[0.0], np.cumsum(per_iteration)])
    return cum[np.asarray(iterations, dtype=int)]


class _Run:
    """One cell's traces, per state: iterations, scores ``[T, B]``, cumulative costs per state."""

    def __init__(self, cell: dict[str, Any]):
        self.cell = cell
        self.iterations: list[int] = list(cell["iterations"])
        self.scores = np.asarray(cell["scores"], dtype=np.float64)  # [T, B]
        if self.scores.ndim != 2 or self.scores.shape[0] != len(self.iterations):
            raise StoreError(f"cell {cell.get('objective')}/{cell.get('optimizer')}/s{cell.get('seed')}: scores of "
                             f"shape {list(self.scores.shape)} for {len(self.iterations)} scored iterations")
        self.n_states = self.scores.shape[1]
        self.costs = {k: _cumulative_at(v, self.iterations) for k, v in cell_costs(cell).items()}
        self.per_state = {k: v / self.n_states for k, v in self.costs.items() if k != "seconds"}

    def evaluations(self) -> np.ndarray:
        """IOH/COCO evaluation counts per scored iteration: ``1 + round(Q-evaluations per state)``."""
        return 1 + np.rint(self.per_state.get("q_evals", np.zeros(len(self.iterations)))).astype(np.int64)

    def rows(self, state: int) -> list[tuple[int, int, float]]:
        """``(evaluations, iteration, J)`` of one state, the last scored value per evaluation count."""
        ev = self.evaluations()
        out: list[tuple[int, int, float]] = []
        for t, (e, it) in enumerate(zip(ev, self.iterations)):
            row = (int(e), int(it), float(self.scores[t, state]))
            if out and out[-1][0] == row[0]:
                out[-1] = row
            else:
                out.append(row)
        return out


def _load(run: str | Path) -> tuple[ResultsStore, dict[str, Any], list[str], dict[str, list[_Run]]]:
    store = ResultsStore.open_existing(Path(run).expanduser())
    info = store.run_info
    objectives = store.objectives()
    cells: dict[str, list[_Run]] = {}
    for cell in store.cells():
        cells.setdefault(cell["objective"], []).append(_Run(cell))
    order = [o for o in info.get("config", {}).get("objectives", []) if o in cells]
    order += sorted(o for o in cells if o not in order)
    if not order:
        raise StoreError(f"{run} holds no finished cells to export")
    for name in order:
        if name not in objectives:
            raise StoreError(f"{run}: cells of objective {name!r} but no objectives/{slug(name)}.json")
        B = objectives[name]["states"]
        for r in cells[name]:
            if r.n_states != B:
                raise StoreError(f"{run}: a cell of {name!r} has {r.n_states} states, its objective {B}")
    return store, objectives, order, cells


def reference_values(objective: dict[str, Any], runs: list[_Run]) -> np.ndarray:
    """``J_ref`` per state: the best scored ``J`` any optimizer reached (the start included)."""
    best = np.asarray(objective.get("start_scores", [-math.inf] * objective["states"]), dtype=np.float64)
    for r in runs:
        best = np.maximum(best, r.scores.max(axis=0))
    return best


def _prepare(out: str | Path, force: bool) -> Path:
    out = Path(out).expanduser()
    if out.exists() and any(out.iterdir()) and not force:
        raise StoreError(f"{out} exists and is not empty (use --force to write into it)")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _by_optimizer(runs: list[_Run]) -> Iterator[tuple[str, list[_Run]]]:
    labels = sorted({r.cell["optimizer"] for r in runs})
    for label in labels:
        yield label, sorted((r for r in runs if r.cell["optimizer"] == label), key=lambda r: r.cell["seed"])


def _note(objective: dict[str, Any]) -> str:
    return (f"J = scored soft policy objective ({objective.get('score_samples')} fixed draws per state); "
            f"instance = state index + 1; dimension = |lambda| = 2|A|; evaluations = 1 + Q-evaluations per state "
            f"(a cell's total over its {objective['states']} states)")


# ---------------------------------------------------------------------- IOHprofiler
def write_ioh(run: str | Path, out: str | Path, force: bool = False) -> list[Path]:
    """IOHprofiler's JSON + ``.dat`` layout: ``OUT/OPTIMIZER/IOHprofiler_fID_OBJECTIVE.json``
    and ``OUT/OPTIMIZER/data_fID_OBJECTIVE/IOHprofiler_fID_DIMD.dat`` (``evaluations raw_y``,
    a header line before each run), maximization."""
    store, objectives, order, cells = _load(run)
    out = _prepare(out, force)
    suite = str(store.run_info.get("config", {}).get("suite", "optbench"))
    written = []
    for fid, name in enumerate(order, 1):
        obj = objectives[name]
        dim = 2 * int(obj["action_dim"])
        for label, runs in _by_optimizer(cells[name]):
            folder = out / slug(label)
            data_dir = f"data_f{fid}_{slug(name)}"
            (folder / data_dir).mkdir(parents=True, exist_ok=True)
            dat = folder / data_dir / f"IOHprofiler_f{fid}_DIM{dim}.dat"
            json_runs, lines = [], []
            for r in runs:
                final = r.cell.get("final_params") or [[] for _ in range(r.n_states)]
                for s in range(r.n_states):
                    rows = r.rows(s)
                    lines.append("evaluations raw_y")
                    lines += [f"{e} {y:.10g}" for e, _, y in rows]
                    k = max(range(len(rows)), key=lambda i: rows[i][2])
                    x = final[s] if k == len(rows) - 1 else []
                    json_runs.append({"instance": s + 1, "evals": rows[-1][0],
                                      "best": {"evals": rows[k][0], "y": rows[k][2], "x": x},
                                      "optbench": {"seed": r.cell["seed"], "state": s}})
            dat.write_text("\n".join(lines) + "\n")
            spec = runs[0].cell.get("spec", label)
            doc = {"version": IOH_VERSION, "suite": f"optbench:{suite}", "function_id": fid, "function_name": name,
                   "maximization": True, "algorithm": {"name": label, "info": f"optbench optimizer {spec}"},
                   "attributes": ["evaluations", "raw_y"],
                   "experiment_attributes": [{"optbench_note": _note(obj)}],
                   "scenarios": [{"dimension": dim, "path": f"{data_dir}/{dat.name}", "runs": json_runs}]}
            js = folder / f"IOHprofiler_f{fid}_{slug(name)}.json"
            js.write_text(json.dumps(doc, indent=1) + "\n")
            written += [js, dat]
    return written


# ---------------------------------------------------------------------- COCO
COCO_TARGETS = [10.0 ** (k / 5.0) for k in range(10, -41, -1)]  # 1e2 … 1e-8, COCO's 5 per decade


def write_coco(run: str | Path, out: str | Path, force: bool = False) -> list[Path]:
    """COCO's ``bbob-new2`` layout: ``OUT/OPTIMIZER/bbobexp_fID.info`` and
    ``data_fID/bbobexp_fID_DIMD.dat`` / ``.tdat`` with ``f = −J`` and ``f_opt = −J_ref`` per
    state (see the module docstring); each run's header states its ``f_opt``."""
    store, objectives, order, cells = _load(run)
    out = _prepare(out, force)
    suite = "optbench-" + slug(str(store.run_info.get("config", {}).get("suite", "run")))
    written = []
    for fid, name in enumerate(order, 1):
        obj = objectives[name]
        dim = 2 * int(obj["action_dim"])
        ref = reference_values(obj, cells[name])
        for label, runs in _by_optimizer(cells[name]):
            folder = out / slug(label)
            (folder / f"data_f{fid}").mkdir(parents=True, exist_ok=True)
            stem = folder / f"data_f{fid}" / f"bbobexp_f{fid}_DIM{dim}"
            dat_lines, tdat_lines, finals = [], [], []
            for r in runs:
                for s in range(r.n_states):
                    fopt = -float(ref[s])
                    head = (f"% f evaluations | g evaluations | best noise-free fitness - Fopt ({fopt:.12e}) + sum g_i+ "
                            f"| measured fitness | best measured fitness or single-digit g-values")
                    best, rows, trows, next_target = math.inf, [], [], 0
                    for e, _, y in r.rows(s):
                        f = -y
                        best = min(best, f)
                        line = f"{e} 0 {max(best - fopt, 0.0):.6e} {f:.10e} {best:.10e}"
                        rows.append(line)
                        hit = False
                        while next_target < len(COCO_TARGETS) and best - fopt <= COCO_TARGETS[next_target]:
                            next_target, hit = next_target + 1, True
                        if hit:
                            trows.append(line)
                    if not trows or trows[-1] != rows[-1]:
                        trows.append(rows[-1])
                    dat_lines += [head, *rows]
                    tdat_lines += [head, *trows]
                    finals.append(f"{s + 1}:{r.rows(s)[-1][0]}|{max(best - fopt, 0.0):.1e}")
            stem.with_suffix(".dat").write_text("\n".join(dat_lines) + "\n")
            stem.with_suffix(".tdat").write_text("\n".join(tdat_lines) + "\n")
            info = folder / f"bbobexp_f{fid}.info"
            info.write_text(
                f"suite = '{suite}', funcId = {fid}, DIM = {dim}, Precision = 1.000e-08, algId = '{slug(label)}', "
                f"coco_version = 'optbench', logger = 'bbob', data_format = 'bbob-new2'\n"
                f"% objective {name}: f = -J, Fopt per instance = -(best J any optimizer of the run reached on that "
                f"state, in each run's header); runs in order: " + ", ".join(
                    f"seed {r.cell['seed']} state {s}" for r in runs for s in range(r.n_states)) + f"; {_note(obj)}\n"
                f"data_f{fid}/{stem.name}.dat, " + ", ".join(finals) + "\n")
            written += [info, stem.with_suffix(".dat"), stem.with_suffix(".tdat")]
    return written


# ---------------------------------------------------------------------- CSV
CSV_COLUMNS = ("objective", "optimizer", "seed", "state", "iteration", "q_evals", "grad_evals", "seconds", "J")


def write_csv(run: str | Path, out: str | Path, force: bool = False) -> list[Path]:
    """``OUT/traces.csv``, long format: one row per (objective, optimizer, seed, state, scored
    iteration); ``q_evals``/``grad_evals`` cumulative per state, ``seconds`` cumulative wall
    clock of the cell (all states in lockstep), further cost columns as the store has them."""
    _, _, order, cells = _load(run)
    out = _prepare(out, force)
    extra = sorted({k for name in order for r in cells[name] for k in r.costs} - set(CSV_COLUMNS))
    path = out / "traces.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([*CSV_COLUMNS[:-1], *extra, "J"])
        for name in order:
            for label, runs in _by_optimizer(cells[name]):
                for r in runs:
                    for t, it in enumerate(r.iterations):
                        costs = [r.per_state.get("q_evals", [0] * len(r.iterations))[t],
                                 r.per_state.get("grad_evals", [0] * len(r.iterations))[t],
                                 r.costs.get("seconds", [0] * len(r.iterations))[t]]
                        more = [r.per_state.get(k, r.costs.get(k))[t] for k in extra]
                        for s in range(r.n_states):
                            w.writerow([name, label, r.cell["seed"], s, it, *(f"{c:.10g}" for c in costs),
                                        *(f"{c:.10g}" for c in more), f"{r.scores[t, s]:.10g}"])
    return [path]


def export_run(run: str | Path, fmt: str, out: str | Path, force: bool = False) -> list[Path]:
    """Export run directory ``run`` in format ``fmt`` (``ioh``, ``coco`` or ``csv``) into ``out``."""
    writers = {"ioh": write_ioh, "coco": write_coco, "csv": write_csv}
    if fmt not in writers:
        raise StoreError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return writers[fmt](run, out, force)


__all__ = ["CSV_COLUMNS", "FORMATS", "cell_costs", "export_run", "reference_values", "write_coco", "write_csv",
           "write_ioh"]
