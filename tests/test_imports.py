"""Layers only point down: the package's import graph, function-level imports included, has no cycle.

A function-level import that dodges a cycle at import time is still a cycle in the design (the shared
piece belongs a layer lower), so every `import` / `from ... import` anywhere in a module counts."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# installed package name -> folder (pyproject.toml's package-dir)
PACKAGES = {"roots_edge": ROOT / "roots_edge", "roots_edge.exporters": ROOT / "exporters",
            "roots_edge.runtimes": ROOT / "runtimes", "roots_edge.models": ROOT / "models"}


# `roots_edge/__init__.py` is a lazy facade: `from roots_edge import LanguageModel` depends on roots_edge.model
FACADE = {"roots_edge.LanguageModel": "roots_edge.model", "roots_edge.load": "roots_edge.runtimes"}


def modules() -> dict[str, Path]:
    out = {}
    for package, folder in PACKAGES.items():
        for f in folder.rglob("*.py"):
            parts = [p for p in f.relative_to(folder).with_suffix("").parts if p != "__init__"]
            out[".".join([package, *parts])] = f
    return out


def imported(module: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's own modules that `module` imports, anywhere in its body."""
    base = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:
                anchor = base
                for _ in range(node.level - 1):
                    anchor = anchor.rpartition(".")[0]
                target = f"{anchor}.{node.module}" if node.module else anchor
            names |= {target} | {f"{target}.{a.name}" for a in node.names}
    deps = set()
    for name in names:
        name = FACADE.get(name, name)
        while name and name not in known:       # `pkg.mod.func` -> `pkg.mod`
            name = name.rpartition(".")[0]
        if name and name != module:
            deps.add(name)
    return deps


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    # a package's __init__ only re-exports (lazily, for the facade): importing a submodule is not a use of it
    return {m: {d for d in imported(m, p, known) if known[d].name != "__init__.py" or d in PACKAGES.keys() - {"roots_edge"}}
            for m, p in known.items()}


def test_the_import_graph_has_no_cycle():
    assert cycles(graph()) == []


def test_the_checker_sees_function_level_cycles(tmp_path):
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(g) == [["a", "b", "c"]]
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from roots_edge.model import LanguageModel\n    from roots_edge import load\n")
    assert imported("roots_edge.exporters.x", src, modules()) - {"roots_edge"} == {"roots_edge.model", "roots_edge.runtimes"}


def test_leaves_import_nothing_of_roots_edge():
    known = modules()
    for leaf in [m for m in known if m.startswith(("roots_edge.core.", "roots_edge.formats."))]:
        assert {d for d in imported(leaf, known[leaf], known) if not d.startswith("roots_edge.core.")} == set(), leaf


# Every folder's layer, lowest first (ARCHITECTURE.md, "Layers"): a module imports only from its own rank or
# below. A module takes the rank of the longest prefix that names it.
RANKS = [
    ("core", ["roots_edge.core", "roots_edge.models"]),
    ("formats", ["roots_edge.formats"]),
    ("data", ["roots_edge.data"]),
    ("exporters and runtimes", ["roots_edge.exporters", "roots_edge.runtimes"]),
    ("train and deploy", ["roots_edge.train", "roots_edge.deploy"]),
    ("pipelines", ["roots_edge.pipelines"]),
    ("facade", ["roots_edge.model", "roots_edge"]),
    ("cli", ["roots_edge.cli"]),
]


def test_every_module_sits_in_a_layer_folder():
    """No module floats beside the layers: roots_edge/ holds only the facade and the layer packages."""
    loose = [m for m in modules() if m.count(".") == 1 and m.startswith("roots_edge.")
             and m not in ("roots_edge.model", *(p for _, ps in RANKS for p in ps))]
    assert loose == []


def rank(module: str) -> int:
    """The rank of the longest prefix (a module or a package) that names `module`."""
    best = max(((len(p), r) for r, (_, prefixes) in enumerate(RANKS) for p in prefixes
                if module == p or module.startswith(p + ".")), default=None)
    assert best is not None, f"{module} has no rank in RANKS: give it its layer"
    return best[1]


def upward(g: dict[str, set[str]]) -> list[str]:
    """Imports that point up a layer, and runtimes importing exporters (same layer, but one way only)."""
    wrong = [f"{m} ({RANKS[rank(m)][0]}) imports {d} ({RANKS[rank(d)][0]})"
             for m, deps in g.items() for d in deps if rank(d) > rank(m)]
    wrong += [f"{m} imports {d}: runtimes never import exporters" for m, deps in g.items() for d in deps
              if m.startswith("roots_edge.runtimes") and d.startswith("roots_edge.exporters")]
    return sorted(wrong)


def test_imports_point_down_only():
    assert upward(graph()) == []


def test_the_direction_check_sees_an_upward_import():
    g = {"roots_edge.data.corpora": {"roots_edge.train.pretrain"}, "roots_edge.runtimes.base": {"roots_edge.exporters.base"},
         "roots_edge.model": {"roots_edge.core.errors"}}
    assert upward(g) == ["roots_edge.data.corpora (data) imports roots_edge.train.pretrain (train and deploy)",
                         "roots_edge.runtimes.base imports roots_edge.exporters.base: runtimes never import exporters"]
