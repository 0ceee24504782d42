"""The house: import layers, no import cycles (imports inside functions count), module
sizes and the length of ``pipeline.run`` (see docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "circles"

#: Layer of each module: a module may import only its own layer or lower ones.
LAYERS = {
    0: {"settings", "_errors", "_hooks", "__init__"},
    1: {"walking", "network", "coords", "categories", "datum", "checks"},
    2: {"config", "io", "fetch", "gpkg_inplace"},
    3: {"cache", "result"},
    4: {
        "sources",
        "areas",
        "facilities",
        "facility_files",
        "entries",
        "ledger",
        "zones",
        "communities",
        "terrain",
        "access",
        "population",
        "geometry",
        "isochrones",
        "coverage",
        "cycling",
        "streets",
        # issue 15: pure computations on arrays beside the stages
        "covering",
        "choice",
        "robustness",
        "equity",
    },
    5: {
        "maps",
        "report",
        "checklist",
        "summary",
        "yuxi",
        "palette",
        "fonts",
        "vocabulary",
        "mapview",
        "mapparts",
        "studymap",
        "report_tables",
        "figures",
        "styles",
        "scenario_maps",
    },
    6: {"outputs", "transaction", "compat"},
    7: {"pipeline"},
    8: {"update", "batch", "citywide", "siting", "scenarios"},
    9: {"cli"},
}


def _modules() -> dict[str, Path]:
    return {p.stem: p for p in PKG.glob("*.py")}


def _imports(path: Path) -> set[str]:
    """circles modules imported anywhere in ``path`` (top level, functions, TYPE_CHECKING)."""
    out: set[str] = set()
    mods = _modules()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for n in names:
            parts = n.split(".")
            if parts[0] == "circles" and len(parts) > 1 and parts[1] in mods:
                out.add(parts[1])
    out.discard(path.stem)
    return out


def test_every_module_has_a_layer() -> None:
    placed = set().union(*LAYERS.values())
    assert set(_modules()) <= placed, sorted(set(_modules()) - placed)


def test_modules_import_only_their_layer_or_below() -> None:
    layer = {m: k for k, ms in LAYERS.items() for m in ms}
    wrong = []
    for mod, path in _modules().items():
        for dep in _imports(path):
            if layer[dep] > layer[mod]:
                wrong.append(f"{mod} (layer {layer[mod]}) imports {dep} (layer {layer[dep]})")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles() -> None:
    graph = {m: _imports(p) for m, p in _modules().items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                cycle = [*stack[stack.index(d) :], d]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_module_sizes_and_the_run_function() -> None:
    sizes = {m: len(p.read_text(encoding="utf-8").splitlines()) for m, p in _modules().items()}
    assert max(sizes.values()) <= 1000, {m: n for m, n in sizes.items() if n > 1000}
    assert sizes["pipeline"] < 400
    tree = ast.parse((PKG / "pipeline.py").read_text(encoding="utf-8"))
    run = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "run")
    assert run.end_lineno is not None
    assert run.end_lineno - run.lineno + 1 < 100
