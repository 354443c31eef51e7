"""The import layering: objaudio_rt imports none of export/, training/, benchmarks/; those three may
import objaudio_rt (and not each other, except that benchmarks/ may score with training's evaluator:
benchmarks/fewstep.py measures quality beside time); no module imports itself back through a circle.

Every `import` / `from ... import` counts, at module level or inside a function (a lazy import is
still a dependency), except those under `if TYPE_CHECKING:` (annotations only, never executed).
"""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("objaudio_rt", "export", "training", "benchmarks")
ALLOWED = {"objaudio_rt": set(), "export": {"objaudio_rt"}, "training": {"objaudio_rt"},
           "benchmarks": {"objaudio_rt", "training"}}
EXTENSIONS = {"objaudio_rt._C"}           # compiled from csrc/: imports nothing of the project


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _skip_type_checking(tree: ast.AST) -> list[ast.AST]:
    """All nodes except those inside `if TYPE_CHECKING:` blocks."""
    out, stack = [], [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING":
            stack.extend(node.orelse)
            continue
        out.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules `name` imports (a `from pkg import sub` of a submodule counts as pkg.sub)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in _skip_type_checking(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in set(known) | EXTENSIONS else base
                       for a in node.names]
        else:
            continue
        for target in targets:
            if target in EXTENSIONS:
                continue
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def test_the_walk_sees_imports():
    graph = import_graph()
    assert "objaudio_rt.backends.base" in graph["objaudio_rt.backends.fast"]
    assert "objaudio_rt.modelio.checkpoint" in graph["objaudio_rt.core.pipeline"]              # a lazy import counts
    assert "objaudio_rt.modelio.networks" in graph["export.contracts"]


def test_no_upward_import():
    bad = [f"{m} imports {d}" for m, deps in import_graph().items() for d in deps
           if d.split(".")[0] != m.split(".")[0] and d.split(".")[0] not in ALLOWED[m.split(".")[0]]]
    assert not bad, "imports against the layering:\n" + "\n".join(sorted(bad))


def test_no_import_circle():
    graph = import_graph()
    state: dict[str, int] = {}            # 1: on the current path, 2: done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                return path[path.index(d):] + [d]
            if d not in state and (cycle := visit(d)):
                return cycle
        state[m] = 2
        path.pop()
        return None

    for m in sorted(graph):
        if m not in state:
            cycle = visit(m)
            assert cycle is None, "import circle: " + " -> ".join(cycle)
