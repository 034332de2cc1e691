"""`optbench import sb3|cleanrl`: the imported objective is the agent's own, and nothing in the
imported file ever runs.

The SB3 agent is trained here (a few thousand steps of InvertedPendulum-v5, whose action box
[-3, 3] exercises SB3's rescaling to [-1, 1]); the CleanRL checkpoint is built here with the
module shapes of CleanRL's sac_continuous_action.py."""

from __future__ import annotations

import base64
import json
import pickle
import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

sb3 = pytest.importorskip("stable_baselines3")

from optbench.agents.package import load_package  # noqa: E402
from optbench.cli import main  # noqa: E402
from optbench.objectives.q_functions import pessimistic_value  # noqa: E402
from optbench.optimizers.base import make_optimizer  # noqa: E402
from optbench.runner.drive import run_optimizer

TASK = "InvertedPendulum-v5"
S, A = 4, 1


def _one_line_error(capsys, rc: int) -> str:
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert err.startswith("error:") and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def sb3_model(tmp_path_factory):
    """A small SB3 SAC agent trained for 2500 steps, saved with model.save."""
    torch.set_num_threads(1)
    d = tmp_path_factory.mktemp("sb3")
    model = sb3.SAC("MlpPolicy", gym.make(TASK), policy_kwargs=dict(net_arch=[32, 32]), learning_starts=300,
                    batch_size=64, seed=0, device="cpu", verbose=0)
    model.learn(2500)
    path = d / "model" / "sac_pendulum.zip"
    path.parent.mkdir()
    model.save(path)
    return path, sb3.SAC.load(path, device="cpu")


@pytest.fixture(scope="module")
def sb3_package(sb3_model, tmp_path_factory):
    path, _ = sb3_model
    out = tmp_path_factory.mktemp("sb3pkg") / "pkg"
    assert main(["import", "sb3", str(path), "--task", TASK, "--out", str(out), "--states", "64", "--heldout", "16",
                 "--episodes", "5"]) == 0
    return load_package(out)


def _random_pairs(n: int = 256):
    gen = torch.Generator().manual_seed(3)
    return torch.randn(n, S, generator=gen) * 0.3, torch.rand(n, A, generator=gen) * 2 - 1


@pytest.mark.slow
def test_sb3_q_hat_is_sb3s_critic_min(sb3_model, sb3_package):
    _, model = sb3_model
    states, actions = _random_pairs()
    with torch.no_grad():
        q1, q2 = model.critic(states, actions)
        theirs = torch.min(q1, q2).squeeze(-1)
        ours = pessimistic_value(sb3_package.q(states, actions.unsqueeze(1)), 1.0).squeeze(-1)
    assert torch.allclose(ours, theirs, rtol=1e-5, atol=1e-5)
    assert sb3_package.q.ensemble_size == 2 and sb3_package.q.hidden == (32, 32)
    assert sb3_package.alpha == pytest.approx(float(model.log_ent_coef.detach().exp()), rel=1e-6)
    # the objective's Q-evaluations go through the same networks
    obj = sb3_package.objective(n_states=8, score_samples=16)
    assert obj.batch_size == 8 and obj.alpha.item() == pytest.approx(sb3_package.alpha)


@pytest.mark.slow
def test_sb3_direct_optimizer_reproduces_sb3s_actor(sb3_model, sb3_package):
    _, model = sb3_model
    obj = sb3_package.objective(n_states=64, score_samples=16)
    lam = run_optimizer(make_optimizer("direct", package=sb3_package), obj, 1).final_params
    with torch.no_grad():
        mean, log_std, _ = model.actor.get_action_dist_params(obj.states)
    assert torch.allclose(lam[:, :A], mean, atol=1e-5) and torch.allclose(lam[:, A:], log_std, atol=1e-5)
    # SB3's hard clamp of log σ to [-20, 2] is kept: beyond the range the heads agree too
    far = torch.randn(32, S) * 50
    with torch.no_grad():
        mean, log_std, _ = model.actor.get_action_dist_params(far)
        ours = sb3_package.direct(far)
    assert torch.allclose(ours[:, A:], log_std, atol=1e-4)
    assert sb3_package.meta["architectures"]["direct"]["log_std_transform"] == "clamp"


