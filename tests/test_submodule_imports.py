"""Static check: code never reaches a submodule through its package without importing it.

``import huggingface_hub`` then ``huggingface_hub.constants.ENDPOINT`` works only when
something else imported ``huggingface_hub.constants`` first: in a test run it usually has,
in a user's fresh ``python -c`` it has not (``AttributeError: No huggingface_hub attribute
constants``). This test parses every module of zoo_core/ and plugins/ and fails on each
``pkg.sub...`` whose ``pkg.sub`` is a submodule that is neither imported in a scope the use
can see (``import pkg.sub``, ``from pkg import sub``, ``from pkg.sub import x``) nor loaded
by ``pkg/__init__.py`` itself when ``pkg`` is imported. Nothing is imported to decide this:
package files are found with ``find_spec`` on top-level names and read as text.
"""

from __future__ import annotations

import ast
import functools
import importlib.machinery
import importlib.util
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Where our own top-level packages live in this checkout (the installed copy may be another).
OWN = {"zoo_core": ROOT / "zoo_core", "zoo_core_plugins": ROOT / "plugins"}
SUFFIXES = tuple(importlib.machinery.all_suffixes())


# ------------------------------------------------------------------ where modules live


@functools.cache
def _package_dirs(dotted: str) -> tuple[Path, ...]:
    """The folders of package ``dotted`` (empty when it is no package or is not installed)."""
    top, _, rest = dotted.partition(".")
    if top in OWN:
        dirs: tuple[Path, ...] = (OWN[top],)
    else:
        try:
            spec = importlib.util.find_spec(top)  # top-level: finds, imports nothing
        except (ImportError, ValueError):
            return ()
        if spec is None or not spec.submodule_search_locations:
            return ()
        dirs = tuple(Path(p) for p in spec.submodule_search_locations)
    for part in rest.split(".") if rest else ():
        dirs = tuple(d / part for d in dirs if (d / part).is_dir())
    return dirs


@functools.cache
def _module_file(dotted: str) -> Path | None:
    """The source file of module ``dotted`` (``__init__.py`` for a package), or None when
    ``dotted`` is not a module (e.g. a function or class of its parent)."""
    parent, _, name = dotted.rpartition(".")
    if not parent:
        return next((d / "__init__.py" for d in _package_dirs(dotted)), None)
    for folder in _package_dirs(parent):
        if (folder / name).is_dir():
            return folder / name / "__init__.py"
        for suffix in SUFFIXES:
            if (folder / (name + suffix)).is_file():
                return folder / (name + suffix)
    return None


def is_submodule(dotted: str) -> bool:
    return "." in dotted and _module_file(dotted) is not None


# ----------------------------------------------------------------- what an import loads


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module name of ``from <...> import``."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    base = base[: len(base) - node.level + (1 if is_package else 0)]
    return ".".join(base + ([node.module] if node.module else []))


