"""benchmarks/summary.py: one table from the result files; missing, stale and smoke-run sources said so."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_common  # noqa: E402
import summary  # noqa: E402


def machine(**over) -> dict:
    return {"cpu": "Test CPU", "cores": 2, "torch_threads": 1, "torch": "2.x", "loadavg": [0.5, 0.5, 0.5],
            "date": "2026-01-01T00:00:00+0000", **over}


def optimizers_part(own: float, quick: bool = False) -> dict:
    row = {"label": "adam (paper)", "spec": "adam(lr=0.01,samples=10)", "optimizer": "adam", "classical": True,
           "ms_per_iteration": 10.0, "own_fraction": own, "own_fraction_rounds": [own, own]}
    ratio = {"iterative": "iterative, samples=10", "reference": "adam (paper)", "reference_optimizer": "adam",
             "iterative_samples": 10, "ratio": 1.15, "ratio_range": [1.1, 1.2]}
    return {"states": 100, "clock": "cpu", "rows": [row], "ratios": [ratio], "quick": quick}


def write(results: Path, name: str, doc: dict) -> None:
    results.mkdir(parents=True, exist_ok=True)
    (results / name).write_text(json.dumps(doc))


def test_no_results_every_source_missing_with_its_command(tmp_path, capsys):
    assert summary.main(["--results", str(tmp_path), "--markdown"]) == 0
    out = capsys.readouterr().out
    assert out.count("| missing |") == len(summary.SOURCES)
    assert "scaling (c): MISSING" in out and "bench_scaling.py --threads 1 --update --part optimizers" in out
    assert "bench_sac_vs_sb3.py --speed" in out


def test_current_code_ok_old_code_stale(tmp_path):
    here = {**machine(), **bench_common.git_state()}  # the code as it is now
    write(tmp_path, "scaling.json", {"machine": here, "optimizers": optimizers_part(0.05)})
    src = summary.load(tmp_path)["optimizers"]
    if here["commit"] is None:
        pytest.skip("not a git checkout")
    assert src.status == "ok", src.reason
    rows = summary.table({"optimizers": src})[0][1]
    assert ("2", "`adam(lr=0.01,samples=10)` own work outside Q evaluations, B = 100, by CPU time",
            "5.0 % of 10.0 ms/it (rounds 5.0 %)", "≤ 10 %", "met") in rows
    assert any(r[0] == "3" and r[2].startswith("1.15×") and r[4] == "1.00× the paper's" for r in rows)

    # a date before the project's history, no commit: every later change to its code makes it stale
    write(tmp_path, "scaling.json", {"machine": machine(date="2000-01-01T00:00:00+0000"),
                                     "optimizers": optimizers_part(0.2)})
    src = summary.load(tmp_path)["optimizers"]
    assert src.status == "stale" and "since 2000-01-01" in src.reason
    assert any("missed (stale)" in r[4] for r in summary.table({"optimizers": src})[0][1])

    # a file of the measured code that differs from the one measured
    changed = {**here, "uncommitted": {**here["uncommitted"], "optbench/optimizers/adam.py": "0" * 40}}
    write(tmp_path, "scaling.json", {"machine": changed, "optimizers": optimizers_part(0.05)})
    src = summary.load(tmp_path)["optimizers"]
    assert src.status == "stale" and "optbench/optimizers/adam.py" in src.reason


def test_no_date_is_stale_and_smoke_runs_are_flagged(tmp_path):
    here = {**machine(), **bench_common.git_state()}
    write(tmp_path, "core.json", {"machine": {"cpu": "x"}, "cma": {"states": 100, "iterations": 50,
                                                                 "speedup_vs_pycma": 1.8}})
    write(tmp_path, "scaling.json", {"machine": here, "optimizers": optimizers_part(0.05, quick=True)})
    sources = summary.load(tmp_path)
    assert sources["cma"].status == "stale" and sources["cma"].reason == "no date recorded"
    if here["commit"] is not None:
        assert sources["optimizers"].status == "smoke run"
    text = summary.markdown(summary.table(sources), sources)
    assert "1.8× faster" in text and "core (b): STALE (no date recorded)" in text


def test_stored_results_render(capsys):
    assert summary.main([]) == 0  # the committed result files, whatever their state
    assert "optbench speed ratios" in capsys.readouterr().out