@pytest.mark.slow
def test_sb3_recorded_return_is_sb3s_own_evaluation(sb3_model, sb3_package):
    from stable_baselines3.common.evaluation import evaluate_policy

    _, model = sb3_model
    ev = sb3_package.meta["eval"]
    # the same deterministic policy on the same reset seeds: SB3's predict gives the same returns
    env = gym.make(TASK)
    theirs = []
    for i in range(ev["episodes"]):
        obs, _ = env.reset(seed=ev["seed"] + i)
        done, ret = False, 0.0
        while not done:
            action, _ = model.predict(obs, deterministic=True)
            obs, r, term, trunc, _ = env.step(action)
            ret += float(r)
            done = term or trunc
        theirs.append(ret)
    assert np.allclose(theirs, ev["returns"], rtol=0.05, atol=1.0), (theirs, ev["returns"])
    assert max(theirs) > 20, theirs  # the agent learned to balance for a while: the comparison means something
    # and SB3's own evaluate_policy (its own reset seeds) agrees within the spread of the returns
    from stable_baselines3.common.monitor import Monitor

    mean, std = evaluate_policy(model, Monitor(gym.make(TASK)), n_eval_episodes=10, deterministic=True)
    spread = 3 * max(std, ev["std"]) + 0.05 * abs(mean) + 1.0
    assert abs(mean - ev["mean"]) <= spread, (mean, std, ev)


@pytest.mark.slow
def test_sb3_package_runs_with_every_default_optimizer(sb3_package, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "--objectives", str(sb3_package.path), "--states", "3", "--iterations", "3",
                 "--out", str(out), "--no-plots"]) == 0
    cells = list((out / "cells").glob("*.json"))
    labels = {json.loads(p.read_text())["optimizer"] for p in cells}
    assert {"direct", "adam", "cem", "cmaes", "scipy:L-BFGS-B"} <= labels, labels


# ------------------------------------------------------------------ refusals
def _rewrite_zip(src: Path, dst: Path, replace: dict[str, bytes]) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            zout.writestr(name, replace.get(name, zin.read(name)))
    return dst


