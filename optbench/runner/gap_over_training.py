"""The amortization gap over training (SPEC R3 measured at snapshots of one training run).

For each chosen snapshot ``OUT/snapshots/step-NNNNNNNN.safetensors`` of a run:

1. its objective is built as ``optbench export`` builds a package (in a temporary directory):
   the snapshot's Q-ensemble and temperature, on states visited by the snapshot's own
   deterministic policy (``export_package``, benchmark split), scored as the
   ``mujoco-states`` suite scores package objectives (``states``, ``score_samples``,
   ``score_seed``, ``β = 1``);
2. the agent's own optimizer runs at the budget it was trained with, as a suite cell runs it
   (``run_optimizer``): ``direct`` for one iteration (one forward pass), ``iterative`` for its
   training iterations, once per optimizer seed;
3. its final estimates go to :func:`optbench.runner.experiments.amortization_gap`, the protocol of
   ``optbench analyze`` (Adam from each estimate, lr 5e-3, 100 steps, 10 samples by default;
   per-state gap averaged over optimizer seeds; mean over states with a bootstrap interval
   over states).

The result document (one run, several steps) is written after every snapshot, and a re-run
with the same protocol reuses the steps already measured.
"""

from __future__ import annotations

import json
import re
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from optbench.agents.checkpoint import CheckpointError, load_checkpoint
from optbench.agents.package import export_package, load_package
from optbench.agents.trainer import SNAPSHOT_DIR
from optbench.metrics.gap import GAP_LR, GAP_SAMPLES, GAP_STEPS
from optbench.metrics.learning_curves import CurvesError, label_of
from optbench.optimizers.base import make_optimizer
from optbench.runner.drive import run_optimizer
from optbench.runner.experiments import amortization_gap
from optbench.runner.store import atomic_write_json

FORMAT = "optbench-gap-over-training"
VERSION = 1
STATES = 100  # the mujoco-states suite: 100 benchmark states per agent
SCORE_SAMPLES = 128  # its scoring draws per state
SCORE_SEED = 12345  # its scoring seed (suite default)
EXPORT_SEED = 2024  # `optbench export`'s default first episode seed of the state collection
_SNAPSHOT = re.compile(r"step-(\d+)\.safetensors$")


def snapshots(run_dir: str | Path) -> dict[int, Path]:
    """The run's snapshots by training step."""
    root = Path(run_dir).expanduser()
    out = {}
    for p in sorted((root / SNAPSHOT_DIR).glob("step-*.safetensors")):
        m = _SNAPSHOT.search(p.name)
        if m:
            out[int(m.group(1))] = p
    return out


def protocol(*, states: int = STATES, score_samples: int = SCORE_SAMPLES, score_seed: int = SCORE_SEED,
             export_seed: int = EXPORT_SEED, optimizer_seeds: tuple[int, ...] = (0,), gap_lr: float = GAP_LR,
             gap_steps: int = GAP_STEPS, gap_samples: int = GAP_SAMPLES, gap_seed: int = 0, resamples: int = 2000,
             level: float = 0.95) -> dict[str, Any]:
    """Every setting a measurement depends on (two results are comparable when these agree)."""
    for name, v in (("states", states), ("score_samples", score_samples), ("gap_samples", gap_samples),
                    ("resamples", resamples)):
        if v < 1:
            raise CurvesError(f"{name.replace('_', '-')} must be >= 1, got {v}")
    if gap_steps < 0 or gap_lr <= 0:
        raise CurvesError(f"gap steps must be >= 0 and gap lr > 0, got {gap_steps} and {gap_lr}")
    if not optimizer_seeds:
        raise CurvesError("at least one optimizer seed is needed")
    if not 0 < level < 1:
        raise CurvesError(f"level must be in (0, 1), got {level}")
    return {"states": states, "split": "benchmark", "beta": 1.0, "score_samples": score_samples,
            "score_seed": score_seed, "export_seed": export_seed, "optimizer_seeds": list(optimizer_seeds),
            "gap_lr": gap_lr, "gap_steps": gap_steps, "gap_samples": gap_samples, "gap_seed": gap_seed,
            "resamples": resamples, "level": level}