def _with_parents(dotted: str) -> Iterator[str]:
    parts = dotted.split(".")
    for i in range(1, len(parts) + 1):
        yield ".".join(parts[:i])


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _top_level_statements(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Statements that run on import: into if/try/with blocks, not into functions, classes
    or ``if TYPE_CHECKING:``."""
    for stmt in body:
        if isinstance(stmt, ast.If):
            if not _is_type_checking(stmt.test):
                yield from _top_level_statements(stmt.body)
            yield from _top_level_statements(stmt.orelse)
        elif isinstance(stmt, ast.Try):
            for block in (stmt.body, stmt.orelse, stmt.finalbody,
                          *[h.body for h in stmt.handlers]):
                yield from _top_level_statements(block)
        elif isinstance(stmt, ast.With):
            yield from _top_level_statements(stmt.body)
        else:
            yield stmt


def _loaded_by(stmt: ast.stmt, module: str, is_package: bool) -> Iterator[str]:
    """Every module (with its parents) that executing import statement ``stmt`` loads."""
    if isinstance(stmt, ast.Import):
        for alias in stmt.names:
            yield from _with_parents(alias.name)
    elif isinstance(stmt, ast.ImportFrom):
        base = _resolve(stmt, module, is_package)
        if not base:
            return
        yield from _with_parents(base)
        for alias in stmt.names:
            if is_submodule(f"{base}.{alias.name}"):
                yield f"{base}.{alias.name}"


class _Loaded:
    """The modules of a top-level package that importing ``dotted`` loads, as far as the
    module-level import statements (followed transitively, breadth first) tell; files are
    parsed only until the module asked about turns up (torch has ~800 of them)."""

    def __init__(self, dotted: str) -> None:
        self.top = dotted.split(".")[0]
        self.seen: set[str] = set()
        self.todo = deque(_with_parents(dotted))

    def __contains__(self, wanted: str) -> bool:
        while wanted not in self.seen and self.todo:
            self._step(self.todo.popleft())
        return wanted in self.seen

    def _step(self, name: str) -> None:
        if name in self.seen:
            return
        self.seen.add(name)
        tree = _parse(name)
        if tree is None:
            return
        is_package = _module_file(name).name == "__init__.py"  # type: ignore[union-attr]
        for stmt in _top_level_statements(tree.body):
            for loaded in _loaded_by(stmt, name, is_package):
                if loaded.split(".")[0] == self.top and loaded not in self.seen:
                    self.todo.append(loaded)


@functools.cache
def _parse(dotted: str) -> ast.Module | None:
    path = _module_file(dotted)
    if path is None or path.suffix != ".py":
        return None
    try:
        return ast.parse(path.read_bytes())
    except (SyntaxError, ValueError, OSError):
        return None


@functools.cache
def loaded_on_import(dotted: str) -> _Loaded:
    return _Loaded(dotted)


def lazily_loaded(package: str, name: str) -> bool:
    """Whether ``package`` has a module ``__getattr__`` that imports its submodule ``name``
    (numpy: ``import numpy.fft as fft``; torch: a name list and ``import_module``). An
    import or the name as a string inside that function counts."""
    tree = _parse(package)
    if tree is None:
        return False
    for stmt in _top_level_statements(tree.body):
        if isinstance(stmt, ast.FunctionDef) and stmt.name == "__getattr__":
            for node in ast.walk(stmt):
                if isinstance(node, (ast.Import, ast.ImportFrom)) and f"{package}.{name}" in (
                        set(_loaded_by(node, package, True))):
                    return True
                if isinstance(node, ast.Constant) and node.value == name:
                    return True
    return False


# --------------------------------------------------------------------- the check


class _Checker(ast.NodeVisitor):
    """Walks one file; scopes are the module and each (nested) function."""

    def __init__(self, module: str, is_package: bool) -> None:
        self.module = module
        self.is_package = is_package
        self.problems: list[tuple[int, str, str]] = []
        # per scope: names bound to modules, and modules imported explicitly
        self.scopes: list[tuple[dict[str, str], set[str]]] = []

    def run(self, tree: ast.Module) -> list[tuple[int, str, str]]:
        self._scope(tree.body, [])
        return self.problems

    def _scope(self, body: list[ast.stmt], extra: list[ast.AST]) -> None:
        names: dict[str, str] = {}
        imported: set[str] = set()
        for node in [*body, *extra]:
            for sub in _walk_scope(node):
                self._bind(sub, names, imported)
        self.scopes.append((names, imported))
        for node in [*body, *extra]:
            self._visit_scope(node)
        self.scopes.pop()

    def _bind(self, node: ast.AST, names: dict[str, str], imported: set[str]) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                imported.update(_with_parents(alias.name))
                if alias.asname:
                    names[alias.asname] = alias.name
                else:
                    top = alias.name.split(".")[0]
                    names[top] = top
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node, self.module, self.is_package)
            if not base:
                return
            imported.update(_with_parents(base))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                if is_submodule(full):
                    imported.add(full)
                    names[alias.asname or alias.name] = full

    def _visit_scope(self, node: ast.AST) -> None:
        for sub in _walk_scope(node):
            if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                body = sub.body if isinstance(sub.body, list) else []
                extra = [] if isinstance(sub.body, list) else [sub.body]
                self._scope(body, extra)
            elif isinstance(sub, ast.Attribute) and not isinstance(sub.value, ast.Attribute):
                self._check_chain(sub)

    def _check_chain(self, node: ast.Attribute) -> None:
        # node is the innermost attribute: name.attr; walk outwards through the parents
        chain = _outer_chain(node)
        if not isinstance(node.value, ast.Name):
            return
        module = self._lookup(node.value.id)
        if module is None:
            return
        imported = set().union(*(scope[1] for scope in self.scopes))
        current = module
        for attr in chain:
            candidate = f"{current}.{attr}"
            if not is_submodule(candidate):
                return
            if (candidate not in imported and candidate not in loaded_on_import(current)
                    and not lazily_loaded(current, attr)):
                self.problems.append((node.lineno, f"{node.value.id}.{'.'.join(chain)}",
                                      candidate))
                return
            current = candidate

    def _lookup(self, name: str) -> str | None:
        for names, _ in reversed(self.scopes):
            if name in names:
                return names[name]
        return None


def _walk_scope(node: ast.AST) -> Iterator[ast.AST]:
    """``node`` and its descendants, stopping at (but yielding) nested functions."""
    yield node
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
        return
    for child in ast.iter_child_nodes(node):
        yield from _walk_scope(child)


_PARENTS: dict[int, ast.AST] = {}


def _outer_chain(node: ast.Attribute) -> list[str]:
    chain = [node.attr]
    parent = _PARENTS.get(id(node))
    while isinstance(parent, ast.Attribute):
        chain.append(parent.attr)
        parent = _PARENTS.get(id(parent))
    return chain


def find_problems(source: str, module: str, is_package: bool = False) -> list[tuple[int, str,
                                                                                      str]]:
    """``(line, expression, submodule)`` for each use of a submodule never imported."""
    tree = ast.parse(source)
    for parent in ast.walk(tree):
        for child in ast.iter_child_nodes(parent):
            _PARENTS[id(child)] = parent
    try:
        return _Checker(module, is_package).run(tree)
    finally:
        _PARENTS.clear()


def _our_modules() -> Iterator[tuple[Path, str]]:
    for top, folder in OWN.items():
        for path in sorted(folder.rglob("*.py")):
            rel = path.relative_to(folder).with_suffix("")
            parts = [top, *rel.parts]
            if parts[-1] == "__init__":
                parts.pop()
            yield path, ".".join(parts)


# ------------------------------------------------------------------------------ tests


BUGGY = """
import huggingface_hub

def endpoint():
    return huggingface_hub.constants.ENDPOINT
"""


@pytest.mark.parametrize("source", [
    BUGGY,
    "import safetensors\nsafetensors.torch.save_file\n",  # safetensors does not load .torch
    "import huggingface_hub as hh\nhh.errors.EntryNotFoundError\n",
    "import zoo_core\nzoo_core.registry._registry.HUB_PREFIX\n",  # our own lazy package
    # an import inside one function does not help another
    "import huggingface_hub\ndef a():\n    import huggingface_hub.constants\n"
    "def b():\n    return huggingface_hub.constants.ENDPOINT\n",
])
def test_the_check_catches_an_unimported_submodule(source: str) -> None:
    assert find_problems(source, "zoo_core._example"), source


@pytest.mark.parametrize("source", [
    "import huggingface_hub\nimport huggingface_hub.constants\n"
    "huggingface_hub.constants.ENDPOINT\n",
    "from huggingface_hub import constants\nconstants.ENDPOINT\n",
    "def f():\n    import huggingface_hub.constants\n"
    "    return huggingface_hub.constants.ENDPOINT\n",
    "import huggingface_hub\nhuggingface_hub.hf_hub_download\n",  # an attribute, no module
    "import torch\ntorch.nn.Module\n",  # torch/__init__.py imports torch.nn itself
    "import torch.utils.data\ntorch.utils.data.DataLoader\n",
])
def test_the_check_accepts_explicit_or_eager_imports(source: str) -> None:
    assert not find_problems(source, "zoo_core._example"), source


def test_every_submodule_used_is_imported() -> None:
    problems = []
    for path, module in _our_modules():
        source = path.read_text(encoding="utf-8")
        for line, expr, submodule in find_problems(source, module, path.name == "__init__.py"):
            problems.append(f"{path.relative_to(ROOT)}:{line}: {expr} uses {submodule}, "
                            f"which this file never imports (add `import {submodule}`)")
    assert not problems, "\n".join(problems)
