"""Meta-training amortized policy optimizers on frozen objectives (``optbench train-optimizer``).

An iterative amortized optimizer (:class:`~optbench.optimizers.networks.IterativeOptimizerNet`, the
network of iterative SAC agents) and, for comparison, a direct network
(:class:`~optbench.optimizers.networks.DirectActor`, the SAC actor) are trained on the frozen soft
policy objectives of one or more objective packages, without any environment:

* each step samples a package (uniformly), then ``batch_size`` states (with replacement) from
  its ``split`` state set (default ``heldout``, so that the ``benchmark`` states stay unseen),
  with the package's α and β = the package's objective default;
* iterative: ``λ₀ = (0, log init_std)``, ``λ_{k+1} = f_φ(s, λ_k, ∇_λ J(λ_k))`` for ``K``
  iterations; loss ``−mean_k J(λ_k)`` with truncated backprop (the network's inputs are
  detached, no gradient through the unrolled chain), exactly as inside SAC
  (:class:`optbench.optimizers.unroll.Unroll`, as the SAC agent): ``J`` and ``∇_λ J`` come from
  ``grad_samples`` reparameterized draws through the **frozen** Q (only ``λ`` is
  differentiated), and ``dλ_k/dφ`` is multiplied by ``−∇_λ J(λ_k)/(K·B)``. The gradient at
  ``λ_k`` is also the network's input for the next iteration, so an iteration costs one
  forward and one input-gradient pass of Q on ``B·n`` pairs, as in the agents;
* direct: ``λ = f_φ(s)``, loss ``−J(λ)`` from ``grad_samples`` reparameterized draws (same
  states, its own draws), gradient ``dλ/dφ · (−∇_λ J)/B``.

Both use Adam (``lr``). Every ``eval_every`` steps the networks are scored on **every** split of
every package (fixed scoring draws, fixed optimization draws): mean scored ``J`` at ``λ₀``,
after 1, ``K`` and ``4K`` iterations of the iterative optimizer, and of the direct network; the
training split beside the unseen ones shows overfitting.

Output directory (``--out``), when finished an **optimizer package** that :func:`load_package`
reads (format ``optbench-optimizer-package``)::

    package.json            format, name, sizes, architectures (+ iterations_trained, grad_samples),
                            training settings, the exact command, source packages (path and the
                            sha256 of their package.json), final evaluation, versions, and the
                            sha256 + size of every listed file
    iterative.safetensors   the iterative optimizer network (IterativeOptimizerNet layout)
    direct.safetensors      the direct network (DirectActor layout)
    log.csv evals.csv       training log (minibatch J per interval) and the periodic evaluations
    checkpoint.safetensors  training state (networks, Adam, RNG; not part of the package): every
                            ``checkpoint_every`` steps; re-running the same command resumes from
                            it, a finished run is not redone, and a larger ``--steps`` continues it
    checkpoint.prev.safetensors  the checkpoint before it, to fall back to (with a warning) when
                            the latest is corrupt: the rotation and fallback of the agent
                            trainer (:func:`optbench.agents.checkpoint.load_latest_checkpoint`)

A resumed run continues exactly as the uninterrupted one would have (same draws).
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from torch import Tensor

from optbench.agents.checkpoint import (CheckpointError, corrupt_path, load_latest_checkpoint,
                                        optimizer_from_tensors, optimizer_to_tensors, previous_path, save_checkpoint)
from optbench.optimizers.networks import DirectActor, IterativeOptimizerNet
from optbench.agents.package import OPTIMIZER_FORMAT, VERSION, AgentPackage, load_package, sha256_file
from optbench.agents.sac import DEFAULT_GRAD_SAMPLES
from optbench.agents.trainer import versions
from optbench.agents.training_log import CsvFile, TrainingProgress
from optbench.fileio import is_temporary, save_safetensors_atomic, write_text_atomic
from optbench.objectives.policy_objective import PolicyObjective
from optbench.optimizers.unroll import Unroll

CHECKPOINT = "checkpoint.safetensors"
LOG_FIELDS = ["step", "wall_time", "steps_per_s", "J_start", "J_first", "J_last", "J_mean", "J_direct"]
EVAL_FIELDS = ["step", "package", "split", "trained_on", "states", "J_start", "J_iter_1", "J_iter_K", "J_iter_4K",
               "J_direct"]
OWN_FILES = {"package.json", "iterative.safetensors", "direct.safetensors", "log.csv", "evals.csv", CHECKPOINT,
             previous_path(CHECKPOINT).name, corrupt_path(CHECKPOINT).name}  # and temporary files (optbench.fileio)
EVAL_SCORE_SEED = 12345  # scoring draws of the periodic evaluation (same as the suites' default)
EVAL_NOISE_SEED = 777    # optimization draws of the iterative optimizer during evaluation
# settings that do not change what is trained (a run may be resumed or extended with other values)
NOT_IDENTITY = ("objectives", "steps", "eval_every", "checkpoint_every", "log_every", "eval_score_samples",
                "eval_states")


class MetaTrainingError(ValueError):
    """Bad input to ``train-optimizer`` or an output directory that holds something else."""


@dataclass
class MetaConfig:
    """Settings of ``optbench train-optimizer`` (see the module docstring)."""

    objectives: tuple[str, ...]
    iterations: int = 5
    steps: int = 5000
    batch_size: int = 256
    grad_samples: int = DEFAULT_GRAD_SAMPLES
    lr: float = 3e-4
    seed: int = 0
    split: str = "heldout"
    hidden: tuple[int, ...] = (256, 256)
    init_std: float = 1.0
    eval_every: int = 500
    checkpoint_every: int = 500
    log_every: int = 100
    eval_score_samples: int = 256
    eval_states: int = 500  # at most this many states per split in evaluations (the first ones)

    def __post_init__(self):
        self.objectives = tuple(str(o) for o in self.objectives)
        self.hidden = tuple(int(h) for h in self.hidden)
        if not self.objectives:
            raise MetaTrainingError("--objectives needs at least one objective package")
        for name in ("iterations", "steps", "batch_size", "grad_samples", "eval_every", "checkpoint_every",
                     "log_every", "eval_score_samples", "eval_states"):
            if int(getattr(self, name)) < 1:
                raise MetaTrainingError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            raise MetaTrainingError(f"--lr must be > 0, got {self.lr}")
        if not self.init_std > 0:
            raise MetaTrainingError(f"init_std must be > 0, got {self.init_std}")
        if not self.hidden or min(self.hidden) < 1:
            raise MetaTrainingError(f"hidden sizes must be >= 1, got {list(self.hidden)}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["objectives"], d["hidden"] = list(self.objectives), list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "MetaConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class Source:
    """One objective package the optimizers are trained on."""

    path: str
    package: AgentPackage
    sha256: str  # of its package.json
    beta: float

    @property
    def label(self) -> str:
        return self.package.name

    def record(self, split: str) -> dict:
        p = self.package
        return {"path": self.path, "resolved": str(p.path.resolve()), "package_json_sha256": self.sha256,
                "task": p.task, "agent": p.name, "state_dim": p.state_dim, "action_dim": p.action_dim,
                "alpha": p.alpha, "beta": self.beta, "split": split, "states": len(p.states[split])}


def load_sources(paths: tuple[str, ...] | list[str], split: str) -> list[Source]:
    """Load and check the objective packages: readable, objective (not optimizer) packages, the
    state split present, equal state and action sizes."""
    sources = []
    for path in paths:
        pkg = load_package(path)
        if pkg.is_optimizer_package:
            raise MetaTrainingError(f"{path} is an optimizer package, not an objective package (it has no Q-function)")
        if split not in pkg.states:
            raise MetaTrainingError(f"unknown split {split!r}: package {path} has the state splits "
                                    f"{', '.join(sorted(pkg.states))}")
        beta = float(pkg.meta.get("beta", {}).get("objective_default", 1.0))
        sources.append(Source(str(path), pkg, sha256_file(pkg.path / "package.json"), beta))
    first = sources[0].package
    for s in sources[1:]:
        if (s.package.state_dim, s.package.action_dim) != (first.state_dim, first.action_dim):
            raise MetaTrainingError(
                f"--objectives must have equal state and action sizes: {sources[0].path} has {first.state_dim}/"
                f"{first.action_dim}, {s.path} has {s.package.state_dim}/{s.package.action_dim} (state/action dims)")
    return sources


def identity(cfg: MetaConfig, sources: list[Source]) -> dict:
    """What determines the trained networks: settings (but the step budget and cadences) and
    the source packages' content (sha256 of their package.json, which lists every file's sha256)."""
    d = {k: v for k, v in cfg.to_dict().items() if k not in NOT_IDENTITY}
    d["sources"] = [s.sha256 for s in sources]
    return d


def _identity_diff(a: dict, b: dict) -> list[str]:
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def _f32(module: torch.nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in module.state_dict().items()}


@dataclass
class MetaResult:
    out_dir: Path
    steps: int
    steps_per_s: float
    evaluation: list[dict]
    already_done: bool = False


class MetaTrainer:
    """Trains the iterative and direct networks of one ``train-optimizer`` run (see the module docstring)."""

    def __init__(self, cfg: MetaConfig, out_dir: str | Path, *, device: str | torch.device = "cpu",
                 command: str | None = None, progress: bool = True, echo=print):
        self.cfg = cfg
        self.out = Path(out_dir).expanduser()
        self.device = torch.device(device)
        self.command = command or "optbench " + shlex.join(sys.argv[1:])
        self.progress, self.echo = progress, echo
        self.sources = load_sources(cfg.objectives, cfg.split)
        first = self.sources[0].package
        self.state_dim, self.action_dim = first.state_dim, first.action_dim
        self.identity = identity(cfg, self.sources)
        self.log = CsvFile(self.out / "log.csv", LOG_FIELDS)
        self.evals = CsvFile(self.out / "evals.csv", EVAL_FIELDS)
        self.train_states = [s.package.states[cfg.split].to(self.device) for s in self.sources]
        self.qs = [s.package.q.to(self.device) for s in self.sources]

    # ------------------------------------------------------------------ setup
    def _fresh(self) -> None:
        cfg = self.cfg
        torch.manual_seed(cfg.seed)  # network initialization
        self.iterative = IterativeOptimizerNet(self.state_dim, self.action_dim, cfg.hidden, 0.0, cfg.init_std).to(self.device)
        self.direct = DirectActor(self.state_dim, self.action_dim, cfg.hidden).to(self.device)
        self.opt_it = torch.optim.Adam(self.iterative.parameters(), lr=cfg.lr)
        self.opt_d = torch.optim.Adam(self.direct.parameters(), lr=cfg.lr)
        self.index_gen = torch.Generator().manual_seed(cfg.seed)  # package and state choice (CPU)
        self.noise_gen = torch.Generator(device=self.device).manual_seed(cfg.seed + 1)  # reparameterization draws
        self.step, self.wall_time, self.train_time = 0, 0.0, 0.0

    def _save(self) -> None:
        tensors = {**{f"net/iterative/{k}": v for k, v in self.iterative.state_dict().items()},
                   **{f"net/direct/{k}": v for k, v in self.direct.state_dict().items()},
                   "rng/index": self.index_gen.get_state(), "rng/noise": self.noise_gen.get_state().cpu()}
        tensors = {k: v.detach().cpu() for k, v in tensors.items()}
        meta = {"kind": "optbench-train-optimizer", "identity": self.identity, "config": self.cfg.to_dict(),
                "step": self.step, "wall_time": self.wall_time, "train_time": self.train_time, "optimizers": {}}
        for name, opt in (("iterative", self.opt_it), ("direct", self.opt_d)):
            t, m = optimizer_to_tensors(name, opt)
            tensors.update({k: v.cpu() for k, v in t.items()})
            meta["optimizers"][name] = m
        save_checkpoint(self.out / CHECKPOINT, tensors, meta, keep_previous=True)

    def _load(self, tensors: dict[str, Tensor], meta: dict) -> None:
        self._fresh()
        for name, net in (("iterative", self.iterative), ("direct", self.direct)):
            prefix = f"net/{name}/"
            net.load_state_dict({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)})
        for name, opt in (("iterative", self.opt_it), ("direct", self.opt_d)):
            optimizer_from_tensors(name, opt, {k: v.to(self.device) for k, v in tensors.items()},
                                   meta["optimizers"][name])
        self.index_gen.set_state(tensors["rng/index"])
        self.noise_gen.set_state(tensors["rng/noise"].to(self.noise_gen.device) if self.device.type != "cpu"
                                 else tensors["rng/noise"])
        self.step, self.wall_time = int(meta["step"]), float(meta.get("wall_time", 0.0))
        self.train_time = float(meta.get("train_time", 0.0))

    def _finished_package(self) -> dict | None:
        """The package.json of a finished run in ``out`` (checked against this run's identity)."""
        doc_path = self.out / "package.json"
        if not doc_path.exists():
            return None
        try:
            doc = json.loads(doc_path.read_text())
        except ValueError:
            raise MetaTrainingError(f"{doc_path} is not valid JSON; remove it or choose another --out") from None
        if doc.get("format") != OPTIMIZER_FORMAT:
            raise MetaTrainingError(f"{self.out} holds another kind of package; choose another --out")
        self._check_identity(doc.get("training", {}).get("identity", {}), "an optimizer package")
        return doc

    def _check_identity(self, other: dict, what: str) -> None:
        diff = _identity_diff(other, self.identity)
        if diff:
            raise MetaTrainingError(f"{self.out} holds {what} trained with other settings (differ: {', '.join(diff)}); "
                                    "choose another --out")

    def _resume_or_start(self) -> None:
        ckpt = self.out / CHECKPOINT
        try:
            found = load_latest_checkpoint(ckpt, warn=self.echo)  # the previous one if the latest is corrupt
        except CheckpointError as exc:
            raise MetaTrainingError(str(exc)) from None
        if found is not None:
            tensors, meta, ckpt = found
            if meta.get("kind") != "optbench-train-optimizer":
                raise MetaTrainingError(f"{ckpt} is not a train-optimizer checkpoint; choose another --out")
            self._check_identity(meta.get("identity", {}), "a train-optimizer run")
            if int(meta["step"]) > self.cfg.steps:
                raise MetaTrainingError(f"{self.out} holds a run at step {meta['step']}, past --steps {self.cfg.steps}")
            self._load(tensors, meta)
            self.echo(f"resuming {self.out} at step {self.step}/{self.cfg.steps}")
        else:
            if self.out.exists():
                foreign = sorted(p.name for p in self.out.iterdir()
                                 if p.name not in OWN_FILES and not is_temporary(p.name))
                if foreign:
                    raise MetaTrainingError(f"{self.out} exists and holds other files ({', '.join(foreign[:3])}); "
                                            "choose another --out")
            self._fresh()
        self.out.mkdir(parents=True, exist_ok=True)
        self.log.truncate_after(self.step)
        self.evals.truncate_after(self.step)

    # ------------------------------------------------------------------ training
    def _objective(self, p: int, states: Tensor) -> PolicyObjective:
        src = self.sources[p]
        no_scoring = torch.empty(len(states), 0, self.action_dim, device=self.device)
        return PolicyObjective(self.qs[p], states, src.package.alpha, beta=src.beta, score_noise=no_scoring,
                               name=src.label)

    def _value_and_grad(self, obj: PolicyObjective, lam: Tensor) -> tuple[Tensor, Tensor]:
        return _value_and_grad(obj, lam, self.cfg.grad_samples, self.noise_gen)

    def train_step(self) -> dict[str, Tensor]:
        """One update of both networks on one minibatch; returns minibatch means of J."""
        cfg = self.cfg
        p = int(torch.randint(len(self.sources), (1,), generator=self.index_gen)) if len(self.sources) > 1 else 0
        pool = self.train_states[p]
        idx = torch.randint(len(pool), (cfg.batch_size,), generator=self.index_gen).to(self.device)
        states = pool[idx]
        obj = self._objective(p, states)
        B, K = cfg.batch_size, cfg.iterations

        # iterative: truncated backprop through K iterations (the unroll the SAC agent trains with)
        unroll = Unroll(self.iterative, states, lambda lam: self._value_and_grad(obj, lam), train=True)
        j_start = unroll.estimate()[0]
        unroll.run(K)
        self.opt_it.zero_grad(set_to_none=True)
        unroll.backward()
        self.opt_it.step()
        curve = unroll.means

        # direct: maximize J(f(s))
        lam_d = self.direct(states)
        j_direct, grad_d = self._value_and_grad(obj, lam_d)
        self.opt_d.zero_grad(set_to_none=True)
        lam_d.backward(grad_d / -B)
        self.opt_d.step()
        self.step += 1
        return {"J_start": j_start.mean(), "J_first": curve[0], "J_last": curve[-1],
                "J_mean": torch.stack(curve).mean(), "J_direct": j_direct.mean()}

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self) -> list[dict]:
        """Mean scored J on every split of every source (fixed draws): λ₀, iterative after 1, K,
        4K iterations, direct."""
        cfg, K = self.cfg, self.cfg.iterations
        rows = []
        for p, src in enumerate(self.sources):
            for split in sorted(src.package.states):
                n = min(cfg.eval_states, len(src.package.states[split]))
                obj = src.package.objective(split, beta=src.beta, n_states=n, score_samples=cfg.eval_score_samples,
                                            score_seed=EVAL_SCORE_SEED, device=self.device)
                gen = torch.Generator(device=self.device).manual_seed(EVAL_NOISE_SEED)
                unroll = Unroll(self.iterative, obj.states, lambda lam: _value_and_grad(obj, lam, cfg.grad_samples, gen))
                row = {"step": self.step, "package": src.label if len(self.sources) == 1 else f"{p}:{src.label}",
                       "split": split, "trained_on": int(split == cfg.split), "states": obj.batch_size,
                       "J_start": float(obj.score(unroll.params).mean())}
                for t in range(1, 4 * K + 1):
                    lam = unroll.step()
                    if t in (1, K, 4 * K):
                        key = "J_iter_1" if t == 1 else ("J_iter_K" if t == K else "J_iter_4K")
                        row[key] = float(obj.score(lam).mean())
                row["J_direct"] = float(obj.score(self.direct(obj.states)).mean())
                rows.append(row)
        return rows

    # ------------------------------------------------------------------ run
    def run(self) -> MetaResult:
        cfg = self.cfg
        done = self._finished_package()
        if done is not None and int(done["training"]["steps"]) >= cfg.steps:
            load_package(self.out)  # verify what is there
            self.echo(f"already finished: {self.out} ({done['training']['steps']} steps); nothing to do")
            return MetaResult(self.out, int(done["training"]["steps"]), float(done["training"]["steps_per_s"]),
                              done["eval"]["records"], already_done=True)
        if done is not None:
            if not (self.out / CHECKPOINT).exists():
                raise MetaTrainingError(f"{self.out} holds a finished run of {done['training']['steps']} steps without "
                                        f"its checkpoint; cannot continue it to --steps {cfg.steps}")
            (self.out / "package.json").unlink()  # the package is rewritten when the longer run finishes
        self._resume_or_start()
        label = "+".join(sorted({s.package.task for s in self.sources}))
        bar = TrainingProgress(f"train-optimizer {label} K={cfg.iterations}", cfg.steps, self.step, self.progress,
                               advance_every=10)
        window: list[dict[str, Tensor]] = []
        window_time = 0.0
        last_eval: list[dict] = []
        tic, wall0 = time.perf_counter(), self.wall_time
        try:
            if self.step == 0:
                last_eval = self._record_eval()
            while self.step < cfg.steps:
                t0 = time.perf_counter()
                window.append(self.train_step())
                t1 = time.perf_counter()
                window_time += t1 - t0
                self.train_time += t1 - t0
                self.wall_time = wall0 + t1 - tic
                bar.advance(self.step)
                if self.step % cfg.eval_every == 0 or self.step == cfg.steps:
                    last_eval = self._record_eval()
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    # steps/s of the training steps alone (evaluations and checkpoints excluded)
                    row = {"step": self.step, "wall_time": self.wall_time, "steps_per_s": len(window) / window_time}
                    row.update({k: float(torch.stack([w[k] for w in window]).mean()) for k in window[0]})
                    self.log.append(row)
                    window, window_time = [], 0.0
                    bar.show(row["step"], _info(cfg, row, last_eval))
                if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps:
                    self._save()
        finally:
            bar.close()
        steps_per_s = self.step / self.train_time if self.train_time > 0 else 0.0
        if not last_eval:  # resumed at the last step (killed before package.json): evaluate again, same values
            self.evals.truncate_after(self.step - 1)
            last_eval = self._record_eval()
        self.write_package(last_eval, steps_per_s)
        return MetaResult(self.out, self.step, steps_per_s, last_eval)

    def _record_eval(self) -> list[dict]:
        rows = self.evaluate()
        for r in rows:
            self.evals.append(r)
        return rows

    def write_package(self, evaluation: list[dict], steps_per_s: float) -> Path:
        """Write the weights and package.json (last, atomically: it marks the run finished)."""
        cfg = self.cfg
        tasks = sorted({s.package.task for s in self.sources})
        name = f"meta-{'+'.join(tasks)}-K{cfg.iterations}-s{cfg.seed}"
        for fname, module in (("iterative.safetensors", self.iterative), ("direct.safetensors", self.direct)):
            save_safetensors_atomic(self.out / fname, _f32(module), mode=0o644)
        betas = sorted({s.beta for s in self.sources})
        arch = {
            "iterative": dict(self.iterative.architecture(), iterations_trained=cfg.iterations,
                              grad_samples=cfg.grad_samples, beta_train=betas[0] if len(betas) == 1 else betas,
                              q_used="the source packages' Q-ensembles (frozen)",
                              source="meta-trained on frozen objectives (optbench train-optimizer)"),
            "direct": dict(self.direct.architecture(), grad_samples=cfg.grad_samples,
                           source="trained to maximize J on the frozen objectives (optbench train-optimizer)"),
        }
        listed = ["iterative.safetensors", "direct.safetensors", "log.csv", "evals.csv"]
        doc = {
            "format": OPTIMIZER_FORMAT, "format_version": VERSION, "name": name, "task": "+".join(tasks),
            "tasks": tasks, "state_dim": self.state_dim, "action_dim": self.action_dim,
            "architectures": arch,
            "training": {
                "steps": self.step, "wall_time_s": self.wall_time, "train_time_s": self.train_time,
                "steps_per_s": steps_per_s,
                "settings": cfg.to_dict(), "identity": self.identity, "device": str(self.device),
                "command": self.command,
                "loss": {"iterative": "-mean over K iterations of J(lambda_k), truncated backprop, "
                                      "grad_samples reparameterized draws through the frozen Q",
                         "direct": "-J(f(s)), grad_samples reparameterized draws through the frozen Q"},
                "sampling": f"package uniformly, then {cfg.batch_size} states with replacement from its "
                            f"{cfg.split!r} split",
            },
            "sources": [s.record(cfg.split) for s in self.sources],
            "eval": {"step": self.step, "score_samples": cfg.eval_score_samples, "score_seed": EVAL_SCORE_SEED,
                     "records": evaluation},
            "files": {f: {"sha256": sha256_file(self.out / f), "bytes": (self.out / f).stat().st_size} for f in listed},
            "versions": versions(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        write_text_atomic(self.out / "package.json", json.dumps(doc, indent=2) + "\n", mode=0o644)
        return self.out


def _value_and_grad(obj: PolicyObjective, lam: Tensor, samples: int, generator: torch.Generator
                    ) -> tuple[Tensor, Tensor]:
    """``J [B]`` and ``∇_λ J [B, 2A]`` at ``lam [B, 2A]`` from ``samples`` fresh draws of ``generator``."""
    value, grad = obj.value_and_grad(lam.detach().unsqueeze(1), obj.noise(samples, 1, generator))
    return value[:, 0], grad[:, 0]


def _info(cfg: MetaConfig, row: dict, last_eval: list[dict]) -> str:
    """The progress line of a meta-training log row (and the latest evaluation, split by split)."""
    info = (f"{row['steps_per_s']:.1f} st/s | J λ₀ {row['J_start']:.4g} → it1 {row['J_first']:.4g} → "
            f"it{cfg.iterations} {row['J_last']:.4g} | direct {row['J_direct']:.4g}")
    if last_eval:
        info += " | eval J@K " + " ".join(f"{r['split']}({'train' if r['trained_on'] else 'unseen'}) {r['J_iter_K']:.4g}"
                                          for r in last_eval)
    return info


def train_optimizer(cfg: MetaConfig, out_dir: str | Path, **kwargs) -> MetaResult:
    """Train (or resume, or find finished) the run of ``cfg`` in ``out_dir``."""
    return MetaTrainer(cfg, out_dir, **kwargs).run()


__all__ = ["MetaConfig", "MetaResult", "MetaTrainer", "MetaTrainingError", "load_sources", "train_optimizer"]
