"""Import SAC agents trained by other libraries as objective packages.

``optbench import sb3 MODEL.zip --task TASK --out PKG`` and ``optbench import cleanrl CKPT
--task TASK --out PKG [--alpha A]`` write the same package format as ``optbench export``
(:mod:`optbench.agents.package`): the agent's current critic as a 2-member
:class:`~optbench.objectives.q_functions.QEnsemble`, its actor as the package's direct network,
its temperature α, and benchmark/held-out states from deterministic episodes of the imported
actor (:func:`~optbench.agents.package.collect_states`).

Nothing in the imported file is executed. Tensors are read with
``torch.load(weights_only=True)`` (torch's restricted unpickler: tensors and plain containers
only; anything else is refused), and of a Stable-Baselines3 zip only ``policy.pth``,
``pytorch_variables.pth`` and the plain-JSON parts of ``data`` are read. The ``:serialized:``
(cloudpickle) fields of ``data`` are never decoded; they are only scanned, as opcodes, for
imports a model has no business with (``os``, ``subprocess``, ``eval``, ...), and a zip that has
one is refused. That scan is a refusal heuristic, not the safety guarantee: the guarantee is
that no pickle is ever loaded.

How the libraries' networks map onto optbench's (all ReLU MLPs, actions in ``[-1, 1]^A``):

* **Stable-Baselines3** ``SAC("MlpPolicy")``: ``actor.latent_pi`` (Linear/ReLU pairs) is the
  direct actor's trunk, ``actor.mu`` and ``actor.log_std`` its head (means first); SB3 clamps
  ``log σ`` to [−20, 2] (``log_std_transform = "clamp"``). ``critic.qf0``/``qf1`` take
  ``cat(features, action)`` with actions already rescaled to [−1, 1] (SB3's replay buffer and
  actor work in that space), so they become the ensemble members unchanged. The features
  extractor of an MLP policy (``FlattenExtractor``) has no parameters and is the identity on a
  flat observation, so whether it is shared does not matter; a features extractor *with*
  parameters (images, ``CombinedExtractor``) is refused. α = ``exp(log_ent_coef)`` from
  ``pytorch_variables.pth`` (or the fixed ``ent_coef``). The current critic is used, not
  ``critic_target``. Refused: ``use_sde``, a non-ReLU ``activation_fn``, ``n_critics ≠ 2``
  (optbench's ``Q̂ = mean − β·std`` is SB3's min only for two critics), other modules between
  the linear layers, non-SAC policies, non-Box or non-flat observation spaces, and models with
  a ``VecNormalize`` statistics file beside them.
* **CleanRL** ``sac_continuous_action.py``: actor ``fc1, fc2`` (ReLU) → trunk, ``fc_mean`` and
  ``fc_logstd`` → head, with CleanRL's ``log σ = −5 + ½·7·(tanh(x) + 1)``
  (``log_std_transform = "tanh"``, range [−5, 2]). CleanRL's Q-networks ``qf1, qf2`` (``fc1, fc2,
  fc3``) take actions in the task's own units, ``a_env = scale·a + bias``; that affine map is
  folded into their first layer (``W_a ← W_a·diag(scale)``, ``b ← b + W_a·bias``), exactly.

Limits: SB3 saves ``VecNormalize`` statistics in a separate file and leaves the observation
space unchanged, so a zip alone cannot reveal that its agent saw normalized observations; the
import refuses a model with ``vecnormalize.pkl`` (or ``vec_normalize.pkl``) in its directory or
one directory below (the RL Zoo and Hugging Face layouts), and otherwise records the imported
actor's return so that a mismatch with the agent's known return shows. CleanRL checkpoints
name no task, so ``--task`` is trusted beyond the shape checks.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
import pickletools
import re
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from optbench.agents.envs import env_dims, make_env
from optbench.optimizers.networks import DirectActor
from optbench.agents.package import (FORMAT, VERSION, PackageError, check_out_dir, collect_states, f32_state_dict,
                                     sha256_file, states_and_eval_doc, write_package)
from optbench.agents.trainer import versions
from optbench.objectives.q_functions import QEnsemble

SB3_LOG_STD_RANGE = (-20.0, 2.0)
CLEANRL_LOG_STD_RANGE = (-5.0, 2.0)
VECNORMALIZE_FILES = ("vecnormalize.pkl", "vec_normalize.pkl")
MAX_MEMBER_BYTES = 1 << 30  # a zip member larger than this is not a policy of a MuJoCo agent


class AgentImportError(PackageError):
    """A file that cannot be imported as a SAC agent (printed as one line)."""


# ---------------------------------------------------------------------- safe reading
def load_tensors(raw: bytes, what: str) -> Any:
    """``torch.load(weights_only=True)`` of ``raw`` on the CPU; anything but tensors and plain
    containers (a pickle payload, a custom class) is refused as :class:`AgentImportError`."""
    try:
        return torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - the restricted unpickler raises several types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise AgentImportError(f"{what} is not a plain tensor file; torch.load(weights_only=True) refused it "
                               f"({first[:160]})") from None


_DENIED_MODULES = {"os", "posix", "nt", "subprocess", "sys", "shutil", "socket", "pathlib", "importlib", "runpy",
                   "pty", "ctypes", "pickle", "_pickle", "marshal", "webbrowser", "code", "codeop", "commands",
                   "multiprocessing", "asyncio", "signal", "threading", "_thread", "urllib", "http", "ftplib",
                   "smtplib", "telnetlib", "tempfile", "glob", "pdb", "timeit", "trace", "sysconfig"}
_DENIED_BUILTINS = {"eval", "exec", "compile", "__import__", "open", "breakpoint", "input", "exit", "quit"}


def pickle_imports(raw: bytes) -> list[tuple[str, str]]:
    """The ``(module, name)`` globals a pickle would import, read from its opcodes with
    :func:`pickletools.genops` (nothing is executed). ``STACK_GLOBAL`` operands are resolved
    through the strings pushed and memoized before it; unresolvable ones are ``("?", "?")``."""
    out: list[tuple[str, str]] = []
    strings: list[Any] = []
    memo: dict[int, Any] = {}
    for op, arg, _ in pickletools.genops(raw):
        name = op.name
        if name == "GLOBAL" or name == "INST":
            module, _, attr = str(arg).partition(" ")
            out.append((module, attr))
            strings.append(None)
        elif name == "STACK_GLOBAL":
            if len(strings) >= 2 and isinstance(strings[-2], str) and isinstance(strings[-1], str):
                out.append((strings[-2], strings[-1]))
            else:
                out.append(("?", "?"))
            strings.append(None)
        elif name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING",
                      "STRING"):
            strings.append(arg)
        elif name in ("BINPUT", "LONG_BINPUT", "PUT"):
            memo[int(arg)] = strings[-1] if strings else None
        elif name == "MEMOIZE":
            memo[len(memo)] = strings[-1] if strings else None
        elif name in ("BINGET", "LONG_BINGET", "GET"):
            strings.append(memo.get(int(arg)))
        elif name not in ("FRAME", "PROTO", "STOP"):
            strings.append(None)
    return out


def denied_import(raw: bytes) -> str | None:
    """The first import of pickle ``raw`` that a saved model has no use for (``"os.system"``,
    ``"builtins.eval"``, an unresolvable global), or ``None``; an unreadable pickle counts too."""
    try:
        imports = pickle_imports(raw)
    except Exception as exc:  # noqa: BLE001 - a damaged opcode stream
        return f"an unreadable pickle ({type(exc).__name__})"
    for module, name in imports:
        root = module.split(".")[0]
        if module == "?" or root in _DENIED_MODULES or (root in ("builtins", "__builtin__") and name in _DENIED_BUILTINS):
            return f"{module}.{name}" if module != "?" else "a global whose name is computed at load time"
    return None


def _scalar(value: Any) -> float:
    """The first element of a saved scalar (tensor, number) as a float; refused otherwise."""
    try:
        return float(torch.as_tensor(value).detach().reshape(-1)[0])
    except (TypeError, ValueError, IndexError, RuntimeError):
        raise AgentImportError(f"expected a number or a one-element tensor, got {type(value).__name__}") from None


def _plain(item: Any) -> dict[str, Any] | Any:
    """A ``data`` entry without its ``:serialized:`` blob: plain JSON as is, a serialized
    object as the dict of first-level plain items SB3 writes beside the blob."""
    if isinstance(item, dict) and ":serialized:" in item:
        return {k: v for k, v in item.items() if k != ":serialized:"}
    return item


# ---------------------------------------------------------------------- layout helpers
def _linear_stack(sd: dict[str, torch.Tensor], prefix: str, what: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``(weight, bias)`` of the Linear layers ``prefix.0, prefix.2, ...`` of an ``nn.Sequential``
    of Linear/activation pairs; anything else under ``prefix`` is refused."""
    keys = [k for k in sd if k.startswith(prefix + ".")]
    idx = sorted({int(m.group(1)) for k in keys if (m := re.fullmatch(re.escape(prefix) + r"\.(\d+)\.(weight|bias)", k))})
    expected = {f"{prefix}.{i}.{p}" for i in idx for p in ("weight", "bias")}
    if not idx or set(keys) != expected or idx != list(range(0, 2 * len(idx), 2)):
        raise AgentImportError(f"{what} is not a plain MLP of Linear layers with activations between them "
                               f"(keys {sorted(keys)[:6]}); optbench imports ReLU MLPs only")
    layers = [(sd[f"{prefix}.{i}.weight"], sd[f"{prefix}.{i}.bias"]) for i in idx]
    _check_chain(layers, what)
    return layers


