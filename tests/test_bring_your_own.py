"""docs/bring-your-own.md, executed as written: its files are written into a fresh directory
outside the package, and its bash blocks run there through the real `optbench` command (a plugin
optimizer from that directory runs from the CLI). Plus the entry-point group and plugin errors."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import optbench
from optbench.cli import main

ROOT = Path(optbench.__file__).resolve().parents[1]
DOC = ROOT / "docs" / "bring-your-own.md"


def _blocks(text: str) -> list[tuple[str, str | None, str]]:
    """(language, file name or None, body) of every fenced block."""
    out = []
    for m in re.finditer(r"^```(\w+)([^\n]*)\n(.*?)^```", text, re.S | re.M):
        f = re.search(r"file=(\S+)", m.group(2))
        out.append((m.group(1), f.group(1) if f else None, m.group(3)))
    return out


def _shims(bin_dir: Path) -> dict[str, str]:
    """`optbench` and `python` commands that run this interpreter on this checkout."""
    bin_dir.mkdir()
    for name, line in (("optbench", f'exec "{sys.executable}" -m optbench.cli "$@"'),
                       ("python", f'exec "{sys.executable}" "$@"')):
        p = bin_dir / name
        p.write_text(f"#!/bin/sh\n{line}\n")
        p.chmod(p.stat().st_mode | stat.S_IEXEC)
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    return env


@pytest.mark.slow
def test_bring_your_own_guide_runs_end_to_end(tmp_path):
    pytest.importorskip("stable_baselines3")
    pytest.importorskip("pandas")
    work = tmp_path / "work"
    work.mkdir()
    env = _shims(tmp_path / "bin")
    blocks = _blocks(DOC.read_text())
    assert any(f == "my_optimizers.py" for _, f, _ in blocks)
    for lang, fname, body in blocks:
        if fname:
            (work / fname).write_text(body)
        elif lang == "bash":
            for line in body.strip().splitlines():
                proc = subprocess.run(line, shell=True, cwd=work, env=env, capture_output=True, text=True, timeout=300)
                assert proc.returncode == 0, f"{line}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    # the plugin optimizer ran from the CLI, from a module outside the package
    cells = [json.loads(p.read_text()) for p in (work / "run-mine" / "cells").glob("*.json")]
    mine = [c for c in cells if c["optimizer"] == "my-opt(lr=0.1)"]
    assert mine and mine[0]["settings"] == {"lr": 0.1, "samples": 10} and sum(mine[0]["q_evals"]) > 0
    assert not (ROOT / "my_optimizers.py").exists()
    # the default set ran on the imported package, and the exports were written
    labels = {json.loads(p.read_text())["optimizer"] for p in (work / "run-default" / "cells").glob("*.json")}
    assert {"direct", "adam", "cem", "cmaes", "pycma", "scipy:L-BFGS-B"} <= labels
    assert (work / "run-default" / "suite" / "suite.toml").is_file()
    assert list((work / "ioh-data").rglob("*.json")) and list((work / "coco-data").rglob("*.info"))
    assert (work / "csv-data" / "traces.csv").is_file()


@pytest.fixture()
def plugin_dir(tmp_path, monkeypatch):
    """A module outside the package, and a fake installed distribution declaring entry points."""
    d = tmp_path / "plugins"
    d.mkdir()
    (d / "byo_plugin_mod.py").write_text(textwrap.dedent('''
        from optbench.optimizers import PolicyOptimizer, register

        @register("byo-registered")
        class Registered(PolicyOptimizer):
            """Keeps the start."""
            def iterate(self, objective, start, iterations, generator):
                for _ in range(iterations):
                    yield start

        class Unregistered(PolicyOptimizer):
            """Keeps the start too (registered by its entry point's name)."""
            def __init__(self, step: float = 0.0):
                super().__init__(step=step)
            def iterate(self, objective, start, iterations, generator):
                for _ in range(iterations):
                    yield start + 0.0
    '''))
    dist = d / "byo_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: byo-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[optbench.optimizers]\nbyo-mod = byo_plugin_mod\n"
                                           "byo-class = byo_plugin_mod:Unregistered\n")
    monkeypatch.syspath_prepend(str(d))
    yield d
    from optbench.optimizers import REGISTRY
    from optbench.optimizers import plugins

    for name in ("byo-registered", "byo-class", "byo-file"):
        REGISTRY.pop(name, None)
    plugins._LOADED_ENTRY_POINTS.clear()
    plugins._SCANNED = False
    sys.modules.pop("byo_plugin_mod", None)


def test_entry_point_group_registers_optimizers(plugin_dir, tmp_path, capsys):
    rc = main(["run", "--suite", "synthetic", "--optimizers", "byo-registered,byo-class(step=0.5)", "--states", "2",
               "--iterations", "2", "--seeds", "0", "--out", str(tmp_path / "run"), "--no-plots"])
    assert rc == 0, capsys.readouterr().err
    labels = {json.loads(p.read_text())["optimizer"] for p in (tmp_path / "run" / "cells").glob("*.json")}
    assert labels == {"byo-registered", "byo-class(step=0.5)"}
    assert main(["list"]) == 0 and "byo-class" in capsys.readouterr().out


def test_plugin_file_path_and_errors(tmp_path, capsys, monkeypatch):
    from optbench.optimizers import REGISTRY

    f = tmp_path / "elsewhere" / "byo_file_plugin.py"
    f.parent.mkdir()
    f.write_text("from optbench.optimizers import PolicyOptimizer, register\n\n"
                 "@register('byo-file')\nclass P(PolicyOptimizer):\n"
                 "    def iterate(self, objective, start, iterations, generator):\n"
                 "        for _ in range(iterations):\n            yield start\n")
    try:
        assert main(["run", "--suite", "synthetic", "--plugin", str(f), "--optimizers", "byo-file", "--states", "2",
                     "--iterations", "1", "--seeds", "0", "--out", str(tmp_path / "run"), "--no-plots"]) == 0
    finally:
        REGISTRY.pop("byo-file", None)
        sys.modules.pop("byo_file_plugin", None)
    capsys.readouterr()
    for plugin, needle in (("no_such_byo_module", "not found"), (str(tmp_path / "nope.py"), "does not exist")):
        rc = main(["run", "--suite", "synthetic", "--plugin", plugin, "--out", str(tmp_path / "r2")])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and needle in err and "\n" not in err, err
    broken = tmp_path / "byo_broken.py"
    broken.write_text("raise RuntimeError('boom at import')\n")
    rc = main(["run", "--suite", "synthetic", "--plugin", str(broken), "--out", str(tmp_path / "r3")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "boom at import" in err and "\n" not in err
    rc = main(["run", "--out", str(tmp_path / "r4")])
    assert rc == 2 and "--suite" in capsys.readouterr().err
