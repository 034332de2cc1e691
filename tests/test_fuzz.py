"""Fuzzed inputs (issue 22 item 3): random and mutated optimizer specs, suite files and
packages never raise anything but optbench's own one-line errors, and never write anything
(a run writes only under its ``--out``).

Property-based (``hypothesis``) at moderate example counts, so the file runs in tens of
seconds. Every example works in a fresh temporary directory, and the test's working
directory is an empty directory that must stay empty. An address-space limit keeps a
mutated size (a layer of 10^6 units) from taking the machine's memory: a loader that tried
to allocate it would fail the test with a ``MemoryError``/``RuntimeError`` rather than
fill the memory of other work."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import resource
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from optbench.agents.checkpoint import CheckpointError  # noqa: E402
from optbench.agents.package import PackageError, load_package  # noqa: E402
from optbench.cli import UserError, main  # noqa: E402
from optbench.locks import LockError  # noqa: E402
from optbench.optimizers.base import REGISTRY, OptimizerError, make_optimizer  # noqa: E402
from optbench.runner.grid import plan_run, validate_plan  # noqa: E402
from optbench.runner.store import StoreError  # noqa: E402
from optbench.suites.spec import SuiteError, load_suite  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "suites/mujoco-states/packages/hopper-direct"
OWN_ERRORS = (OptimizerError, SuiteError, PackageError, CheckpointError, StoreError, UserError, LockError)
FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                         HealthCheck.too_slow])


# ------------------------------------------------------------------------------ helpers
def tree(root: Path) -> dict[str, tuple[int, str]]:
    """Every file under ``root``: size and sha256 (what a write would change)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            out[str(p.relative_to(root))] = (p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest())
        elif p.is_dir():
            out[str(p.relative_to(root)) + "/"] = (0, "")
    return out


def one_of_ours(call, *args, **kwargs) -> Any:
    """``call(*args)``; an exception must be one of optbench's own, with a one-line message."""
    try:
        return call(*args, **kwargs)
    except OWN_ERRORS as exc:
        message = str(exc)
        assert message and "\n" not in message and "Traceback" not in message, repr(message)
        return exc


@pytest.fixture(autouse=True)
def empty_cwd(tmp_path, monkeypatch) -> Iterator[Path]:
    """The test runs in an empty directory that must stay empty."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    yield cwd
    assert not list(cwd.iterdir()), list(cwd.iterdir())


@pytest.fixture(autouse=True)
def bounded_memory() -> Iterator[None]:
    """At most 6 GiB more address space than the process has now (restored afterwards)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/status") as fh:
        vm = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (vm + (6 << 30), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@contextlib.contextmanager
def scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="optbench-fuzz-") as d:
        yield Path(d)


# ------------------------------------------------------------------------------ values
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(-3, 40),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12))
JSON_VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                             st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                           max_leaves=8)
SETTING_NAMES = ["lr", "samples", "population", "elites", "smoothing", "sigma0", "popsize", "iterations", "start",
                 "method", "steps", "init_std", "beta", "package", "budget", "x", "_", "lr_"]


@st.composite
def literal_text(draw) -> str:
    """A Python literal (or almost one) as it would appear after ``key=`` in a spec."""
    kind = draw(st.sampled_from(["repr", "raw", "nested"]))
    if kind == "repr":
        return repr(draw(st.one_of(SCALARS, st.lists(SCALARS, max_size=3), st.tuples(SCALARS, SCALARS))))
    if kind == "nested":
        depth = draw(st.integers(1, 200))
        return "(" * depth + "1" + ",)" * depth
    return draw(st.text(alphabet="0123456789.eE+-_()[]{}'\",:=xyz abc", max_size=16))


@st.composite
def optimizer_specs(draw) -> str:
    """Specs near the grammar NAME[:METHOD][(key=value,...)], warm starts included."""
    names = sorted(REGISTRY) + ["nevergrad", "scipy", "unknown", ""]
    name = draw(st.sampled_from(names))
    if draw(st.booleans()):
        name = f"{name}+{draw(st.sampled_from(names))}"
    if draw(st.integers(0, 3)) == 0:
        name += ":" + draw(st.sampled_from(["OnePlusOne", "CMA", "L-BFGS-B", "Nelder-Mead", "nope", "", "a b"]))
    if draw(st.booleans()):
        keys = draw(st.lists(st.one_of(st.sampled_from(SETTING_NAMES), st.text(max_size=6)), max_size=4))
        name += "(" + ",".join(f"{k}={draw(literal_text())}" for k in keys) + ")"
    if draw(st.integers(0, 5)) == 0:  # a stray character somewhere
        at = draw(st.integers(0, len(name)))
        name = name[:at] + draw(st.text(max_size=2)) + name[at:]
    return name


# ------------------------------------------------------------------------------ optimizer specs
@FUZZ
@given(spec=st.one_of(optimizer_specs(), st.text(max_size=40)))
def test_optimizer_specs_build_or_fail_in_one_line(spec):
    one_of_ours(make_optimizer, spec)


