"""``optbench run --objectives PKG[,PKG…]``: a suite made on the fly from objective packages.

The suite is written as an ordinary ``suite.toml`` (in ``RUN/suite/``), so the run is stored,
resumed and reported like any other, and the file is a starting point for a suite of one's
own (a suite is the way to pin settings). Its optimizers are :data:`DEFAULT_OPTIMIZERS`:
the package's own direct actor (one iteration) and iterative optimizer where it has one, and
the classical optimizers at the paper's settings. Each package's ``package.json`` checksum is
part of the file, so a changed package is a different run.
"""

from __future__ import annotations

import json
from pathlib import Path

from optbench.agents.package import load_package, sha256_file
from optbench.runner.store import config_hash, slug

# (spec, iterations or None for the run's budget, which packages it needs: None | "direct" | "iterative")
DEFAULT_OPTIMIZERS: tuple[tuple[str, int | None, str | None], ...] = (
    ("direct", 1, "direct"),
    ("iterative", None, "iterative"),
    ("adam", None, None),
    ("cem", None, None),
    ("cmaes", None, None),
    ("pycma", None, None),
    ("scipy:L-BFGS-B", None, None),
)
DEFAULT_SETTINGS = {"states": 32, "iterations": 100, "seeds": [0], "score_samples": 256, "score_at": "log"}


def _toml(value) -> str:
    """A TOML value for strings, numbers, booleans and lists of them (JSON's string escapes are TOML's)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def suite_text(packages: list[str | Path]) -> str:
    """The ``suite.toml`` of an ad-hoc run over ``packages`` (each loaded and verified)."""
    if not packages:
        raise ValueError("--objectives needs at least one package directory")
    entries = []
    names: set[str] = set()
    for p in packages:
        root = Path(p).expanduser().resolve()
        if root.name == "package.json":
            root = root.parent
        pkg = load_package(root)
        if pkg.is_optimizer_package:
            raise ValueError(f"{root} is an optimizer package (no Q-function); --objectives takes objective packages")
        name, k = pkg.name, 2
        while name in names:
            name, k = f"{pkg.name}-{k}", k + 1
        names.add(name)
        entries.append((name, root, pkg, sha256_file(root / "package.json")))
    lines = ['name = "objectives"',
             "description = " + _toml("Objective packages run with the default optimizer set: "
                                      + ", ".join(str(r) for _, r, _, _ in entries)),
             "optimizers = ["]
    for spec, iterations, needs in DEFAULT_OPTIMIZERS:
        has = [n for n, _, pkg, _ in entries
               if needs is None or (pkg.direct if needs == "direct" else pkg.iterative) is not None]
        if not has:
            continue
        fields = [f"spec = {_toml(spec)}", f"label = {_toml(spec)}"]
        if iterations is not None:
            fields.append(f"iterations = {iterations}")
        if needs is not None and len(has) < len(entries):
            fields.append(f"objectives = {_toml(has)}")
        lines.append("    { " + ", ".join(fields) + " },")
    lines += ["]", "", "[settings]", *(f"{k} = {_toml(v)}" for k, v in DEFAULT_SETTINGS.items()), ""]
    for name, root, _, digest in entries:
        lines += ["[[objectives]]", f"name = {_toml(name)}", 'source = "package"', f"package = {_toml(str(root))}",
                  f"# package.json sha256 {digest}", ""]
    return "\n".join(lines)


def write_adhoc_suite(packages: list[str | Path], out: Path | None,
                      results_root: Path = Path("results/runs")) -> tuple[Path, Path]:
    """Write the ad-hoc suite of ``packages`` into ``OUT/suite/suite.toml``; returns
    ``(suite directory, run directory)``, the run directory defaulting to
    ``results/runs/objectives-HASH`` (HASH of the suite file)."""
    text = suite_text(packages)
    run = Path(out) if out is not None else results_root / f"{slug('objectives')}-{config_hash({'suite': text})}"
    directory = run / "suite"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "suite.toml"
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)
    return directory, run


__all__ = ["DEFAULT_OPTIMIZERS", "DEFAULT_SETTINGS", "suite_text", "write_adhoc_suite"]
