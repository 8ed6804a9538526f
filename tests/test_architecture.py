"""DESIGN.md's rules of the house, checked on the source: only `search/` imports ray or optuna,
and `import tricksearch` stays fast (nothing heavy at import time)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import tricksearch

PACKAGE = Path(tricksearch.__file__).parent
HEAVY = ("ray", "optuna")


def _runtime_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    type_only: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            type_only.update(id(n) for n in ast.walk(node))
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_only_search_imports_ray_and_optuna() -> None:
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
