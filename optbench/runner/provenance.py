"""What ties a stored run to the code and the files that made it (``run.json["provenance"]``).

* ``git_commit``: the commit of the git checkout the ``optbench`` package is imported from
  (``None`` when it is not in a checkout, e.g. an installed wheel, or git is missing);
* ``git_dirty``: whether tracked files differ from that commit (untracked files such as
  result directories do not count; ``None`` without a checkout);
* ``suite_hash``: :func:`suite_hash` of the suite the run was made from;
* ``suite_directory``: where that suite lives, relative to the checkout when inside it.

Package versions and the machine are recorded beside it (``run.json["environment"]``).
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path
from typing import Any

from optbench.runner.tuning import tuning_suite
from optbench.suites.spec import PER_OBJECTIVE, Suite, load_suite

PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the directory holding the optbench package


def _git(*args: str) -> str | None:
    try:
        proc = subprocess.run(["git", "-C", str(PACKAGE_ROOT), *args], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout if proc.returncode == 0 else None


def git_info() -> dict[str, Any]:
    """``{"git_commit": sha | None, "git_dirty": bool | None}`` of the package's checkout."""
    top = _git("rev-parse", "--show-toplevel")
    if top is None or Path(top.strip()).resolve() != PACKAGE_ROOT:
        return {"git_commit": None, "git_dirty": None}
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": commit.strip() if commit else None,
            "git_dirty": None if status is None else bool(status.strip())}


def _files_of(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and not any(
        part.startswith(".") or part == "__pycache__" for part in p.relative_to(path).parts))


def suite_paths(suite: Suite) -> list[str]:
    """The files and directories a suite uses, as written in it (relative to its directory):
    every string field of its objectives and optimizer contexts that names an existing path."""
    values: list[Any] = [v for o in suite.objectives for _, v in o.fields]
    for e in suite.optimizers:
        for _, v in e.context:
            if isinstance(v, tuple) and len(v) == 2 and v[0] == PER_OBJECTIVE:
                values += [path for _, path in v[1]]
            else:
                values.append(v)
    out = []
    for v in values:
        if isinstance(v, str) and v and v not in out and (suite.directory / v).exists():
            out.append(v)
    return sorted(out)


def suite_hash(suite: Suite) -> str:
    """sha256 over the suite definition (``suite.toml``) and every file it uses (package
    directories: each file's relative path and bytes), independent of where the suite lives."""
    h = hashlib.sha256()
    h.update(b"suite.toml\0" + hashlib.sha256((suite.directory / "suite.toml").read_bytes()).digest())
    for rel in suite_paths(suite):
        base = suite.directory / rel
        for f in _files_of(base):
            name = rel if f == base else f"{rel}/{f.relative_to(base).as_posix()}"
            h.update(name.encode() + b"\0" + hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


def suite_of_run(run_info: dict[str, Any]) -> Suite:
    """The suite a stored run was made from, as it is now (a ``NAME-tuning`` run: the sweep
    that ``optbench tune`` derives from suite ``NAME``)."""
    where = Path(run_info["provenance"]["suite_directory"])
    suite = load_suite(str(where if where.is_absolute() else PACKAGE_ROOT / where))
    if run_info["config"]["suite"] == f"{suite.name}-tuning" and suite.tuning is not None:
        suite = tuning_suite(suite)
    return suite


def check_run(run_info: dict[str, Any]) -> str | None:
    """``None`` if a stored run's recorded suite hash matches its suite's files as they are
    now; otherwise why not (``"not recorded"`` for runs made before hashes were recorded)."""
    recorded = (run_info.get("provenance") or {}).get("suite_hash")
    if not recorded:
        return "not recorded"
    now = suite_hash(suite_of_run(run_info))
    if now != recorded:
        return (f"suite {run_info['config']['suite']!r} changed since the run was made (suite hash {recorded[:12]} "
                f"then, {now[:12]} now): regenerate the run (nox -s reference)")
    return None


def provenance(suite: Suite) -> dict[str, Any]:
    """The ``provenance`` record of a run of ``suite``."""
    directory = suite.directory.resolve()
    try:
        where = directory.relative_to(PACKAGE_ROOT).as_posix()
    except ValueError:
        where = str(directory)
    return {**git_info(), "suite_hash": suite_hash(suite), "suite_directory": where}


__all__ = ["check_run", "git_info", "provenance", "suite_hash", "suite_of_run", "suite_paths"]
