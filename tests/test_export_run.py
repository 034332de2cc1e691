"""`optbench export-run`: IOHprofiler and COCO files read back by IOHprofiler's own reader
(iohinspector), the CSV long format by pandas, each checked value by value against the store."""

from __future__ import annotations

import numpy as np
import pytest

from optbench.cli import main
from optbench.runner.store import ResultsStore

SUITE = """
name = "export-check"
optimizers = ["adam(lr=0.05)", "cem(population=20,elites=4)", { spec = "scipy:L-BFGS-B", iterations = 6 }]

[settings]
states = 3
iterations = 6
seeds = [0, 1]
score_samples = 64
score_at = "all"

[[objectives]]
name = "quad/a2"
source = "analytic"
profile = "quadratic"
state_dim = 3
action_dim = 2
alpha = 0.05

[[objectives]]
name = "multi/a1"
source = "analytic"
profile = "multimodal"
state_dim = 3
action_dim = 1
alpha = 0.05
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("export")
    (d / "suite").mkdir()
    (d / "suite" / "suite.toml").write_text(SUITE)
    assert main(["run", "--suite", str(d / "suite"), "--out", str(d / "run"), "--no-plots"]) == 0
    return d / "run"


def _expected(run):
    """{(objective, optimizer, seed, state): [(evaluations, J), ...]} straight from the store."""
    store = ResultsStore.open_existing(run)
    objectives = store.objectives()
    out = {}
    for c in store.cells():
        B = objectives[c["objective"]]["states"]
        cum = np.concatenate([[0.0], np.cumsum(c["q_evals"])])[c["iterations"]] / B
        for s in range(B):
            rows = []
            for t, it in enumerate(c["iterations"]):
                row = (1 + int(np.rint(cum[t])), c["scores"][t][s])
                if rows and rows[-1][0] == row[0]:
                    rows[-1] = row
                else:
                    rows.append(row)
            out[(c["objective"], c["optimizer"], c["seed"], s)] = rows
    return out, objectives


def test_ioh_export_reads_back_with_iohinspector(run, tmp_path):
    iohinspector = pytest.importorskip("iohinspector")
    assert main(["export-run", str(run), "--format", "ioh", "--out", str(tmp_path / "ioh")]) == 0
    expected, objectives = _expected(run)
    dm = iohinspector.DataManager()
    dm.add_folder(str(tmp_path / "ioh"))
    ov = dm.overview
    assert len(ov) == len(expected)  # one IOH run per (optimizer, seed, state)
    assert set(ov["function_name"]) == {"quad/a2", "multi/a1"}
    assert set(zip(ov["function_name"], ov["dimension"])) == {("quad/a2", 4), ("multi/a1", 2)}
    assert set(ov["instance"]) == {1, 2, 3}
    df = dm.load(monotonic=False, include_meta_data=True).to_pandas()
    for ds in dm.data_sets:
        assert ds.function.maximization is True
    # each run, row by row: evaluations = 1 + Q-evaluations per state, raw_y = scored J
    import json

    for js in (tmp_path / "ioh").rglob("*.json"):
        doc = json.loads(js.read_text())
        for i, r in enumerate(doc["scenarios"][0]["runs"]):
            key = (doc["function_name"], doc["algorithm"]["name"], r["optbench"]["seed"], r["optbench"]["state"])
            assert r["instance"] == key[3] + 1
            ds = next(d for d in dm.data_sets if d.file == str(js))
            data_id = ds.scenarios[0].runs[i].data_id
            got = df[df.data_id == data_id][["evaluations", "raw_y"]].to_numpy()
            want = np.asarray(expected.pop(key), dtype=np.float64)
            assert got.shape == want.shape and np.array_equal(got[:, 0], want[:, 0])
            assert np.allclose(got[:, 1], want[:, 1], rtol=1e-7, atol=0)
    assert not expected


def test_coco_export_reads_back_and_states_its_reference(run, tmp_path):
    iohinspector = pytest.importorskip("iohinspector")
    assert main(["export-run", str(run), "--format", "coco", "--out", str(tmp_path / "coco")]) == 0
    expected, objectives = _expected(run)
    infos = sorted((tmp_path / "coco").rglob("*.info"))
    assert len(infos) == 2 * 3  # objectives × optimizers
    text = infos[0].read_text()
    assert "f = -J" in text and "best J any optimizer" in text
    dm = iohinspector.DataManager()
    dm.add_folder(str(tmp_path / "coco"))
    df = dm.load(monotonic=False).to_pandas()
    assert (df["raw_y"] >= 0).all()  # best f − f_opt, with f_opt the best found
    # per state, the best optimizer reached f − f_opt = 0: the reference is the best J found
    ref = {}
    for (name, _, _, s), rows in expected.items():
        ref[(name, s)] = max(ref.get((name, s), -np.inf), max(j for _, j in rows))
    for name, info in objectives.items():
        for s, start in enumerate(info["start_scores"]):
            ref[(name, s)] = max(ref[(name, s)], start)
    dat = next((tmp_path / "coco").rglob("*.dat")).read_text().splitlines()
    fopt = float(dat[0].split("Fopt (")[1].split(")")[0])
    assert any(np.isclose(fopt, -v, rtol=1e-7) for v in ref.values())
    assert len(df) >= sum(len(r) for r in expected.values())  # every .dat row (the .tdat adds none new)


def test_csv_export_is_a_long_table_for_pandas(run, tmp_path):
    pd = pytest.importorskip("pandas")
    assert main(["export-run", str(run), "--format", "csv", "--out", str(tmp_path / "csv")]) == 0
    df = pd.read_csv(tmp_path / "csv" / "traces.csv")
    assert list(df.columns) == ["objective", "optimizer", "seed", "state", "iteration", "q_evals", "grad_evals",
                                "seconds", "J"]
    store = ResultsStore.open_existing(run)
    n = 0
    for c in store.cells():
        sub = df[(df.objective == c["objective"]) & (df.optimizer == c["optimizer"]) & (df.seed == c["seed"])]
        B = len(c["scores"][0])
        n += len(c["iterations"]) * B
        final = sub[sub.iteration == c["iterations"][-1]].sort_values("state")
        assert np.allclose(final.J, c["scores"][-1], rtol=1e-7)
        assert np.allclose(final.q_evals, sum(c["q_evals"]) / B)
    assert len(df) == n


def test_export_errors_are_one_line(run, tmp_path, capsys):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    for argv, needle in ((["export-run", str(tmp_path), "--format", "csv", "--out", str(tmp_path / "o")], "run.json"),
                         (["export-run", str(run), "--format", "csv", "--out", str(tmp_path / "full")], "not empty")):
        rc = main(argv)
        err = capsys.readouterr().err.strip()
        assert rc == 2 and needle in err and "\n" not in err, err