def _check_chain(layers: list[tuple[torch.Tensor, torch.Tensor]], what: str) -> None:
    for k, (w, b) in enumerate(layers):
        if w.dim() != 2 or b.dim() != 1 or b.shape[0] != w.shape[0]:
            raise AgentImportError(f"{what}: layer {k} has weight {list(w.shape)} and bias {list(b.shape)}")
        if k and w.shape[1] != layers[k - 1][0].shape[0]:
            raise AgentImportError(f"{what}: layer {k} takes {w.shape[1]} inputs but layer {k - 1} gives "
                                   f"{layers[k - 1][0].shape[0]}")
        if not (torch.isfinite(w).all() and torch.isfinite(b).all()):
            raise AgentImportError(f"{what}: layer {k} holds NaN/inf")


def q_ensemble(members: list[list[tuple[torch.Tensor, torch.Tensor]]], state_dim: int, action_dim: int,
               what: str) -> QEnsemble:
    """A :class:`QEnsemble` holding ``members`` (each a list of ``nn.Linear``-layout
    ``(weight [out, in], bias [out])`` layers, input ``cat(state, action)``, scalar output)."""
    shapes = [[tuple(w.shape) for w, _ in m] for m in members]
    if any(s != shapes[0] for s in shapes):
        raise AgentImportError(f"{what}: the critics have different shapes {shapes}")
    first, last = members[0][0][0], members[0][-1][0]
    if first.shape[1] != state_dim + action_dim or last.shape[0] != 1 or len(members[0]) < 2:
        raise AgentImportError(f"{what}: critic layers {shapes[0]} do not map ({state_dim} state + {action_dim} "
                               f"action inputs) to one value through at least one hidden layer")
    hidden = [w.shape[0] for w, _ in members[0][:-1]]
    q = QEnsemble(state_dim, action_dim, hidden, ensemble_size=len(members))
    with torch.no_grad():
        for k in range(len(hidden) + 1):
            q.weights[k].copy_(torch.stack([m[k][0].t() for m in members]))
            q.biases[k].copy_(torch.stack([m[k][1] for m in members]).unsqueeze(1))
    return q


