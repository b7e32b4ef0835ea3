"""The package structure: the core imports no domain module, and no import cycle exists.

Why a test: the core (the committee method, the one runner, the domain contract, registry,
errors, files) is what both domains and every user's domain build on; a core module that imports
recommendation code drags TorchRec into vision and makes the method untestable alone, and a
cycle makes import order matter. Imports are read from the source (function-level ones too), so
a lazy import cannot hide an arrow.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("recsys_committee", "vision_committee")
CORE = ("committee", "train", "domain", "registry", "errors", "files", "fetch", "progress", "heap", "metrics", "cli_support")
DOMAIN_CODE = ("recsys_committee.data", "recsys_committee.models", "recsys_committee.serve", "recsys_committee.rec_domain",
               "recsys_committee.cli", "recsys_committee.demo", "recsys_committee.score", "recsys_committee.lm_cache_command",
               "vision_committee")


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def import_edges(mods: dict[str, Path]) -> set[tuple[str, str]]:
    """(importer, imported) for every import of a project module, resolved to the module file."""
    edges = set()
    for name, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level:
                targets = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in mods:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    edges.add((name, target))
    return edges


def is_core(module: str) -> bool:
    return any(module == f"recsys_committee.{c}" or module.startswith(f"recsys_committee.{c}.") for c in CORE)


def cycles(edges: set[tuple[str, str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    graph = defaultdict(set)
    for a, b in edges:
        graph[a].add(b)
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
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
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in list(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_is_read_and_the_core_is_where_expected():
    mods = modules()
    edges = import_edges(mods)
    # the reader sees lazy (function-level) imports, and both sides of the split exist
    assert ("recsys_committee.rec_domain", "recsys_committee.train.runner") in edges
    assert ("vision_committee.domain", "recsys_committee.train.runner") in edges
    assert sum(is_core(m) for m in mods) >= 20 and sum(not is_core(m) for m in mods) >= 30


def test_core_imports_no_domain_module():
    edges = import_edges(modules())
    bad = sorted((a, b) for a, b in edges if is_core(a) and not is_core(b))
    assert not bad, "core modules import domain code: " + ", ".join(f"{a} -> {b}" for a, b in bad)
    assert all(any(b.startswith(d) for d in DOMAIN_CODE) or is_core(b) for _, b in edges)


def test_no_import_cycle():
    found = cycles(import_edges(modules()))
    assert not found, f"import cycles: {found}"


def test_a_cycle_is_found_when_there_is_one():
    assert cycles({("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")}) == [["a", "b", "c"]]
    assert cycles({("a", "b"), ("b", "c")}) == []
