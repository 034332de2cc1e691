"""A stored run read back: its configuration, objective records and cell groups, checked once.

Both sides of the house read runs: ``optbench analyze`` (:mod:`optbench.runner.analysis`) to
know which optimizer estimates to analyse, and the report (:mod:`optbench.reporting.report`) to
draw and tabulate them. This module reads files only (through :class:`ResultsStore`); it never
builds an objective or imports an optimizer, so a report can run where neither can be built.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from optbench.metrics.summary import CellGroup, group_cells, reference_values
from optbench.runner.store import ResultsStore, StoreError, read_json, slug


class RunError(ValueError):
    """A run directory that cannot be read back (missing or inconsistent files)."""


@dataclass
class RunData:
    """A stored run, read once: config, objective records and cell groups (in suite order)."""

    store: ResultsStore
    config: dict[str, Any]
    environment: dict[str, Any]
    records: dict[str, dict[str, Any]]
    groups: dict[tuple[str, str], CellGroup]
    objectives: list[str]  # objectives with results, suite order
    labels: list[str]  # optimizer labels, suite order

    def mine(self, objective: str) -> list[CellGroup]:
        """The cell groups of ``objective``, in the run's optimizer order."""
        return [self.groups[(objective, lab)] for lab in self.labels if (objective, lab) in self.groups]

    def start(self, objective: str) -> np.ndarray:
        """Scored ``J`` of the common start at every state ``[B]``."""
        return np.asarray(self.records[objective]["start_scores"], dtype=np.float64)

    def reference(self, objective: str) -> tuple[np.ndarray, bool]:
        """``J_ref`` per state and whether it is a known optimum (else the best found)."""
        return reference_values(self.records[objective], self.mine(objective))

    def budget(self, label: str) -> int:
        """The iteration budget the run gave optimizer ``label``."""
        return int(self._entry(label)["iterations"])

    def spec(self, label: str) -> str:
        """The spec string optimizer ``label`` was built from."""
        return str(self._entry(label)["spec"])

    def _entry(self, label: str) -> dict[str, Any]:
        for o in self.config["optimizers"]:
            if o["label"] == label:
                return o
        raise RunError(f"optimizer {label!r} is not in the run's configuration")


def load_run(path: str | Path) -> RunData:
    """Open and check a run directory; every problem is one :class:`RunError` line."""
    root = Path(path)
    if not root.exists():
        raise RunError(f"{root} does not exist")
    if not root.is_dir():
        raise RunError(f"{root} is not a directory (expected an optbench run directory)")
    try:
        store = ResultsStore.open_existing(root)
        info = store.run_info
        config = info["config"]
        labels = [o["label"] for o in config["optimizers"]]
        order = list(config["objectives"])
        cells = list(store.cells())
        records = store.objectives()
    except StoreError as exc:
        raise RunError(str(exc)) from None
    except (KeyError, TypeError):
        raise RunError(f"{root / 'run.json'} lacks the run configuration (config.optimizers, config.objectives)") from None
    if not cells:
        raise RunError(f"{root} holds no finished cells (nothing to report; run `optbench run` first)")
    try:
        groups = group_cells(cells)
    except (KeyError, ValueError) as exc:
        raise RunError(f"{root}: malformed cell files ({exc})") from None
    names = []
    for name in order:
        if any(k[0] == name for k in groups):
            if name not in records:
                raise RunError(f"{root} has cells for objective {name!r} but no objectives/{slug(name)}.json")
            names.append(name)
    labels += sorted({k[1] for k in groups} - set(labels))
    return RunData(store, config, info.get("environment", {}), records, groups, names, labels)


# ------------------------------------------------------------------------------ analyses
ANALYSES = ("gap", "modes", "landscapes", "exploitation", "rollouts")
"""The analyses ``optbench analyze`` stores next to a run's cells, in the order the report shows them."""

ANALYSIS_DIR = "analyses"
"""``RUN/analyses/KIND/OBJECTIVE__OPTIMIZER.json`` (or ``OBJECTIVE.json`` for a unit of a whole
objective): one file per finished analysis unit, written atomically, never updated in place."""


def analysis_path(root: Path, kind: str, objective: str, optimizer: str | None = None) -> Path:
    """Where the unit ``(kind, objective, optimizer)`` of the run at ``root`` is stored."""
    name = slug(objective) if optimizer is None else f"{slug(objective)}__{slug(optimizer)}"
    return Path(root) / ANALYSIS_DIR / kind / f"{name}.json"


def read_analysis(root: Path, kind: str, objective: str, optimizer: str | None = None) -> dict[str, Any] | None:
    """A stored analysis unit (``{"key": ..., "result": ...}``), or ``None`` if it was not computed."""
    path = analysis_path(root, kind, objective, optimizer)
    if not path.is_file():
        return None
    try:
        unit = read_json(path)
    except StoreError as exc:
        raise RunError(str(exc)) from None
    if not isinstance(unit, dict) or "result" not in unit or "key" not in unit:
        raise RunError(f"{path} is not an optbench analysis file (no key/result)")
    return unit


PER_OBJECTIVE = ("landscapes", "exploitation")
"""Analyses that look at all optimizers of an objective together: one unit per objective."""


def expected_units(run: RunData, kinds: tuple[str, ...] | list[str] = ANALYSES) -> list[tuple[str, str, str | None]]:
    """The units ``(kind, objective, optimizer or None)`` of ``kinds`` that apply to ``run``, in report
    order: one per stored cell group, or one per objective for :data:`PER_OBJECTIVE`; the Monte Carlo
    value check only on objectives from an agent package (their record names one)."""
    out: list[tuple[str, str, str | None]] = []
    for kind in ANALYSES:
        if kind not in kinds:
            continue
        for name in run.objectives:
            if kind in PER_OBJECTIVE:
                out.append((kind, name, None))
            elif kind != "rollouts" or run.records[name].get("info", {}).get("package") is not None:
                out += [(kind, name, g.optimizer) for g in run.mine(name)]
    return out


__all__ = ["ANALYSES", "ANALYSIS_DIR", "PER_OBJECTIVE", "RunData", "RunError", "analysis_path", "expected_units",
           "load_run", "read_analysis"]
