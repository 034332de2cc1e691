"""The training loop: environment interaction, updates, evaluation, checkpoints and resume.

A run lives in one output directory::

    OUT/checkpoint.safetensors   latest checkpoint (atomic), see optbench.agents.checkpoint
    OUT/checkpoint.prev.safetensors  the one before it (kept to fall back to if the latest is corrupt)
    OUT/snapshots/step-N.safetensors the networks at every evaluation (atomic)
    OUT/config.json              the run's configuration
    OUT/log.csv episodes.csv evals.csv learning_curve.png
    OUT/.lock                    while a process trains here (see optbench.locks)

One process trains in a directory at a time: a :class:`Trainer` takes the directory's lock
before it reads or writes anything there and holds it until :meth:`Trainer.train` returns
(a second trainer is refused with a one-line error naming the holder; the lock of a killed
process is taken over).

Re-running the same command resumes from ``OUT/checkpoint.safetensors``, and says so (from
which step), or says that there is nothing to resume from when the directory holds the logs
of a run killed before its first checkpoint. A latest checkpoint that fails verification
(truncated, bit-flipped) is replaced by the previous one, with a warning, never by a fresh
start (:func:`optbench.agents.checkpoint.load_latest_checkpoint`). On resume, log rows and
snapshots past the resumed step (written by the killed segment, which the resumed run
computes again, identically) and temporary files of writes the kill interrupted are removed.
Periodic checkpoints are written at the first episode end after every
:func:`checkpoint_interval` steps, so a resumed run continues exactly as the uninterrupted run
would have (same replay contents, RNG streams and environment RNG);
a checkpoint written mid-episode (end of training, Ctrl-C) resumes with a fresh episode.
Writing a checkpoint draws no random numbers, so the interval changes nothing a run computes.

A loss that becomes NaN or inf (critic, actor, temperature, models, distillation; e.g. a
learning rate that makes the critic diverge) stops training at once with
:class:`TrainingDiverged`, naming the loss, the update and the environment step; nothing is
written after it, so the last checkpoint is the last good state.

The device (``Trainer(..., device=...)``, ``optbench train --device``) is a runtime option, not
part of the run: a run may stop on one device and resume on another. Networks are initialized
on the CPU whatever the device; checkpoints hold CPU tensors only. Random draws of the updates
and of acting come from the device's generator: the CPU generator's state is saved always,
a CUDA generator's state too when the run is on CUDA, and restored only when it resumes on
CUDA (a CUDA resume of a checkpoint without one seeds the CUDA generator from the seed and
the step). Runs on different devices draw different random numbers (and round differently).
"""

from __future__ import annotations

import json
import math
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from optbench import __version__, backends
from optbench.agents.checkpoint import (CHECKPOINT_NAME, CheckpointError, load_checkpoint, load_latest_checkpoint,
                                        save_checkpoint)
from optbench.agents.envs import ActionScaler, env_dims, make_env
from optbench.agents.evaluate import run_episodes
from optbench.agents.replay import ReplayBuffer
from optbench.agents.sac import SACAgent, SACConfig, UpdateStats
from optbench.agents.training_log import TrainingLog, TrainingProgress
from optbench.backends import onednn
from optbench.fileio import remove_stale_temporaries, write_text_atomic
from optbench.locks import DirectoryLock

EVAL_SEED = 1_000_003  # the same evaluation episodes for every agent and seed (learning curves compare on them)
SNAPSHOT_DIR = "snapshots"
LOSSES = ("q_loss", "actor_loss", "alpha", "alpha_loss", "model_loss", "distill_loss")  # checked for NaN/inf


class TrainingDiverged(ValueError):
    """A training loss became NaN or inf; the message names the loss, update and step."""


def check_losses(stats: UpdateStats, *, where: str, checkpoint: str) -> None:
    """Raise :class:`TrainingDiverged` if a loss of an update is NaN or inf (the first one in
    :data:`LOSSES` order). ``where`` names the update and step, ``checkpoint`` what is left
    to resume from."""
    for name in LOSSES:
        value = getattr(stats, name)
        if not math.isfinite(value):
            raise TrainingDiverged(f"training diverged: {name} is {value} at {where}; {checkpoint}; the run is "
                                   "deterministic, so resuming it diverges again at the same update: start another "
                                   "--out with other settings (e.g. a smaller --lr)")


def versions() -> dict:
    import gymnasium

    out = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
           "gymnasium": gymnasium.__version__}
    try:
        import mujoco

        out["mujoco"] = mujoco.__version__
    except Exception:
        pass
    out["optbench"] = __version__
    return out


