"""The README's Layout section agrees with the tree: everything it names exists, and every package
folder and every module of objaudio_rt/ (every package, at any depth) is named there."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def layout_entries() -> list[str]:
    """Paths named in the Layout block, nested by indentation (`  kernels/` under `objaudio_rt/`)."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Layout\s+```\n(.*?)```", text, re.S)
    assert block, "README.md has no ## Layout section with a code block"
    entries, parents = [], []                     # parents: (indent, path) of the enclosing folders
    for line in block.group(1).splitlines():
        m = re.match(r"( *)([\w.]+/?)\s", line + " ")
        if not m or not (m.group(2).endswith("/") or m.group(2).endswith(".py")):
            continue                              # a continuation line of a description
        indent, name = len(m.group(1)), m.group(2)
        parents = [(i, p) for i, p in parents if i < indent]
        path = (parents[-1][1] if parents else "") + name
        entries.append(path)
        if name.endswith("/"):
            parents.append((indent, path))
    return entries


def test_everything_the_layout_names_exists():
    entries = layout_entries()
    assert "objaudio_rt/backends/" in entries
    missing = [e for e in entries if not (ROOT / e).exists()]
    assert not missing, f"README layout names what the tree lacks: {missing}"


def test_the_layout_names_every_runtime_module_and_package():
    text = re.search(r"## Layout\s+```\n(.*?)```", (ROOT / "README.md").read_text(), re.S).group(1)
    entries = set(layout_entries())
    runtime = ROOT / "objaudio_rt"
    folders = [p for p in runtime.iterdir() if p.is_dir() and (p / "__init__.py").exists()]
    unnamed = [f"objaudio_rt/{p.name}/" for p in folders if f"objaudio_rt/{p.name}/" not in entries]
    assert not unnamed, f"README layout does not name the runtime packages {unnamed}"
    unnamed = [f"objaudio_rt/{p.name}/" for p in folders if f"objaudio_rt/{p.name}/" not in entries]
    modules = [p for p in runtime.rglob("*.py") if p.name != "__init__.py" and "assets" not in p.parts]
    unnamed = [str(p.relative_to(ROOT)) for p in modules
               if str(p.relative_to(ROOT)) not in entries and not re.search(rf"\b{re.escape(p.name)}", text)]
    assert not unnamed, f"README layout does not name the runtime modules {unnamed}"
    for pkg in ("export/", "training/", "benchmarks/", "tests/", "csrc/"):
        assert pkg in entries, f"README layout does not name {pkg}"
