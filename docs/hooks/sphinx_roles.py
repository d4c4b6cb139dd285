"""A griffe extension for the API reference (mkdocs.yml), which changes what is rendered, never the source:

- the docstrings name other objects with Sphinx roles (:class:`Run`, :func:`~straightflow.data.load_data`), which
  Markdown would print as is; each is rendered as inline code of the name (the last component for a ``~`` target);
- ``TrainConfig``'s fields are declared as ``name: type = _opt(default, help)``: each is rendered with its default
  as its value and its help (the text of ``straightflow train --help``) as its docstring."""

from __future__ import annotations

import ast
import re

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|meth|func|data|attr|mod|obj|exc|const):`(~?)([^`]+)`")


def plain(text: str) -> str:
    """``:role:`name``` -> ```name```; ``:role:`~a.b.c``` -> ```c```."""
    return ROLE.sub(lambda m: "`" + (m.group(2).rsplit(".", 1)[-1] if m.group(1) else m.group(2)) + "`", text)


class SphinxRoles(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = plain(obj.docstring.value)

    def on_attribute_instance(self, *, attr: griffe.Attribute, **kwargs) -> None:
        value = attr.value
        if isinstance(value, griffe.ExprCall) and str(value.function) == "_opt":
            default, help_text = [a for a in value.arguments if not isinstance(a, griffe.ExprKeyword)][:2]
            attr.value = default
            if attr.docstring is None:
                attr.docstring = griffe.Docstring(ast.literal_eval(str(help_text)), parent=attr)
