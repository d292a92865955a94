"""Field descriptions from the fields' docstrings, read only when a JSON Schema is made.

Every model documents its fields with a docstring under each one. Pydantic's
``use_attribute_docstrings`` reads them when the class is made: it finds and parses the class's
source, and looks up the module of every frame on the way (a ``stat`` of each loaded module), at
every start of every process, about 50 ms of CPU per worker container. A model whose config
has ``json_schema_extra=describe_fields`` reads them only when its JSON Schema is asked for
(``orchestrator schema``, the planner's output schema), with the same result: each property
without a description gets its field's docstring, cleaned as ``inspect.cleandoc`` does.
"""

from __future__ import annotations

import ast
import inspect
import itertools
import textwrap
from functools import cache
from typing import Any


@cache
def field_docstrings(cls: type) -> dict[str, str]:
    """``field name -> docstring`` of the annotated attributes of ``cls`` and of its bases."""
    found: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass.__module__.split(".")[0] not in ("builtins", "pydantic"):
            found.update(_own_docstrings(klass))
    return found


def _own_docstrings(klass: type) -> dict[str, str]:
    try:
        source = textwrap.dedent(inspect.getsource(klass))
    except (OSError, TypeError):  # no source (a frozen or generated class): no descriptions
        return {}
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    docs = {}
    for node, following in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(following, ast.Expr)
            and isinstance(following.value, ast.Constant)
            and isinstance(following.value.value, str)
        ):
            docs[node.target.id] = inspect.cleandoc(following.value.value)
    return docs


def describe_fields(schema: dict[str, Any], cls: type) -> None:
    """A model's ``json_schema_extra``: give each property of ``schema`` that has no description
    its field's docstring."""
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return
    fields = getattr(cls, "model_fields", {})
    for name, doc in field_docstrings(cls).items():
        info = fields.get(name)
        key = (info.alias or name) if info is not None else name
        prop = properties.get(key)
        if isinstance(prop, dict) and "description" not in prop:
            prop["description"] = doc
