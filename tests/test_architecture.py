"""The layering of the package (docs/architecture.md), checked on the real import graph."""

import configparser
import pkgutil
import subprocess
import sys
from pathlib import Path

import grimp

import straightflow

ROOT = Path(__file__).resolve().parents[1]


def _layer_names() -> set[str]:
    cp = configparser.ConfigParser()
    cp.read(ROOT / ".importlinter")
    layers = cp["importlinter:contract:layers"]["layers"]
    names = set()
    for line in layers.split("\n"):
        for part in line.replace(":", "|").split("|"):
            if part.strip():
                names.add(part.strip())
    return names


def test_layers_contract_names_every_top_level_module_and_package():
    present = {m.name for m in pkgutil.iter_modules(straightflow.__path__)}
    named = _layer_names()
    assert present, "no modules found"
    assert present - named == set(), f"modules missing from the layers contract: {sorted(present - named)}"
    assert named - present == set(), f"the contract names modules that do not exist: {sorted(named - present)}"


def test_contracts_hold():
    res = subprocess.run([str(Path(sys.executable).parent / "lint-imports"), "--config", str(ROOT / ".importlinter")],
                         capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert "2 kept, 0 broken" in res.stdout


def test_import_graph_has_no_cycle_even_counting_imports_inside_functions():
    graph = grimp.build_graph("straightflow")  # every import statement, module level or not
    modules = sorted(graph.modules)
    edges = {m: set(graph.find_modules_directly_imported_by(m)) for m in modules}
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for n in sorted(edges[m]):
            if state.get(n) == "open":
                cycle = stack[stack.index(n):] + [n]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = "done"

    sys.setrecursionlimit(10_000)
    for m in modules:
        if m not in state:
            visit(m)
    assert len(modules) > 40  # the graph really covers the package


def test_import_straightflow_loads_neither_matplotlib_nor_the_cli():
    code = "import straightflow, sys; print([m for m in sys.modules if m.startswith(('matplotlib', 'straightflow.cli'))])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_plots_do_not_switch_the_matplotlib_backend():
    code = ("import matplotlib; matplotlib.use('svg'); import straightflow.plots, straightflow.experiments.sweep; "
            "print(matplotlib.get_backend())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "svg"
