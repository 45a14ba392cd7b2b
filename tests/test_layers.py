"""The house is one-way: no module imports a layer above its own (ARCHITECTURE.md, "Layers").

Every ``import`` counts, including those inside functions: a lazy import upward is still a
dependency upward, it only hides the circle from the interpreter.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "weightlake"

# module prefix -> prefixes it must never import
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "weightlake.arch": ("weightlake.storage", "weightlake.lake", "weightlake.query", "weightlake.serve",
                        "weightlake.scenarios", "weightlake.analysis", "weightlake.compute",
                        "weightlake.experiments", "weightlake.ingest", "weightlake.cli"),
    "weightlake.storage": ("weightlake.lake", "weightlake.query", "weightlake.serve", "weightlake.scenarios",
                           "weightlake.analysis", "weightlake.compute", "weightlake.experiments",
                           "weightlake.ingest", "weightlake.zoo", "weightlake.dynamics", "weightlake.cli"),
    "weightlake.analysis": ("weightlake.lake", "weightlake.storage.transaction", "weightlake.compute",
                            "weightlake.serve", "weightlake.scenarios", "weightlake.experiments",
                            "weightlake.ingest", "weightlake.cli"),
    # the gated toy builds on the merging model's attention modules, so dynamics sits above
    # experiments.merger (and experiments never imports dynamics)
    "weightlake.dynamics": ("weightlake.lake", "weightlake.storage", "weightlake.compute", "weightlake.serve",
                            "weightlake.query", "weightlake.scenarios", "weightlake.ingest", "weightlake.cli"),
    "weightlake.serve": ("weightlake.experiments", "weightlake.compute", "weightlake.cli"),
    "weightlake.compute": ("weightlake.cli",),
    "weightlake.experiments": ("weightlake.dynamics", "weightlake.compute", "weightlake.cli"),
    "weightlake.ingest": ("weightlake.serve", "weightlake.compute", "weightlake.experiments", "weightlake.cli"),
}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every weightlake module ``path`` imports, at any depth of the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.startswith("weightlake")}


def within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_the_rules_see_the_package():
    assert len(MODULES) > 50
    assert any(within(module_name(p), "weightlake.analysis") for p in MODULES)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_no_import_points_up(path):
    name = module_name(path)
    rules = [bad for layer, bad in FORBIDDEN.items() if within(name, layer)]
    upward = sorted(
        imported for imported in imports_of(path)
        for bad in rules for prefix in bad if within(imported, prefix)
    )
    assert not upward, f"{name} imports a layer above it: {', '.join(upward)}"


def test_a_rule_catches_an_upward_import(tmp_path):
    probe = PACKAGE / "analysis" / "metrics.py"
    assert "weightlake.lake" not in imports_of(probe)
    fake = tmp_path / "m.py"
    fake.write_text("def f():\n    from weightlake.lake import Lake\n    return Lake\n")
    assert "weightlake.lake" in imports_of(fake)
