"""The FHIR R4 (4.0.1) base definitions: elements, bindings, invariants, regexes and expansions."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any

FHIR_VERSION = "4.0.1"

# Row layout of an element in the data file (see tools/extract_r4_base.py).
_PATH, _MIN, _MAX, _TYPES, _BINDING, _CONSTRAINTS, _CONTENT_REF = range(7)


@dataclass(frozen=True)
class Binding:
    """A terminology binding: its strength and the value set's canonical URL (no |version)."""

    strength: str
    value_set: str


@dataclass(frozen=True)
class Constraint:
    """An invariant with a FHIRPath expression."""

    key: str
    severity: str
    human: str
    expression: str


@dataclass(frozen=True)
class TypeRef:
    """One allowed type of an element, with its target profiles (Reference, canonical) and profiles."""

    code: str
    target_profiles: tuple[str, ...] = ()
    profiles: tuple[str, ...] = ()


@dataclass(frozen=True)
class ElementDef:
    """One snapshot element of an R4 type; ``max`` is "0", "1", "*" (or another count)."""

    path: str
    min: int
    max: str
    types: tuple[TypeRef, ...]
    binding: Binding | None
    constraints: tuple[Constraint, ...]
    content_reference: str | None = None


@cache
def _data() -> dict[str, Any]:
    """Return the decoded data file (read once)."""
    resource = files("fhir_admsc") / "r4_definitions.json.gz"
    data: dict[str, Any] = json.loads(gzip.decompress(resource.read_bytes()))
    if data.get("fhirVersion") != FHIR_VERSION:
        raise ValueError(f"r4_definitions.json.gz holds FHIR {data.get('fhirVersion')}")
    return data


@cache
def _constraints() -> tuple[Constraint, ...]:
    """Return the interned constraint table."""
    return tuple(Constraint(*row) for row in _data()["constraints"])


@cache
def _typerefs() -> tuple[TypeRef, ...]:
    """Return the interned type reference table."""
    return tuple(
        TypeRef(code, tuple(targets), tuple(profiles))
        for code, targets, profiles in _data()["typerefs"]
    )


@cache
def _elements(type_name: str) -> tuple[ElementDef, ...]:
    """Build (once) the ElementDefs of one type."""
    rows = _data()["types"][type_name]["elements"]
    typerefs = _typerefs()
    constraints = _constraints()
    return tuple(
        ElementDef(
            path=row[_PATH],
            min=row[_MIN],
            max=row[_MAX],
            types=tuple(typerefs[i] for i in row[_TYPES]),
            binding=Binding(*row[_BINDING]) if row[_BINDING] else None,
            constraints=tuple(constraints[i] for i in row[_CONSTRAINTS]),
            content_reference=row[_CONTENT_REF],
        )
        for row in rows
    )


def base_elements(type_name: str) -> tuple[ElementDef, ...]:
    """Return the snapshot elements of an R4 resource type or datatype, root first.

    Also accepts the R4 Quantity profiles ``SimpleQuantity`` and ``MoneyQuantity``, whose root
    path is ``Quantity``.  Raises KeyError for a name that is not an R4 type.
    """
    if type_name not in _data()["types"]:
        raise KeyError(type_name)
    return _elements(type_name)


def _kind(name: str) -> tuple[str, bool] | None:
    """Return (kind, abstract) of a type name, or None."""
    info = _data()["types"].get(name)
    return None if info is None else (info["kind"], info["abstract"])


def is_resource_type(name: str) -> bool:
    """Tell whether ``name`` is a concrete R4 resource type (not Resource or DomainResource)."""
    return _kind(name) == ("resource", False)


def is_datatype(name: str) -> bool:
    """Tell whether ``name`` is an R4 primitive or complex datatype (incl. Element, BackboneElement)."""
    kind = _kind(name)
    return kind is not None and kind[0] in ("primitive-type", "complex-type")


def is_primitive_type(name: str) -> bool:
    """Tell whether ``name`` is an R4 primitive datatype (boolean, string, date, xhtml, ...)."""
    kind = _kind(name)
    return kind is not None and kind[0] == "primitive-type"


@cache
def choice_names() -> frozenset[str]:
    """The names of every R4 choice element, without ``[x]`` (``value``, ``effective``)."""
    return frozenset(
        e.path.rsplit(".", 1)[1][:-3]
        for kind in _data()["types"]
        for e in base_elements(kind)
        if e.path.endswith("[x]")
    )


@cache
def resource_types() -> frozenset[str]:
    """Return the names of all concrete R4 resource types."""
    return frozenset(name for name in _data()["types"] if is_resource_type(name))


def primitive_regex(type_name: str) -> str | None:
    """Return the R4 regex of a primitive type's value (use with re.fullmatch), or None."""
    regex: str | None = _data()["primitive_regex"].get(type_name)
    return regex


def _canonical(url: str) -> str:
    """Return a canonical URL without ``|version``."""
    return url.split("|", 1)[0]


@cache
def expansion(value_set: str) -> frozenset[tuple[str, str]] | None:
    """Return the (system, code) pairs of a required-bound R4 value set, or None if unknown."""
    entry = _data()["valuesets"].get(_canonical(value_set))
    if entry is None or "codes" not in entry:
        return None
    return frozenset((system, code) for system, codes in entry["codes"].items() for code in codes)


def unexpandable_reason(value_set: str) -> str | None:
    """Return why ``expansion(value_set)`` is None, or None when it is not."""
    url = _canonical(value_set)
    entry = _data()["valuesets"].get(url)
    if entry is None:
        return f"value set {url} is not bound as required by any R4 base element, so it is not expanded offline"
    reason: str | None = entry.get("unexpandable")
    return reason


@cache
def code_system_codes(system: str) -> frozenset[str] | None:
    """Return every code of a complete CodeSystem in the R4 definitions, or None if absent."""
    codes = _data()["codesystems"].get(system)
    return None if codes is None else frozenset(codes)


@cache
def _extras() -> dict[str, dict[str, Any]]:
    """R4's own extensions, other profiles and the ValueSets they bind, by URL (read when first
    asked; see tools/extract_r4_extras.py)."""
    resource = files("fhir_admsc") / "r4_extras.json.gz"
    data: dict[str, Any] = json.loads(gzip.decompress(resource.read_bytes()))
    if data.get("fhirVersion") != FHIR_VERSION:
        raise ValueError(f"r4_extras.json.gz holds FHIR {data.get('fhirVersion')}")
    return {r["url"]: r for r in data["resources"]}


def core_definition(url: str) -> dict[str, Any] | None:
    """An extension, profile or ValueSet the R4 specification defines (differential only)."""
    if not url.startswith("http://hl7.org/fhir/"):
        return None
    return _extras().get(_canonical(url))
