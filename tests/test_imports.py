"""The project's import structure and its references, checked.

- No import cycle among the modules of services/ and shared/, counting imports inside
  functions too (a function-level import only postpones a cycle to the first call).
  Imports under ``if TYPE_CHECKING:`` are left out: they never run.
- shared/ never imports services/ at run time (shared is what two or more services use).
- Every ``docs/….md`` a file of services/, shared/ or tests/ names exists, and no code cites
  the product contract or design notes that live outside the repository (``SPEC §…``,
  ``DESIGN.md``): a reader of the repo must be able to follow every reference.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("services", "shared")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for folder in PACKAGES for p in (ROOT / folder).rglob("*.py")}


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST):
    """Every import statement that can run: module level and inside functions, classes and
    branches, skipping ``if TYPE_CHECKING:`` bodies (their ``else`` still runs)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, ast.If) and _type_checking_only(node):
            for child in node.orelse:
                yield from _imports(ast.Module(body=[child], type_ignores=[]))
        else:
            yield from _imports(node)


def _targets(module: str, path: Path, node: ast.Import | ast.ImportFrom) -> set[str]:
    """The project modules one import statement loads (a ``from pkg import name`` loads the
    submodule ``pkg.name`` when there is one, else ``pkg`` itself)."""
    if isinstance(node, ast.Import):
        return {a.name for a in node.names if a.name in MODULES}
    base = node.module or ""
    if node.level:  # relative: resolved against this module's package
        package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        package = package[:len(package) - node.level + 1]
        base = ".".join(package + ([base] if base else []))
    found = {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in MODULES}
    if base in MODULES and len(found) < len(node.names):
        found.add(base)
    return found


def import_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(), str(path))
        graph[module] = {t for node in _imports(tree) for t in _targets(module, path, node)} - {module}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_function_level_imports():
    # services/roles.py imports each role inside the function that starts it
    assert "services.relay.runner" in import_graph()["services.roles"]


def test_no_import_cycle():
    assert cycles(import_graph()) == []


def test_shared_never_imports_services():
    graph = import_graph()
    wrong = {m: sorted(t for t in targets if t.startswith("services")) for m, targets in graph.items()
             if m.startswith("shared")}
    assert {m: t for m, t in wrong.items() if t} == {}


CODE = sorted(p for folder in (*PACKAGES, "tests") for p in (ROOT / folder).rglob("*.py")
              if p != Path(__file__).resolve())  # this file names what it looks for
DOC_PATH = re.compile(r"\bdocs/[\w./-]*?\.md\b")
OUTSIDE = re.compile(r"\bSPEC\b|\bDESIGN\.md\b")


def test_every_doc_named_in_code_exists():
    named = {(str(p.relative_to(ROOT)), d) for p in CODE for d in DOC_PATH.findall(p.read_text())}
    assert {(f, d) for f, d in named if not (ROOT / d).is_file()} == set()
    assert named, "the pattern finds the references there are"


def test_no_code_cites_documents_outside_the_repo():
    cited = sorted(f"{p.relative_to(ROOT)}:{n}" for p in CODE
                   for n, line in enumerate(p.read_text().splitlines(), 1) if OUTSIDE.search(line))
    assert cited == []
