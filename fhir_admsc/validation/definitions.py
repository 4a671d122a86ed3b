"""Checks of a StructureDefinition being validated, beyond its own resource definition: each
slicing's discriminator paths name elements of the type being sliced."""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache
from typing import Any

from fhir_admsc import r4

# A discriminator path of element names only (``url``, ``code.coding.system``); paths with
# functions (``extension('...')``, ``resolve()``, ``ofType()``) are not judged here.
_PLAIN = re.compile(r"^[A-Za-z][A-Za-z0-9]*(\.[A-Za-z][A-Za-z0-9]*)*$")


@cache
def step_type(root: str, step: str) -> tuple[str, str] | None:
    """Where the element ``step`` below ``root`` (a type name or an element path inside one)
    leads in the R4 definitions: (its path, its type); None when there is no such element."""
    base = root.split(".", 1)[0]
    try:
        elements = r4.base_elements(base)
    except KeyError:
        return None
    for element in elements:
        parent, _, name = element.path.rpartition(".")
        if parent != root:
            continue
        if name == step and element.content_reference:
            return element.content_reference.lstrip("#"), "BackboneElement"
        if name == step and len(element.types) == 1:
            return element.path, element.types[0].code
        if name == step + "[x]":
            return element.path, "*"  # a choice: any of its types
        if name.endswith("[x]") and step.startswith(name[:-3]):
            code = step[len(name) - 3 :]
            for t in element.types:
                if t.code[:1].upper() + t.code[1:] == code:
                    return element.path, t.code
    return None


def _element_type(element: dict[str, Any]) -> str | None:
    """The type an element of a profile has: its single declared type, else its R4 base's."""
    codes = [t.get("code") for t in element.get("type", []) if isinstance(t, dict)]
    if len(codes) == 1 and isinstance(codes[0], str) and r4.is_datatype(codes[0]):
        if codes[0] != "BackboneElement":
            return codes[0]
    elif codes:
        return None
    path = element.get("path")
    if not isinstance(path, str) or "." not in path:
        return None
    found = _walk(path)
    return None if found is None else found[0]


def _walk(path: str) -> tuple[str, str, str] | None:
    """(root, type, element path) the R4 definitions give an element path: root is the type
    name, or the element's path when it is a backbone element."""
    steps = path.split(".")
    root, type_code, element_path = steps[0], steps[0], steps[0]
    for step in steps[1:]:
        found = step_type(root, step)
        if found is None:
            return None
        element_path, type_code = found
        root = element_path if type_code in ("BackboneElement", "Element") else type_code
    return root, type_code, element_path


@cache
def choice_step(path: str) -> str | None:
    """``value.ofType(Quantity)`` for a profile's ``Observation.valueQuantity`` (one type of a
    choice element, named as R4 JSON names it); None for any other path."""
    if "." not in path or path.endswith("[x]"):
        return None
    found = _walk(path)
    if found is None or not found[2].endswith("[x]") or found[1] == "*":
        return None
    return f"{found[2].rsplit('.', 1)[1][:-3]}.ofType({found[1]})"


def _names_element(type_name: str, path: str) -> bool:
    root = type_name
    for step in path.split("."):
        found = step_type(root, step)
        if found is None:
            return False
        root, type_code = found
        if type_code == "*":
            return True  # below a choice the type is open
        if type_code not in ("BackboneElement", "Element"):
            root = type_code
    return True


# The types a binding constrains: R4's eld-11 names them, but its expression (a select() of
# booleans, which always exists) never fails; read against the base type when a differential
# element names none.
BINDABLE = frozenset({"code", "Coding", "CodeableConcept", "Quantity", "string", "uri"})


def _types(element: dict[str, Any]) -> set[str] | None:
    """The type codes of a profile's element (its own, else its R4 base's); None when unknown."""
    declared = element.get("type")
    if isinstance(declared, list):
        codes = {t.get("code") for t in declared if isinstance(t, dict)}
        return {c for c in codes if isinstance(c, str)} or None
    path = element.get("path", "")
    found = _walk(path) if isinstance(path, str) and "." in path else None
    return None if found is None or found[1] == "*" else {found[1]}


def definition_issues(sd: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(location, message) for each discriminator path that names no element of the type its
    slicing slices, and each binding on an element whose base type takes no codes."""
    for view in ("differential", "snapshot"):
        elements = sd.get(view, {}).get("element") if isinstance(sd.get(view), dict) else None
        for i, element in enumerate(elements if isinstance(elements, list) else []):
            if not isinstance(element, dict):
                continue
            where = f"StructureDefinition.{view}.element[{i}]"
            types = _types(element) if "binding" in element else None
            if types and not types & BINDABLE:
                yield (
                    where,
                    f"has a binding, but its types ({', '.join(sorted(types))}) take no codes "
                    "(eld-11)",
                )
            slicing = element.get("slicing")
            if not isinstance(slicing, dict):
                continue
            type_name = _element_type(element)
            if type_name is None:
                continue
            for j, discriminator in enumerate(slicing.get("discriminator", [])):
                path = discriminator.get("path") if isinstance(discriminator, dict) else None
                if not isinstance(path, str) or path == "$this" or not _PLAIN.match(path):
                    continue
                if not _names_element(type_name, path):
                    yield (
                        f"{where}.slicing.discriminator[{j}]",
                        f"discriminator path '{path}' names no element of {type_name}, the type "
                        f"of the sliced element {element.get('path')}",
                    )
