"""DESIGN.md's rules of the house and issue 8's limits, checked on the source.

- only ``tuning/`` imports ray or optuna, and ``import tricksearch`` stays fast;
- no module under ``tricksearch/`` is longer than 450 lines, no function longer than 100;
- there is no import cycle between the modules of ``tricksearch`` (rule in
  :func:`test_no_import_cycle`).
"""

from __future__ import annotations

import ast
import itertools
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import tricksearch

PACKAGE = Path(tricksearch.__file__).parent
HEAVY = ("ray", "optuna")
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 100


def _sources() -> Iterator[tuple[str, Path]]:
    """(dotted module name, path) of every module of the package; a package is its __init__."""
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        yield ".".join(parts), path


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth (in functions too), except under ``if TYPE_CHECKING``
    (its ``else`` branch counts: that code runs)."""
    if isinstance(tree, (ast.Import, ast.ImportFrom)):
        yield tree
        return
    if _is_type_checking(tree):
        children: list[ast.AST] = list(tree.orelse)  # type: ignore[attr-defined]
    else:
        children = list(ast.iter_child_nodes(tree))
    for child in children:
        yield from _imports(child)


def _runtime_imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in _imports(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_only_tuning_imports_ray_and_optuna() -> None:
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] == "tuning":
            continue
        bad = _runtime_imports(path) & set(HEAVY)
        if bad:
            offenders.append(f"{rel}: {sorted(bad)}")
    assert not offenders, offenders


def test_import_tricksearch_is_light() -> None:
    code = (
        "import sys, tricksearch; "
        "print(','.join(m for m in ('torch', 'ray', 'optuna', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_public_names_resolve() -> None:
    """Every name of ``tricksearch.__all__`` imports (the lazy table points at real objects)."""
    from tricksearch.search_api import resume, search
    from tricksearch.tuning import SearchConfig

    for name in tricksearch.__all__:
        assert getattr(tricksearch, name) is not None, name
    assert tricksearch.search is search and tricksearch.resume is resume
    assert tricksearch.SearchConfig is SearchConfig
    assert tricksearch.SearchResult.__name__ == "SearchResult"


# --- size --------------------------------------------------------------------------------------
def test_no_module_longer_than_450_lines() -> None:
    long = [
        f"{path.relative_to(PACKAGE.parent)}: {n} lines"
        for _, path in _sources()
        if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    ]
    assert not long, f"modules over {MAX_MODULE_LINES} lines: " + "; ".join(long)


def test_no_function_longer_than_100_lines() -> None:
    """Counted from the ``def`` line to the last line of the body (docstring included)."""
    long = []
    for _, path in _sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = (node.end_lineno or node.lineno) - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    rel = path.relative_to(PACKAGE.parent)
                    long.append(f"{rel}:{node.lineno} {node.name}(): {n} lines")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: " + "; ".join(long)


# --- import cycles -----------------------------------------------------------------------------
def _targets(node: ast.Import | ast.ImportFrom, module: str, modules: set[str]) -> Iterator[str]:
    """The tricksearch modules one import statement depends on.

    ``import a.b`` -> ``a.b``; ``from a.b import c`` -> ``a.b.c`` when that is a module, else
    ``a.b``. Relative imports are resolved against ``module``. Other packages are left out.
    """
    if isinstance(node, ast.Import):
        yield from (a.name for a in node.names if a.name in modules)
        return
    base = node.module or ""
    if node.level:
        is_package = (PACKAGE.parent / module.replace(".", "/") / "__init__.py").is_file()
        anchor = module.split(".")
        anchor = anchor if is_package else anchor[:-1]
        anchor = anchor[: len(anchor) - (node.level - 1)]
        base = ".".join([*anchor, *([base] if base else [])])
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        if sub in modules:
            yield sub
        elif base in modules:
            yield base


def _import_graph() -> dict[str, dict[str, int]]:
    """module -> {imported module: line of the first such import}."""
    sources = dict(_sources())
    modules = set(sources)
    graph: dict[str, dict[str, int]] = {m: {} for m in modules}
    for module, path in sources.items():
        for node in _imports(ast.parse(path.read_text())):
            for target in _targets(node, module, modules):
                if target != module:
                    graph[module].setdefault(target, node.lineno)
    return graph


def _cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One shortest cycle through each strongly connected component of more than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def visit(v: str) -> None:  # Tarjan
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    cycles = []
    for component in components:
        start = min(component)
        paths = {start: [start]}
        frontier = [start]
        cycle = None
        while frontier and cycle is None:  # breadth first, inside the component
            nxt = []
            for v in frontier:
                for w in sorted(graph[v]):
                    if w == start:
                        cycle = [*paths[v], start]
                        break
                    if w in component and w not in paths:
                        paths[w] = [*paths[v], w]
                        nxt.append(w)
                if cycle:
                    break
            frontier = nxt
        assert cycle is not None
        cycles.append(cycle)
    return cycles


def test_no_import_cycle() -> None:
    """No module of tricksearch needs, through a chain of imports, a module that needs it.

    The graph: one node per module (a package is its ``__init__``). An edge ``A -> B`` for every
    import statement in ``A`` that names ``B`` — at module level or inside a function (a lazy
    import is still a dependency: it only moves the cycle to run time) — except under
    ``if TYPE_CHECKING:``, which never runs. ``from pkg import name`` is an edge to ``pkg.name``
    when that is a module, else to ``pkg``; ``import pkg.sub`` is an edge to ``pkg.sub`` only.

    Packages: importing ``pkg.sub`` runs ``pkg/__init__`` first, but that is how Python loads a
    submodule, not a dependency of the importer on what ``pkg/__init__`` holds; so it adds no
    edge ``-> pkg``. A package that re-exports its submodules (``pkg -> pkg.sub``) is therefore no
    cycle; it becomes one only when a submodule imports a name from the package itself
    (``from pkg import thing``: ``pkg.sub -> pkg -> pkg.sub``), where the submodule really needs
    the package's __init__ to have run to its end.

    Not seen: a module imported by a name computed at run time (``importlib.import_module(…)``).
    """
    graph = _import_graph()
    found = []
    for cycle in _cycles(graph):
        steps = [f"{a} (line {graph[a][b]})" for a, b in itertools.pairwise(cycle)]
        found.append(" -> ".join([*steps, cycle[-1]]))
    assert not found, "import cycles:\n" + "\n".join(found)


def test_cycle_finder_sees_lazy_imports_and_skips_type_checking() -> None:
    tree = ast.parse(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import tricksearch.recipe\n"
        "def f():\n    from tricksearch.engine import fit\n"
    )
    modules = {"tricksearch.recipe", "tricksearch.engine", "tricksearch.engine.fit"}
    found = [t for node in _imports(tree) for t in _targets(node, "tricksearch.x", modules)]
    assert found == ["tricksearch.engine.fit"]
    graph = {"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}
    assert _cycles(graph) == [["a", "b", "c", "a"]]
