"""`optbench train-optimizer`: meta-trained amortizers on frozen objectives, their package, resume, bad input."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from optbench.agents import meta_training
from optbench.optimizers.networks import IterativeOptimizerNet
from optbench.agents.package import PackageError, load_package, sha256_file
from optbench.cli import main
from optbench.optimizers.base import OptimizerError, make_optimizer
from optbench.runner.drive import run_optimizer
from optbench.suites.spec import find_suite

PACKAGES = find_suite("mujoco-states").parent / "packages"
HC, HOPPER = PACKAGES / "halfcheetah-direct", PACKAGES / "hopper-direct"
SMALL = ["--batch-size", "32", "--log-every", "10", "--eval-every", "1000", "--eval-states", "64", "--quiet"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """An iterative + direct pair trained for 150 steps on HalfCheetah's held-out states."""
    out = tmp_path_factory.mktemp("meta") / "hc-opt"
    assert main(["train-optimizer", "--objectives", str(HC), "--steps", "150", "--batch-size", "64",
                 "--eval-every", "75", "--eval-states", "100", "--checkpoint-every", "50", "--log-every", "25",
                 "--out", str(out), "--quiet"]) == 0
    return out


def _one_line_error(capsys, code: int) -> str:
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.slow
def test_meta_trained_iterative_improves_unseen_states(trained):
    """(a) On the benchmark states (never sampled in training), K iterations of the meta-trained
    optimizer raise scored J well above its start λ₀; an untrained network barely moves."""
    pkg = load_package(HC)
    objective = pkg.objective("benchmark", score_samples=256, score_seed=3)
    start = objective.score(objective.initial_params())
    trace = run_optimizer(make_optimizer(f"iterative(package={str(trained)!r})"), objective, 5, seed=1)
    gain = trace.scores[-1] - start
    # after 150 steps the mean gain is several units; the untrained net gains ~0.1
    assert gain.mean() > 4.0 and (gain > 0).float().mean() > 0.9, (gain.mean(), (gain > 0).float().mean())
    fresh = IterativeOptimizerNet(pkg.state_dim, pkg.action_dim)
    lam = objective.initial_params()
    for _ in range(5):
        _, grad = objective.value_and_grad(lam[:, None], objective.noise(2, 1, torch.Generator().manual_seed(0)))
        with torch.no_grad():
            lam = fresh(objective.states, lam, grad[:, 0])
    assert (objective.score(lam) - start).mean() < 1.0
    # the trainer's own evaluation agrees and marks which split it trained on
    doc = json.loads((trained / "package.json").read_text())
    bench = next(r for r in doc["eval"]["records"] if r["split"] == "benchmark")
    assert bench["trained_on"] == 0 and bench["J_iter_K"] - bench["J_start"] > 4.0
    rows = (trained / "evals.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["0", "0", "75", "75", "150", "150"]


def test_package_records_and_loads_as_optimizers(trained):
    doc = json.loads((trained / "package.json").read_text())
    assert doc["format"] == "optbench-optimizer-package" and (doc["state_dim"], doc["action_dim"]) == (17, 6)
    assert doc["architectures"]["iterative"]["iterations_trained"] == 5
    assert doc["architectures"]["iterative"]["grad_samples"] == 2 and doc["training"]["settings"]["split"] == "heldout"
    assert doc["training"]["command"].startswith("optbench train-optimizer --objectives ")
    src = doc["sources"][0]
    assert src["package_json_sha256"] == sha256_file(HC / "package.json") and src["split"] == "heldout"
    assert set(doc["files"]) >= {"iterative.safetensors", "direct.safetensors"}
    pkg = load_package(trained)
    assert pkg.is_optimizer_package and pkg.q is None and pkg.iterative is not None and pkg.direct is not None
    with pytest.raises(PackageError, match="optimizer package"):
        pkg.objective()
    it = make_optimizer("iterative", package=str(trained))
    assert it.samples == 2 and it.settings()["iterations_trained"] == 5
    # sizes are checked against the objective
    hopper = load_package(HOPPER).objective(n_states=3, score_samples=16)
    with pytest.raises(OptimizerError, match="17-dim states and 6-dim actions"):
        run_optimizer(it, hopper, 1)


def test_optbench_run_with_the_optimizer_package(trained, tmp_path, capsys):
    """(b) The package runs through `optbench run` as iterative(package=...) and direct(package=...)."""
    suite = tmp_path / "tiny"
    suite.mkdir()
    (suite / "suite.toml").write_text(f"""name = "tiny-meta"
optimizers = ["adam"]
[settings]
states = 4
iterations = 5
score_samples = 64
[[objectives]]
name = "hc"
source = "package"
package = "{HC}"
""")
    specs = f"iterative(package={str(trained)!r}),direct(package={str(trained)!r}),adam(lr=0.01,samples=10)"
    out = tmp_path / "run"
    assert main(["run", "--suite", str(suite), "--optimizers", specs, "--out", str(out), "--no-plots"]) == 0
    printed = capsys.readouterr().out
    assert "iterative(package=" in printed and "direct(package=" in printed
    cells = {p.name.split("__")[1]: json.loads(p.read_text()) for p in (out / "cells").glob("*.json")}
    assert len(cells) == 3


def test_tampered_or_truncated_package_is_refused(trained, tmp_path, capsys):
    """(c) A modified or truncated file: one-line error, also from `optbench run`."""
    bad = tmp_path / "bad"
    shutil.copytree(trained, bad)
    weights = bad / "iterative.safetensors"
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(PackageError, match="modified or truncated"):
        make_optimizer("iterative", package=str(bad))
    shutil.copy(trained / "iterative.safetensors", weights)
    with open(bad / "direct.safetensors", "r+b") as fh:
        fh.truncate(1000)
    with pytest.raises(PackageError, match=r"direct.safetensors was modified or truncated"):
        load_package(bad)
    err = _one_line_error(capsys, main(["run", "--suite", "mujoco-states", "--quick", "--states", "2", "--optimizers",
                                        f"direct(package={str(bad)!r})", "--out", str(tmp_path / "r"), "--no-plots"]))
    assert "modified or truncated" in err


def test_bad_input_gives_one_line_errors(trained, tmp_path, capsys):
    """(d) Mismatched sizes, unknown split, an optimizer package as objective, a foreign --out."""
    out = str(tmp_path / "o")
    err = _one_line_error(capsys, main(["train-optimizer", "--objectives", str(HC), str(HOPPER), "--steps", "5",
                                        "--out", out]))
    assert "equal state and action sizes" in err and "17/6" in err and "11/3" in err
    err = _one_line_error(capsys, main(["train-optimizer", "--objectives", str(HC), "--split", "training",
                                        "--steps", "5", "--out", out]))
    assert "unknown split 'training'" in err and "benchmark, heldout" in err
    err = _one_line_error(capsys, main(["train-optimizer", "--objectives", str(trained), "--steps", "5", "--out", out]))
    assert "is an optimizer package" in err
    err = _one_line_error(capsys, main(["train-optimizer", "--objectives", str(HC), "--steps", "0", "--out", out]))
    assert "--steps must be >= 1" in err
    err = _one_line_error(capsys, main(["train-optimizer", "--objectives", str(tmp_path / "none"), "--out", out]))
    assert "no package.json" in err
    # the finished run's directory with other settings; a directory holding other files
    err = _one_line_error(capsys, main(["train-optimizer", "--objectives", str(HC), "--steps", "150", "--batch-size",
                                        "64", "--lr", "1e-3", "--out", str(trained)]))
    assert "other settings (differ: lr)" in err
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    err = _one_line_error(capsys, main(["train-optimizer", "--objectives", str(HC), "--steps", "5",
                                        "--out", str(tmp_path / "foreign")]))
    assert "holds other files" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_interrupted_run_resumes_exactly_and_finished_run_is_not_redone(tmp_path, monkeypatch, capsys):
    args = ["train-optimizer", "--objectives", str(HC), "--steps", "30", "--checkpoint-every", "10", *SMALL]
    ref, out = tmp_path / "ref", tmp_path / "out"
    assert main([*args, "--out", str(ref)]) == 0
    real_step = meta_training.MetaTrainer.train_step

    def crash_at_25(self):
        if self.step == 24:
            raise KeyboardInterrupt
        return real_step(self)

    monkeypatch.setattr(meta_training.MetaTrainer, "train_step", crash_at_25)
    assert main([*args, "--out", str(out)]) == 130
    assert not (out / "package.json").exists()
    monkeypatch.setattr(meta_training.MetaTrainer, "train_step", real_step)
    assert main([*args, "--out", str(out)]) == 0  # resumes from the checkpoint at step 20
    for name in ("iterative.safetensors", "direct.safetensors"):
        assert (out / name).read_bytes() == (ref / name).read_bytes()
    assert [r.split(",")[0] for r in (out / "log.csv").read_text().splitlines()[1:]] == ["10", "20", "30"]
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    capsys.readouterr()
    assert main([*args, "--out", str(out)]) == 0
    assert "already finished" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before
    # a larger --steps continues the finished run: same as training 40 steps at once
    assert main([*args[:4], "40", *args[5:], "--out", str(out)]) == 0
    assert main([*args[:4], "40", *args[5:], "--out", str(tmp_path / "ref40")]) == 0
    assert (out / "iterative.safetensors").read_bytes() == (tmp_path / "ref40" / "iterative.safetensors").read_bytes()
    assert json.loads((out / "package.json").read_text())["training"]["steps"] == 40
