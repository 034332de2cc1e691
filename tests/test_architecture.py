"""The module map of docs/architecture.md, kept true: which folder may import which, no import cycles,
no imports of optbench modules inside functions (outside the command line), and the learned
optimizers' networks where they belong (the committed packages and checkpoints still load)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "optbench"

# Each part of optbench and the parts it may import (besides itself). A part is a folder of
# optbench/, or a single module named in full. The same graph is drawn in docs/architecture.md.
ALLOWED: dict[str, set[str]] = {
    "optbench.spec_syntax": set(),
    "optbench.locks": set(),  # one writer per directory (standard library only)
    "optbench.fileio": set(),  # atomic writes (standard library and safetensors)
    "backends": set(),
    "objectives": {"backends"},
    "optimizers": {"objectives", "backends", "optbench.spec_syntax"},
    "agents": {"optimizers", "objectives", "backends", "optbench.spec_syntax", "optbench", "optbench.locks",
               "optbench.fileio"},
    "suites": {"agents", "optimizers", "objectives", "backends", "optbench.spec_syntax",
               "optbench.runner.store"},  # adhoc.py names ad-hoc suites with the store's slug and config hash
    # metrics compute numbers from stored data; they read training runs (checkpoint metadata, the
    # trainer's file layout) but never build an objective or run an optimizer
    "metrics": {"optbench.agents.checkpoint", "optbench.agents.trainer"},
    "runner": {"suites", "agents", "optimizers", "objectives", "backends", "metrics", "optbench.spec_syntax",
               "optbench.locks", "optbench.fileio"},
    # reporting reads the store (and the training-run metrics), draws and tabulates
    "reporting": {"metrics", "optbench.spec_syntax", "optbench.runner.store", "optbench.runner.stored"},
    "cli": {"*"},
    "optbench": set(),  # optbench/__init__.py
}
# Function-level imports of optbench modules are allowed only here: the command modules import a
# command's implementation when it runs, so `optbench --help` never imports torch (0.2 s, not 4 s).
DEFERRED_IMPORTS_ALLOWED = ("optbench.cli",)


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _part(module: str) -> str:
    """The part of ``module``: a full name listed in ALLOWED, else its folder under optbench."""
    parts = module.split(".")
    if module in ALLOWED:
        return module
    return parts[1] if len(parts) > 1 else "optbench"


def _resolve(name: str, known: set[str]) -> str | None:
    """The optbench module an imported name lives in (``optbench.a.b.C`` -> ``optbench.a.b``)."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def _type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(path: Path, known: set[str]) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """``(module-level imports, imports inside functions)`` of optbench modules, as ``(line, module)``;
    imports under ``if TYPE_CHECKING:`` are type hints, not imports."""
    tree = ast.parse(path.read_text(), str(path))
    top, inner = [], []

    def targets(node: ast.AST) -> list[str]:
        if isinstance(node, ast.Import):
            return [a.name for a in node.names]
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            return [f"{node.module}.{a.name}" for a in node.names]
        return []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if _type_checking(child):
                continue
            for name in targets(child):
                if name.split(".")[0] == "optbench":
                    mod = _resolve(name, known)
                    if mod is not None:
                        (inner if in_function else top).append((child.lineno, mod))
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(tree, False)
    return top, inner


@pytest.fixture(scope="module")
def graph() -> dict[str, tuple[Path, list[tuple[int, str]], list[tuple[int, str]]]]:
    mods = _modules()
    return {m: (p, *_imports(p, set(mods))) for m, p in mods.items()}


def test_every_part_is_in_the_map(graph):
    assert {_part(m) for m in graph} <= set(ALLOWED)


def test_imports_follow_the_allowed_direction(graph):
    bad = []
    for mod, (path, top, inner) in graph.items():
        mine = _part(mod)
        allowed = ALLOWED[mine]
        for line, target in top + inner:
            theirs = _part(target)
            ok = ("*" in allowed or theirs == mine or theirs in allowed or target in allowed
                  or any(target.startswith(a + ".") for a in allowed if a.startswith("optbench.")))
            if not ok:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {target} ({mine} -> {theirs})")
    assert not bad, "imports against docs/architecture.md:\n" + "\n".join(bad)


def test_no_function_level_imports_of_optbench_modules(graph):
    bad = [f"{path.relative_to(ROOT)}:{line} imports {target} inside a function"
           for mod, (path, top, inner) in graph.items() if not mod.startswith(DEFERRED_IMPORTS_ALLOWED)
           for line, target in inner]
    assert not bad, "\n".join(bad)


def test_no_import_cycles(graph):
    edges = {m: {t for _, t in top if t != m} for m, (_, top, _) in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for t in sorted(edges.get(m, ())):
            if state.get(t) == 1:
                cycles.append(" -> ".join(stack[stack.index(t):] + [t]))
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = 2

    for m in sorted(edges):
        if m not in state:
            visit(m)
    assert not cycles, "\n".join(cycles)


def test_the_suites_name_the_tables_the_report_draws():
    from optbench.reporting.paper_tables import PAPER_TABLES
    from optbench.suites.spec import TABLE_NAMES

    assert set(PAPER_TABLES) == set(TABLE_NAMES)


def test_networks_moved_to_the_optimizers_and_what_is_on_disk_still_loads():
    """Packages and checkpoints store tensors by name, so moving the classes changes nothing on disk:
    every committed package loads with its networks, and so do the checkpoints under tests/data."""
    from optbench.agents.checkpoint import load_checkpoint
    from optbench.agents.package import load_package
    from optbench.agents.trainer import agent_from_checkpoint
    from optbench.optimizers.networks import DirectActor, IterativeOptimizerNet

    packages = sorted(p.parent for p in (ROOT / "suites").glob("*/packages/*/package.json"))
    assert packages
    for root in packages:
        pkg = load_package(root)
        assert isinstance(pkg.direct, DirectActor) or pkg.direct is None
        assert isinstance(pkg.iterative, IterativeOptimizerNet) or pkg.iterative is None
        assert pkg.direct is not None or pkg.iterative is not None, root
    checkpoints = sorted((ROOT / "tests" / "data").rglob("*.safetensors"))
    assert checkpoints
    for path in checkpoints:
        tensors, meta = load_checkpoint(path)
        agent = agent_from_checkpoint(tensors, meta)
        assert isinstance(agent.actor if hasattr(agent, "actor") else agent.policy,
                          (DirectActor, IterativeOptimizerNet)), path
