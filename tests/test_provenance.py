"""Provenance of runs (issue 17 item 6): run.json records the commit, a dirty flag, package
versions and the suite's hash; committed reference runs must match their suites."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from optbench.cli import main
from optbench.runner.provenance import check_run, suite_hash
from optbench.suites.spec import load_suite

ROOT = Path(__file__).resolve().parents[1]
REFERENCE_RUNS = sorted(p.parent for p in ROOT.glob("results/*/*/run.json"))
TINY = ('name = "tiny"\noptimizers = ["adam"]\n[settings]\nstates = 2\niterations = 2\nscore_samples = 16\n'
        '[[objectives]]\nname = "q"\nsource = "analytic"\nprofile = "quadratic"\nstate_dim = 3\naction_dim = 2\nalpha = 0.1\n')


def _run_info(run: Path) -> dict:
    return json.loads((run / "run.json").read_text())


def test_run_json_records_commit_dirty_flag_versions_and_suite_hash(tmp_path):
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "suite.toml").write_text(TINY)
    assert main(["run", "--suite", str(suite), "--out", str(tmp_path / "run"), "--no-plots"]) == 0
    info = _run_info(tmp_path / "run")
    prov = info["provenance"]
    if (ROOT / ".git").exists():  # a git checkout (or worktree)
        assert len(prov["git_commit"]) == 40 and isinstance(prov["git_dirty"], bool)
    else:
        assert prov["git_commit"] is None and prov["git_dirty"] is None
    assert prov["suite_hash"] == suite_hash(load_suite(str(suite)))
    assert info["environment"]["versions"]["torch"] and "optbench" in info["environment"]["versions"]
    assert check_run(info) is None


def test_suite_hash_covers_the_suite_file_and_the_packages_it_uses(tmp_path):
    src = ROOT / "suites" / "mujoco-states"
    copy = tmp_path / "mujoco-states"
    shutil.copytree(src, copy)
    base = suite_hash(load_suite(str(copy)))
    assert base == suite_hash(load_suite(str(src)))  # independent of where the suite lives
    (copy / "MANIFEST.md").write_text("not used by the suite\n")
    assert suite_hash(load_suite(str(copy))) == base
    pkg = copy / "packages" / "hopper-direct" / "package.json"
    pkg.write_text(pkg.read_text() + " ")
    assert suite_hash(load_suite(str(copy))) != base
    shutil.copy(src / "packages" / "hopper-direct" / "package.json", pkg)
    (copy / "suite.toml").write_text((copy / "suite.toml").read_text() + "\n# edited\n")
    assert suite_hash(load_suite(str(copy))) != base


def test_a_run_whose_suite_changed_is_detected_and_not_resumed(tmp_path, capsys):
    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "suite.toml").write_text(TINY)
    out = tmp_path / "run"
    assert main(["run", "--suite", str(suite), "--out", str(out), "--no-plots"]) == 0
    (suite / "suite.toml").write_text(TINY.replace("alpha = 0.1", "alpha = 0.1  # same value, other file"))
    assert "changed since the run was made" in check_run(_run_info(out))
    capsys.readouterr()
    assert main(["run", "--suite", str(suite), "--out", str(out), "--no-plots"]) == 2
    assert "holds a run with a different configuration" in capsys.readouterr().err  # the suite text is in its config


@pytest.mark.parametrize("run", REFERENCE_RUNS, ids=[str(r.relative_to(ROOT)) for r in REFERENCE_RUNS])
def test_committed_reference_runs_match_their_suites(run):
    """A reference run whose suite (suite.toml or a package it uses) changed since it was made
    fails here; regenerate it with `nox -s reference`. Runs made before suite hashes were
    recorded carry none yet ("not recorded"): they pass until regenerated."""
    problem = check_run(_run_info(run))
    assert problem in (None, "not recorded"), f"{run.relative_to(ROOT)}: {problem}"


def test_resuming_after_a_package_of_the_suite_changed_is_refused(tmp_path, capsys):
    suite = tmp_path / "suite"
    shutil.copytree(ROOT / "suites" / "mujoco-states" / "packages" / "hopper-direct", suite / "packages" / "hopper")
    (suite / "suite.toml").write_text('name = "p"\noptimizers = ["adam"]\n[settings]\nstates = 1\niterations = 1\n'
                                      'score_samples = 8\n[[objectives]]\nname = "hopper"\nsource = "package"\n'
                                      'package = "packages/hopper"\n')
    out = tmp_path / "run"
    args = ["run", "--suite", str(suite), "--out", str(out), "--no-plots", "--seeds", "0"]
    assert main(args) == 0
    doc = suite / "packages" / "hopper" / "package.json"
    doc.write_text(doc.read_text().replace('"eval": {', '"eval":  {', 1))  # same content to the loader
    assert "changed since the run was made" in check_run(_run_info(out))
    capsys.readouterr()
    assert main(args) == 2
    assert "other versions of the suite's files" in capsys.readouterr().err