@settings(max_examples=100, deadline=None)
@given(settings_=st.dictionaries(st.sampled_from(SETTING_NAMES), JSON_VALUES, max_size=4),
       name=st.sampled_from(sorted(REGISTRY)))
def test_optimizer_settings_as_mappings_build_or_fail_in_one_line(settings_, name):
    one_of_ours(make_optimizer, {"name": name, **settings_})


# ------------------------------------------------------------------------------ suite files
BASE_SUITE = {
    "name": "fuzz",
    "description": "a suite to mutate",
    "optimizers": ["adam", "cem(population=8,elites=2)", {"spec": "cmaes", "iterations": 2},
                   {"spec": "direct", "objectives": ["hopper"]}],
    "settings": {"states": 2, "iterations": 2, "seeds": [0, 1], "score_samples": 8, "score_at": "all"},
    "quick": {"states": 2, "iterations": 1, "seeds": [0], "score_samples": 4},
    "objectives": [
        {"name": "quad", "source": "analytic", "profile": "quadratic", "state_dim": 3, "action_dim": 2, "alpha": 0.1},
        {"name": "hopper", "source": "package", "package": str(PACKAGE)},
        {"name": "random-net", "source": "random-network", "state_dim": 4, "action_dim": 2, "alpha": 0.1},
    ],
    "tuning": {"iterations": 2, "grids": [{"label": "adam (tuned)", "spec": "adam", "lr": [0.01, 0.1]}]},
}


