"""Exported objective packages: a trained agent's frozen objective, self-described.

A package is a directory::

    package.json          task, dims, α, β's, architectures, training summary, evaluation
                          return, state splits, sha256 + size of every file, versions
    q.safetensors         the Q-ensemble (the agent's current critic; QEnsemble layout)
    direct.safetensors    the direct actor (direct agents) or the KL-distilled direct
                          rollout network (iterative agents trained with models), if any
    iterative.safetensors the iterative amortized optimizer network (iterative agents)
    models.safetensors    dynamics (prefix ``dynamics.``) and reward (``reward.``) models, if trained
    states.safetensors    ``benchmark`` [N, S] and ``heldout`` [M, S] on-policy states from
                          deterministic evaluation episodes (disjoint episodes), with their
                          MuJoCo ``*_qpos``/``*_qvel`` and ``*_episode`` index

Everything is float32 safetensors + JSON: loading never executes code. :func:`load_package`
verifies every checksum, field and shape and raises :class:`PackageError` (one line, naming
the file and the field) otherwise. Since format version 2, ``package.json`` carries a
``digest`` of its own (sha256 of the rest of the document in canonical form), so an edited
task, α or size is refused like a modified tensor file; version-1 documents (no digest:
packages exported before, and optimizer packages written by ``optbench train-optimizer``)
still load, their files verified.

:func:`load_package` also reads **optimizer packages** (format ``optbench-optimizer-package``,
written by ``optbench train-optimizer``, see :mod:`optbench.agents.meta_training`): the same
``package.json`` conventions and ``files`` checksums, but only ``iterative.safetensors`` and
``direct.safetensors`` (no Q-ensemble, α or states). They load as an :class:`AgentPackage`
with ``q = None`` and no states, usable by the ``iterative``/``direct`` optimizers only.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors import safe_open

from optbench.agents.checkpoint import load_checkpoint
from optbench.agents.envs import make_env
from optbench.agents.evaluate import run_episodes
from optbench.agents.models import DynamicsModel, ModelBasedQ, RewardModel, check_model_based_params
from optbench.agents.trainer import agent_from_checkpoint, versions
from optbench.fileio import save_safetensors_atomic, write_text_atomic
from optbench.optimizers.networks import LOG_STD_MAX, LOG_STD_MIN, DirectActor, IterativeOptimizerNet
from optbench.objectives.policy_objective import PolicyObjective
from optbench.objectives.q_functions import QEnsemble
from optbench.optimizers.amortized import register_package_reader

FORMAT = "optbench-objective-package"
OPTIMIZER_FORMAT = "optbench-optimizer-package"
VERSION = 1  # package.json without a digest of its own (still read, see the module docstring)
SEALED_VERSION = 2  # package.json with "digest", see seal_document
MAX_STATE_EPISODES = 500


class PackageError(ValueError):
    """A missing, modified, truncated or mismatched objective package."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def document_digest(doc: dict) -> str:
    """sha256 of a ``package.json`` document in canonical form, without its ``digest``."""
    body = {k: v for k, v in doc.items() if k != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def seal_document(doc: dict) -> dict:
    """``doc`` as format version 2: with the ``digest`` that :func:`load_package` verifies."""
    doc = json.loads(json.dumps(dict(doc, format_version=SEALED_VERSION)))
    doc["digest"] = document_digest(doc)
    return doc


# ---------------------------------------------------------------------- export
def check_out_dir(out_dir: str | Path, overwrite: bool = False) -> Path:
    """The package directory to write: refused (one line) if it exists, is not empty and
    ``overwrite`` is false."""
    out = Path(out_dir).expanduser()
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise PackageError(f"{out} exists and is not empty (use --force to overwrite)")
    return out


def collect_states(policy, task: str, n_states: int, heldout: int, eval_episodes: int,
                   seed: int) -> tuple[dict[str, torch.Tensor], list[float]]:
    """On-policy states of ``policy(obs) -> action in [-1, 1]^A`` from deterministic episodes.

    Episode ``i`` is reset with ``seed + i``; even episodes give the ``benchmark`` states,
    odd ones the ``heldout`` states (disjoint episodes), each a random subset of its pool of
    the requested size, with MuJoCo ``*_qpos``/``*_qvel`` and the ``*_episode`` index. Returns
    the tensors of ``states.safetensors`` and the returns of the first ``eval_episodes``
    episodes (the package's recorded evaluation)."""
    if n_states < 1 or heldout < 1:
        raise PackageError(f"--states and --heldout must be >= 1, got {n_states} and {heldout}")
    torch.manual_seed(seed)
    pools: dict[str, list] = {"benchmark": [], "heldout": []}
    need = {"benchmark": n_states, "heldout": heldout}
    returns: list[float] = []
    ep = 0
    env = make_env(task)
    try:
        while ep < eval_episodes or any(sum(len(r.states) for r in pools[k]) < need[k] for k in pools):
            if ep >= MAX_STATE_EPISODES:
                raise PackageError(f"could not collect {n_states}+{heldout} states in {MAX_STATE_EPISODES} episodes")
            res = run_episodes(policy, task, 1, seed=seed + ep, record_states=True, env=env)
            if ep < eval_episodes:
                returns.append(res.returns[0])
            res.episode_index = [ep] * len(res.states)
            pools["benchmark" if ep % 2 == 0 else "heldout"].append(res)
            ep += 1
    finally:
        env.close()
    rng = np.random.default_rng(seed)
    state_tensors: dict[str, torch.Tensor] = {}
    for split, results in pools.items():
        states = np.concatenate([np.stack(r.states) for r in results])
        episode = np.concatenate([np.asarray(r.episode_index) for r in results])
        idx = np.sort(rng.choice(len(states), size=need[split], replace=False))
        state_tensors[split] = torch.as_tensor(states[idx], dtype=torch.float32)
        state_tensors[f"{split}_episode"] = torch.as_tensor(episode[idx], dtype=torch.int64)
        if results[0].qpos:
            qpos = np.concatenate([np.stack(r.qpos) for r in results])
            qvel = np.concatenate([np.stack(r.qvel) for r in results])
            state_tensors[f"{split}_qpos"] = torch.as_tensor(qpos[idx], dtype=torch.float64)
            state_tensors[f"{split}_qvel"] = torch.as_tensor(qvel[idx], dtype=torch.float64)
    return state_tensors, returns


def states_and_eval_doc(state_tensors: dict[str, torch.Tensor], returns: list[float], seed: int) -> dict:
    """The ``eval`` and ``states`` entries of ``package.json`` for :func:`collect_states`' output."""
    return {
        "eval": {"episodes": len(returns), "mean": float(np.mean(returns)), "std": float(np.std(returns)),
                 "returns": returns, "seed": seed, "deterministic": True},
        "states": {"benchmark": len(state_tensors["benchmark"]), "heldout": len(state_tensors["heldout"]),
                   "source": "deterministic evaluation episodes",
                   "split": "episodes alternate: even -> benchmark, odd -> heldout (disjoint episodes)",
                   "has_mujoco_state": "benchmark_qpos" in state_tensors},
    }


def f32_state_dict(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU float32 contiguous copies of a state dict's tensors (what packages hold)."""
    return {k: v.detach().to(device="cpu", dtype=torch.float32).contiguous() for k, v in sd.items()}


def write_package(out_dir: str | Path, files: dict[str, dict[str, torch.Tensor]], doc: dict,
                  overwrite: bool = False) -> Path:
    """Write ``files`` (safetensors name -> tensors) and ``package.json`` (``doc`` plus the
    files' checksums) into ``out_dir``, atomically: a ``.partial`` directory renamed into place.

    A failed write (full disk, Ctrl-C, ...) leaves no partial package, and a package being
    replaced (``overwrite``) stays whole until the new one is complete (it is moved aside to
    ``.old`` for the moment of the swap and removed after); a ``.partial`` or ``.old`` directory
    left by a killed export is removed by the next one."""
    out = Path(out_dir).expanduser()
    tmp, old = out.with_name(out.name + ".partial"), out.with_name(out.name + ".old")
    if old.is_dir() and not out.exists():  # killed in the middle of a swap: the old package is the one to keep
        os.replace(old, out)
    out = check_out_dir(out_dir, overwrite)
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        for name, tens in files.items():
            save_safetensors_atomic(tmp / name, tens, mode=0o644)
        doc = {**doc, "files": {name: {"sha256": sha256_file(tmp / name), "bytes": (tmp / name).stat().st_size}
                                for name in files}}
        write_text_atomic(tmp / "package.json", json.dumps(seal_document(doc), indent=2) + "\n", mode=0o644)
        if out.exists():
            os.replace(out, old)
        os.replace(tmp, out)
    except BaseException:  # a failed export (full disk, Ctrl-C, ...) leaves no partial package behind
        shutil.rmtree(tmp, ignore_errors=True)
        if old.is_dir() and not out.exists():
            os.replace(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return out


def export_package(checkpoint: str | Path, out_dir: str | Path, *, n_states: int = 1000, heldout: int | None = None,
                   eval_episodes: int = 10, seed: int = 2024, task: str | None = None,
                   overwrite: bool = False, device: str | torch.device = "cpu") -> Path:
    """Write the objective package of a checkpoint (see the module docstring).

    ``device``: where the agent runs its evaluation episodes; the package holds CPU float32
    tensors whatever the device."""
    if n_states < 1:
        raise PackageError(f"--states must be >= 1, got {n_states}")
    heldout = n_states if heldout is None else heldout
    tensors, meta = load_checkpoint(checkpoint, task=task)
    agent = agent_from_checkpoint(tensors, meta, device)
    cfg = agent.cfg
    check_out_dir(out_dir, overwrite)

    # -- states from deterministic evaluation episodes; even episodes -> benchmark, odd -> heldout
    policy = lambda o: agent.act(o, deterministic=True)  # noqa: E731
    state_tensors, returns = collect_states(policy, cfg.task, n_states, heldout, eval_episodes, seed)

    f32 = f32_state_dict
    files = {"q.safetensors": f32(agent.q.state_dict()), "states.safetensors": state_tensors}
    arch: dict = {"q": {"kind": "QEnsemble", "state_dim": agent.state_dim, "action_dim": agent.action_dim,
                        "hidden": list(agent.q.hidden), "ensemble_size": agent.q.ensemble_size, "activation": "relu",
                        "source": "current critic (not the Polyak target)"}}
    direct_net = agent.actor if cfg.policy == "direct" else agent.distilled
    if direct_net is not None:
        files["direct.safetensors"] = f32(direct_net.state_dict())
        arch["direct"] = dict(direct_net.architecture(),
                              source="SAC actor" if cfg.policy == "direct" else "distilled from the iterative policy by KL")
    if cfg.policy == "iterative":
        files["iterative.safetensors"] = f32(agent.actor.state_dict())
        arch["iterative"] = dict(agent.actor.architecture(), iterations_trained=cfg.iterations,
                                 grad_samples=cfg.grad_samples, beta_train=cfg.beta_train,
                                 q_used="target ensemble (frozen)")
    if agent.dynamics is not None:
        files["models.safetensors"] = f32({**{f"dynamics.{k}": v for k, v in agent.dynamics.state_dict().items()},
                                           **{f"reward.{k}": v for k, v in agent.reward.state_dict().items()}})
        arch["dynamics"], arch["reward"] = agent.dynamics.architecture(), agent.reward.architecture()
    doc = {
        "format": FORMAT, "format_version": VERSION, "task": cfg.task, "policy": cfg.policy,
        "state_dim": agent.state_dim, "action_dim": agent.action_dim, "alpha": float(agent.alpha),
        "log_alpha": float(agent.log_alpha.detach()), "gamma": cfg.gamma,
        "beta": {"objective_default": 1.0, "train": cfg.beta_train, "act": cfg.beta_act},
        "architectures": arch,
        "training": {"steps": int(meta["step"]), "updates": agent.updates, "episodes": int(meta["episodes"]),
                     "seed": cfg.seed, "config": cfg.to_dict(), "wall_time_s": float(meta.get("wall_time", 0.0)),
                     "eval_history": meta.get("eval_history", [])},
        **states_and_eval_doc(state_tensors, returns, seed),
        "versions": versions(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return write_package(out_dir, files, doc, overwrite)


# ---------------------------------------------------------------------- load
@dataclass
class AgentPackage:
    """A loaded objective package (all tensors on CPU, float32), or an optimizer package
    (``q`` None, no states: networks only)."""

    path: Path
    meta: dict
    q: QEnsemble | None
    states: dict[str, torch.Tensor]
    direct: DirectActor | None = None
    iterative: IterativeOptimizerNet | None = None
    dynamics: DynamicsModel | None = None
    reward: RewardModel | None = None
    state_info: dict[str, torch.Tensor] = field(default_factory=dict)  # *_qpos, *_qvel, *_episode per split

    @property
    def task(self) -> str:
        return self.meta["task"]

    @property
    def state_dim(self) -> int:
        return int(self.meta["state_dim"])

    @property
    def action_dim(self) -> int:
        return int(self.meta["action_dim"])

    @property
    def alpha(self) -> float:
        return float(self.meta["alpha"])

    @property
    def is_optimizer_package(self) -> bool:
        return self.meta.get("format") == OPTIMIZER_FORMAT

    @property
    def name(self) -> str:
        if self.is_optimizer_package or "name" in self.meta:  # optimizer packages and imported agents
            return str(self.meta.get("name", self.path.name))
        t = self.meta["training"]
        return f"{self.task}-{self.meta['policy']}-s{t['seed']}"

    @property
    def trained_on(self) -> list[str]:
        """The agents whose Q-functions trained this package's networks: the agent itself, or a
        meta-trained optimizer's source agents (transfer tables tell in-distribution from transfer)."""
        if self.is_optimizer_package:
            return sorted({str(s["agent"]) for s in self.meta.get("sources", [])})
        return [self.name]

    @property
    def trained_by(self) -> str:
        return "meta-training" if self.is_optimizer_package else "SAC"

    def objective(self, split: str = "benchmark", beta: float = 1.0, n_states: int | None = None,
                  score_samples: int = 1000, score_seed: int = 0, device: str | torch.device = "cpu") -> PolicyObjective:
        """The frozen soft policy objective on the first ``n_states`` states of ``split``."""
        if self.q is None:
            raise PackageError(f"{self.path} is an optimizer package (networks only, no Q-function or states); "
                               f"use it as an optimizer, e.g. iterative(package='{self.path}')")
        if split not in self.states:
            raise PackageError(f"package {self.path} has no state split {split!r} (has {sorted(self.states)})")
        states = self.states[split]
        if n_states is not None:
            if not 1 <= n_states <= len(states):
                raise PackageError(f"n_states must be in 1..{len(states)} for split {split!r}, got {n_states}")
            states = states[:n_states]
        q = self.q.to(device)
        return PolicyObjective(q, states.to(device), self.alpha, beta=beta, score_samples=score_samples,
                               score_seed=score_seed, name=f"{self.name}:{split}")


    def model_based_objective(self, split: str = "benchmark", beta: float = 1.0, n_states: int | None = None,
                              score_samples: int = 1000, score_seed: int = 0, horizon: int = 2, lam: float = 0.9,
                              value_samples: int = 8, device: str | torch.device = "cpu") -> PolicyObjective:
        """The objective with the model-based Retrace estimate ``Q_MB`` (App. A.5) in place of ``Q̂``.

        ``horizon`` = ``h`` model steps (the Retrace sum over ``k = 0..h−1``; seed 000's
        ``h_paper`` is ``h − 1``), ``lam`` the Retrace λ, ``value_samples`` the fixed draws of
        each ``V(s_{k+1})``. ``horizon = 0`` is exactly :meth:`objective` (same states, scoring
        draws, values). Needs the package's dynamics and reward models and its direct (or
        distilled) rollout network. Each (s, a) pair the objective evaluates is counted as
        ``q.q_evals_per_pair`` Q-ensemble evaluations in its ledger.
        """
        missing = [what for what, m in (("dynamics model", self.dynamics), ("reward model", self.reward),
                                        ("direct rollout network", self.direct)) if m is None]
        if missing:
            raise PackageError(f"package {self.path} has no {' / '.join(missing)}: a model-based objective needs "
                               f"an agent trained with models (optbench train without --no-models)")
        try:
            check_model_based_params(horizon, lam, value_samples)
        except ValueError as exc:
            raise PackageError(str(exc)) from None
        obj = self.objective(split, beta, n_states, score_samples, score_seed, device)
        gamma = float(self.meta.get("gamma", 0.99))
        q_mb = ModelBasedQ(self.q, self.dynamics, self.reward, self.direct, self.alpha, beta=beta, gamma=gamma,
                           lam=lam, horizon=horizon, value_samples=value_samples).to(device)
        return PolicyObjective(q_mb, obj.states, self.alpha, beta=beta, score_seed=score_seed,
                               name=f"{self.name}:{split}:model-based(h={horizon},lam={lam:g})",
                               score_noise=obj.score_noise)


def _read(path: Path) -> dict[str, torch.Tensor]:
    try:
        with safe_open(str(path), framework="pt") as fh:
            return {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PackageError(f"{path} is not a readable safetensors file ({first})") from None


def _check_tensors(module: torch.nn.Module, sd: dict[str, torch.Tensor], what: str, path: Path) -> None:
    """The tensors of a file match a module's parameters and buffers (names and shapes)."""
    own = module.state_dict()
    if set(own) != set(sd):
        missing, extra = sorted(set(own) - set(sd)), sorted(set(sd) - set(own))
        raise PackageError(f"{path}: {what} tensors do not match its architecture (missing {missing[:3]}, "
                           f"unexpected {extra[:3]})")
    for k, v in own.items():
        if tuple(sd[k].shape) != tuple(v.shape):
            raise PackageError(f"{path}: {what} tensor {k} has shape {list(sd[k].shape)}, expected {list(v.shape)}")


def _load_module(module: torch.nn.Module, sd: dict[str, torch.Tensor], what: str, path: Path) -> None:
    own = module.state_dict()
    _check_tensors(module, sd, what, path)
    module.load_state_dict({k: v.to(own[k].dtype) for k, v in sd.items()})
    module.requires_grad_(False)
    module.eval()


def _build_module(factory: Callable[[], torch.nn.Module], sd: dict[str, torch.Tensor], what: str, path: Path,
                  doc_path: Path) -> torch.nn.Module:
    """The module ``factory`` builds from ``package.json``'s architecture, loaded from ``sd``.

    The architecture is first built on torch's ``meta`` device (shapes only, no memory) and
    checked against the file's tensors, so a ``package.json`` that declares huge layers is
    refused before anything is allocated; the real module is then only as large as the
    (checksummed) file."""
    try:
        with torch.device("meta"):
            probe = factory()
    except (TypeError, ValueError, OverflowError, RuntimeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PackageError(f"{doc_path}: {what} architecture: {first}") from None
    _check_tensors(probe, sd, what, path)
    module = factory()
    _load_module(module, sd, what, path)
    return module


_MISSING = object()


class _Doc:
    """Checked access to the fields of a ``package.json``: every error names the file and the
    field (``architectures.q.hidden``), and says what was expected."""

    def __init__(self, doc: dict, path: Path):
        self.doc, self.path = doc, path

    def get(self, dotted: str, kind: str, default: object = _MISSING):
        """The field at ``dotted``, checked as ``kind``: ``dim`` (a positive integer), ``hidden``
        (a non-empty list of positive integers), ``number`` (finite), ``nonnegative``
        (finite, >= 0), ``table`` (a JSON object) or ``any``."""
        value: object = self.doc
        for key in dotted.split("."):
            if not isinstance(value, dict) or key not in value:
                if default is not _MISSING:
                    return default
                raise PackageError(f"{self.path}: missing field {dotted!r}")
            value = value[key]
        ok = {
            "dim": lambda v: _is_int(v) and v >= 1,
            "hidden": lambda v: isinstance(v, list) and bool(v) and all(_is_int(h) and h >= 1 for h in v),
            "number": lambda v: _is_number(v),
            "nonnegative": lambda v: _is_number(v) and v >= 0,
            "table": lambda v: isinstance(v, dict),
            "any": lambda v: True,
        }[kind](value)
        if not ok:
            want = {"dim": "a positive integer", "hidden": "a non-empty list of positive integers",
                    "number": "a finite number", "nonnegative": "a finite number >= 0", "table": "a JSON object"}[kind]
            raise PackageError(f"{self.path}: field {dotted!r} must be {want}, got {value!r}")
        return value


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and np.isfinite(v)


def _listed_files(doc: _Doc, root: Path) -> dict[str, dict]:
    """``files``: a table of plain file names in the package directory -> ``{sha256, bytes}``."""
    files = doc.get("files", "table")
    for name, info in files.items():
        if not isinstance(name, str) or not name or "/" in name or "\\" in name or name.startswith("."):
            raise PackageError(f"{doc.path}: field 'files' names {name!r}, which is not a file of the package directory")
        if not isinstance(info, dict) or not isinstance(info.get("sha256"), str) or not _is_int(info.get("bytes")):
            raise PackageError(f"{doc.path}: field 'files.{name}' must be a table with a string 'sha256' and an "
                               f"integer 'bytes', got {info!r}")
    return files


def load_package(path: str | Path) -> AgentPackage:
    """Load and verify an objective or optimizer package directory (or its ``package.json``)."""
    root = Path(path).expanduser()
    if root.name == "package.json":
        root = root.parent
    doc_path = root / "package.json"
    if not doc_path.is_file():
        raise PackageError(f"{root} is not an objective package (no package.json)")
    try:
        meta = json.loads(doc_path.read_text())
        assert isinstance(meta, dict)
    except Exception:
        raise PackageError(f"{doc_path} is not valid JSON") from None
    if meta.get("format") not in (FORMAT, OPTIMIZER_FORMAT):
        raise PackageError(f"{doc_path} is not an optbench objective package")
    optimizer_only = meta["format"] == OPTIMIZER_FORMAT  # networks only
    if meta.get("format_version") not in (VERSION, SEALED_VERSION):
        raise PackageError(f"{doc_path} has package format version {meta.get('format_version')!r}, expected "
                           f"{VERSION} or {SEALED_VERSION}")
    if meta["format_version"] == SEALED_VERSION and meta.get("digest") != document_digest(meta):
        raise PackageError(f"{doc_path} was modified (its digest does not match its content)")
    doc = _Doc(meta, doc_path)
    S, A = doc.get("state_dim", "dim"), doc.get("action_dim", "dim")
    arch = doc.get("architectures", "table")
    if not optimizer_only:
        doc.get("alpha", "nonnegative")
    files = _listed_files(doc, root)
    for name, info in files.items():
        fp = root / name
        if not fp.is_file():
            raise PackageError(f"package file {fp} is missing")
        if fp.stat().st_size != info["bytes"] or sha256_file(fp) != info["sha256"]:
            raise PackageError(f"package file {fp} was modified or truncated (sha256 mismatch)")
    for required in ("iterative.safetensors",) if optimizer_only else ("q.safetensors", "states.safetensors"):
        if required not in files:
            raise PackageError(f"{doc_path} does not list {required}")
    needs = {"direct.safetensors": ("direct",), "iterative.safetensors": ("iterative",),
             "models.safetensors": ("dynamics", "reward")}
    for name, parts in needs.items():
        for part in parts if name in files else ():
            doc.get(f"architectures.{part}.hidden", "hidden")
    q, states, mj = None, {}, {}
    if not optimizer_only:
        dims = (doc.get("architectures.q.state_dim", "dim"), doc.get("architectures.q.action_dim", "dim"))
        if dims != (S, A):
            raise PackageError(f"{doc_path}: Q architecture dims {dims[0]}/{dims[1]} != {S}/{A}")
        q_hidden = tuple(doc.get("architectures.q.hidden", "hidden"))
        q_ensemble = doc.get("architectures.q.ensemble_size", "dim")
        q = _build_module(lambda: QEnsemble(S, A, q_hidden, q_ensemble), _read(root / "q.safetensors"), "Q-ensemble",
                          root / "q.safetensors", doc_path)

        st = _read(root / "states.safetensors")
        for split in ("benchmark", "heldout"):
            if split not in st:
                raise PackageError(f"{root / 'states.safetensors'} lacks the {split!r} split")
            x = st[split]
            if x.dim() != 2 or x.shape[0] < 1 or x.shape[1] != S or x.dtype != torch.float32:
                raise PackageError(f"{root / 'states.safetensors'}: {split} states have shape {list(x.shape)} "
                                   f"({x.dtype}), expected [N, {S}] float32 with N >= 1")
            states[split] = x
        for k, v in st.items():
            if k not in states:
                mj[k] = v

    direct = iterative = dynamics = reward = None
    if "direct.safetensors" in files:
        da = arch["direct"]
        # imported agents keep their library's log σ parameterization (absent: optbench's own)
        direct = _build_module(lambda: DirectActor(S, A, tuple(da["hidden"]),
                                                   log_std_transform=da.get("log_std_transform", "soft_clamp"),
                                                   log_std_range=da.get("log_std_range", (LOG_STD_MIN, LOG_STD_MAX))),
                               _read(root / "direct.safetensors"), "direct network", root / "direct.safetensors",
                               doc_path)
    if "iterative.safetensors" in files:
        ia = arch["iterative"]
        init = (doc.get("architectures.iterative.init_mu", "number", 0.0),
                doc.get("architectures.iterative.init_std", "number", 1.0))
        iterative = _build_module(lambda: IterativeOptimizerNet(S, A, tuple(ia["hidden"]), *init),
                                  _read(root / "iterative.safetensors"), "iterative network",
                                  root / "iterative.safetensors", doc_path)
    if "models.safetensors" in files:
        ms = _read(root / "models.safetensors")
        dynamics = _build_module(lambda: DynamicsModel(S, A, tuple(arch["dynamics"]["hidden"])),
                                 {k[9:]: v for k, v in ms.items() if k.startswith("dynamics.")}, "dynamics model",
                                 root / "models.safetensors", doc_path)
        reward = _build_module(lambda: RewardModel(S, A, tuple(arch["reward"]["hidden"])),
                               {k[7:]: v for k, v in ms.items() if k.startswith("reward.")}, "reward model",
                               root / "models.safetensors", doc_path)
    return AgentPackage(root, meta, q, states, direct, iterative, dynamics, reward, mj)


__all__ = ["AgentPackage", "OPTIMIZER_FORMAT", "PackageError", "SEALED_VERSION", "check_out_dir", "collect_states",
           "document_digest", "export_package", "f32_state_dict", "load_package", "seal_document",
           "states_and_eval_doc", "write_package"]

register_package_reader(load_package)  # `direct(package='DIR')` / `iterative(package='DIR')` read packages with it