def checkpoint_interval(cfg: SACConfig) -> int:
    """Steps between periodic checkpoints: ``cfg.checkpoint_every`` (default 10,000), but at
    most ``max(1000, steps // 20)``, so a short run checkpoints about 20 times and a killed
    run loses at most 1,000 steps or 5 % of the run (about 10 s to a few minutes of training
    at the ~120 updates/s of SPEC §5) plus the episode in progress."""
    return max(1, min(int(cfg.checkpoint_every), max(1000, int(cfg.steps) // 20)))


def agent_from_checkpoint(tensors: dict, meta: dict, device: torch.device | str = "cpu") -> SACAgent:
    """Rebuild the agent (networks + optimizer states) stored in a checkpoint, on ``device``
    (networks only from a snapshot, see :meth:`Trainer.save_snapshot`)."""
    cfg = SACConfig.from_dict(meta["config"])
    agent = SACAgent(cfg, int(meta["state_dim"]), int(meta["action_dim"]), device=device)
    try:
        agent.load_state(tensors, meta["agent"], networks_only=bool(meta.get("snapshot")))
    except (KeyError, ValueError) as exc:
        raise CheckpointError(f"checkpoint does not match its own configuration: {exc}") from None
    return agent


@dataclass
class TrainResult:
    out_dir: Path
    step: int
    episodes: int
    last_eval: dict | None
    updates_per_s: float


class Trainer:
    def __init__(self, cfg: SACConfig, out_dir: str | Path, *, progress: bool = True, echo=print,
                 device: torch.device | str = "cpu"):
        self.out_dir = Path(out_dir).expanduser()
        self.device = torch.device(device)
        self.ckpt_path = self.out_dir / CHECKPOINT_NAME
        self.progress = progress
        self.echo = echo
        self.env = make_env(cfg.task)  # validates the task first (one-line error if unknown)
        self.scale = ActionScaler(self.env)
        self.state_dim, self.action_dim = env_dims(self.env)
        self.resumed_from: int | None = None
        self._env_rng_before_reset: dict | None = None
        self._lock = DirectoryLock(self.out_dir, "training directory", echo=echo).acquire()
        try:
            self._open(cfg)
        except BaseException:
            self._lock.release()
            raise

    def _open(self, cfg: SACConfig) -> None:
        """Resume from the directory's checkpoint, or start afresh (saying which)."""
        echo = self.echo
        for d in (self.out_dir, self.out_dir / SNAPSHOT_DIR):
            remove_stale_temporaries(d)  # of writes a kill interrupted (we hold the lock)
        found = load_latest_checkpoint(self.ckpt_path, warn=echo)
        if found is not None:
            tensors, meta, _ = found
            old = SACConfig.from_dict(meta["config"])
            if old.task != cfg.task or old.policy != cfg.policy:
                raise CheckpointError(f"{self.out_dir} holds a {old.task}/{old.policy} run, not {cfg.task}/{cfg.policy}; "
                                      "use another --out")
            if (meta["state_dim"], meta["action_dim"]) != (self.state_dim, self.action_dim):
                raise CheckpointError(f"checkpoint dims {meta['state_dim']}/{meta['action_dim']} do not match task "
                                      f"{cfg.task} ({self.state_dim}/{self.action_dim})")
            old.steps = cfg.steps  # the only setting a resumed run may change
            differ = [k for k, v in cfg.to_dict().items() if k != "steps" and old.to_dict().get(k) != v]
            if differ:
                echo(f"note: resuming with the checkpoint's settings; ignoring changed {', '.join(differ)}")
            self.cfg = old
            self._restore(tensors, meta)
            self._drop_snapshots_after(self.step)
            self.start_note = (f"resuming {old.task}/{old.policy} from step {self.step} of {old.steps} "
                               f"({self.out_dir}; checkpoint every {checkpoint_interval(old)} steps)")
            if self.step >= old.steps:
                self.start_note = f"already finished: {old.task}/{old.policy} at step {self.step} ({self.out_dir})"
        else:
            earlier = [int(float(r["step"])) for r in TrainingLog.peek(self.out_dir) if r.get("step")]
            self.cfg = cfg
            self._fresh()
            self.start_note = (f"starting {cfg.task}/{cfg.policy} from step 0 ({self.out_dir}; checkpoint every "
                               f"{checkpoint_interval(cfg)} steps)")
            if earlier:
                self.start_note = (f"note: {self.out_dir} holds the logs of an earlier run (to step {max(earlier)}) "
                                   f"but no checkpoint, so there is nothing to resume from (it stopped before its "
                                   f"first checkpoint); its logs are discarded, " + self.start_note)
        self.log = TrainingLog(self.out_dir, self.step)

    def close(self) -> None:
        """Release the directory's lock (done by :meth:`train` when it returns)."""
        self._lock.release()

    # ------------------------------------------------------------------ setup
    def _fresh(self) -> None:
        cfg = self.cfg
        self.out_dir.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)
        self.agent = SACAgent(cfg, self.state_dim, self.action_dim, device=self.device)
        self.replay = ReplayBuffer(self.state_dim, self.action_dim, cfg.buffer_size)
        self.step = 0
        self.episodes = 0
        self.wall_time = 0.0
        self.eval_history: list[dict] = []
        self.last_checkpoint: int | None = None
        self.obs, _ = self.env.reset(seed=cfg.seed)
        self.ep_return, self.ep_length = 0.0, 0
        self._drop_snapshots_after(0)
        write_text_atomic(self.out_dir / "config.json", json.dumps(cfg.to_dict(), indent=2) + "\n", mode=0o644)

    def _drop_snapshots_after(self, step: int) -> None:
        """Remove snapshots past ``step``: a killed segment wrote them, and the resumed run
        writes them again at the same steps (with the same networks)."""
        for p in (self.out_dir / SNAPSHOT_DIR).glob("step-*.safetensors"):
            try:
                if int(p.stem.split("-", 1)[1]) > step:
                    p.unlink()
            except ValueError:
                continue

    def _restore(self, tensors: dict, meta: dict) -> None:
        cfg = self.cfg
        self.agent = agent_from_checkpoint(tensors, meta, self.device)
        self.agent.cfg.steps = cfg.steps
        self.replay = ReplayBuffer(self.state_dim, self.action_dim, cfg.buffer_size)
        self.replay.load_state(tensors, meta["replay"])
        torch.set_rng_state(tensors["rng/torch"])
        if self.device.type == "cuda":
            if "rng/cuda" in tensors:
                torch.cuda.set_rng_state(tensors["rng/cuda"], self.device)
            else:  # written on another device: a fresh, reproducible CUDA stream
                with torch.cuda.device(self.device):
                    torch.cuda.manual_seed((cfg.seed * 1_000_003 + int(meta["step"])) % 2**63)
        self._same_backends(meta.get("backends"))
        self.rng = np.random.default_rng()
        self.rng.bit_generator.state = meta["rng_numpy"]
        self.step, self.episodes = int(meta["step"]), int(meta["episodes"])
        self.wall_time = float(meta.get("wall_time", 0.0))
        self.eval_history = list(meta.get("eval_history", []))
        self.env.reset(seed=cfg.seed)
        self.env.unwrapped.np_random.bit_generator.state = meta["env_rng"]
        self.obs, _ = self.env.reset()
        self.ep_return, self.ep_length = 0.0, 0
        self.resumed_from = self.step
        self.last_checkpoint: int | None = self.step

    def _same_backends(self, recorded: dict | None) -> None:
        """Compute the matrix products as the run's earlier segments did (oneDNN's or torch's
        kernels round differently): the command line's start-up probe (:func:`optbench.backends.enable`)
        may choose otherwise on a busier machine, and a resumed run must continue exactly as
        the uninterrupted one. Process-wide, like the probe's choice."""
        if not recorded or "onednn" not in recorded:
            return  # a checkpoint written before back-ends were recorded
        want, have = recorded["onednn"] == "on", backends.state()["onednn"] == "on"
        if want == have:
            return
        if want and not onednn.kernel_available():
            self.echo("note: the checkpoint's earlier segments computed with oneDNN products, which this torch lacks; "
                      "the resumed run rounds differently from an uninterrupted one")
            return
        backends.apply({"onednn": recorded["onednn"], "onednn_time_ratio": recorded.get("onednn_time_ratio")})
        self.echo(f"note: oneDNN products {'on' if want else 'off'} as in the run's earlier segments (the start-up "
                  "probe chose otherwise), so the resumed run computes the same numbers")

    # ------------------------------------------------------------------ checkpoint
    def _checkpoint_note(self) -> str:
        """What a run that stops now leaves to resume from (for error messages)."""
        if self.last_checkpoint is None:
            return "no checkpoint was written yet"
        return f"the last checkpoint ({self.ckpt_path}, step {self.last_checkpoint}) is kept"

    def save(self, episode_boundary: bool) -> None:
        tensors, agent_meta = self.agent.state_tensors()
        tensors.update(self.replay.state_tensors())
        tensors["rng/torch"] = torch.get_rng_state()
        if self.device.type == "cuda":
            tensors["rng/cuda"] = torch.cuda.get_rng_state(self.device)
        meta = {
            "task": self.cfg.task, "policy": self.cfg.policy, "state_dim": self.state_dim,
            "action_dim": self.action_dim, "config": self.cfg.to_dict(), "step": self.step,
            "episodes": self.episodes, "episode_boundary": episode_boundary, "agent": agent_meta,
            "replay": self.replay.state_meta(), "rng_numpy": self.rng.bit_generator.state,
            # at an episode boundary: the env RNG before the reset that began the current episode,
            # so the resumed run re-creates that same episode start
            "env_rng": (self._env_rng_before_reset if episode_boundary
                        else self.env.unwrapped.np_random.bit_generator.state), "wall_time": self.wall_time,
            "eval_history": self.eval_history, "versions": versions(),
            "device": str(self.device),  # where this segment ran; for the record only (not part of the run)
            "backends": backends.state(),  # how its products were computed: a resumed segment computes them alike
        }
        self.log.sync()  # the rows up to this step are on disk before the checkpoint that names it
        save_checkpoint(self.ckpt_path, tensors, meta, keep_previous=True)
        self.last_checkpoint = self.step

    def save_snapshot(self) -> Path:
        """The agent's networks (no optimizer states, no replay) at this step, kept for good in
        ``OUT/snapshots/step-NNNNNNNN.safetensors``: analyses over training (amortization gap,
        returns at a step) load them like checkpoints. Written at every evaluation."""
        tensors, agent_meta = self.agent.state_tensors()
        tensors = {k: v for k, v in tensors.items() if k.startswith("net/")}
        meta = {"task": self.cfg.task, "policy": self.cfg.policy, "state_dim": self.state_dim,
                "action_dim": self.action_dim, "config": self.cfg.to_dict(), "step": self.step,
                "episodes": self.episodes, "snapshot": True,
                "agent": {"optimizers": {}, "updates": agent_meta["updates"], "model_updates": agent_meta["model_updates"]},
                "eval_history": self.eval_history, "wall_time": self.wall_time, "versions": versions()}
        path = self.out_dir / SNAPSHOT_DIR / f"step-{self.step:08d}.safetensors"
        path.parent.mkdir(exist_ok=True)
        save_checkpoint(path, tensors, meta)
        return path

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, episodes: int | None = None) -> dict:
        n = self.cfg.eval_episodes if episodes is None else episodes
        res = run_episodes(lambda o: self.agent.act(o, deterministic=True), self.cfg.task, n,
                           seed=EVAL_SEED)
        out = {"step": self.step, "mean": res.mean, "std": res.std, "episodes": n, "returns": res.returns}
        self.eval_history.append(out)
        self.log.evals.append(out)
        return out

    # ------------------------------------------------------------------ loop
    def train(self, stop_after: int | None = None) -> TrainResult:
        """Train until ``cfg.steps``.

        ``stop_after`` (tests) abandons the run after that many more steps without a final
        checkpoint, as if the process had been killed.
        """
        self._lock.acquire()  # held since __init__, unless a previous train() released it
        try:
            return self._train(stop_after)
        finally:
            self._lock.release()

    def _train(self, stop_after: int | None) -> TrainResult:
        cfg, agent = self.cfg, self.agent
        if self.start_note:
            self.echo(self.start_note)
            self.start_note = ""
        if self.resumed_from is not None and self.step >= cfg.steps:  # finished: nothing is computed or rewritten
            last = self.eval_history[-1] if self.eval_history else None
            return TrainResult(self.out_dir, self.step, self.episodes, last,
                               agent.updates / self.wall_time if self.wall_time else float("nan"))
        every = checkpoint_interval(cfg)
        end = cfg.steps if stop_after is None else min(cfg.steps, self.step + stop_after)
        next_ckpt = (self.step // every + 1) * every
        window: list[UpdateStats] = []
        update_time, win_updates = 0.0, 0
        win_start, win_step = time.perf_counter(), self.step
        last_return = float("nan")
        rows = self.log.episodes.read()
        if rows:
            last_return = float(rows[-1]["return"])
        last_eval = self.eval_history[-1] if self.eval_history else None
        bar = TrainingProgress(f"{cfg.task}/{cfg.policy}", cfg.steps, self.step, self.progress, advance_every=100)
        seg_start = time.perf_counter()
        try:
            while self.step < end:
                # -- act
                if self.step < cfg.random_steps:
                    action = self.rng.uniform(-1.0, 1.0, self.action_dim)
                else:
                    action = agent.act(self.obs)
                next_obs, reward, terminated, truncated, _ = self.env.step(self.scale(action))
                self.replay.add(self.obs, action, reward, next_obs, terminated)
                self.obs = next_obs
                self.ep_return += float(reward)
                self.ep_length += 1
                self.step += 1
                episode_end = terminated or truncated
                if episode_end:
                    self.episodes += 1
                    last_return = self.ep_return
                    self.log.episodes.append({"step": self.step, "episode": self.episodes,
                                              "return": self.ep_return, "length": self.ep_length})
                    self._env_rng_before_reset = self.env.unwrapped.np_random.bit_generator.state
                    self.obs, _ = self.env.reset()
                    self.ep_return, self.ep_length = 0.0, 0
                # -- learn
                if self.step >= cfg.random_steps:
                    if cfg.models and agent.model_updates == 0:
                        for k in range(cfg.model_pretrain_updates):
                            loss = agent.update_models(self.replay.sample(cfg.batch_size, self.rng, self.device))
                            check_losses(UpdateStats(model_loss=loss), checkpoint=self._checkpoint_note(),
                                         where=f"model pre-training update {k + 1} (environment step {self.step})")
                    tic = time.perf_counter()
                    stats = agent.update(self.replay.sample(cfg.batch_size, self.rng, self.device))
                    update_time += time.perf_counter() - tic
                    check_losses(stats, checkpoint=self._checkpoint_note(),
                                 where=f"update {agent.updates} (environment step {self.step})")
                    window.append(stats)
                    win_updates += 1
                # -- evaluate / log / checkpoint
                if self.step % cfg.eval_every == 0 and self.step >= cfg.random_steps:
                    bar.note(self.step, f"evaluating {cfg.eval_episodes} episodes")
                    last_eval = self.evaluate()
                    self.save_snapshot()
                if self.step % cfg.log_every == 0 or self.step == end:
                    now = time.perf_counter()
                    row = _summarize(window)
                    row.update(step=self.step, updates=agent.updates, episodes=self.episodes,
                               wall_time=self.wall_time + now - seg_start,
                               steps_per_s=(self.step - win_step) / max(now - win_start, 1e-9),
                               updates_per_s=win_updates / update_time if update_time > 0 else float("nan"),
                               last_return=last_return)
                    self.log.log.append(row)
                    bar.show(row["step"], _info(row, last_eval))
                    window, update_time, win_updates = [], 0.0, 0
                    win_start, win_step = now, self.step
                if self.step >= next_ckpt and episode_end:
                    self.wall_time += time.perf_counter() - seg_start
                    seg_start = time.perf_counter()
                    self.save(episode_boundary=True)
                    self.log.plot(f"{cfg.task} {cfg.policy} seed {cfg.seed}")
                    next_ckpt = (self.step // every + 1) * every
                bar.advance(self.step)
        except KeyboardInterrupt:
            self.wall_time += time.perf_counter() - seg_start
            self.save(episode_boundary=False)
            bar.close()
            raise
        except BaseException:  # a diverged loss, a full disk, ...: nothing more is written
            bar.close()
            raise
        self.wall_time += time.perf_counter() - seg_start
        if self.step < cfg.steps:  # abandoned (stop_after): no final checkpoint, like a killed run
            bar.close()
            return TrainResult(self.out_dir, self.step, self.episodes, last_eval, float("nan"))
        if self.step >= cfg.steps and (not self.eval_history or self.eval_history[-1]["step"] != self.step):
            last_eval = self.evaluate()
        self.save(episode_boundary=False)
        self.log.plot(f"{cfg.task} {cfg.policy} seed {cfg.seed}")
        bar.close()
        ups = agent.updates / self.wall_time if self.wall_time else float("nan")
        return TrainResult(self.out_dir, self.step, self.episodes, last_eval, ups)


def _summarize(window: list[UpdateStats]) -> dict:
    keys = ["q_loss", "actor_loss", "alpha", "alpha_loss", "entropy", "model_loss", "distill_loss"]
    if not window:
        return {k: float("nan") for k in keys}
    return {k: float(np.mean([getattr(s, k) for s in window])) for k in keys}


def _info(row: dict, last_eval: dict | None) -> str:
    """The progress line of an agent's training log row."""
    ev = f"eval {last_eval['mean']:.0f}±{last_eval['std']:.0f}" if last_eval else "eval -"
    return (f"{row['steps_per_s']:.0f} st/s {row['updates_per_s']:.0f} upd/s | ret {row['last_return']:.0f} | {ev} | "
            f"q {row['q_loss']:.3g} pi {row['actor_loss']:.3g} α {row['alpha']:.3g}")
