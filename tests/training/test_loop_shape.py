"""The training loop reads top to bottom (docs/architecture.md, "The training loop"): named functions over
one state object, no closures inside them, none longer than a screen."""

import ast
from pathlib import Path

import pytest

TRAINING = Path(__file__).resolve().parents[2] / "src" / "straightflow" / "training"
MAX_LINES = 80


def _functions(path: Path):
    tree = ast.parse(path.read_text())
    return [node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]


@pytest.mark.parametrize("path", sorted(TRAINING.glob("*.py")), ids=lambda p: p.name)
def test_no_function_in_training_is_longer_than_a_screen(path):
    long = [f"{fn.name}: {fn.end_lineno - fn.lineno + 1} lines" for fn in _functions(path)
            if fn.end_lineno - fn.lineno + 1 > MAX_LINES]
    assert not long, f"{path.name}: split these into named sections: {long}"


def test_the_trainer_has_no_nested_functions_and_many_arguments_are_keyword_only():
    path = TRAINING / "trainer.py"
    nested, positional = [], []
    for fn in _functions(path):
        nested += [f"{fn.name}.{inner.name}" for inner in ast.walk(fn)
                   if inner is not fn and isinstance(inner, (ast.FunctionDef, ast.AsyncFunctionDef))]
        args = [a.arg for a in (*fn.args.posonlyargs, *fn.args.args) if a.arg not in ("self", "cls")]
        if len(args) + len(fn.args.kwonlyargs) > 5 and len(args) > 5:
            positional.append(fn.name)
    assert not nested, f"closures in trainer.py: {nested}"
    assert not positional, f"functions of more than five arguments with more than five positional ones: {positional}"
