"""Learning curves of trained agents: collecting evaluation records from training runs, and
their aggregate statistics across seeds (SPEC R8: do more policy-optimization iterations give
better agents?).

**Records** (:func:`collect`): one per agent (training output directory), read from the
run's ``checkpoint.safetensors`` metadata (its ``eval_history``: every ``eval_every`` steps,
``eval_episodes`` deterministic episodes on the common evaluation seeds
``optbench.agents.trainer.EVAL_SEED``, per-episode returns kept) and its ``log.csv``
(wall clock)::

    {"task", "policy", "iterations" (0 for direct), "seed", "label", "run_dir",
     "steps": [s_1, ...], "episodes": E, "returns": [[E returns at s_1], ...],
     "wall_clock": {...}, "config": {...}, "versions": {...}}

A summary file holds records that are comparable: every record of a task has the same grid of
evaluation steps and the same number of episodes, and every evaluation carries its per-episode
returns. Evaluations without per-episode returns were written by the trainer before evaluations
used common seeds (each agent seed then had its own episodes), so they are refused, not mixed
in. Runs whose grids differ (e.g. runs still training) are refused unless ``common_grid`` is
set, which keeps the steps every run of the task has and records what was dropped.

**Statistics** (:func:`analyze`), rliable's conventions (:mod:`optbench.metrics.aggregates`):
a run is one agent seed; its score at an evaluation step is the mean of its evaluation
episodes' returns (the episodes are the same for every agent, so they are a fixed test set,
not a sample of runs); each configuration (task, policy, iterations) is one task of rliable's
score matrix ``[seeds, 1]``, so the stratified bootstrap resamples seeds. Per configuration:
the mean and the IQM across seeds at every step with pointwise 95 % percentile intervals,
the same at the final step with the per-seed values, and between configurations of a task the
probability of improvement ``P(X > Y)`` at the final step. Returns of different tasks are not
pooled (that would need normalized scores).
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from optbench.agents.checkpoint import CHECKPOINT_NAME, CheckpointError, load_checkpoint
from optbench.agents.trainer import EVAL_SEED
from optbench.metrics.aggregates import LEVEL, RLIABLE_REPS, improvement_interval, interval_estimate
from optbench.metrics.bootstrap import Interval

FORMAT = "optbench-learning-curves"
VERSION = 1
CONVENTION = ("run = one agent seed; a run's score at a step = mean return of its evaluation episodes (the same "
              "deterministic episodes, common seeds, for every agent); intervals: stratified bootstrap over seeds "
              "(rliable), percentile method; curves are pointwise")
RECORD_FIELDS = ("task", "policy", "iterations", "seed", "steps", "episodes", "returns")


class CurvesError(ValueError):
    """Training runs or records that cannot be collected or compared (one line)."""


# ====================================================================== records
def label_of(policy: str, iterations: int) -> str:
    """A configuration's name in tables and plots: ``direct`` or ``iterative-K``."""
    return "direct" if policy == "direct" else f"iterative-{iterations}"


def config_order(policy: str, iterations: int) -> tuple[int, int]:
    """Direct first, then iterative configurations by their number of iterations."""
    return (0 if policy == "direct" else 1, iterations)


def _read_log(run_dir: Path, upto: int) -> list[dict[str, float]]:
    rows = []
    try:
        with open(run_dir / "log.csv", newline="") as fh:
            for r in csv.DictReader(fh):
                try:
                    row = {k: float(r[k]) for k in ("step", "wall_time", "updates_per_s")}
                except (KeyError, TypeError, ValueError):
                    continue
                if row["step"] <= upto:
                    rows.append(row)
    except FileNotFoundError:
        pass
    return rows


