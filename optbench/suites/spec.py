"""Suite definitions: a ``suite.toml`` naming objectives, optimizers and run settings.

A suite is a directory ``suites/NAME/`` holding ``suite.toml`` and any data it refers to
(paths are relative to the directory). Example::

    name = "synthetic"
    description = "..."
    optimizers = ["adam(lr=0.05)", {spec = "cem", label = "cem-paper", iterations = 500}]

    [settings]            # defaults; `optbench run` options override them
    states = 32
    iterations = 100
    seeds = [0, 1, 2]
    score_samples = 1000
    score_at = "all"      # or "log": every iteration to 10, then ~10 per decade

    [quick]               # overrides applied by --quick
    states = 8

    [default]             # what `optbench run` runs without --optimizers or --all (default: all)
    optimizers = ["cem-paper"]   # labels of the optimizers list

    [[objectives]]
    name = "quadratic-a3"
    source = "analytic"   # a key of optbench.suites.sources.SOURCES
    ...                   # the source's own fields

Every problem in the file is reported as one line naming the file and the field.
"""

from __future__ import annotations

import fnmatch
import itertools
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from optbench.spec_syntax import OptimizerError, format_spec, parse_spec


PER_OBJECTIVE = "per-objective"  # marks an optimizer context value given per objective
TABLE_NAMES = ("r1", "r2", "r5", "r7", "headroom", "transfer")
"""The paper-question tables a suite may ask for (``tables = [...]``); drawn by
:data:`optbench.reporting.paper_tables.PAPER_TABLES` (a test keeps the two equal; the suites
name tables, they do not import the report)."""


class SuiteError(ValueError):
    """A suite that cannot be found or whose definition is malformed."""


def is_int(v: Any) -> bool:
    """An integer in a suite file (TOML's ``true`` is not one)."""
    return isinstance(v, int) and not isinstance(v, bool)


def check_seeds(seeds: Any, what: str) -> None:
    """A non-empty list of distinct integer seeds (a repeated seed would be one cell run
    twice); :class:`SuiteError` naming ``what`` otherwise."""
    if not isinstance(seeds, list) or not all(is_int(s) for s in seeds):
        raise SuiteError(f"{what} must be a list of integer seeds, got {seeds!r}")
    if not seeds:
        raise SuiteError(f"{what} names no seed (give e.g. 0,1,2 or 0..4)")
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise SuiteError(f"{what} repeats seed(s) {repeated}")


SETTING_TYPES: dict[str, type | tuple[type, ...]] = {
    "states": int, "iterations": int, "seeds": list, "score_samples": int, "score_at": str, "score_seed": int,
}
SCORE_AT = ("all", "log")  # optbench.optimizers.base.score_schedule's modes
DEFAULT_SETTINGS: dict[str, Any] = {
    "states": 32, "iterations": 100, "seeds": [0], "score_samples": 1000, "score_at": "all", "score_seed": 12345,
}


@dataclass(frozen=True)
class OptimizerEntry:
    """One optimizer of a suite: its spec, a label for tables, and where it runs.

    ``iterations`` overrides the suite budget for this optimizer (``None``: suite budget);
    ``objectives`` restricts it to some objectives (empty: all; in suite.toml names or
    shell-style patterns such as ``"HalfCheetah-v5/*"``, expanded on load); ``context`` holds fields a
    learned optimizer needs (e.g. ``package``: which agent's network to load, either one path
    or a table ``{objective name = path}``, so that one labelled optimizer, such as "the
    iterative agent's optimizer on the direct agent's Q", spans several tasks).
    """

    spec: str
    label: str
    iterations: int | None = None
    objectives: tuple[str, ...] = ()
    context: tuple[tuple[str, Any], ...] = ()

    def runs_on(self, objective: str) -> bool:
        return not self.objectives or objective in self.objectives


@dataclass(frozen=True)
class ObjectiveEntry:
    name: str
    source: str
    fields: tuple[tuple[str, Any], ...]

    def get(self, key: str, default: Any = None) -> Any:
        return dict(self.fields).get(key, default)


