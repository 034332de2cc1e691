"""The results store: one directory per run, one JSON file per finished cell.

Layout of a run directory::

    run.json                    config (resolved suite + settings), its hash, versions, machine,
                                provenance (git commit, dirty flag, suite hash)
    objectives/NAME.json        per objective: sizes, α, β, start and reference values per state
    cells/OBJ__OPT__sSEED.json  per (objective, optimizer, seed): the anytime trace and costs
    failed/OBJ__OPT__sSEED.json a cell that failed (NaN/inf): its one-line error; removed when
                                a re-run computes the cell
    .lock                       while a run writes (see optbench.locks)

Why JSON files rather than SQLite: a cell is written once and never updated, so a file per
cell written atomically (temp file + fsync + ``os.replace``) gives crash safety without a
database; a killed run leaves only whole cells (and perhaps a temporary file, which the next
writer removes), and resuming is "skip the cells whose file exists". The files are readable
with any tool, diff cleanly in git for reference results, and need no schema migrations.
Floats are stored with 8 significant digits (float32).

A run directory is written by one process at a time: :func:`optbench.runner.grid.run_plan`
holds its :class:`~optbench.locks.DirectoryLock` from before ``run.json`` is read or written
until the run ends.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import torch

from optbench import backends
from optbench.fileio import remove_stale_temporaries, write_text_atomic

if TYPE_CHECKING:  # the store only reads a trace's fields; reading a run must not import the optimizers
    from optbench.runner.drive import Trace

FORMAT_VERSION = 1


class StoreError(ValueError):
    """A results directory that cannot be used for this run or read back."""


def atomic_write_json(path: Path, data: Any) -> None:
    """Write ``data`` as JSON so ``path`` holds either the old or the complete new content."""
    write_text_atomic(path, json.dumps(data, separators=(",", ":")))


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise StoreError(f"unreadable results file {path}: {exc}") from None


def compact(x: torch.Tensor | list | float) -> Any:
    """Tensor/list -> nested lists of floats with 8 significant digits."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().tolist()
    if isinstance(x, list):
        return [compact(v) for v in x]
    return float(f"{x:.8g}")


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.=,+-]+", "_", text).strip("_")


def config_hash(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:10]


