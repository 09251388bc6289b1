"""Imports go one way: every import of the package (`live_synth`, `engines`) and the tools, lazy ones inside
functions included, stays within its layer or goes down, and no modules import each other round a loop.

The layers are read from README.md's Layout table (its `layer` column), the one place they are written. A module
gets the layer of the longest path in the table that holds it; a module under no row fails the test, so a new
module has to be placed. Imports under `if TYPE_CHECKING:` are not followed (they never run).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("live_synth", "engines", "tools")


def layer_table(readme: str) -> dict[str, int]:
    """{'live_synth/midi/': 2, 'live_synth/synth.py': 7, ...} from the Layout table's rows that have a layer."""
    section = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    table = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and re.fullmatch(r"\d+", cells[0]):
            for path in re.findall(r"`([^`]+)`", cells[1]):
                table[path] = int(cells[0])
    return table


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of PACKAGES (tools as `tools.<name>`)."""
    modules = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for child in node.body for n in ast.walk(child))
    return skip


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package modules `name` imports (a `from a.b import c` counts as a.b.c when that is a module)."""

    def known(dotted: str | None) -> str | None:
        while dotted and dotted not in modules:
            dotted = dotted.rpartition(".")[0]
        return dotted or None

    tree = ast.parse(path.read_text(), str(path))
    skip = _type_checking_nodes(tree)
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(filter(None, (known(alias.name) for alias in node.names)))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                full = f"{base}.{alias.name}" if base else alias.name
                target = full if full in modules else known(base)
                if target:
                    found.add(target)
    found.discard(name)
    return found


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    modules = module_files(root)
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def layer_of(module: str, modules: dict[str, Path], table: dict[str, int], root: Path = ROOT) -> int | None:
    rel = modules[module].relative_to(root).as_posix()
    best = None
    for path, layer in table.items():
        if rel == path or (path.endswith("/") and rel.startswith(path)):
            if best is None or len(path) > len(best[0]):
                best = (path, layer)
    return best[1] if best else None


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def upward_imports(graph, modules, table, root: Path = ROOT) -> list[str]:
    bad = []
    for module, targets in sorted(graph.items()):
        mine = layer_of(module, modules, table, root)
        for target in sorted(targets):
            theirs = layer_of(target, modules, table, root)
            if mine is not None and theirs is not None and theirs > mine:
                bad.append(f"{module} (layer {mine}) imports {target} (layer {theirs})")
    return bad


def test_every_module_has_a_layer_in_the_readme():
    table = layer_table((ROOT / "README.md").read_text())
    assert table, "README.md's Layout table has no layer column"
    modules = module_files()
    unplaced = [m for m in modules if layer_of(m, modules, table) is None]
    assert not unplaced, f"modules under no row of README.md's Layout table: {unplaced}"


def test_no_import_cycles():
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_no_import_from_a_lower_layer_into_a_higher_one():
    table = layer_table((ROOT / "README.md").read_text())
    bad = upward_imports(import_graph(), module_files(), table)
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_the_checks_see_a_cycle_and_an_upward_import(tmp_path):
    """The walker itself: a planted lazy upward import (inside a function) and a planted cycle are both found."""
    (tmp_path / "live_synth").mkdir()
    (tmp_path / "engines").mkdir()
    (tmp_path / "tools").mkdir()
    (tmp_path / "live_synth" / "__init__.py").write_text("")
    (tmp_path / "live_synth" / "low.py").write_text("def f():\n    from live_synth import high\n")
    (tmp_path / "live_synth" / "high.py").write_text("from live_synth.low import f\n")
    (tmp_path / "engines" / "__init__.py").write_text("from typing import TYPE_CHECKING\n"
                                                      "if TYPE_CHECKING:\n    from live_synth import high\n")
    table = {"live_synth/low.py": 1, "live_synth/high.py": 2, "live_synth/__init__.py": 1, "engines/": 1}
    graph = import_graph(tmp_path)
    assert graph["engines"] == set()  # TYPE_CHECKING imports never run
    assert cycles(graph) == [["live_synth.high", "live_synth.low"]]
    assert upward_imports(graph, module_files(tmp_path), table, tmp_path) == [
        "live_synth.low (layer 1) imports live_synth.high (layer 2)"]