def wall_clock(run_dir: Path, meta: dict) -> dict[str, Any]:
    """Wall clock per training step of a run: over the whole run (checkpoint ``wall_time`` /
    ``step``; includes the fast random-action steps and the evaluations) and, from ``log.csv``,
    over the learning phase only (steps after ``random_steps``: acting, one update per step,
    evaluations), with the median update rate of the log windows (update time only)."""
    step = int(meta.get("step", 0))
    total = float(meta.get("wall_time", 0.0))
    out: dict[str, Any] = {"wall_time_s": total, "steps": step,
                           "s_per_step": total / step if step > 0 else None,
                           "s_per_step_learning": None, "updates_per_s": None, "source": "checkpoint wall_time"}
    rows = _read_log(run_dir, step)
    random_steps = int(meta.get("config", {}).get("random_steps", 0))
    before = [r for r in rows if r["step"] <= random_steps]
    after = [r for r in rows if r["step"] > random_steps]
    if after:
        s0, t0 = (before[-1]["step"], before[-1]["wall_time"]) if before else (0.0, 0.0)
        if after[-1]["step"] > s0:
            out["s_per_step_learning"] = (after[-1]["wall_time"] - t0) / (after[-1]["step"] - s0)
        ups = [r["updates_per_s"] for r in after if math.isfinite(r["updates_per_s"])]
        out["updates_per_s"] = float(np.median(ups)) if ups else None
        out["source"] = "checkpoint wall_time; log.csv"
    return out


def read_run(run_dir: str | Path) -> dict[str, Any]:
    """The record of one training output directory (see the module docstring); one-line
    :class:`CurvesError` if it has no checkpoint, no evaluations, or evaluations without
    per-episode returns."""
    root = Path(run_dir).expanduser()
    if not (root / CHECKPOINT_NAME).is_file():
        raise CurvesError(f"{root} is not a training run directory (no {CHECKPOINT_NAME})")
    try:
        _, meta = load_checkpoint(root, with_tensors=False)
    except CheckpointError as exc:
        raise CurvesError(str(exc)) from None
    cfg = meta.get("config") or {}
    try:
        task, policy, seed = str(cfg["task"]), str(cfg["policy"]), int(cfg["seed"])
    except (KeyError, TypeError, ValueError):
        raise CurvesError(f"{root}: checkpoint metadata lacks the run configuration (task, policy, seed)") from None
    history = list(meta.get("eval_history") or [])
    if not history:
        raise CurvesError(f"{root} has no evaluations yet (first at step {cfg.get('eval_every', '?')} after "
                          f"{cfg.get('random_steps', '?')} random steps)")
    legacy = [int(e.get("step", -1)) for e in history if "returns" not in e]
    if legacy:
        raise CurvesError(f"{root}: evaluations at {_steps_text(legacy)} have no per-episode returns (written before "
                          f"every agent was evaluated on the same episodes); they are not comparable, leave the run out")
    steps = [int(e["step"]) for e in history]
    returns = [[float(r) for r in e["returns"]] for e in history]
    counts = sorted({len(r) for r in returns})
    if len(counts) != 1 or counts[0] < 1:
        raise CurvesError(f"{root}: evaluations have different episode counts ({counts}); not one evaluation protocol")
    rec = {"task": task, "policy": policy, "iterations": int(cfg.get("iterations", 0)) if policy == "iterative" else 0,
           "seed": seed, "label": "", "run_dir": str(root), "steps": steps, "episodes": counts[0], "returns": returns,
           "eval_seed": EVAL_SEED, "trained_steps": int(meta.get("step", 0)), "wall_clock": wall_clock(root, meta),
           "config": cfg, "versions": meta.get("versions", {})}
    rec["label"] = label_of(policy, rec["iterations"])
    check_record(rec, where=str(root))
    return rec


def _steps_text(steps: list[int]) -> str:
    return f"step {steps[0]}" if len(steps) == 1 else f"steps {steps[0]}..{steps[-1]} ({len(steps)})"