def toml_string(v: str) -> str:
    """A TOML basic string (JSON's escapes, but non-ASCII characters as they are: TOML has
    no surrogate-pair escapes)."""
    return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_value(v: Any) -> str:
    """``v`` as an inline TOML value (keys always quoted)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return toml_string(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{toml_string(k)} = {toml_value(x)}" for k, x in v.items()) + "}"
    return '"none"'  # TOML has no null


def toml_document(doc: dict) -> str:
    return "".join(f"{toml_string(k)} = {toml_value(v)}\n" for k, v in doc.items())


def _paths(v: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(v, dict):
        for k, x in v.items():
            out += _paths(x, prefix + (k,))
    elif isinstance(v, list):
        for i, x in enumerate(v):
            out += _paths(x, prefix + (i,))
    return out


@st.composite
def mutated_documents(draw, base: dict, values=JSON_VALUES, max_edits: int = 3) -> dict:
    """``base`` with a few random edits: a value replaced, a key removed, a key added."""
    doc = json.loads(json.dumps(base))
    for _ in range(draw(st.integers(1, max_edits))):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        if action == "replace":
            parent[path[-1]] = draw(values)
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.text(max_size=8))] = draw(values)
        else:
            parent.append(draw(values))
    return doc


@st.composite
def mutated_bytes(draw, data: bytes) -> bytes:
    """``data`` with a few bytes replaced, deleted or inserted (any byte, UTF-8 or not)."""
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, max(len(buf) - 1, 0)))
        action = draw(st.sampled_from(["replace", "delete", "insert"]))
        if action == "replace" and buf:
            buf[at] = draw(st.integers(0, 255))
        elif action == "delete" and buf:
            del buf[at: at + draw(st.integers(1, 8))]
        else:
            buf[at:at] = draw(st.binary(min_size=1, max_size=8))
    return bytes(buf)


def _suite_checks(text: bytes) -> None:
    """Write ``text`` as a suite, then parse and validate it completely (as ``optbench run``
    does before its first cell): one of our errors or a valid plan, and nothing written."""
    with scratch() as d:
        (d / "suite.toml").write_bytes(text)
        before = tree(d)
        suite = one_of_ours(load_suite, str(d))
        if not isinstance(suite, Exception):
            plan = one_of_ours(plan_run, suite)
            if not isinstance(plan, Exception):
                one_of_ours(validate_plan, plan)
        assert tree(d) == before


@FUZZ
@given(doc=mutated_documents(BASE_SUITE))
def test_mutated_suite_files_validate_or_fail_in_one_line(doc):
    _suite_checks(toml_document(doc).encode())


@FUZZ
@given(text=mutated_bytes(toml_document(BASE_SUITE).encode()))
def test_byte_mutated_suite_files_validate_or_fail_in_one_line(text):
    _suite_checks(text)


@settings(max_examples=100, deadline=None)
@given(text=st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode)))
def test_random_suite_files_fail_in_one_line(text):
    _suite_checks(text)


SMALL_VALUES = st.one_of(st.integers(-2, 6), st.sampled_from([0.0, 0.5, -1.0, float("nan"), "x", True, [], {}]))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(doc=mutated_documents({**BASE_SUITE, "optimizers": ["adam", "cem(population=8,elites=2)"],
                              "objectives": BASE_SUITE["objectives"][:1] + BASE_SUITE["objectives"][2:]},
                             values=SMALL_VALUES, max_edits=2))
def test_runs_of_mutated_suites_write_only_under_out(doc, capsys):
    """``optbench run`` on a mutated suite: exit 0, or 2 with one line; only ``--out`` changes."""
    with scratch() as d:
        suite = d / "suite"
        suite.mkdir()
        (suite / "suite.toml").write_text(toml_document(doc))
        before = tree(d)
        out = d / "out"
        rc = main(["run", "--suite", str(suite), "--out", str(out), "--no-plots"])
        err = capsys.readouterr().err.strip()
        assert rc in (0, 2), (rc, err)
        if rc == 2:
            assert err.startswith("error:") and "\n" not in err and "Traceback" not in err, err
        after = {k: v for k, v in tree(d).items() if not k.startswith("out/") and k != "out/"}
        assert after == before


# ------------------------------------------------------------------------------ packages
PACKAGE_DOC = json.loads((PACKAGE / "package.json").read_text())
FILES = sorted(PACKAGE_DOC["files"])


def _write_package(d: Path, doc: dict | bytes, replace: dict[str, bytes] | None = None, reseal: bool = False) -> Path:
    """A copy of the committed package in ``d/pkg`` with ``doc`` as its package.json and some
    files' bytes replaced; ``reseal``: the listed checksums updated to the new bytes (so the
    loader reads them instead of refusing their checksum)."""
    pkg = d / "pkg"
    shutil.copytree(PACKAGE, pkg)
    for name, data in (replace or {}).items():
        (pkg / name).write_bytes(data)
    if reseal and isinstance(doc, dict) and isinstance(doc.get("files"), dict):
        for name in replace or {}:
            if isinstance(doc["files"].get(name), dict):
                doc["files"][name] = {"sha256": hashlib.sha256((pkg / name).read_bytes()).hexdigest(),
                                      "bytes": (pkg / name).stat().st_size}
    (pkg / "package.json").write_bytes(doc if isinstance(doc, bytes) else json.dumps(doc).encode())
    return pkg


def _load_checks(pkg: Path) -> None:
    before = tree(pkg.parent)
    one_of_ours(load_package, pkg)
    assert tree(pkg.parent) == before


@FUZZ
@given(doc=mutated_documents(PACKAGE_DOC, values=st.one_of(JSON_VALUES, st.integers(10**5, 10**12))))
def test_mutated_package_json_loads_or_fails_in_one_line(doc):
    with scratch() as d:
        _load_checks(_write_package(d, doc))


@settings(max_examples=60, deadline=None)
@given(data=mutated_bytes(json.dumps(PACKAGE_DOC).encode()))
def test_byte_mutated_package_json_loads_or_fails_in_one_line(data):
    with scratch() as d:
        _load_checks(_write_package(d, data))


@st.composite
def damaged_files(draw) -> dict[str, bytes]:
    """One or two package files truncated, bit-flipped or overwritten at random places."""
    out = {}
    for name in draw(st.lists(st.sampled_from(FILES), min_size=1, max_size=2, unique=True)):
        data = bytearray((PACKAGE / name).read_bytes())
        how = draw(st.sampled_from(["truncate", "flip", "flip header", "garbage header"]))
        if how == "truncate":
            data = data[: draw(st.integers(0, len(data) - 1))]
        elif how == "flip":
            at = draw(st.integers(0, len(data) - 1))
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif how == "flip header":  # the 8-byte length and the JSON header of a safetensors file
            at = draw(st.integers(0, min(len(data) - 1, 400)))
            data[at] ^= 1 << draw(st.integers(0, 7))
        else:
            data[:8] = draw(st.binary(min_size=8, max_size=8))
        out[name] = bytes(data)
    return out


@FUZZ
@given(files=damaged_files(), reseal=st.booleans())
def test_damaged_package_files_fail_in_one_line(files, reseal):
    with scratch() as d:
        pkg = _write_package(d, json.loads(json.dumps(PACKAGE_DOC)), files, reseal=reseal)
        before = tree(d)
        result = one_of_ours(load_package, pkg)
        assert tree(d) == before
        if not reseal:  # a checksum listed for other bytes is always refused
            assert isinstance(result, PackageError), result


@pytest.mark.parametrize("part", ["q", "direct", "dynamics", "reward"])
def test_a_package_declaring_huge_layers_is_refused_before_anything_is_allocated(part):
    """160 GB of declared weights: refused by their shapes (built on the meta device), not by
    an allocation that fails (or, below the memory size, succeeds and fills the memory)."""
    doc = json.loads(json.dumps(PACKAGE_DOC))
    doc["architectures"][part]["hidden"] = [200_000, 200_000]
    with scratch() as d:
        err = one_of_ours(load_package, _write_package(d, doc))
    assert isinstance(err, PackageError) and "shape" in str(err), err


def test_the_fuzzed_package_loads_unmutated():
    """The base of the package fuzzing is a valid package (so mutations, not the base, fail)."""
    with scratch() as d:
        pkg = load_package(_write_package(d, json.loads(json.dumps(PACKAGE_DOC))))
        assert pkg.state_dim == 11 and pkg.q is not None
    for spec in ("adam", "cem(population=8,elites=2)", "cmaes"):
        make_optimizer(spec)
    with scratch() as d:
        (d / "suite.toml").write_text(toml_document(BASE_SUITE))
        validate_plan(plan_run(load_suite(str(d))))