class _Payload:
    """Unpickling this writes a marker file: proof that a pickle was loaded."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('ran')",))


def _import_sb3(path: Path, out: Path) -> int:
    return main(["import", "sb3", str(path), "--task", TASK, "--out", str(out), "--states", "8", "--episodes", "1"])


@pytest.mark.slow
@pytest.mark.parametrize("where", ["policy.pth", "pytorch_variables.pth", "data-field", "data"])
def test_malicious_sb3_zip_is_refused_and_never_runs(sb3_model, tmp_path, capsys, where):
    src, _ = sb3_model
    marker = tmp_path / "marker"
    payload = _Payload(marker)
    if where in ("policy.pth", "pytorch_variables.pth"):
        import io

        buf = io.BytesIO()
        torch.save({"actor.mu.weight": torch.zeros(1, 32), "evil": payload}, buf)
        replace = {where: buf.getvalue()}
    elif where == "data-field":
        with zipfile.ZipFile(src) as z:
            data = json.loads(z.read("data"))
        data["lr_schedule"][":serialized:"] = base64.b64encode(pickle.dumps(payload)).decode()
        replace = {"data": json.dumps(data).encode()}
    else:  # data itself a pickle
        replace = {"data": pickle.dumps(payload)}
    bad = _rewrite_zip(src, tmp_path / "bad" / "model.zip", replace)
    err = _one_line_error(capsys, _import_sb3(bad, tmp_path / "pkg"))
    assert "refused" in err
    assert not marker.exists() and not (tmp_path / "pkg").exists()
    # the payload is real: plain unpickling would have run it
    if where == "data-field":
        pickle.loads(pickle.dumps(payload))
        assert marker.read_text() == "ran"


def _edit_data(src: Path, dst: Path, edit) -> Path:
    with zipfile.ZipFile(src) as z:
        data = json.loads(z.read("data"))
    edit(data)
    return _rewrite_zip(src, dst, {"data": json.dumps(data).encode()})


@pytest.mark.parametrize("case,needle", [
    ("image", "image"), ("dict-obs", "not a Box"), ("sde", "use_sde"), ("tanh", "not ReLU"),
    ("critics", "2 critics"), ("wrong-task", "shape"), ("vecnormalize", "VecNormalize"), ("not-zip", "not a zip"),
])
@pytest.mark.slow
def test_sb3_models_that_do_not_map_are_refused(sb3_model, tmp_path, capsys, case, needle):
    src, _ = sb3_model
    dst = tmp_path / case / "model.zip"
    if case == "image":
        path = _edit_data(src, dst, lambda d: d["observation_space"].update(_shape=[84, 84, 3], dtype="uint8"))
    elif case == "dict-obs":
        path = _edit_data(src, dst, lambda d: d["observation_space"].update({":type:": "<class 'gymnasium.spaces.dict.Dict'>"}))
    elif case == "sde":
        path = _edit_data(src, dst, lambda d: d.update(use_sde=True))
    elif case == "tanh":
        path = _edit_data(src, dst, lambda d: d.update(policy_kwargs={
            ":type:": "<class 'dict'>", ":serialized:": base64.b64encode(pickle.dumps({"net_arch": [32, 32]})).decode(),
            "net_arch": [32, 32],
            "activation_fn": "<class 'torch.nn.modules.activation.Tanh'>"}))
    elif case == "critics":
        path = _edit_data(src, dst, lambda d: d["policy_kwargs"].update(n_critics=3))
    elif case == "wrong-task":
        path = src
    elif case == "vecnormalize":
        from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

        path = _rewrite_zip(src, dst, {})
        VecNormalize(DummyVecEnv([lambda: gym.make(TASK)])).save(str(dst.parent / "vecnormalize.pkl"))
    else:
        dst.parent.mkdir(parents=True)
        dst.write_bytes(b"not a zip at all")
        path = dst
    task = "Hopper-v5" if case == "wrong-task" else TASK
    rc = main(["import", "sb3", str(path), "--task", task, "--out", str(tmp_path / "pkg"), "--states", "8"])
    assert needle in _one_line_error(capsys, rc)
    assert not (tmp_path / "pkg").exists()


# ------------------------------------------------------------------ CleanRL
LOG_STD_MAX, LOG_STD_MIN = 2, -5


class CleanRLSoftQNetwork(nn.Module):
    """The module shapes of CleanRL's SoftQNetwork (input: observation and env-scale action)."""

    def __init__(self, hidden: int = 32):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(S + A, hidden), nn.Linear(hidden, hidden), nn.Linear(hidden, 1)

    def forward(self, x, a):
        x = torch.cat([x, a], 1)
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x)))))


class CleanRLActor(nn.Module):
    """The module shapes and log σ parameterization of CleanRL's SAC actor."""

    def __init__(self, low: np.ndarray, high: np.ndarray, hidden: int = 32):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(S, hidden), nn.Linear(hidden, hidden)
        self.fc_mean, self.fc_logstd = nn.Linear(hidden, A), nn.Linear(hidden, A)
        self.register_buffer("action_scale", torch.tensor((high - low) / 2.0, dtype=torch.float32))
        self.register_buffer("action_bias", torch.tensor((high + low) / 2.0, dtype=torch.float32))

    def forward(self, x):
        x = F.relu(self.fc2(F.relu(self.fc1(x))))
        log_std = torch.tanh(self.fc_logstd(x))
        return self.fc_mean(x), LOG_STD_MIN + 0.5 * (LOG_STD_MAX - LOG_STD_MIN) * (log_std + 1)


@pytest.fixture(scope="module")
def cleanrl_nets():
    torch.manual_seed(5)
    space = gym.make(TASK).action_space
    actor, qf1, qf2 = CleanRLActor(space.low, space.high), CleanRLSoftQNetwork(), CleanRLSoftQNetwork()
    with torch.no_grad():
        actor.fc_logstd.weight.mul_(5.0)  # log σ over much of its range
    return actor, qf1, qf2


