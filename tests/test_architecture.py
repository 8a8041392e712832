"""The floor plan holds: no import cycle, parts import one way, no module over 500 lines.

Read from the source with ``ast`` (nothing is imported), so every import counts: at module
level, inside functions (lazy) and under ``if TYPE_CHECKING``. Layers, bottom to top, as
the parts' ``__init__`` docstrings say: the top-level modules (errors, hookspecs, specs,
safe files) < weights < registry < layout < strategies < saved < build < data < hub <
train < rank < export < cli; :mod:`zoo_core` itself is the public facade over all of them (a
module may read ``zoo_core.__version__``: the package above a module has always run).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "zoo_core"
MAX_LINES = 500
MAX_TOP_LEVEL = 10  # modules directly in zoo_core/
# bottom to top; the top-level modules lie below them all
LAYERS = ["weights", "registry", "layout", "strategies", "saved", "build", "data", "hub",
          "train", "rank", "export", "cli"]


def _module_name(path: Path) -> str:
    parts = ("zoo_core",) + path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _ancestors(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """zoo_core modules that importing ``name`` may run, lazy and TYPE_CHECKING included.

    ``from a.b import c`` runs ``a.b.c`` when ``c`` is a module, else ``a.b``; either way
    the packages above run first, except the ones ``name`` itself lives in (they are
    already running when ``name`` is imported)."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in modules else module
                       for a in node.names]
        for target in targets:
            while target and target not in modules:  # an attribute of a module
                target = target.rpartition(".")[0]
            if not target:
                continue
            found.update(m for m in _ancestors(target) + [target] if m in modules)
    return found - set(_ancestors(name)) - {name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that returns to its start, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)):
            return found
    return None


def _part(module: str) -> str:
    """``zoo_core.build._builder`` -> ``build``; a top-level module is its own part."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def test_the_check_finds_cycles_lazy_or_not(tmp_path: Path) -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    modules = {"zoo_core": Path(), "zoo_core.x": Path(), "zoo_core.x._a": Path(),
               "zoo_core.y": Path(), "zoo_core.y._b": Path()}
    source = "def f():\n    from zoo_core.y._b import thing\n"
    path = tmp_path / "_a.py"
    path.write_text(source)
    found = _imports("zoo_core.x._a", path, modules)
    assert found == {"zoo_core.y", "zoo_core.y._b"}  # lazy, and the package above it


def test_no_import_cycle_between_modules() -> None:
    graph = _graph()
    assert len(graph) > 40, sorted(graph)  # the walk really read the package
    cycle = _cycle(graph)
    assert cycle is None, "import cycle (lazy imports count): " + " -> ".join(cycle or [])


def test_parts_import_one_way_down_the_layers() -> None:
    parts: dict[str, set[str]] = {}
    for module, imported in _graph().items():
        if module == "zoo_core":
            continue  # the public facade: it re-exports every part, lazily
        for other in imported:
            if _part(other) != _part(module) and other != "zoo_core":
                parts.setdefault(_part(module), set()).add(_part(other))
    cycle = _cycle(parts)
    assert cycle is None, "parts import each other both ways: " + " -> ".join(cycle or [])
    assert not [p for p, uses in parts.items() if "cli" in uses], "only `zoo` imports the CLI"
    assert set(parts) <= set(LAYERS) | {"_specs", "_safefs", "errors", "hookspecs"}, parts
    up = [f"{a} -> {b}" for a, uses in parts.items() for b in uses
          if b in LAYERS and (a not in LAYERS or LAYERS.index(b) > LAYERS.index(a))]
    assert not up, f"imports climbing the layers {LAYERS}: {up}"
    assert sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py")) == sorted(LAYERS)


def test_no_module_over_500_lines() -> None:
    long = {str(p.relative_to(ROOT)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"split these modules (over {MAX_LINES} lines): {long}"


def test_few_modules_directly_in_zoo_core() -> None:
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL, top


@pytest.mark.parametrize("part", sorted(p.parent.name for p in PACKAGE.glob("*/__init__.py")))
def test_each_part_says_what_it_owns_and_may_import(part: str) -> None:
    tree = ast.parse((PACKAGE / part / "__init__.py").read_text(encoding="utf-8"))
    doc = ast.get_docstring(tree) or ""
    assert len(doc.split()) >= 20, f"zoo_core/{part}/__init__.py: a paragraph on what it owns"
    assert "import" in doc, f"zoo_core/{part}/__init__.py: say what it may import"


def test_tests_mirror_the_parts_and_pytest_collects_them() -> None:
    """tests/<part>/test_*.py; unique basenames (no __init__.py in tests); and no folder of
    zoo_core/ or tests/ matches pytest's norecursedirs (its default skips ``build``)."""
    import fnmatch
    import re

    tests = ROOT / "tests"
    folders = {p.name for p in tests.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))}
    assert folders <= set(LAYERS) | {"journeys", "plugins"}, sorted(folders)
    names = [p.name for p in tests.rglob("test_*.py")]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
    setting = re.search(r"^norecursedirs = (\[.*?\])$", (ROOT / "pyproject.toml").read_text(),
                        re.M)
    assert setting, "pyproject.toml sets no norecursedirs: pytest's default skips build/"
    skipped = [d for d in folders | set(LAYERS)
               for pattern in ast.literal_eval(setting.group(1)) if fnmatch.fnmatch(d, pattern)]
    assert not skipped, f"pytest would not collect {skipped}"
