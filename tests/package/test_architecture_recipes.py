"""The recipes of docs/architecture.md ("Where do I add ..."): a coupling, a method, a solver and a metric of a
user's own, run as written, as one module outside the package, with the test functions they define."""

import inspect
import re
import types
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"


def _recipe_module() -> types.ModuleType:
    text = DOC.read_text()
    section = text[text.index("## Where do I add ...") :]
    section = section[: section.index("\n## ", 5)]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(blocks) == 4, f"expected the coupling, method, solver and metric recipes, found {len(blocks)} blocks"
    module = types.ModuleType("my_recipes")  # a user's own module: nothing is registered in straightflow
    exec(compile("\n".join(blocks), str(DOC), "exec"), module.__dict__)
    return module


RECIPES = _recipe_module()
TESTS = sorted(name for name in vars(RECIPES) if name.startswith("test_"))


def test_every_recipe_defines_its_test():
    assert TESTS == ["test_antithetic_pairs_are_mirrored", "test_antithetic_trains_resumes_exports_and_loads",
                     "test_midpoint_closed_form", "test_mmd2_closed_form"]


@pytest.mark.parametrize("name", TESTS)
def test_recipe(name, tmp_path):
    fn = getattr(RECIPES, name)
    fn(**({"tmp_path": tmp_path} if "tmp_path" in inspect.signature(fn).parameters else {}))