@dataclass(frozen=True)
class Grid:
    label: str
    spec: str
    axes: tuple[tuple[str, tuple[Any, ...]], ...]

    def expand(self) -> list[str]:
        """Every setting of the grid as a spec string (grid values override the base spec's)."""
        name, method, base = parse_spec(self.spec)
        keys = [k for k, _ in self.axes]
        return [format_spec(name, method, {**base, **dict(zip(keys, values))})
                for values in itertools.product(*(v for _, v in self.axes))]


@dataclass(frozen=True)
class Tuning:
    split: str
    iterations: int
    seeds: tuple[int, ...]
    states: int | None
    grids: tuple[Grid, ...]


def parse_tuning(raw: Any, fail) -> Tuning | None:
    """The ``[tuning]`` table of a suite file (``None`` if absent); errors through ``fail``."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise fail("[tuning] must be a table")
    unknown = set(raw) - {"split", "iterations", "seeds", "states", "grids"}
    if unknown:
        raise fail(f"unknown field(s) [tuning].{sorted(unknown)}; allowed: grids, iterations, seeds, split, states")
    split = raw.get("split", "heldout")
    if not isinstance(split, str) or split == "benchmark":
        raise fail("[tuning].split must name a held-out state split (not 'benchmark')")
    iterations = raw.get("iterations", 100)
    states = raw.get("states")
    seeds = raw.get("seeds", [0])
    if not is_int(iterations) or iterations < 1:
        raise fail("[tuning].iterations must be a positive integer")
    if states is not None and (not is_int(states) or states < 1):
        raise fail("[tuning].states must be a positive integer")
    try:
        check_seeds(seeds, "[tuning].seeds")
    except SuiteError as exc:
        raise fail(str(exc)) from None
    grids_raw = raw.get("grids")
    if not isinstance(grids_raw, list) or not grids_raw:
        raise fail("[tuning].grids must be a non-empty list of tables")
    grids = []
    for i, g in enumerate(grids_raw):
        if not isinstance(g, dict) or not isinstance(g.get("label"), str) or not isinstance(g.get("spec"), str):
            raise fail(f"[tuning].grids[{i}] needs string fields 'label' and 'spec'")
        swept = {k: v for k, v in g.items() if k not in ("label", "spec")}
        bad = [k for k, v in swept.items() if not isinstance(v, list) or not v]
        if not swept or bad:
            raise fail(f"[tuning].grids[{i}] ({g['label']}) needs at least one non-empty list of values to sweep"
                       + (f" (not a non-empty list: {', '.join(map(repr, bad))})" if bad else ""))
        axes = tuple((k, tuple(v)) for k, v in swept.items())
        grid = Grid(g["label"], g["spec"], axes)
        try:
            grid.expand()
        except Exception as exc:  # noqa: BLE001 - a bad spec is a malformed suite, reported in one line
            raise fail(f"[tuning].grids[{i}] ({g['label']}): {exc}") from None
        grids.append(grid)
    if len({g.label for g in grids}) != len(grids):
        raise fail("[tuning].grids labels must be unique")
    return Tuning(split, iterations, tuple(seeds), states, tuple(grids))


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    directory: Path
    objectives: tuple[ObjectiveEntry, ...]
    optimizers: tuple[OptimizerEntry, ...]
    settings: dict[str, Any] = field(default_factory=dict)
    quick: dict[str, Any] = field(default_factory=dict)
    tables: tuple[str, ...] = ()
    tuning: Tuning | None = None
    #: labels `optbench run` runs by default (``[default].optimizers``; empty: every optimizer),
    #: so that the default run keeps its time budget as the suite grows; ``--all`` runs every one
    default: tuple[str, ...] = ()


def suite_search_path() -> list[Path]:
    """Where suite names are looked up: ``./suites`` then the ``suites/`` beside the package."""
    here = Path(__file__).resolve().parents[2] / "suites"
    return [Path.cwd() / "suites", here]


def available_suites() -> list[Path]:
    seen: dict[str, Path] = {}
    for root in suite_search_path():
        if root.is_dir():
            for p in sorted(root.glob("*/suite.toml")):
                seen.setdefault(p.parent.name, p.parent)
    return list(seen.values())


def find_suite(name_or_path: str) -> Path:
    """Resolve a suite name (``synthetic``) or a path to a suite directory or ``suite.toml``."""
    p = Path(name_or_path)
    if p.is_file() and p.suffix == ".toml":
        return p
    if (p / "suite.toml").is_file() and (p.is_absolute() or "/" in name_or_path or name_or_path.startswith(".")):
        return p / "suite.toml"
    for root in suite_search_path():
        if (root / name_or_path / "suite.toml").is_file():
            return root / name_or_path / "suite.toml"
    known = ", ".join(s.name for s in available_suites()) or "none found"
    raise SuiteError(f"unknown suite {name_or_path!r}; known suites: {known}")


def load_suite(name_or_path: str) -> Suite:
    """Find, parse and validate a suite definition."""
    path = find_suite(name_or_path)
    try:
        raw = tomllib.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise SuiteError(f"malformed suite file {path}: not UTF-8 text (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError(f"malformed suite file {path}: {exc}") from None
    return parse_suite(raw, path)


def parse_suite(raw: dict[str, Any], path: Path) -> Suite:
    def fail(msg: str) -> SuiteError:  # one line, whatever names the file holds
        return SuiteError(f"malformed suite file {path}: {msg}".replace("\r", "\\r").replace("\n", "\\n"))

    known_top = {"name", "description", "optimizers", "settings", "quick", "objectives", "tables", "tuning", "default"}
    unknown = set(raw) - known_top
    if unknown:
        raise fail(f"unknown top-level field(s) {sorted(unknown)}; allowed: {sorted(known_top)}")
    if not isinstance(raw.get("name"), str):
        raise fail("missing string field 'name'")
    settings = _settings(raw.get("settings", {}), "settings", fail)
    quick = _settings(raw.get("quick", {}), "quick", fail)

    objectives = []
    raw_objs = raw.get("objectives")
    if not isinstance(raw_objs, list) or not raw_objs:
        raise fail("needs at least one [[objectives]] table")
    for i, o in enumerate(raw_objs):
        if not isinstance(o, dict) or not isinstance(o.get("name"), str) or not isinstance(o.get("source"), str):
            raise fail(f"objectives[{i}] needs string fields 'name' and 'source'")
        rest = tuple(sorted((k, _freeze(v)) for k, v in o.items() if k not in ("name", "source")))
        objectives.append(ObjectiveEntry(o["name"], o["source"], rest))
    names = [o.name for o in objectives]
    if len(set(names)) != len(names):
        raise fail("objective names must be unique")

    optimizers = []
    raw_opts = raw.get("optimizers")
    if not isinstance(raw_opts, list) or not raw_opts:
        raise fail("needs a non-empty 'optimizers' list")
    for i, o in enumerate(raw_opts):
        optimizers.append(_optimizer_entry(o, i, fail, names))
    labels = [o.label for o in optimizers]
    if len(set(labels)) != len(labels):
        raise fail(f"optimizer labels must be unique, got {labels}")
    tables = raw.get("tables", [])
    if not isinstance(tables, list) or not all(isinstance(t, str) and t in TABLE_NAMES for t in tables):
        raise fail(f"'tables' must be a list of table names from {sorted(TABLE_NAMES)}")
    return Suite(raw["name"], str(raw.get("description", "")), path.parent, tuple(objectives), tuple(optimizers),
                 settings, quick, tuple(tables), parse_tuning(raw.get("tuning"), fail),
                 _default_selection(raw.get("default"), labels, fail))


def _default_selection(raw: Any, labels: list[str], fail) -> tuple[str, ...]:
    """``[default].optimizers``: labels of the suite's optimizers that a plain ``optbench run`` runs."""
    if raw is None:
        return ()
    if not isinstance(raw, dict) or set(raw) != {"optimizers"}:
        raise fail("[default] must be a table with one field, 'optimizers' (a list of optimizer labels)")
    chosen = raw["optimizers"]
    if not isinstance(chosen, list) or not chosen or not all(isinstance(x, str) for x in chosen):
        raise fail("[default].optimizers must be a non-empty list of optimizer labels")
    unknown = [x for x in chosen if x not in labels]
    if unknown:
        raise fail(f"[default].optimizers names unknown label(s) {unknown}; labels: {labels}")
    if len(set(chosen)) != len(chosen):
        raise fail("[default].optimizers lists a label twice")
    return tuple(chosen)


