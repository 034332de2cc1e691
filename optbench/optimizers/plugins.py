"""Optimizers from the user's own code: ``--plugin MODULE`` and the ``optbench.optimizers``
entry-point group.

A plugin is an ordinary Python module that registers optimizers with
:func:`optbench.optimizers.register` when it is imported::

    from optbench.optimizers import PolicyOptimizer, register

    @register("my-opt")
    class MyOptimizer(PolicyOptimizer):
        ...

``optbench run --plugin my_module`` (a module name, importable from ``sys.path`` or the current
directory, or a path to a ``.py`` file) imports it before the run is planned, so
``--optimizers "my-opt(lr=0.1)"`` and a suite's ``optimizers`` list can name it. Worker
processes (``--executor processes|ray``) import the module again by name, with the directory
it was found in on their ``sys.path`` (:func:`optbench.runner.grid._import_plugins`).

An installed package makes its optimizers available to every ``optbench`` command without
``--plugin`` by declaring an entry point in the group ``optbench.optimizers``::

    [project.entry-points."optbench.optimizers"]
    my-opt = "my_package.optimizers"            # a module that registers with @register
    other-opt = "my_package.other:OtherOpt"     # or a PolicyOptimizer subclass, registered as "other-opt"
"""

from __future__ import annotations

import importlib
import sys
import types
from importlib.metadata import entry_points
from pathlib import Path

from optbench.optimizers.base import REGISTRY, OptimizerError, PolicyOptimizer, register

ENTRY_POINT_GROUP = "optbench.optimizers"
_LOADED_ENTRY_POINTS: set[str] = set()
_SCANNED = False  # the entry points were scanned once in this process (workers scan once)


class PluginError(OptimizerError):
    """A plugin module or entry point that cannot be imported (one line)."""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


def plugin_location(name: str) -> tuple[str, str]:
    """``(module name, directory to search)`` of a ``--plugin`` argument: a ``.py`` path gives
    its stem and directory; a module name is searched on ``sys.path`` then in the current
    directory."""
    if name.endswith(".py") or "/" in name or "\\" in name:
        path = Path(name).expanduser().resolve()
        if not path.is_file():
            raise PluginError(f"plugin file {name} does not exist")
        return path.stem, str(path.parent)
    if not all(part.isidentifier() for part in name.split(".")):
        raise PluginError(f"--plugin {name!r} is neither a module name nor a path to a .py file")
    return name, str(Path.cwd())


_IMPORTED: set[str] = set()


def import_modules(modules: tuple[tuple[str, str], ...]) -> None:
    """Import ``(module, root)`` pairs once per process: by name, else with ``root`` appended to
    ``sys.path`` (the directory the driver found it in; how worker processes find a run's plugins)."""
    for module, root in modules:
        if module in _IMPORTED or module in sys.modules:
            _IMPORTED.add(module)
            continue
        try:
            importlib.import_module(module)
        except ImportError:
            if root and root not in sys.path:
                sys.path.append(root)
            importlib.import_module(module)
        _IMPORTED.add(module)


def import_plugins(names: list[str]) -> list[str]:
    """Import the ``--plugin`` modules ``names`` (see :func:`plugin_location`); returns the
    optimizer names they registered. Errors are one-line :class:`PluginError`."""
    before = set(REGISTRY)
    for name in names:
        module, root = plugin_location(name)
        if name.endswith(".py") and root not in sys.path:
            sys.path.insert(0, root)  # the file the user named, not another module of that name
        try:
            import_modules(((module, root),))
        except ModuleNotFoundError as exc:
            if exc.name is not None and (exc.name == module or module.startswith(exc.name + ".")):
                raise PluginError(f"plugin module {module!r} not found on sys.path or in {root}") from None
            raise PluginError(f"plugin {module!r} failed to import: {_first_line(exc)}") from None
        except Exception as exc:  # noqa: BLE001 - user code: any error, reported in one line
            raise PluginError(f"plugin {module!r} failed to import: {_first_line(exc)}") from None
        if name.endswith(".py"):
            found = getattr(sys.modules.get(module), "__file__", None)
            if found is None or Path(found).resolve() != Path(name).expanduser().resolve():
                raise PluginError(f"--plugin {name}: another module named {module!r} ({found}) was imported instead")
    return sorted(set(REGISTRY) - before)


def load_entry_points(strict: bool = True) -> list[str]:
    """Load the ``optbench.optimizers`` entry points of installed packages (once each).

    An entry point names a module whose import registers optimizers, or a
    :class:`PolicyOptimizer` subclass (registered under the entry point's name unless already
    registered). ``strict``: a failing entry point raises :class:`PluginError`; otherwise it
    is skipped (worker processes, where the driver has already reported it)."""
    global _SCANNED
    if _SCANNED and not strict:
        return []
    _SCANNED = True
    before = set(REGISTRY)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        key = f"{ep.name}={ep.value}"
        if key in _LOADED_ENTRY_POINTS:
            continue
        try:
            obj = ep.load()
        except Exception as exc:  # noqa: BLE001 - third-party code
            if strict:
                raise PluginError(f"entry point {ep.name!r} = {ep.value!r} (group {ENTRY_POINT_GROUP}) failed to "
                                  f"load: {_first_line(exc)}") from None
            continue
        if isinstance(obj, type) and issubclass(obj, PolicyOptimizer):
            if obj not in REGISTRY.values():
                register(ep.name)(obj)
        elif not isinstance(obj, types.ModuleType):
            if strict:
                raise PluginError(f"entry point {ep.name!r} = {ep.value!r} is neither a module nor a PolicyOptimizer "
                                  f"subclass")
            continue
        _LOADED_ENTRY_POINTS.add(key)
    return sorted(set(REGISTRY) - before)


__all__ = ["ENTRY_POINT_GROUP", "PluginError", "import_modules", "import_plugins", "load_entry_points", "plugin_location"]