def direct_actor(trunk: list[tuple[torch.Tensor, torch.Tensor]], mu: tuple[torch.Tensor, torch.Tensor],
                 log_std: tuple[torch.Tensor, torch.Tensor], transform: str, log_std_range: tuple[float, float],
                 state_dim: int, action_dim: int, what: str) -> DirectActor:
    """A :class:`DirectActor` with ``trunk`` (ReLU after every layer) and the ``mu``/``log_std``
    heads concatenated into its one head (means first)."""
    _check_chain([*trunk, mu], what)
    _check_chain([*trunk, log_std], what)
    if trunk[0][0].shape[1] != state_dim or mu[0].shape[0] != action_dim or log_std[0].shape[0] != action_dim:
        raise AgentImportError(f"{what}: actor maps {trunk[0][0].shape[1]} inputs to {mu[0].shape[0]} actions, "
                               f"the task has {state_dim} and {action_dim}")
    actor = DirectActor(state_dim, action_dim, [w.shape[0] for w, _ in trunk], log_std_transform=transform,
                        log_std_range=log_std_range)
    linears = list(actor.trunk[0::2])
    with torch.no_grad():
        for lin, (w, b) in zip(linears, trunk):
            lin.weight.copy_(w)
            lin.bias.copy_(b)
        actor.head.weight.copy_(torch.cat([mu[0], log_std[0]]))
        actor.head.bias.copy_(torch.cat([mu[1], log_std[1]]))
    return actor.requires_grad_(False).eval()


