"""No package reaches into another's private names (issue 19: the seams between the rooms).

A name with one leading underscore is private to the module that defines it. Walking every module
of the project's packages (objaudio_rt, export, training, benchmarks; tests are white-box and not
walked), this fails on:

- `from objaudio_rt.core.pipeline import _combine_parts`: an import of a private name (or a private
  module) that another package defines;
- `pipe._resolve_parts(...)`, `backend._model`: an attribute access whose private name is defined
  (as a function, class, method, or an attribute assigned on `self`) only in another package's
  modules, and not in the package doing the access.

Within a package, modules may share private helpers (a package is one room); across packages only
public names are a seam. Dunder names (`__init__`) are not private.
"""
import ast
from collections import defaultdict
from pathlib import Path

from tests.test_layering import PACKAGES, ROOT, modules


def private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def package_of(module: str) -> str:
    return module.split(".")[0]


def defined_private_names(tree: ast.AST) -> set[str]:
    """Private names a module defines: functions, classes, methods, module globals, `self._x = ...`."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                for t in ast.walk(target):
                    if isinstance(t, ast.Name):
                        names.add(t.id)
                    elif isinstance(t, ast.Attribute):
                        names.add(t.attr)
    return {n for n in names if private(n)}


def violations() -> list[str]:
    known = modules()
    trees = {name: ast.parse(path.read_text(), str(path)) for name, path in known.items()}
    defined_in = defaultdict(set)                       # private name -> packages defining it
    for name, tree in trees.items():
        for n in defined_private_names(tree):
            defined_in[n].add(package_of(name))
    found = []
    for name, tree in trees.items():
        pkg = package_of(name)
        where = known[name].relative_to(ROOT)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                target_pkg = package_of(node.module)
                if target_pkg in PACKAGES and target_pkg != pkg:
                    dotted = node.module.split(".") + [a.name for a in node.names]
                    bad = [p for p in dotted if private(p)]
                    if bad:
                        found.append(f"{where}:{node.lineno}: imports {', '.join(bad)} from {node.module}")
            elif isinstance(node, ast.Attribute) and private(node.attr):
                owners = defined_in.get(node.attr, set())
                if owners and pkg not in owners:
                    found.append(f"{where}:{node.lineno}: uses .{node.attr}, private to {', '.join(sorted(owners))}")
    return found


def test_no_package_uses_another_packages_private_names():
    found = violations()
    assert not found, "private names used across packages (make them public or add a public seam):\n" + \
        "\n".join(found)


def test_the_walk_sees_a_private_import_and_a_private_attribute(tmp_path, monkeypatch):
    """The checker itself: a planted cross-package import and attribute call are both reported."""
    import tests.test_private_names as me

    fake = {"objaudio_rt.core.pipeline": tmp_path / "pipeline.py", "training.levers": tmp_path / "levers.py"}
    fake["objaudio_rt.core.pipeline"].write_text("def _combine_parts(x):\n    return x\n"
                                            "class Pipeline:\n    def _resolve_parts(self):\n        pass\n")
    fake["training.levers"].write_text("from objaudio_rt.core.pipeline import _combine_parts\n"
                                       "def f(pipe):\n    return pipe._resolve_parts()\n")
    monkeypatch.setattr(me, "modules", lambda: fake)
    monkeypatch.setattr(me, "ROOT", tmp_path)
    found = me.violations()
    assert any("imports _combine_parts" in f for f in found)
    assert any("uses ._resolve_parts" in f for f in found)
