"""``--device`` for agent training, on the CPU only (no test needs a GPU): a device without
CUDA is a one-line error, an explicit ``--device cpu`` is the default run bit for bit, and the
device is not part of a run (a checkpoint resumes under another name of the same device)."""

import csv

import numpy as np
import pytest
import torch

from optbench.agents.checkpoint import load_checkpoint
from optbench.agents.replay import ReplayBuffer
from optbench.agents.sac import AdamSteps, SACAgent, SACConfig
from optbench.agents.trainer import Trainer
from optbench.cli import main

TASK = "InvertedPendulum-v5"
TINY = ["--random-steps", "150", "--batch-size", "16", "--hidden", "16,16", "--model-pretrain-updates", "5",
        "--eval-every", "100000", "--eval-episodes", "1", "--quiet"]
LOSSES = ["q_loss", "actor_loss", "alpha", "alpha_loss", "entropy", "model_loss", "distill_loss"]


def _one_line_error(capsys, rc):
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.startswith("error:") and "\n" not in err, err
    return err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_is_a_one_line_error(tmp_path, capsys):
    out = tmp_path / "run"
    err = _one_line_error(capsys, main(["train", "--task", TASK, "--steps", "10", "--out", str(out),
                                        "--device", "cuda", *TINY]))
    assert "cuda" in err and "not available" in err
    assert not out.exists()  # refused before anything was written
    err = _one_line_error(capsys, main(["train", "--task", TASK, "--steps", "10", "--out", str(out),
                                        "--device", "nonsense"]))
    assert "unknown device" in err and not out.exists()
    for cmd in (["evaluate", str(out)], ["export", str(out), "--out", str(tmp_path / "pkg")]):
        err = _one_line_error(capsys, main([*cmd, "--device", "cuda:0"]))
        assert "not available" in err
    err = _one_line_error(capsys, main(["train-grid", "--tasks", TASK, "--steps", "10", "--out", str(tmp_path / "g"),
                                        "--device", "cuda"]))
    assert "not available" in err and not (tmp_path / "g").exists()


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["direct", "iterative"])
def test_explicit_cpu_equals_default_bit_for_bit(policy, tmp_path):
    torch.set_num_threads(1)
    args = ["train", "--task", TASK, "--steps", "230", "--policy", policy, "--iterations", "2", *TINY]
    assert main([*args, "--out", str(tmp_path / "default")]) == 0
    assert main([*args, "--out", str(tmp_path / "cpu"), "--device", "cpu"]) == 0
    a, meta_a = load_checkpoint(tmp_path / "default")
    b, meta_b = load_checkpoint(tmp_path / "cpu")
    assert meta_a["agent"]["updates"] == 81 and set(a) == set(b)
    for k in a:  # networks, Adam states, replay, RNG state
        assert a[k].device.type == "cpu" and a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k
    for key in ("config", "step", "episodes", "rng_numpy", "env_rng", "agent", "replay"):
        assert meta_a[key] == meta_b[key], key
    rows = [list(csv.DictReader(open(d / "log.csv"))) for d in (tmp_path / "default", tmp_path / "cpu")]
    assert [[r[k] for k in LOSSES] for r in rows[0]] == [[r[k] for k in LOSSES] for r in rows[1]]


