"""The runnable code examples of README.md and docs/*.md, executed as written.

Convention: a fenced ```python or ```bash block immediately preceded by the line `<!-- test -->`
is runnable. The python blocks of one page run in order, in one namespace, in a fresh temporary
directory (fast tier); the bash blocks run line by line through the real `optbench` command in a
fresh temporary directory (slow tier: CLI subprocesses). docs/bring-your-own.md has its own test
(tests/test_bring_your_own.py) and is left out here."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import optbench

ROOT = Path(optbench.__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SEPARATELY_TESTED = {"bring-your-own.md"}
MARKED = re.compile(r"^<!-- test -->\n```(python|bash)\n(.*?)^```", re.S | re.M)


def runnable(lang: str) -> list[tuple[str, list[str]]]:
    """(page, its marked blocks of this language) for every page that has any."""
    out = []
    for page in PAGES:
        if page.name in SEPARATELY_TESTED:
            continue
        blocks = [m.group(2) for m in MARKED.finditer(page.read_text()) if m.group(1) == lang]
        if blocks:
            out.append((str(page.relative_to(ROOT)), blocks))
    return out


PYTHON, BASH = runnable("python"), runnable("bash")


def test_the_convention_finds_the_examples():
    """The pages that promise executed examples have some (a renamed marker would skip them silently)."""
    assert "docs/optimizers.md" in dict(PYTHON)
    assert "docs/running.md" in dict(BASH)


@pytest.mark.parametrize("page,blocks", PYTHON, ids=[p for p, _ in PYTHON])
def test_python_examples_run(page, blocks, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": f"doc:{page}"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"{page} (block {i + 1})", "exec"), namespace)


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("page,blocks", BASH, ids=[p for p, _ in BASH])
def test_bash_examples_run(page, blocks, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "optbench"  # the `optbench` command of this interpreter and checkout
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m optbench.cli "$@"\n')
    shim.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    for block in blocks:
        for line in block.splitlines():
            line = line.split(" #")[0].strip()
            if not line or line.startswith("#"):
                continue
            r = subprocess.run(["bash", "-c", line], cwd=work, env=env, capture_output=True, text=True)
            assert r.returncode == 0, f"{page}: `{line}` failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