def environment_info() -> dict[str, Any]:
    """Package versions and machine description recorded with every run."""
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for pkg in ("optbench", "torch", "numpy", "scipy", "cma", "nevergrad", "gymnasium", "mujoco"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = None
    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"python": platform.python_version(), "versions": versions, "platform": platform.platform(),
            "cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "backends": backends.state()}  # wall-clock figures depend on them


def _compact_costs(record: dict[str, Any]) -> dict[str, Any]:
    """A trace's cost fields (FLOPs, start cost, timing, kept estimates) with floats compacted."""
    out = dict(record)
    if out.get("flops") is not None:
        out["flops"] = compact(out["flops"])
    out["params_at"] = {k: compact(v) for k, v in (out.get("params_at") or {}).items()}
    return out


class ResultsStore:
    """A run directory. ``open`` creates it or checks that it holds the same config."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.created = False  # whether this process wrote run.json (see discard_if_empty)

    @classmethod
    def create_or_resume(cls, root: Path, config: dict[str, Any],
                         provenance: dict[str, Any] | None = None) -> "ResultsStore":
        """The store at ``root``: a new run (``run.json`` written with ``config``, the machine
        and ``provenance``) or the same run resumed. Refused if ``root`` holds another
        configuration, or the same one made from suite files that have changed since (their
        ``suite_hash`` differs). The caller holds the directory's lock."""
        store = cls(root)
        digest = config_hash(config)
        run_file = store.root / "run.json"
        if store.root.exists() and not store.root.is_dir():
            raise StoreError(f"{store.root} exists and is not a directory; choose another --out")
        for d in (store.root, *(store.root / sub for sub in ("objectives", "cells", "failed"))):
            remove_stale_temporaries(d)  # of a writer killed mid-write (we hold the lock)
        if run_file.exists():
            existing = read_json(run_file)
            if not isinstance(existing, dict) or existing.get("config_hash") != digest:
                raise StoreError(f"{store.root} holds a run with a different configuration "
                                 f"({existing.get('config_hash') if isinstance(existing, dict) else '?'} != {digest}); "
                                 "choose another --out")
            old = (existing.get("provenance") or {}).get("suite_hash")
            new = (provenance or {}).get("suite_hash")
            if old and new and old != new:
                raise StoreError(f"{store.root} was started from other versions of the suite's files (suite hash {old} "
                                 f"!= {new}); resuming would mix results of both; choose another --out")
        else:
            atomic_write_json(run_file, {"format": FORMAT_VERSION, "config_hash": digest, "config": config,
                                         "environment": environment_info(), "provenance": provenance})
            store.created = True
        return store

    def discard_if_empty(self) -> None:
        """Remove ``run.json`` again if this process wrote it and no objective, cell or failure
        was stored since (a run that failed before producing anything leaves nothing behind)."""
        if not self.created:
            return
        if any(any((self.root / d).glob("*.json")) for d in ("objectives", "cells", "failed")):
            return
        (self.root / "run.json").unlink(missing_ok=True)
        for d in ("objectives", "cells", "failed"):
            try:
                (self.root / d).rmdir()
            except OSError:
                pass
        self.created = False

    @classmethod
    def open_existing(cls, root: Path) -> "ResultsStore":
        store = cls(root)
        if not (store.root / "run.json").is_file():
            raise StoreError(f"{root} is not an optbench run directory (no run.json)")
        return store

    @property
    def run_info(self) -> dict[str, Any]:
        return read_json(self.root / "run.json")

    # ------------------------------------------------------------------ cells
    def cell_path(self, objective: str, optimizer: str, seed: int) -> Path:
        return self.root / "cells" / f"{slug(objective)}__{slug(optimizer)}__s{seed}.json"

    def has_cell(self, objective: str, optimizer: str, seed: int) -> bool:
        return self.cell_path(objective, optimizer, seed).is_file()

    def save_cell(self, objective: str, optimizer: str, seed: int, trace: Trace, meta: dict[str, Any]) -> None:
        self.failure_path(objective, optimizer, seed).unlink(missing_ok=True)
        atomic_write_json(self.cell_path(objective, optimizer, seed), {
            "objective": objective, "optimizer": optimizer, "seed": seed, **meta,
            "iterations": trace.iterations, "scores": compact(trace.scores),
            "final_params": compact(trace.final_params), "seconds": compact(trace.seconds),
            "q_evals": trace.q_evals, "grad_evals": trace.grad_evals, "extra": trace.extra,
            **_compact_costs(trace.cost_record()),
        })

    def cells(self) -> Iterator[dict[str, Any]]:
        for p in sorted((self.root / "cells").glob("*.json")):
            yield read_json(p)

    # ------------------------------------------------------------------ failed cells
    def failure_path(self, objective: str, optimizer: str, seed: int) -> Path:
        return self.root / "failed" / f"{slug(objective)}__{slug(optimizer)}__s{seed}.json"

    def save_failure(self, objective: str, optimizer: str, seed: int, message: str) -> None:
        """Record that a cell failed (its one-line error); it stays pending, so a re-run retries it."""
        atomic_write_json(self.failure_path(objective, optimizer, seed),
                          {"objective": objective, "optimizer": optimizer, "seed": seed, "error": message})

    def failures(self) -> list[dict[str, Any]]:
        """The failed cells that no later run has computed, in file order."""
        out = []
        for p in sorted((self.root / "failed").glob("*.json")):
            rec = read_json(p)
            if not self.has_cell(rec["objective"], rec["optimizer"], rec["seed"]):
                out.append(rec)
        return out

    # ------------------------------------------------------------------ objectives
    def objective_path(self, name: str) -> Path:
        return self.root / "objectives" / f"{slug(name)}.json"

    def save_objective(self, name: str, info: dict[str, Any]) -> None:
        atomic_write_json(self.objective_path(name), info)

    def objectives(self) -> dict[str, dict[str, Any]]:
        out = {}
        for p in sorted((self.root / "objectives").glob("*.json")):
            info = read_json(p)
            out[info["name"]] = info
        return out