@pytest.mark.parametrize("layout", ["tuple", "dict"])
def test_cleanrl_import_is_the_agents_own(cleanrl_nets, tmp_path, capsys, layout):
    actor, qf1, qf2 = cleanrl_nets
    ckpt = tmp_path / "sac.cleanrl_model"
    if layout == "tuple":
        torch.save((actor.state_dict(), qf1.state_dict(), qf2.state_dict()), ckpt)
        extra = ["--alpha", "0.2"]
    else:
        torch.save({"actor": actor.state_dict(), "qf1": qf1.state_dict(), "qf2": qf2.state_dict(),
                    "log_alpha": torch.tensor([np.log(0.3)])}, ckpt)
        extra = []
    out = tmp_path / "pkg"
    assert main(["import", "cleanrl", str(ckpt), "--task", TASK, "--out", str(out), "--states", "32",
                 "--heldout", "8", "--episodes", "3", *extra]) == 0
    pkg = load_package(out)
    assert pkg.alpha == pytest.approx(0.2 if layout == "tuple" else 0.3, rel=1e-6)
    states, actions = _random_pairs()
    with torch.no_grad():
        env_actions = actions * actor.action_scale + actor.action_bias
        theirs = torch.min(qf1(states, env_actions), qf2(states, env_actions)).squeeze(-1)
        ours = pessimistic_value(pkg.q(states, actions.unsqueeze(1)), 1.0).squeeze(-1)
        assert torch.allclose(ours, theirs, rtol=1e-5, atol=1e-5)
        obj = pkg.objective(n_states=32, score_samples=16)
        lam = run_optimizer(make_optimizer("direct", package=pkg), obj, 1).final_params
        mean, log_std = actor(obj.states)
        assert torch.allclose(lam[:, :A], mean, atol=1e-5) and torch.allclose(lam[:, A:], log_std, atol=1e-5)
    # the recorded return is that of CleanRL's deterministic action tanh(mean)·scale + bias
    ev, env, theirs = pkg.meta["eval"], gym.make(TASK), []
    for i in range(ev["episodes"]):
        obs, _ = env.reset(seed=ev["seed"] + i)
        done, ret = False, 0.0
        while not done:
            with torch.no_grad():
                m, _ = actor(torch.as_tensor(obs, dtype=torch.float32)[None])
                a = (torch.tanh(m) * actor.action_scale + actor.action_bias)[0].numpy()
            obs, r, term, trunc, _ = env.step(a)
            ret += float(r)
            done = term or trunc
        theirs.append(ret)
    assert np.allclose(theirs, ev["returns"], rtol=0.05, atol=1.0)


def test_cleanrl_refusals(cleanrl_nets, tmp_path, capsys):
    actor, qf1, qf2 = cleanrl_nets
    ckpt = tmp_path / "ckpt"
    torch.save((actor.state_dict(), qf1.state_dict(), qf2.state_dict()), ckpt)
    args = ["--task", TASK, "--out", str(tmp_path / "pkg"), "--states", "8"]
    assert "--alpha" in _one_line_error(capsys, main(["import", "cleanrl", str(ckpt), *args]))
    assert "3 actions" in _one_line_error(capsys, main(["import", "cleanrl", str(ckpt), "--alpha", "0.2", "--task",
                                                        "Hopper-v5", "--out", str(tmp_path / "pkg")]))
    torch.save({"actor": {"fc1.weight": torch.zeros(2, 2)}, "qf1": {}, "qf2": {}}, ckpt)
    assert "layout" in _one_line_error(capsys, main(["import", "cleanrl", str(ckpt), "--alpha", "0.2", *args]))
    marker = tmp_path / "marker"
    torch.save((actor.state_dict(), {"x": _Payload(marker)}, qf2.state_dict()), ckpt)
    assert "refused" in _one_line_error(capsys, main(["import", "cleanrl", str(ckpt), "--alpha", "0.2", *args]))
    assert not marker.exists() and not (tmp_path / "pkg").exists()
