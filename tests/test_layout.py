"""The architecture as tests: the import ladder of DESIGN.md's shape, no import cycles, no private
name crossing a module boundary, and every package shipped in the wheel."""

import ast
from pathlib import Path

import grimp
import tomllib
from importlinter.cli import lint_imports

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "lineage"


def test_import_linter_contracts_hold():
    # pyproject's [tool.importlinter]: the data-flow layers, and poison free of the store.
    assert lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True,
                        no_logo=True) == 0


def _cycles(graph) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.find_modules_directly_imported_by(v):
            if w not in graph.modules or not w.startswith("lineage"):
                continue
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
                out.append(sorted(component))

    for module in sorted(graph.modules):
        if module.startswith("lineage") and module not in index:
            visit(module)
    return out


def test_no_import_cycles_between_modules():
    graph = grimp.build_graph("lineage", include_external_packages=False)
    # A package's __init__ re-exporting its modules is not a cycle of concepts: leave them out.
    for module in list(graph.modules):
        if (PACKAGE / Path(*module.split(".")[1:]) / "__init__.py").exists():
            graph.remove_module(module)
    assert _cycles(graph) == []


def _python_files():
    # cli/ and migrations/ are lineage.cli and lineage.migrations (symlinked into the package).
    for folder in (PACKAGE, ROOT / "cli", ROOT / "migrations"):
        yield from sorted(folder.rglob("*.py"))


def test_no_private_name_crosses_a_module_boundary():
    crossings = []
    for path in _python_files():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lineage"):
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        crossings.append(f"{path.relative_to(ROOT)}:{node.lineno} imports "
                                         f"{node.module}.{alias.name}")
    assert crossings == []


def test_every_package_ships_in_the_wheel():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())
                 ["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in PACKAGE.rglob("__init__.py")}
    assert found - listed == set()