def snapshot_gap(snapshot: str | Path, proto: dict[str, Any], device: str = "cpu") -> dict[str, Any]:
    """The amortization gap of one snapshot's optimizer at its trained budget (module docstring)."""
    _, meta = load_checkpoint(snapshot, with_tensors=False)
    cfg = meta["config"]
    step = int(meta["step"])
    tic = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="optbench-gap-") as tmp:
        # heldout 1 and 2 episodes: the smallest package export allows (the held-out split is not used)
        export_package(snapshot, Path(tmp) / "package", n_states=proto["states"], heldout=1, eval_episodes=2,
                       seed=proto["export_seed"], device=device)
        pkg = load_package(Path(tmp) / "package")
    objective = pkg.objective(proto["split"], beta=proto["beta"], n_states=proto["states"],
                              score_samples=proto["score_samples"], score_seed=proto["score_seed"], device=device)
    policy = str(cfg["policy"])
    budget = 1 if policy == "direct" else int(cfg["iterations"])
    optimizer = make_optimizer(policy, package=pkg)
    finals = [run_optimizer(optimizer, objective, budget, seed=s, score_at=[budget]).final_params
              for s in proto["optimizer_seeds"]]
    params = torch.stack(finals)  # [R, B, 2A]
    res = amortization_gap(objective, params, lr=proto["gap_lr"], steps=proto["gap_steps"],
                           samples=proto["gap_samples"], seed=proto["gap_seed"], optimizer=optimizer.label())
    iv = res.interval(resamples=proto["resamples"], level=proto["level"], seed=proto["gap_seed"])
    start = objective.score(objective.initial_params()).double().cpu().numpy()
    evals = {int(e["step"]): e for e in meta.get("eval_history", [])}
    ev = evals.get(step)
    return {"step": step, "snapshot": str(snapshot), "optimizer": optimizer.label(), "budget": budget,
            "alpha": pkg.alpha, "J_start": float(start.mean()), "J_before": float(res.before.mean()),
            "J_after": float(res.after.mean()), "gap": {"estimate": iv.estimate, "low": iv.low, "high": iv.high},
            "gap_per_state_sd": float(np.std(res.gap)),
            "eval_return": float(np.mean(ev["returns"])) if ev and ev.get("returns") else None,
            "seconds": time.perf_counter() - tic}


def gap_out_path(out_dir: str | Path, meta: dict) -> Path:
    """``OUT/gap-<task>-<configuration>-s<seed>.json`` (the analysis finds these files)."""
    cfg = meta["config"]
    it = int(cfg.get("iterations", 0)) if cfg["policy"] == "iterative" else 0
    return Path(out_dir).expanduser() / f"gap-{cfg['task']}-{label_of(cfg['policy'], it)}-s{int(cfg['seed'])}.json"


def gap_over_training(run_dir: str | Path, steps: list[int] | None, out_dir: str | Path, proto: dict[str, Any], *,
                      device: str = "cpu", command: str = "", log: Callable[[str], None] = lambda m: None) -> Path:
    """Measure :func:`snapshot_gap` at ``steps`` (``None``: every snapshot) of a run and write
    the document to :func:`gap_out_path` after every step; returns its path."""
    root = Path(run_dir).expanduser()
    snaps = snapshots(root)
    if not snaps:
        raise CurvesError(f"{root} has no snapshots (snapshots/step-*.safetensors are written at every evaluation "
                          "by the trainer)")
    chosen = sorted(snaps) if steps is None else sorted(set(steps))
    missing = [s for s in chosen if s not in snaps]
    if missing:
        raise CurvesError(f"{root} has no snapshot at step {', '.join(map(str, missing))} (snapshots at "
                          f"{', '.join(map(str, sorted(snaps)))})")
    try:
        _, meta = load_checkpoint(snaps[chosen[-1]], with_tensors=False)
    except CheckpointError as exc:
        raise CurvesError(str(exc)) from None
    cfg = meta["config"]
    path = gap_out_path(out_dir, meta)
    doc = {"format": FORMAT, "format_version": VERSION, "task": cfg["task"], "policy": cfg["policy"],
           "iterations": int(cfg["iterations"]) if cfg["policy"] == "iterative" else 0, "seed": int(cfg["seed"]),
           "run_dir": str(root), "protocol": proto, "command": command, "results": []}
    done: dict[int, dict] = {}
    if path.exists():
        try:
            old = json.loads(path.read_text())
            if old.get("protocol") == proto and old.get("run_dir") == str(root):
                done = {int(r["step"]): r for r in old.get("results", [])}
        except (OSError, ValueError, KeyError, TypeError):
            done = {}
    doc["results"] = sorted(done.values(), key=lambda r: r["step"])
    for s in chosen:
        if s in done:
            log(f"step {s}: measured before, kept")
            continue
        try:
            r = snapshot_gap(snaps[s], proto, device)
        except CheckpointError as exc:
            raise CurvesError(str(exc)) from None
        log(f"step {s}: gap {r['gap']['estimate']:.4g} [{r['gap']['low']:.4g}, {r['gap']['high']:.4g}] "
            f"({r['seconds']:.0f} s)")
        done[s] = r
        doc["results"] = sorted(done.values(), key=lambda r: r["step"])
        doc["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        atomic_write_json(path, doc)
    if not path.exists():
        atomic_write_json(path, doc)
    return path


def load_gap_files(paths: list[Path]) -> list[dict]:
    """Gap documents for the analysis; a file that is not one is a one-line error."""
    docs = []
    for p in paths:
        try:
            d = json.loads(Path(p).read_text())
            assert d.get("format") == FORMAT and d.get("format_version") == VERSION
            for k in ("task", "policy", "iterations", "seed", "protocol", "results"):
                assert k in d
        except (OSError, ValueError, AssertionError, AttributeError):
            raise CurvesError(f"{p} is not an {FORMAT} version {VERSION} file") from None
        docs.append(d)
    return docs


__all__ = ["EXPORT_SEED", "FORMAT", "SCORE_SAMPLES", "SCORE_SEED", "STATES", "VERSION", "gap_out_path",
           "gap_over_training", "load_gap_files", "protocol", "snapshot_gap", "snapshots"]