def check_record(rec: Any, where: str) -> None:
    """One record's fields and shapes (a hand-made summary is checked as strictly as a collected one)."""
    if not isinstance(rec, dict):
        raise CurvesError(f"{where}: a record must be a JSON object")
    missing = [k for k in RECORD_FIELDS if k not in rec]
    if missing:
        raise CurvesError(f"{where}: record lacks {', '.join(missing)}")
    if rec["policy"] not in ("direct", "iterative"):
        raise CurvesError(f"{where}: policy must be direct or iterative, got {rec['policy']!r}")
    try:
        iterations, episodes = int(rec["iterations"]), int(rec["episodes"])
        int(rec["seed"])
        steps = [int(s) for s in rec["steps"]]
        returns = np.asarray(rec["returns"], dtype=np.float64)
    except (TypeError, ValueError):
        raise CurvesError(f"{where}: iterations, seed, episodes must be integers, steps a list of integers and "
                          "returns a list of lists of numbers, one list per step") from None
    if (iterations == 0) != (rec["policy"] == "direct") or iterations < 0:
        raise CurvesError(f"{where}: iterations must be 0 for a direct agent and >= 1 for an iterative one, got "
                          f"{rec['policy']} with {iterations}")
    if not steps or any(b <= a for a, b in zip(steps, steps[1:])):
        raise CurvesError(f"{where}: steps must be a non-empty, strictly increasing list")
    if returns.ndim != 2 or returns.shape != (len(steps), episodes) or episodes < 1:
        raise CurvesError(f"{where}: returns must hold {episodes} per-episode returns for each of the {len(steps)} "
                          f"steps, got shape {list(returns.shape)}")
    if not np.isfinite(returns).all():
        raise CurvesError(f"{where}: returns must be finite numbers")


def _key(rec: dict) -> tuple[str, str, int]:
    return rec["task"], rec["policy"], int(rec["iterations"])


def check_comparable(records: list[dict], where: str) -> None:
    """Records that can be analyzed together: no agent twice; per task one grid of steps and one
    episode count; per configuration the same training settings (seed and step target aside)."""
    seen: dict[tuple, str] = {}
    for rec in records:
        k = (*_key(rec), int(rec["seed"]))
        name = rec.get("run_dir", f"{label_of(rec['policy'], int(rec['iterations']))} seed {rec['seed']}")
        if k in seen:
            raise CurvesError(f"{where}: {rec['task']} {label_of(k[1], k[2])} seed {k[3]} appears twice "
                              f"({seen[k]} and {name})")
        seen[k] = name
    by_task: dict[str, list[dict]] = defaultdict(list)
    for rec in records:
        by_task[rec["task"]].append(rec)
    for task, recs in by_task.items():
        ref = recs[0]
        for rec in recs[1:]:
            if [int(s) for s in rec["steps"]] != [int(s) for s in ref["steps"]]:
                raise CurvesError(f"{where}: {task} runs have different evaluation grids: {_grid_text(ref)} in "
                                  f"{_name(ref)}, {_grid_text(rec)} in {_name(rec)} (collect with --common-grid to "
                                  "keep the steps all runs share)")
            if int(rec["episodes"]) != int(ref["episodes"]):
                raise CurvesError(f"{where}: {task} runs have different evaluation episode counts: {ref['episodes']} "
                                  f"in {_name(ref)}, {rec['episodes']} in {_name(rec)}")
    by_config: dict[tuple, list[dict]] = defaultdict(list)
    for rec in records:
        by_config[_key(rec)].append(rec)
    for (task, policy, it), recs in by_config.items():
        cfgs = [r.get("config") for r in recs if isinstance(r.get("config"), dict)]
        if len(cfgs) < 2:
            continue
        differ = sorted(k for k in set().union(*cfgs) if k not in ("seed", "steps")
                        and len({json.dumps(c.get(k), sort_keys=True) for c in cfgs}) > 1)
        if differ:
            raise CurvesError(f"{where}: the {task} {label_of(policy, it)} runs differ in {', '.join(differ)}; "
                              "seeds of one configuration must share every other setting")


def _name(rec: dict) -> str:
    return str(rec.get("run_dir") or f"{rec['task']} {label_of(rec['policy'], int(rec['iterations']))} s{rec['seed']}")


def _grid_text(rec: dict) -> str:
    s = [int(x) for x in rec["steps"]]
    return f"{len(s)} steps {s[0]}..{s[-1]}"


