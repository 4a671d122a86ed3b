"""The shape of a SQL-on-FHIR v2 ViewDefinition, checked before anything runs.

A ViewDefinition names a resource type, optional constants, optional ``where`` filters and a tree
of selects; each select has columns, nested selects, ``unionAll`` branches and at most one of
``forEach``, ``forEachOrNull`` and ``repeat``. The checks here are those a compiler needs to
trust the tree: each problem is a ViewError that names where it is in the view
(``select[1].unionAll[0].column[2].path``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .. import r4
from ..errors import ExitCode, FhirAdmscError

ITERATORS = ("forEach", "forEachOrNull", "repeat")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


class ViewError(FhirAdmscError):
    """A ViewDefinition that cannot be run, with where in the view the problem is."""

    exit_code = ExitCode.INVALID_DATA

    def __init__(self, where: str, message: str) -> None:
        self.where = where
        self.reason = message
        super().__init__(f"{where}: {message}" if where else message)


@dataclass(frozen=True)
class Column:
    """One output column: its name, FHIR type (None: not given) and whether it holds a list."""

    name: str
    path: str
    type: str | None
    collection: bool


def at(where: str, key: str) -> str:
    """The location of ``key`` inside ``where`` (``select[0]`` + ``column[1]``)."""
    return f"{where}.{key}" if where else key


def check_view(view: Any) -> None:
    """Raise ViewError for a view that is not a well-formed ViewDefinition."""
    if not isinstance(view, dict):
        raise ViewError("", "a ViewDefinition must be a JSON object")
    if view.get("resourceType", "ViewDefinition") != "ViewDefinition":
        raise ViewError("resourceType", f"is {view['resourceType']!r}, not 'ViewDefinition'")
    resource = view.get("resource")
    if not isinstance(resource, str) or not resource:
        raise ViewError("resource", "a ViewDefinition must name the resource type it reads")
    if not r4.is_resource_type(resource):
        raise ViewError("resource", f"{resource!r} is not a FHIR R4 resource type")
    constants = view.get("constant", [])
    if not isinstance(constants, list):
        raise ViewError("constant", "must be a list")
    for i, constant in enumerate(constants):
        constant_value(constant, f"constant[{i}]")
    wheres = view.get("where", [])
    if not isinstance(wheres, list):
        raise ViewError("where", "must be a list")
    for i, where in enumerate(wheres):
        if not isinstance(where, dict) or not isinstance(where.get("path"), str):
            raise ViewError(f"where[{i}].path", "each where needs a FHIRPath path (a string)")
    selects = view.get("select")
    if not isinstance(selects, list) or not selects:
        raise ViewError("select", "a ViewDefinition needs at least one select")
    columns: list[Column] = []
    for i, select in enumerate(selects):
        columns += select_columns(select, f"select[{i}]")
    seen: set[str] = set()
    for column in columns:
        if column.name in seen:
            raise ViewError("select", f"two columns are named {column.name!r}")
        seen.add(column.name)


def constant_value(constant: Any, where: str) -> tuple[str, Any, str]:
    """A constant's (name, value, FHIR type); raises ViewError for one without exactly one value."""
    if not isinstance(constant, dict) or not isinstance(constant.get("name"), str):
        raise ViewError(at(where, "name"), "a constant needs a name")
    values = [(k, v) for k, v in constant.items() if k.startswith("value")]
    if len(values) != 1:
        raise ViewError(where, f"constant {constant['name']!r} needs exactly one value[x]")
    key, value = values[0]
    kind = key[len("value") :]
    kind = kind[0].lower() + kind[1:] if kind and not r4.is_datatype(kind) else kind
    return constant["name"], value, kind


def select_columns(select: Any, where: str) -> list[Column]:
    """The columns a select gives, in the order of the specification: its own columns, then
    those of its nested selects, then those of its unionAll (the same in every branch)."""
    if not isinstance(select, dict):
        raise ViewError(where, "a select must be a JSON object")
    iterators = [k for k in ITERATORS if k in select]
    if len(iterators) > 1:
        raise ViewError(where, f"a select may have only one of {', '.join(iterators)}")
    for key in ("forEach", "forEachOrNull"):
        if key in select and not isinstance(select[key], str):
            raise ViewError(at(where, key), "must be a FHIRPath expression (a string)")
    if "repeat" in select:
        paths = select["repeat"]
        if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
            raise ViewError(at(where, "repeat"), "must be a list of FHIRPath expressions")
    columns: list[Column] = []
    own = select.get("column", [])
    if not isinstance(own, list):
        raise ViewError(at(where, "column"), "must be a list")
    for i, column in enumerate(own):
        columns.append(_column(column, at(where, f"column[{i}]")))
    nested = select.get("select", [])
    if not isinstance(nested, list):
        raise ViewError(at(where, "select"), "must be a list")
    for i, inner in enumerate(nested):
        columns += select_columns(inner, at(where, f"select[{i}]"))
    branches = select.get("unionAll")
    if branches is not None:
        if not isinstance(branches, list) or not branches:
            raise ViewError(at(where, "unionAll"), "must be a non-empty list of selects")
        first: list[Column] | None = None
        for i, branch in enumerate(branches):
            found = select_columns(branch, at(where, f"unionAll[{i}]"))
            if first is None:
                first = found
            elif [(c.name, c.type, c.collection) for c in found] != [
                (c.name, c.type, c.collection) for c in first
            ]:
                raise ViewError(
                    at(where, f"unionAll[{i}]"),
                    "every branch of a unionAll must give the same columns in the same order "
                    f"({', '.join(c.name for c in first)}; this one: "
                    f"{', '.join(c.name for c in found)})",
                )
        columns += first or []
    if not columns:
        raise ViewError(where, "a select needs columns, nested selects or a unionAll")
    return columns


def _column(column: Any, where: str) -> Column:
    if not isinstance(column, dict):
        raise ViewError(where, "a column must be a JSON object")
    name, path = column.get("name"), column.get("path")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ViewError(
            at(where, "name"), "a column needs a name of letters, digits and _ (a letter first)"
        )
    if not isinstance(path, str) or not path.strip():
        raise ViewError(at(where, "path"), f"column {name!r} needs a FHIRPath path")
    kind = column.get("type")
    if kind is not None and not isinstance(kind, str):
        raise ViewError(at(where, "type"), "must be a FHIR type code")
    collection = column.get("collection", False)
    if not isinstance(collection, bool):
        raise ViewError(at(where, "collection"), "must be true or false")
    return Column(name, path, kind, collection)
