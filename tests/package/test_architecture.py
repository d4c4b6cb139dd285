"""The layering of the package (docs/architecture.md), checked on the real import graph."""

import configparser
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import grimp
import pytest

import straightflow
from straightflow.cli.main import COMMANDS

ROOT = Path(__file__).resolve().parents[2]


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


#: what neither ``import straightflow`` nor its whole API may load: each loads where first used
HEAVY_OPTIONAL = ("ot", "sklearn", "matplotlib", "scipy.stats", "scipy.integrate", "huggingface_hub", "torchvision",
                  "tensorboard", "torch.utils.tensorboard")


def _loaded_in_fresh_python(code: str, names) -> dict:
    """Run ``code`` in a new interpreter; which of ``names`` are in its sys.modules afterwards (and what it printed)."""
    probe = f"import json, sys\n{code}\nprint(json.dumps([m for m in {list(names)!r} if m in sys.modules]))"
    res = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return {"loaded": json.loads(res.stdout.strip().splitlines()[-1]), "stdout": res.stdout}


def test_import_straightflow_loads_no_torch_and_its_api_none_of_the_heavy_optional_packages():
    library_only = ("straightflow.cli", "straightflow.plots")
    bare = _loaded_in_fresh_python("import straightflow", ("torch", "numpy") + HEAVY_OPTIONAL + library_only)
    assert bare["loaded"] == []  # the public names load on first use
    # evaluate and export are functions named as their modules: loading the modules first leaves
    # the functions on the package
    api = _loaded_in_fresh_python("import straightflow as sf, straightflow.evaluate, straightflow.export\n"
                                  "print(sf.evaluate.__module__, sf.export.__module__)\n"
                                  "for name in sf.__all__: getattr(sf, name)",
                                  ("torch",) + HEAVY_OPTIONAL + library_only)
    assert api["loaded"] == ["torch"]
    assert api["stdout"].split()[:2] == ["straightflow.evaluate", "straightflow.export"]


def test_lazy_public_names_are_the_library_objects():
    from straightflow.run import load

    assert callable(straightflow.evaluate) and straightflow.evaluate.__module__ == "straightflow.evaluate"
    assert callable(straightflow.export) and straightflow.export.__module__ == "straightflow.export"
    assert straightflow.load is load and straightflow.training.train is straightflow.train
    assert set(straightflow.__all__) <= set(dir(straightflow))
    with pytest.raises(AttributeError):
        straightflow.no_such_name  # noqa: B018


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_builds_the_parser_without_torch(command):
    argv = ([command] if command else []) + ["--help"]
    code = (f"from straightflow.cli.main import main\ntry:\n    main({argv!r})\nexcept SystemExit as exc:\n    assert "
            "exc.code == 0, exc.code")
    res = _loaded_in_fresh_python(code, ("torch", "numpy", "scipy", "PIL", "tqdm", "safetensors") + HEAVY_OPTIONAL)
    assert res["loaded"] == []
    assert "usage: straightflow" in res["stdout"]


def test_plots_do_not_switch_the_matplotlib_backend():
    code = ("import matplotlib; matplotlib.use('svg'); import straightflow.plots, straightflow.experiments.sweep; "
            "print(matplotlib.get_backend())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "svg"


def _python_files(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def test_no_module_over_500_lines_and_no_function_over_80():
    """Modules and functions small enough to read: every file of src/ at most 500 lines, every function at most 80."""
    import ast

    long_files, long_functions = [], []
    for path in _python_files("src"):
        text = path.read_text()
        if text.count("\n") > 500:
            long_files.append(f"{path.relative_to(ROOT)} ({text.count(chr(10))} lines)")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > 80:
                long_functions.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert not long_files and not long_functions, (long_files, long_functions)


def test_code_and_tests_say_what_they_do_not_which_issue_asked():
    """No issue numbers in the package or its tests: an issue tracker is not something a user can see."""
    import re

    pattern = re.compile(r"\bissues? ?#?\d+|\(issue\b", re.IGNORECASE)
    hits = [f"{p.relative_to(ROOT)}:{i}" for p in _python_files("src", "tests") if p.name != "test_architecture.py"
            for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not hits, hits


def test_data_sources_have_one_draw_method_per_idea():
    """A draw returns ``(x, y)`` with ``y`` None for unlabelled data: no ``*_labeled`` twin methods, nor calls of
    them."""
    import ast

    found = []
    for path in sorted((ROOT / "src" / "straightflow").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            name = (node.name if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) else node.attr
                    if isinstance(node, ast.Attribute) else None)
            if name is not None and name.endswith("_labeled"):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}")
    assert found == []
