"""The house is one-way: no module imports a layer above its own (ARCHITECTURE.md, "Layers").

Every ``import`` counts, including those inside functions: a lazy import upward is still a
dependency upward, it only hides the circle from the interpreter.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "weightlake"

# The top of the house: the package namespace (``weightlake/__init__.py``, whose ``open_lake``
# returns the user handle), the user handle itself, the demo, the CLI and ``python -m weightlake``.
# They may import every layer; no module below them imports any of them.
ROOT = "weightlake.__init__"  # what ``import weightlake`` / ``from weightlake import open_lake`` names here
TOP: tuple[str, ...] = (ROOT, "weightlake.handle", "weightlake.demo", "weightlake.cli", "weightlake.__main__")

# The read path, bottom up: lake (the core handle) < query < scenarios < serve < compute and
# experiments. Each takes a Lake and reads it; none calls back up, lazily or not.
ABOVE_SERVE = ("weightlake.scenarios_import", "weightlake.compute", "weightlake.experiments",
               "weightlake.dynamics", "weightlake.verify")
ABOVE_SCENARIOS = ("weightlake.serve", *ABOVE_SERVE)
ABOVE_QUERY = ("weightlake.scenarios", "weightlake.ingest", *ABOVE_SCENARIOS)
ABOVE_LAKE = ("weightlake.query", *ABOVE_QUERY)

# module prefix -> prefixes it must never import (on top of TOP, which binds every module below it)
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "weightlake.arch": ("weightlake.storage", "weightlake.lake", "weightlake.query", "weightlake.serve",
                        "weightlake.scenarios", "weightlake.analysis", "weightlake.compute",
                        "weightlake.experiments", "weightlake.ingest", "weightlake.cli"),
    "weightlake.storage": ("weightlake.lake", "weightlake.query", "weightlake.serve", "weightlake.scenarios",
                           "weightlake.analysis", "weightlake.compute", "weightlake.experiments",
                           "weightlake.ingest", "weightlake.zoo", "weightlake.dynamics", "weightlake.cli"),
    # the read path: each module takes a Lake and reads it; nothing below calls back up
    "weightlake.lake": ABOVE_LAKE,
    "weightlake.query": ABOVE_QUERY,
    "weightlake.scenarios": ABOVE_SCENARIOS,
    "weightlake.scenarios_import": ABOVE_SERVE,
    "weightlake.serve": ABOVE_SERVE,
    "weightlake.analysis": ("weightlake.lake", "weightlake.storage.transaction", "weightlake.compute",
                            "weightlake.serve", "weightlake.scenarios", "weightlake.experiments",
                            "weightlake.ingest", "weightlake.cli"),
    # the gated toy builds on the merging model's attention modules, so dynamics sits above
    # experiments.merger (and experiments never imports dynamics)
    "weightlake.dynamics": ("weightlake.lake", "weightlake.storage", "weightlake.compute", "weightlake.serve",
                            "weightlake.query", "weightlake.scenarios", "weightlake.ingest", "weightlake.cli"),
    # the models lake.cnn builds sit below the lake (zoo/train.py and zoo/synthetic.py sit higher)
    **{f"weightlake.zoo.{m}": ("weightlake.lake", *ABOVE_LAKE) for m in ("cnn", "idx", "resnet")},
    "weightlake.compute": ("weightlake.cli",),
    "weightlake.experiments": ("weightlake.dynamics", "weightlake.compute", "weightlake.cli"),
    "weightlake.ingest": ("weightlake.serve", "weightlake.compute", "weightlake.experiments", "weightlake.cli"),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every weightlake module ``path`` imports, at any depth of the file.

    The package's own namespace (``import weightlake``, ``from weightlake import open_lake``)
    counts as :data:`ROOT`; ``from weightlake import lake`` names the submodule.
    """
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(ROOT if alias.name == "weightlake" else alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module == "weightlake" and node.level == 0:
            found.update(f"weightlake.{a.name}" if _is_submodule(a.name) else ROOT for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.startswith("weightlake")}


def _is_submodule(name: str) -> bool:
    return (PACKAGE / f"{name}.py").exists() or (PACKAGE / name / "__init__.py").exists()


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_the_rules_see_the_package():
    assert len(MODULES) > 50
    assert any(within(module_name(p), "weightlake.analysis") for p in MODULES)


def is_top(name: str) -> bool:
    return name == "weightlake" or any(within(name, top) for top in TOP[1:])


def upward_imports(name: str, imported: set[str]) -> list[str]:
    """The names in ``imported`` that module ``name`` must not import."""
    rules = [bad for layer, bad in FORBIDDEN.items() if within(name, layer)]
    if not is_top(name):
        rules.append(TOP)
    return sorted(i for i in imported for bad in rules for prefix in bad if within(i, prefix))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_no_import_points_up(path):
    name = module_name(path)
    upward = upward_imports(name, imports_of(path))
    assert not upward, f"{name} imports a layer above it: {', '.join(upward)}"


def layer_of(name: str) -> str:
    """``weightlake.serve.pairset`` -> ``weightlake.serve``; a top-level module is its own layer."""
    return ".".join(name.split(".")[:2])


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            nxt = next((w for w in edges if w not in index or w in on_stack), None)
            if nxt is not None and nxt not in index:
                index[nxt] = low[nxt] = len(index)
                stack.append(nxt)
                on_stack.add(nxt)
                work.append((nxt, iter(sorted(graph[nxt]))))
                continue
            if nxt is not None:
                low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                part = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    part.append(w)
                    if w == node:
                        break
                if len(part) > 1:
                    found.append(sorted(part))
    return found


def import_graph() -> dict[str, set[str]]:
    names = {module_name(p): p for p in MODULES}
    graph = {}
    for name, path in names.items():
        targets = {"weightlake" if i == ROOT else i for i in imports_of(path)}
        graph[name] = {t for t in targets if t in names and t != name}
    return graph


def test_no_import_circle_crosses_a_layer():
    """Lazy imports included; a circle inside one package (two storage modules) is that package's business."""
    crossing = [c for c in cycles(import_graph()) if len({layer_of(m) for m in c}) > 1]
    assert not crossing, "import circles across layers: " + "; ".join(" <-> ".join(c) for c in crossing)


def test_the_read_path_is_in_no_circle():
    read_path = ("weightlake.lake", "weightlake.query", "weightlake.scenarios", "weightlake.serve")
    caught = [c for c in cycles(import_graph()) if any(within(m, p) for m in c for p in read_path)]
    assert not caught, caught


def test_a_rule_catches_an_upward_import(tmp_path):
    probe = PACKAGE / "analysis" / "metrics.py"
    assert "weightlake.lake" not in imports_of(probe)
    fake = tmp_path / "m.py"
    fake.write_text("def f():\n    from weightlake.lake import Lake\n    return Lake\n")
    assert "weightlake.lake" in imports_of(fake)
    assert "weightlake.lake" in upward_imports("weightlake.analysis.metrics", imports_of(fake))


def test_the_read_path_rules_catch_a_lazy_facade_call(tmp_path):
    """The circle this table closed: lake.py importing query/serve/compute inside its methods."""
    fake = tmp_path / "lake.py"
    fake.write_text("class Lake:\n    def sql(self, q):\n        from weightlake.query import run_sql\n"
                    "        return run_sql(self, q)\n\n    def pairs(self, s):\n"
                    "        from weightlake.serve.pairset import PairSet\n        return PairSet.open(self, s)\n")
    assert {"weightlake.query", "weightlake.serve.pairset"} <= set(upward_imports("weightlake.lake", imports_of(fake)))
    below = tmp_path / "run.py"
    below.write_text("def run(root):\n    import weightlake as wl\n    return wl.open_lake(root).sql('SELECT 1')\n")
    assert upward_imports("weightlake.compute.topology", imports_of(below)) == [ROOT]
    assert upward_imports("weightlake.cli.core", imports_of(below)) == []


def test_the_circle_finder_sees_a_circle_across_layers():
    graph = {"weightlake.lake": {"weightlake.query"}, "weightlake.query": {"weightlake.lake"},
             "weightlake.storage.a": {"weightlake.storage.b"}, "weightlake.storage.b": {"weightlake.storage.a"},
             "weightlake.arch": set()}
    found = cycles(graph)
    assert sorted(found) == [["weightlake.lake", "weightlake.query"], ["weightlake.storage.a", "weightlake.storage.b"]]
    assert [c for c in found if len({layer_of(m) for m in c}) > 1] == [["weightlake.lake", "weightlake.query"]]
