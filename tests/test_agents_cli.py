"""Bad input through the real CLI: one-line error, exit code 2, nothing executed."""

import os
import pickle
import subprocess
import sys

import pytest
import torch

from optbench.agents.package import PackageError, export_package, load_package
from optbench.cli import main
from optbench.optimizers.base import OptimizerError, make_optimizer
from optbench.runner.drive import run_optimizer

TASK = "InvertedPendulum-v5"
TINY = ["--random-steps", "150", "--batch-size", "16", "--hidden", "16,16", "--model-pretrain-updates", "5",
        "--eval-every", "100000", "--eval-episodes", "1", "--quiet"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "--task", TASK, "--steps", "250", "--out", str(d), *TINY]) == 0
    return d


def _one_line_error(capsys, rc):
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.startswith("error:") and "\n" not in err, err
    return err


def test_unknown_task(tmp_path, capsys):
    err = _one_line_error(capsys, main(["train", "--task", "NoSuchTask-v9", "--steps", "10", "--out", str(tmp_path / "x")]))
    assert "NoSuchTask-v9" in err


def test_evaluate_and_export_work(run_dir, tmp_path, capsys):
    assert main(["evaluate", str(run_dir), "--episodes", "2"]) == 0
    assert "deterministic episodes" in capsys.readouterr().out
    assert main(["export", str(run_dir), "--states", "20", "--heldout", "10", "--episodes", "2",
                 "--out", str(tmp_path / "pkg")]) == 0
    pkg = load_package(tmp_path / "pkg")
    assert pkg.task == TASK and pkg.states["benchmark"].shape == (20, 4) and pkg.states["heldout"].shape == (10, 4)
    assert set(pkg.state_info["benchmark_episode"].tolist()).isdisjoint(pkg.state_info["heldout_episode"].tolist())
    assert pkg.state_info["benchmark_qpos"].shape[0] == 20
    obj = pkg.objective(n_states=5, score_samples=64)
    assert obj.batch_size == 5 and obj.alpha.item() == pytest.approx(pkg.alpha)
    trace = run_optimizer(make_optimizer("direct", package=pkg), obj, 3)
    assert trace.q_evals == [0, 0, 0] and torch.equal(trace.scores[1], trace.scores[3])


def test_checkpoint_for_another_task(run_dir, capsys):
    err = _one_line_error(capsys, main(["evaluate", str(run_dir), "--task", "Hopper-v5"]))
    assert "InvertedPendulum-v5" in err and "Hopper-v5" in err
    # training another task into the same output directory is refused too
    err = _one_line_error(capsys, main(["train", "--task", "Pendulum-v1", "--steps", "10", "--out", str(run_dir)]))
    assert "another --out" in err


def test_truncated_and_modified_checkpoints(run_dir, tmp_path, capsys):
    data = (run_dir / "checkpoint.safetensors").read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 2])
    _one_line_error(capsys, main(["evaluate", str(cut)]))
    flipped = bytearray(data)
    flipped[-100] ^= 0xFF  # inside the tensor data: only the checksum can tell
    bad = tmp_path / "flip.safetensors"
    bad.write_bytes(bytes(flipped))
    err = _one_line_error(capsys, main(["evaluate", str(bad)]))
    assert "corrupt" in err
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 3)
    _one_line_error(capsys, main(["evaluate", str(junk)]))
    _one_line_error(capsys, main(["evaluate", str(tmp_path / "missing")]))


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.slow
def test_pickle_with_code_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"state": _Evil(marker)}))
    torch_style = tmp_path / "evil_torch.pt"
    torch.save({"x": _Evil(marker)}, torch_style)
    for path in (evil, torch_style):
        proc = subprocess.run([sys.executable, "-m", "optbench.cli", "evaluate", str(path)], capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.strip().startswith("error:") and "\n" not in proc.stderr.strip(), proc.stderr
        assert not marker.exists()
        # a run directory holding such a file as its checkpoint is refused the same way
        d = tmp_path / f"dir_{path.stem}"
        d.mkdir()
        (d / "checkpoint.safetensors").write_bytes(path.read_bytes())
        proc = subprocess.run([sys.executable, "-m", "optbench.cli", "train", "--task", TASK, "--steps", "10",
                               "--out", str(d)], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2 and not marker.exists(), proc.stderr


def test_package_tampering_and_mismatch(run_dir, tmp_path, capsys):
    pkg_dir = export_package(run_dir, tmp_path / "pkg", n_states=10, eval_episodes=1)
    # exporting over a non-empty directory needs --force
    _one_line_error(capsys, main(["export", str(run_dir), "--states", "5", "--out", str(pkg_dir)]))
    f = pkg_dir / "states.safetensors"
    raw = bytearray(f.read_bytes())
    raw[-1] ^= 1
    f.write_bytes(bytes(raw))
    with pytest.raises(PackageError, match="modified or truncated"):
        load_package(pkg_dir)
    f.write_bytes(bytes(raw[:-10]))
    with pytest.raises(PackageError, match="modified or truncated"):
        load_package(pkg_dir)
    with pytest.raises(PackageError, match="no package.json"):
        load_package(tmp_path)


def test_amortized_optimizer_refuses_other_sizes(run_dir, tmp_path):
    from optbench.objectives.policy_objective import PolicyObjective
    from optbench.objectives.q_functions import QEnsemble

    pkg = load_package(export_package(run_dir, tmp_path / "pkg", n_states=5, eval_episodes=1))
    other = PolicyObjective(QEnsemble(7, 2, (8,)), torch.randn(3, 7), 0.1)
    with pytest.raises(OptimizerError, match="4-dim states and 1-dim actions"):
        run_optimizer(make_optimizer("direct", package=pkg), other, 2)
    with pytest.raises(OptimizerError, match="no iterative network"):
        make_optimizer("iterative", package=pkg)
    with pytest.raises(OptimizerError, match="need an objective package"):
        make_optimizer("direct")