def restrict_to_common_grid(records: list[dict]) -> tuple[list[dict], list[str], dict[str, Any]]:
    """Keep, per task, the evaluation steps every record of the task has. Returns the records,
    one warning line per record that lost steps, and what was dropped (for the summary)."""
    by_task: dict[str, list[dict]] = defaultdict(list)
    for rec in records:
        by_task[rec["task"]].append(rec)
    warnings, dropped, out = [], {}, []
    for task, recs in by_task.items():
        common = set.intersection(*(set(int(s) for s in r["steps"]) for r in recs))
        if not common:
            raise CurvesError(f"the {task} runs share no evaluation step; nothing to compare")
        for rec in recs:
            keep = [i for i, s in enumerate(rec["steps"]) if int(s) in common]
            lost = [int(s) for i, s in enumerate(rec["steps"]) if int(s) not in common]
            if lost:
                warnings.append(f"warning: {_name(rec)}: {_steps_text(lost)} left out (not evaluated in every {task} "
                                f"run); kept {len(keep)} common steps up to {max(common)}")
                dropped[_name(rec)] = lost
            out.append(dict(rec, steps=[int(rec["steps"][i]) for i in keep], returns=[rec["returns"][i] for i in keep]))
    return out, warnings, {"common_grid": True, "dropped": dropped}


def collect(run_dirs: list[str | Path], *, common_grid: bool = False, command: str = "") -> tuple[dict, list[str]]:
    """The summary document of training runs (records in configuration order) and its warnings."""
    if not run_dirs:
        raise CurvesError("no run directories given")
    records = [read_run(d) for d in run_dirs]
    warnings: list[str] = []
    restricted: dict[str, Any] | None = None
    if common_grid:
        records, warnings, restricted = restrict_to_common_grid(records)
    check_comparable(records, "runs")
    records.sort(key=lambda r: (r["task"], config_order(r["policy"], int(r["iterations"])), int(r["seed"])))
    doc = {"format": FORMAT, "format_version": VERSION, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
           "command": command, "convention": CONVENTION, "restricted": restricted, "records": records}
    return doc, warnings