def _settings(raw: Any, where: str, fail) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise fail(f"[{where}] must be a table")
    out = {}
    for k, v in raw.items():
        if k not in SETTING_TYPES:
            raise fail(f"unknown field [{where}].{k!r}; allowed: {sorted(SETTING_TYPES)}")
        if not isinstance(v, SETTING_TYPES[k]) or isinstance(v, bool):
            raise fail(f"[{where}].{k} must be of type {SETTING_TYPES[k].__name__}, got {v!r}")
        if k == "seeds":
            try:
                check_seeds(v, f"[{where}].seeds")
            except SuiteError as exc:
                raise fail(str(exc)) from None
        if k in ("states", "score_samples", "iterations") and v < 1:
            raise fail(f"[{where}].{k} must be a positive integer, got {v}")
        if k == "score_at" and v not in SCORE_AT:
            raise fail(f"[{where}].score_at must be one of {', '.join(SCORE_AT)}, got {v!r}")
        out[k] = v
    return out


def _optimizer_entry(o: Any, i: int, fail, names: list[str]) -> OptimizerEntry:
    if isinstance(o, str):
        o = {"spec": o}
    if not isinstance(o, dict) or not isinstance(o.get("spec"), str):
        raise fail(f"optimizers[{i}] must be a spec string or a table with a string 'spec'")
    try:
        parse_spec(o["spec"])
    except OptimizerError as exc:
        raise fail(f"optimizers[{i}]: {exc}") from None
    iterations = o.get("iterations")
    if iterations is not None and (not is_int(iterations) or iterations < 1):
        raise fail(f"optimizers[{i}].iterations must be a positive integer, got {iterations!r}")
    patterns = o.get("objectives", [])
    if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
        raise fail(f"optimizers[{i}].objectives must be a list of objective names or patterns")
    objectives = []
    for pattern in patterns:
        matched = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        if not matched:
            raise fail(f"optimizers[{i}] ({o.get('label', o['spec'])}) names unknown objective(s) ['{pattern}']")
        objectives += [n for n in matched if n not in objectives]
    package = o.get("package")
    if isinstance(package, dict):  # one package per objective: {"objective name" = "path", ...}
        if not package or not all(isinstance(v, str) for v in package.values()):
            raise fail(f"optimizers[{i}].package must be a path or a table of objective name = path")
        if not objectives:  # the table's keys name the objectives
            unknown = set(package) - set(names)
            if unknown:
                raise fail(f"optimizers[{i}] ({o.get('label', o['spec'])}) names unknown objective(s) {sorted(unknown)}")
            objectives = sorted(package)
        missing = set(objectives) - set(package)
        if missing:
            raise fail(f"optimizers[{i}].package names no package for objective(s) {sorted(missing)}")
        o = {**o, "package": (PER_OBJECTIVE, tuple(sorted(package.items())))}
    context = tuple(sorted((k, _freeze(v)) for k, v in o.items() if k not in ("spec", "label", "iterations", "objectives")))
    return OptimizerEntry(o["spec"], str(o.get("label", o["spec"])), iterations, tuple(objectives), context)


def _freeze(v: Any) -> Any:
    return tuple(_freeze(x) for x in v) if isinstance(v, list) else v


def with_settings(suite: Suite, **overrides: Any) -> Suite:
    return replace(suite, settings={**suite.settings, **{k: v for k, v in overrides.items() if v is not None}})