@pytest.mark.slow
def test_checkpoint_resumes_under_another_name_of_the_device(tmp_path, capsys):
    """Written with ``device="cpu"``, resumed with ``--device cpu:0``: no note about changed
    settings, and the result is the uninterrupted run's."""
    torch.set_num_threads(1)
    cfg = lambda: SACConfig(task=TASK, steps=400, random_steps=150, batch_size=16, hidden=(16, 16),  # noqa: E731
                            model_pretrain_updates=5, eval_every=100000, eval_episodes=1, checkpoint_every=200)
    full = Trainer(cfg(), tmp_path / "full", progress=False, device="cpu")
    full.train()
    part = Trainer(cfg(), tmp_path / "part", progress=False, device="cpu")
    part.train(stop_after=320)  # abandoned like a killed run, after a checkpoint at an episode end >= 200
    _, meta = load_checkpoint(tmp_path / "part", with_tensors=False)
    assert 200 <= meta["step"] < 320 and meta["episode_boundary"] and meta["device"] == "cpu"
    capsys.readouterr()
    assert main(["train", "--task", TASK, "--steps", "400", "--checkpoint-every", "200", "--device", "cpu:0",
                 "--out", str(tmp_path / "part"), *TINY]) == 0
    out = capsys.readouterr()
    assert f"resuming {TASK}/direct from step {meta['step']}" in out.out
    assert "note" not in out.out and out.err == "", out
    a, meta_a = load_checkpoint(tmp_path / "full")
    b, meta_b = load_checkpoint(tmp_path / "part")
    assert meta_b["device"] == "cpu:0" and meta_a["step"] == meta_b["step"] == 400
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_replay_packed_gather_equals_plain_sample():
    """The single-transfer path used for non-CPU devices, exercised on the CPU: same rows, shapes
    and dtypes as the plain sample, every field contiguous."""
    rng = np.random.default_rng(0)
    replay = ReplayBuffer(5, 3, capacity=40)
    for i in range(60):  # wraps around
        replay.add(rng.normal(size=5), rng.uniform(-1, 1, 3), float(rng.normal()), rng.normal(size=5), i % 7 == 0)
    plain = replay.sample(32, np.random.default_rng(1))
    packed = replay.gather_packed(np.random.default_rng(1).integers(0, replay.size, size=32), "cpu")
    same_device = replay.sample(32, np.random.default_rng(1), device="cpu:0")
    for x, y, z in zip(plain, packed, same_device):
        assert x.dtype == y.dtype == torch.float32 and y.is_contiguous()
        assert torch.equal(x, y) and torch.equal(x, z)


def test_agent_on_a_device_string_keeps_cpu_state_tensors_and_kernel():
    torch.manual_seed(0)
    a = SACAgent(SACConfig(task="Toy-v0", hidden=(8, 8)), 3, 2, device="cpu:0")
    torch.manual_seed(0)
    b = SACAgent(SACConfig(task="Toy-v0", hidden=(8, 8)), 3, 2)
    assert a.device.type == "cpu" and AdamSteps._probe_kernel(a.device) is True
    ta, _ = a.state_tensors()
    tb, _ = b.state_tensors()
    assert all(v.device.type == "cpu" and torch.equal(v, tb[k]) for k, v in ta.items())
    act = a.act(np.zeros(3, np.float32), deterministic=True)
    assert isinstance(act, np.ndarray) and act.dtype == np.float64 and act.shape == (2,)


@pytest.mark.filterwarnings("ignore:.*to a meta parameter")
@pytest.mark.parametrize("policy", ["direct", "iterative"])
def test_every_tensor_of_an_update_lives_on_the_agents_device(policy, monkeypatch):
    """The ``meta`` device (shapes, no data) stands in for a GPU: an agent built there, or
    loaded there from a CPU agent's state, updates and computes its policy without any tensor
    left on (or created on) the CPU; only the final host read-outs, which need data, are
    stubbed. (torch keeps the ``step`` counters of non-fused Adam on the CPU by design.)"""
    real_tolist = torch.Tensor.tolist
    monkeypatch.setattr(torch.Tensor, "tolist", lambda t: [0.0] * t.numel() if t.is_meta else real_tolist(t))
    rng = np.random.default_rng(0)
    replay = ReplayBuffer(5, 3, capacity=100)
    for _ in range(50):
        replay.add(rng.normal(size=5), rng.uniform(-1, 1, 3), float(rng.normal()), rng.normal(size=5), False)
    cfg = SACConfig(task="Toy-v0", policy=policy, hidden=(8, 8), iterations=2)
    torch.manual_seed(0)
    cpu_agent = SACAgent(cfg, 5, 3)
    cpu_agent.update(replay.sample(16, rng))
    tensors, meta = cpu_agent.state_tensors()
    fresh = SACAgent(cfg, 5, 3, device="meta")
    loaded = SACAgent(cfg, 5, 3, device="meta")
    loaded.load_state(tensors, meta)
    for agent in (fresh, loaded):
        batch = replay.sample(16, rng, device="meta")
        assert all(t.is_meta for t in batch)
        for _ in range(2):
            agent.update(batch)  # critic, actor, temperature, models (and distillation: iterative)
        assert agent.policy_params(batch[0]).is_meta
        assert all(p.is_meta for m in agent.modules().values() for p in m.parameters()) and agent.log_alpha.is_meta
        for opt in agent.optimizers.values():
            assert all(v.is_meta for st in opt.state.values() for k, v in st.items() if k != "step")