def load_summary(path: str | Path) -> dict:
    """Read and check a summary file (collected, or written by hand in the same format)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise CurvesError(f"no summary file at {p}")
    try:
        doc = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CurvesError(f"{p} is not valid JSON ({type(exc).__name__})") from None
    if isinstance(doc, list):  # a bare list of records
        doc = {"records": doc}
    if not isinstance(doc, dict) or not isinstance(doc.get("records"), list) or not doc["records"]:
        raise CurvesError(f"{p} holds no records (expected {{\"records\": [...]}})")
    if doc.get("format", FORMAT) != FORMAT or doc.get("format_version", VERSION) != VERSION:
        raise CurvesError(f"{p} is {doc.get('format')} version {doc.get('format_version')}, expected {FORMAT} {VERSION}")
    for i, rec in enumerate(doc["records"]):
        check_record(rec, f"{p} record {i}")
    check_comparable(doc["records"], str(p))
    return doc


# ====================================================================== statistics
def _iv(iv: Interval) -> dict[str, float]:
    return {"estimate": iv.estimate, "low": iv.low, "high": iv.high}


def analyze(doc: dict, *, at: int | None = None, reps: int = RLIABLE_REPS, level: float = LEVEL,
            seed: int = 0) -> dict[str, Any]:
    """Every number of the learning-curve analysis of a checked summary (see the module docstring).

    ``at``: the step of the final-return table and of the probabilities of improvement (default:
    the last step of each task's grid; it must be on the grid of every task analyzed).
    Bootstrap: ``reps`` resamples, ``level`` intervals, each estimate drawn with ``seed``.
    """
    by_task: dict[str, list[dict]] = defaultdict(list)
    for rec in doc["records"]:
        by_task[rec["task"]].append(rec)
    out: dict[str, Any] = {"settings": {"reps": reps, "level": level, "seed": seed, "convention": CONVENTION,
                                        "method": "percentile", "estimator_source": "rliable definitions "
                                        "(optbench.metrics.aggregates)"}, "tasks": {}}
    for task in sorted(by_task):
        recs = by_task[task]
        steps = [int(s) for s in recs[0]["steps"]]
        final = steps[-1] if at is None else int(at)
        if final not in steps:
            raise CurvesError(f"step {final} is not on the {task} evaluation grid ({steps[0]}..{steps[-1]}, "
                              f"{len(steps)} steps)")
        fi = steps.index(final)
        groups: dict[tuple, list[dict]] = defaultdict(list)
        for rec in recs:
            groups[(rec["policy"], int(rec["iterations"]))].append(rec)
        configs, finals = [], {}
        for policy, it in sorted(groups, key=lambda k: config_order(*k)):
            g = sorted(groups[(policy, it)], key=lambda r: int(r["seed"]))
            scores = np.array([np.asarray(r["returns"], dtype=np.float64).mean(axis=1) for r in g])  # [seeds, steps]
            label = label_of(policy, it)
            curve = {name: [_iv(iv) for iv in interval_estimate(scores[:, None, :], name, reps=reps, level=level,
                                                                  seed=seed)] for name in ("mean", "iqm")}
            fin = scores[:, fi][:, None]
            finals[label] = fin
            wc = [r.get("wall_clock") or {} for r in g]
            configs.append({
                "label": label, "policy": policy, "iterations": it, "seeds": [int(r["seed"]) for r in g],
                "n_seeds": len(g), "curve": curve,
                "final": {"step": final, "per_seed": {str(r["seed"]): float(v) for r, v in zip(g, fin[:, 0])},
                          "mean": _iv(interval_estimate(fin, "mean", reps=reps, level=level, seed=seed)),
                          "iqm": _iv(interval_estimate(fin, "iqm", reps=reps, level=level, seed=seed))},
                "wall_clock": {k: _mean_or_none([w.get(k) for w in wc]) for k in
                               ("s_per_step", "s_per_step_learning", "updates_per_s")},
                "wall_clock_per_seed": {str(r["seed"]): r.get("wall_clock") for r in g},
                "iqm_is_mean": len(g) < 4,
            })
        improvement = []
        labels = [c["label"] for c in configs]
        for i, y in enumerate(labels):
            for x in labels[i + 1:]:
                iv = improvement_interval(finals[x], finals[y], reps=reps, level=level, seed=seed)
                improvement.append({"x": x, "y": y, "step": final, **_iv(iv)})
        out["tasks"][task] = {"steps": steps, "episodes": int(recs[0]["episodes"]), "final_step": final,
                              "configurations": configs, "improvement": improvement,
                              "setting_differences": _setting_differences(recs)}
    return out


def _mean_or_none(values: list[Any]) -> float | None:
    v = [float(x) for x in values if isinstance(x, (int, float)) and math.isfinite(float(x))]
    return float(np.mean(v)) if v else None


def _setting_differences(recs: list[dict]) -> dict[str, dict[str, Any]]:
    """Training settings that differ between the configurations of a task, besides the policy
    and its iterations (seeds and step targets aside): what else a comparison also compares."""
    cfg_of: dict[str, dict] = {}
    for r in recs:
        if isinstance(r.get("config"), dict):
            cfg_of.setdefault(label_of(r["policy"], int(r["iterations"])), r["config"])
    if len(cfg_of) < 2:
        return {}
    keys = sorted(set().union(*cfg_of.values()) - {"seed", "steps", "policy", "iterations"})
    out = {}
    for k in keys:
        vals = {lab: c.get(k) for lab, c in cfg_of.items()}
        if len({json.dumps(v, sort_keys=True) for v in vals.values()}) > 1:
            out[k] = vals
    return out


__all__ = ["CONVENTION", "CurvesError", "FORMAT", "VERSION", "analyze", "check_comparable", "check_record", "collect",
           "config_order", "label_of", "load_summary", "read_run", "restrict_to_common_grid", "wall_clock"]