def deterministic_policy(actor: DirectActor):
    """``obs -> tanh(μ(obs))`` in ``[-1, 1]^A`` (numpy in and out), for :func:`collect_states`."""

    def act(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            mu, _ = actor.mu_log_std(torch.as_tensor(obs, dtype=torch.float32).unsqueeze(0))
        return torch.tanh(mu)[0].numpy().astype(np.float64)

    return act


def _task_dims(task: str) -> tuple[int, int, np.ndarray, np.ndarray]:
    env = make_env(task)
    try:
        S, A = env_dims(env)
        return S, A, env.action_space.low.astype(np.float64), env.action_space.high.astype(np.float64)
    finally:
        env.close()


def _write(kind: str, source: Path, task: str, out_dir: str | Path, q: QEnsemble, actor: DirectActor, alpha: float,
           gamma: float | None, training: dict, imported: dict, *, n_states: int, heldout: int | None,
           eval_episodes: int, seed: int, overwrite: bool, name: str | None) -> Path:
    """Collect states with the imported actor and write the package (shared by both importers)."""
    if not (math.isfinite(alpha) and alpha > 0):
        raise AgentImportError(f"α must be a positive number, got {alpha}")
    heldout = n_states if heldout is None else heldout
    state_tensors, returns = collect_states(deterministic_policy(actor), task, n_states, heldout, eval_episodes, seed)
    arch = {"q": {"kind": "QEnsemble", "state_dim": q.state_dim, "action_dim": q.action_dim, "hidden": list(q.hidden),
                  "ensemble_size": q.ensemble_size, "activation": "relu", "source": imported["critic"]},
            "direct": dict(actor.architecture(), source=imported["actor"])}
    doc = {
        "format": FORMAT, "format_version": VERSION, "name": name or f"{task}-{kind}-{source.stem}", "task": task,
        "policy": "direct", "state_dim": q.state_dim, "action_dim": q.action_dim, "alpha": float(alpha),
        "log_alpha": math.log(alpha), "gamma": gamma,
        "beta": {"objective_default": 1.0, "train": 1.0, "act": None,
                 "note": "the library trained with min over its two critics (β = 1)"},
        "architectures": arch, "training": training, "imported": imported,
        **states_and_eval_doc(state_tensors, returns, seed),
        "versions": versions(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    files = {"q.safetensors": f32_state_dict(q.state_dict()), "states.safetensors": state_tensors,
             "direct.safetensors": f32_state_dict(actor.state_dict())}
    return write_package(out_dir, files, doc, overwrite)


def _source_info(path: Path, library: str) -> dict[str, Any]:
    return {"library": library, "file": str(path.resolve()), "sha256": sha256_file(path),
            "bytes": path.stat().st_size}


# ---------------------------------------------------------------------- Stable-Baselines3
def find_vecnormalize(model: Path) -> Path | None:
    """A ``VecNormalize`` statistics file beside ``model`` or one directory below it."""
    for directory in (model.parent, *(d for d in sorted(model.parent.iterdir()) if d.is_dir())):
        for fname in VECNORMALIZE_FILES:
            if (directory / fname).is_file():
                return directory / fname
    return None


def read_sb3_zip(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any], str | None]:
    """The safe parts of an SB3 model zip: ``policy.pth`` state dict, ``pytorch_variables.pth``,
    the ``data`` entries (plain JSON as is; serialized objects as their plain items only, after
    the opcode scan of :func:`denied_import`) and the SB3 version string."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        raise AgentImportError(f"{path} is not a Stable-Baselines3 model (not a zip file)") from None
    with archive:
        names = set(archive.namelist())
        missing = [n for n in ("data", "policy.pth") if n not in names]
        if missing:
            raise AgentImportError(f"{path} is not a Stable-Baselines3 model zip (no {', '.join(missing)})")

        def member(name: str) -> bytes:
            if archive.getinfo(name).file_size > MAX_MEMBER_BYTES:
                raise AgentImportError(f"{path}: {name} is larger than {MAX_MEMBER_BYTES >> 20} MB")
            return archive.read(name)

        try:
            raw_data = json.loads(member("data").decode("utf-8"))
            assert isinstance(raw_data, dict)
        except (UnicodeDecodeError, json.JSONDecodeError, AssertionError):
            raise AgentImportError(f"{path}: its 'data' is not the JSON document SB3 writes; refused "
                                   f"(nothing in it was decoded)") from None
        data: dict[str, Any] = {}
        for key, item in raw_data.items():
            if isinstance(item, dict) and ":serialized:" in item:
                try:
                    blob = base64.b64decode(str(item[":serialized:"]).encode(), validate=True)
                except (binascii.Error, ValueError):
                    raise AgentImportError(f"{path}: data field {key!r} is not base64") from None
                bad = denied_import(blob)
                if bad is not None:
                    raise AgentImportError(f"{path}: data field {key!r} holds a pickle that imports {bad}; "
                                           f"refused (it was not decoded)")
            data[key] = _plain(item)
        policy = load_tensors(member("policy.pth"), f"{path.name}:policy.pth")
        variables = load_tensors(member("pytorch_variables.pth"), f"{path.name}:pytorch_variables.pth") \
            if "pytorch_variables.pth" in names else {}
        version = member("_stable_baselines3_version").decode("utf-8", "replace").strip() \
            if "_stable_baselines3_version" in names else None
    if not isinstance(policy, dict) or not all(isinstance(v, torch.Tensor) for v in policy.values()):
        raise AgentImportError(f"{path}: policy.pth is not a state dict of tensors")
    if not isinstance(variables, dict):
        raise AgentImportError(f"{path}: pytorch_variables.pth is not a dict of tensors")
    return policy, variables, data, version


def _check_sb3_data(path: Path, data: dict[str, Any], S: int, A: int, low: np.ndarray, high: np.ndarray) -> dict:
    """Refuse what does not map onto optbench (see the module docstring); returns the policy kwargs."""
    pc = data.get("policy_class")
    module = pc.get("__module__") if isinstance(pc, dict) else None
    if module is not None and module not in ("stable_baselines3.sac.policies",):
        raise AgentImportError(f"{path}: policy class from {module}, not a Stable-Baselines3 SAC policy")
    if data.get("use_sde"):
        raise AgentImportError(f"{path}: trained with use_sde=True (state-dependent exploration); optbench's "
                               f"policies are tanh-Gaussians with a log-std head")
    kwargs = data.get("policy_kwargs") or {}
    if not isinstance(kwargs, dict):
        raise AgentImportError(f"{path}: policy_kwargs is not a mapping")
    act = kwargs.get("activation_fn")
    if act is not None and not re.search(r"torch\.nn\.modules\.activation\.ReLU'", str(act)):
        raise AgentImportError(f"{path}: activation_fn {act} is not ReLU; optbench's networks are ReLU MLPs")
    if kwargs.get("use_sde"):
        raise AgentImportError(f"{path}: trained with use_sde=True; not importable")
    n_critics = kwargs.get("n_critics", 2)
    if n_critics != 2:
        raise AgentImportError(f"{path}: n_critics={n_critics}; optbench's Q̂ = mean − β·std equals SAC's min over "
                               f"the critics only for 2 critics")
    fe = kwargs.get("features_extractor_class")
    if fe is not None and "FlattenExtractor" not in str(fe):
        raise AgentImportError(f"{path}: features extractor {fe}; only flat observations (FlattenExtractor) import")
    obs = data.get("observation_space")
    if isinstance(obs, dict):
        typ = str(obs.get(":type:", ""))
        shape = obs.get("_shape", obs.get("shape"))
        if "Box" not in typ:
            raise AgentImportError(f"{path}: observation space {typ or '?'} is not a Box (dict/image observations "
                                   f"are not importable)")
        if isinstance(shape, list) and len(shape) != 1:
            raise AgentImportError(f"{path}: observations of shape {shape} (images?) are not importable; optbench "
                                   f"needs flat state vectors")
        if str(obs.get("dtype")) == "uint8":
            raise AgentImportError(f"{path}: uint8 observations (images) are not importable")
        if isinstance(shape, list) and shape != [S]:
            raise AgentImportError(f"{path}: observations of shape {shape}, the task has [{S}]")
    acts = data.get("action_space")
    if isinstance(acts, dict):
        if "Box" not in str(acts.get(":type:", "Box")):
            raise AgentImportError(f"{path}: action space {acts.get(':type:')} is not a Box")
        shape = acts.get("_shape", acts.get("shape"))
        if isinstance(shape, list) and shape != [A]:
            raise AgentImportError(f"{path}: actions of shape {shape}, the task has [{A}]")
        for side, ref in (("low", low), ("high", high)):
            txt = acts.get(side)
            if isinstance(txt, str):
                try:
                    vals = np.array([float(x) for x in txt.strip("[] \n").split()], dtype=np.float64)
                except ValueError:
                    continue
                if vals.shape == ref.shape and not np.allclose(vals, ref, rtol=1e-6, atol=1e-6):
                    raise AgentImportError(f"{path}: action {side} bounds {txt} differ from the task's {ref.tolist()}")
    return kwargs


def import_sb3(model: str | Path, task: str, out_dir: str | Path, *, n_states: int = 1000, heldout: int | None = None,
               eval_episodes: int = 10, seed: int = 2024, overwrite: bool = False, name: str | None = None) -> Path:
    """Write the objective package of a Stable-Baselines3 SAC model zip (see the module docstring)."""
    path = Path(model).expanduser()
    check_out_dir(out_dir, overwrite)
    sd, variables, data, version = read_sb3_zip(path)
    vecnorm = find_vecnormalize(path)
    if vecnorm is not None:
        raise AgentImportError(f"{path}: trained with VecNormalize ({vecnorm} beside it); its Q-functions and actor "
                               f"take normalized observations, which an objective package cannot express")
    S, A, low, high = _task_dims(task)
    kwargs = _check_sb3_data(path, data, S, A, low, high)

    known = ("actor.latent_pi.", "actor.mu.", "actor.log_std.", "critic.qf", "critic_target.qf")
    extra = sorted(k for k in sd if not k.startswith(known))
    if extra:
        raise AgentImportError(f"{path}: policy.pth has parameters optbench cannot map ({extra[:4]}): a features "
                               f"extractor with weights (images, dict observations) or a non-SAC policy")
    if "actor.log_std" in sd or "actor.log_std.weight" not in sd:
        raise AgentImportError(f"{path}: the actor has no log-std head (use_sde?); not importable")
    trunk = _linear_stack(sd, "actor.latent_pi", f"{path.name}: actor.latent_pi")
    actor = direct_actor(trunk, (sd["actor.mu.weight"], sd["actor.mu.bias"]),
                         (sd["actor.log_std.weight"], sd["actor.log_std.bias"]), "clamp", SB3_LOG_STD_RANGE, S, A,
                         f"{path.name}: actor")
    critics = sorted({int(m.group(1)) for k in sd if (m := re.match(r"critic\.qf(\d+)\.", k))})
    if critics != [0, 1]:
        raise AgentImportError(f"{path}: critics {['qf%d' % c for c in critics]}; optbench's Q̂ = mean − β·std equals "
                               f"SAC's min only for 2 critics (qf0, qf1)")
    q = q_ensemble([_linear_stack(sd, f"critic.qf{c}", f"{path.name}: critic.qf{c}") for c in critics], S, A,
                   f"{path.name}: critic")

    if "log_ent_coef" in variables:
        alpha, alpha_source = math.exp(_scalar(variables["log_ent_coef"])), "exp(log_ent_coef)"
    elif "ent_coef_tensor" in variables:
        alpha, alpha_source = _scalar(variables["ent_coef_tensor"]), "ent_coef_tensor"
    elif isinstance(data.get("ent_coef"), (int, float)):
        alpha, alpha_source = float(data["ent_coef"]), "ent_coef (fixed)"
    else:
        raise AgentImportError(f"{path}: no entropy coefficient (log_ent_coef or ent_coef_tensor in "
                               f"pytorch_variables.pth, or a numeric ent_coef)")
    training = {"steps": data.get("num_timesteps"), "updates": data.get("_n_updates"),
                "episodes": data.get("_episode_num"), "seed": data.get("seed"),
                "config": {k: data.get(k) for k in ("learning_rate", "batch_size", "buffer_size", "learning_starts",
                                                    "tau", "gamma", "train_freq", "gradient_steps", "ent_coef",
                                                    "target_entropy", "target_update_interval")
                           if not isinstance(data.get(k), dict)},
                "eval_history": []}
    imported = {**_source_info(path, "stable-baselines3"), "library_version": version,
                "read": ["policy.pth (torch.load weights_only=True)", "pytorch_variables.pth (weights_only=True)",
                         "data: plain JSON fields only (serialized fields never decoded)"],
                "policy_kwargs": {k: v for k, v in kwargs.items() if isinstance(v, (str, int, float, bool, list))},
                "alpha_source": alpha_source, "actor": "SB3 actor (latent_pi; mu and log_std heads, log σ clamped "
                "to [-20, 2])", "critic": "SB3 critic qf0/qf1 (current, not critic_target); actions in [-1, 1]"}
    gamma = data.get("gamma") if isinstance(data.get("gamma"), (int, float)) else None
    return _write("sb3", path, task, out_dir, q, actor, alpha, gamma, training, imported, n_states=n_states,
                  heldout=heldout, eval_episodes=eval_episodes, seed=seed, overwrite=overwrite, name=name)


# ---------------------------------------------------------------------- CleanRL
CLEANRL_ACTOR_KEYS = {f"{layer}.{p}" for layer in ("fc1", "fc2", "fc_mean", "fc_logstd") for p in ("weight", "bias")}
CLEANRL_Q_KEYS = {f"{layer}.{p}" for layer in ("fc1", "fc2", "fc3") for p in ("weight", "bias")}


def read_cleanrl(path: str | Path) -> tuple[dict, dict, dict, float | None]:
    """``(actor, qf1, qf2, α or None)`` from a CleanRL checkpoint: a ``torch.save``d tuple/list
    ``(actor, qf1, qf2[, ...])`` of state dicts or a dict with keys ``actor``, ``qf1``, ``qf2``
    (and optionally ``log_alpha`` or ``alpha``), read with ``weights_only=True``."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    if path.stat().st_size > MAX_MEMBER_BYTES:
        raise AgentImportError(f"{path} is larger than {MAX_MEMBER_BYTES >> 20} MB")
    obj = load_tensors(path.read_bytes(), str(path))
    alpha = None
    if isinstance(obj, (tuple, list)):
        if len(obj) < 3:
            raise AgentImportError(f"{path}: a tuple of {len(obj)} items; CleanRL's layout is (actor, qf1, qf2)")
        actor, qf1, qf2 = obj[:3]
    elif isinstance(obj, dict) and {"actor", "qf1", "qf2"} <= set(obj):
        actor, qf1, qf2 = obj["actor"], obj["qf1"], obj["qf2"]
        if "log_alpha" in obj:
            alpha = math.exp(_scalar(obj["log_alpha"]))
        elif "alpha" in obj:
            alpha = _scalar(obj["alpha"])
    else:
        raise AgentImportError(f"{path}: not CleanRL's SAC layout (a tuple (actor, qf1, qf2) of state dicts or a dict "
                               f"with keys actor, qf1, qf2)")
    for what, sd, keys in (("actor", actor, CLEANRL_ACTOR_KEYS), ("qf1", qf1, CLEANRL_Q_KEYS),
                           ("qf2", qf2, CLEANRL_Q_KEYS)):
        if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
            raise AgentImportError(f"{path}: {what} is not a state dict of tensors")
        allowed = keys | ({"action_scale", "action_bias"} if what == "actor" else set())
        if not keys <= set(sd) or not set(sd) <= allowed:
            raise AgentImportError(f"{path}: {what} has keys {sorted(sd)}, CleanRL's sac_continuous_action layout "
                                   f"has {sorted(keys)}")
    return actor, qf1, qf2, alpha


def _fold_action_affine(layers: list[tuple[torch.Tensor, torch.Tensor]], S: int, scale: torch.Tensor,
                        bias: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """First layer of ``Q(s, scale·a + bias)`` as a layer of ``(s, a)``: exact affine folding."""
    w, b = layers[0]
    w = w.double()
    wa = w[:, S:]
    new_w = torch.cat([w[:, :S], wa * scale.double()], dim=1)
    new_b = b.double() + wa @ bias.double()
    return [(new_w.float(), new_b.float()), *layers[1:]]


def import_cleanrl(checkpoint: str | Path, task: str, out_dir: str | Path, *, alpha: float | None = None,
                   n_states: int = 1000, heldout: int | None = None, eval_episodes: int = 10, seed: int = 2024,
                   overwrite: bool = False, name: str | None = None) -> Path:
    """Write the objective package of a CleanRL SAC checkpoint (see the module docstring);
    ``alpha`` is required unless the checkpoint holds ``log_alpha``/``alpha`` (and overrides it)."""
    path = Path(checkpoint).expanduser()
    check_out_dir(out_dir, overwrite)
    actor_sd, qf1, qf2, stored_alpha = read_cleanrl(path)
    if alpha is None and stored_alpha is None:
        raise AgentImportError(f"{path} holds no α (CleanRL saves none); give it with --alpha (CleanRL's fixed default "
                               f"is 0.2; an autotuned run logs it as losses/alpha)")
    alpha_used, alpha_source = (float(alpha), "--alpha") if alpha is not None else (stored_alpha, "checkpoint")
    S, A, low, high = _task_dims(task)
    task_scale = torch.as_tensor((high - low) / 2.0, dtype=torch.float32)
    task_bias = torch.as_tensor((high + low) / 2.0, dtype=torch.float32)
    scale, bias = actor_sd.get("action_scale", task_scale), actor_sd.get("action_bias", task_bias)
    if scale.reshape(-1).shape != (A,) or bias.reshape(-1).shape != (A,):
        raise AgentImportError(f"{path}: action_scale/action_bias have {scale.numel()}/{bias.numel()} entries, the task "
                               f"has {A} actions")
    scale, bias = scale.reshape(-1).float(), bias.reshape(-1).float()
    if not (torch.allclose(scale, task_scale, rtol=1e-5, atol=1e-6) and torch.allclose(bias, task_bias, rtol=1e-5,
                                                                                        atol=1e-6)):
        raise AgentImportError(f"{path}: the actor's action box (scale {scale.tolist()}, bias {bias.tolist()}) is not "
                               f"{task}'s (scale {task_scale.tolist()}, bias {task_bias.tolist()})")
    trunk = [(actor_sd["fc1.weight"], actor_sd["fc1.bias"]), (actor_sd["fc2.weight"], actor_sd["fc2.bias"])]
    actor = direct_actor(trunk, (actor_sd["fc_mean.weight"], actor_sd["fc_mean.bias"]),
                         (actor_sd["fc_logstd.weight"], actor_sd["fc_logstd.bias"]), "tanh", CLEANRL_LOG_STD_RANGE,
                         S, A, f"{path.name}: actor")
    members = []
    for what, sd in (("qf1", qf1), ("qf2", qf2)):
        layers = [(sd[f"fc{i}.weight"], sd[f"fc{i}.bias"]) for i in (1, 2, 3)]
        _check_chain(layers, f"{path.name}: {what}")
        if layers[0][0].shape[1] != S + A:
            raise AgentImportError(f"{path}: {what} takes {layers[0][0].shape[1]} inputs, the task has {S} + {A}")
        members.append(_fold_action_affine(layers, S, scale, bias))
    q = q_ensemble(members, S, A, f"{path.name}: critic")
    training = {"steps": None, "updates": None, "episodes": None, "seed": None, "config": {}, "eval_history": []}
    imported = {**_source_info(path, "cleanrl"), "layout": "sac_continuous_action (actor fc1/fc2/fc_mean/fc_logstd; "
                "qf1, qf2 fc1/fc2/fc3)", "read": ["torch.load weights_only=True"], "alpha_source": alpha_source,
                "alpha_in_checkpoint": stored_alpha,
                "actor": "CleanRL actor (log σ = -5 + 3.5 (tanh(x) + 1))",
                "critic": "CleanRL qf1/qf2 with the action rescaling a_env = scale·a + bias folded into fc1",
                "action_scale": scale.tolist(), "action_bias": bias.tolist()}
    return _write("cleanrl", path, task, out_dir, q, actor, alpha_used, None, training, imported, n_states=n_states,
                  heldout=heldout, eval_episodes=eval_episodes, seed=seed, overwrite=overwrite, name=name)


__all__ = ["AgentImportError", "deterministic_policy", "denied_import", "direct_actor", "find_vecnormalize",
           "import_cleanrl", "import_sb3", "load_tensors", "pickle_imports", "q_ensemble", "read_cleanrl",
           "read_sb3_zip"]
