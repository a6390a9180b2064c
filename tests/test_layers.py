"""The package's layering, lazy imports inside functions included (docs/architecture.md):

    errors, io, registry, device, resume < data < models < updates < defenses < federated < attacks
    < metrics < config < reports < studies < jobs < cli

A module imports only from its own layer or below, and no two modules import each other, directly
or through others (an import cycle, even a lazy one, is a design knot the next change trips on).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "labelleak"
LAYERS = [("errors", "io", "registry", "device", "resume"), ("data",), ("models",), ("updates",), ("defenses",),
          ("federated",), ("attacks",), ("metrics",), ("config",), ("reports",), ("studies",), ("jobs",), ("cli",)]
RANK = {name: i for i, names in enumerate(LAYERS) for name in names}


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """labelleak modules imported anywhere in the file (module level or inside functions)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("labelleak"):
            # `from labelleak.jobs import train` imports the module labelleak.jobs.train
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                out.add(sub if (PACKAGE.parent / (sub.replace(".", "/") + ".py")).exists()
                        or (PACKAGE.parent / sub.replace(".", "/")).is_dir() else node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("labelleak")}
    return out


GRAPH = {_module(p): _imports(p) - {_module(p)} for p in sorted(PACKAGE.rglob("*.py"))}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "labelleak"


def test_every_top_level_part_has_a_layer():
    assert {_layer(m) for m in GRAPH} - {"labelleak"} <= set(RANK), sorted({_layer(m) for m in GRAPH} - set(RANK))


@pytest.mark.parametrize("module", sorted(m for m in GRAPH if m != "labelleak"))
def test_imports_go_down_the_layers(module):
    upward = sorted(dep for dep in GRAPH[module] if _layer(dep) != "labelleak" and RANK[_layer(dep)] > RANK[_layer(module)])
    assert not upward, f"{module} (layer {_layer(module)}) imports {upward} from above"


def test_no_import_cycles():
    """Depth-first search over the module graph (a package's __init__ counts as the package)."""
    state: dict[str, int] = {}
    cycles = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for dep in sorted(GRAPH.get(m, ())):
            if dep in stack or state.get(dep) == 1:
                cycles.append(stack[stack.index(dep):] + [dep] if dep in stack else [m, dep])
            elif dep in GRAPH and dep not in state:
                visit(dep, stack + [dep])
        state[m] = 2

    for m in GRAPH:
        if m not in state:
            visit(m, [m])
    assert not cycles, cycles[:5]


def test_no_module_over_400_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert not long, long
