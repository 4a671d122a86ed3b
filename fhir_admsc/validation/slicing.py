"""Slicing as the R4 specification defines it (profiling.html#slicing): which items of a sliced
element belong to which slice, told by the slicing's discriminators (value, pattern, exists, type,
profile) evaluated at their paths (``$this``, element paths, ``extension('url')``, ``resolve()``,
``ofType(T)``) against what each slice's definition fixes there.

A profile's elements are looked up by id in its differential, then its snapshot, then the
profiles it derives from, so that a slice added in a derived profile is discriminated by the
slicing its base declares. Nothing here reports issues: the engine asks and reports.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from fhir_admsc import r4

DISCRIMINATORS = frozenset({"value", "pattern", "exists", "type", "profile"})
_STEP = re.compile(
    r"\s*(\$this|extension\('[^']*'\)|extension\(\"[^\"]*\"\)|resolve\(\)|ofType\([^)]*\)"
    r"|[A-Za-z_][A-Za-z0-9_]*(?:\[x\])?)\s*(?:\.|$)"
)


class Unsupported(Exception):
    """A discriminator this module cannot evaluate; the message names it."""


class NoValue(Unsupported):
    """A value discriminator at whose path the slice fixes nothing: the slice is told apart by
    its other discriminators, if any (as the HL7 validator does)."""


@dataclass(frozen=True)
class Item:
    """A value found on a discriminator's path, with its type where the JSON tells it."""

    value: Any
    type_code: str | None = None


@cache
def _parsed(path: str) -> tuple[str, ...]:
    return tuple(_parse(path))


def parse_path(path: str) -> list[str]:
    """A discriminator path as steps (see _parse), parsed once."""
    return list(_parsed(path))


def _parse(path: str) -> list[str]:
    """A discriminator path as steps: ``code.coding`` -> ["code", "coding"]; ``$this`` is no
    step; ``extension('u')``, ``resolve()`` and ``ofType(T)`` are steps of their own."""
    steps, position = [], 0
    while position < len(path):
        match = _STEP.match(path, position)
        if match is None or match.end() == position:
            raise Unsupported(f"discriminator path '{path}' is not understood")
        step = match.group(1)
        if step != "$this":
            steps.append(step.replace('"', "'"))
        position = match.end()
    return steps


def values_at(
    value: Any,
    type_code: str | None,
    steps: list[str],
    resolve: Callable[[str], dict[str, Any] | None],
) -> list[Item]:
    """The items a discriminator path selects from one item of the sliced element."""
    items = [Item(value, type_code or _resource_type(value))]
    for step in steps:
        found: list[Item] = []
        for item in items:
            found.extend(_step(item, step, resolve))
        items = found
    return items


def _resource_type(value: Any) -> str | None:
    kind = value.get("resourceType") if isinstance(value, dict) else None
    return kind if isinstance(kind, str) else None


def _step(item: Item, step: str, resolve: Callable[[str], dict[str, Any] | None]) -> list[Item]:
    value = item.value
    if step == "resolve()":
        reference = value.get("reference") if isinstance(value, dict) else None
        target = resolve(reference) if isinstance(reference, str) else None
        return [Item(target, _resource_type(target))] if target is not None else []
    if step.startswith("ofType("):
        wanted = step[7:-1].strip()
        return [i for i in [item] if i.type_code == wanted]
    if not isinstance(value, dict):
        return []
    if step.startswith("extension("):
        url = step[11:-2]
        return [Item(e, "Extension") for e in _listed(value.get("extension")) if _url(e) == url]
    name = step.removesuffix("[x]")
    if name in value and not step.endswith("[x]"):
        return [Item(v, _resource_type(v)) for v in _listed(value[name])]
    found = []
    for key, member in value.items():
        suffix = key[len(name) :]
        if key.startswith(name) and suffix[:1].isupper():
            found.extend(Item(v, type_code(suffix)) for v in _listed(member))
    return found


def _url(extension: Any) -> Any:
    return extension.get("url") if isinstance(extension, dict) else None


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def type_code(suffix: str) -> str:
    """The type a choice element's JSON suffix names: ``Quantity``, or ``dateTime`` for
    ``DateTime``."""
    primitive = suffix[0].lower() + suffix[1:]
    known = r4.primitive_regex(primitive) is not None
    return primitive if known or primitive in ("string", "boolean", "markdown", "xhtml") else suffix


class Definitions:
    """The elements of a profile and of the profiles it derives from, by element id."""

    def __init__(self, chain: list[dict[str, Any]]) -> None:
        self.by_id: dict[str, dict[str, Any]] = {}
        # the most derived profile first, its differential before its snapshot: what it says of
        # an element wins, and what it leaves out comes from its snapshot and its bases
        for sd in chain:
            for view in ("differential", "snapshot"):
                for element in (sd.get(view) or {}).get("element", []):
                    key = element.get("id") or element.get("path")
                    if not isinstance(key, str):
                        continue
                    merged = self.by_id.setdefault(key, {})
                    for name, value in element.items():
                        if name.startswith(("fixed", "pattern")) and any(
                            k.startswith(("fixed", "pattern")) for k in merged
                        ):
                            continue  # one fixed or pattern value: the most derived one
                        merged.setdefault(name, value)

        self._expected: dict[tuple[str, tuple[str, ...]], Expected] = {}
        self._slices: dict[str, list[str]] = {}

    def get(self, element_id: str) -> dict[str, Any] | None:
        return self.by_id.get(element_id)

    def expected(self, slice_id: str, steps: list[str]) -> Expected:
        """``expected_at``, computed once per slice and path."""
        key = (slice_id, tuple(steps))
        found = self._expected.get(key)
        if found is None:
            found = self._expected[key] = expected_at(self, slice_id, steps)
        return found

    def slicing(self, sliced_id: str) -> dict[str, Any] | None:
        """The slicing of an element: declared, or the implicit one of extensions (by url)."""
        element = self.get(sliced_id)
        if element is not None and isinstance(element.get("slicing"), dict):
            return element["slicing"]
        if sliced_id.rsplit(".", 1)[-1] in ("extension", "modifierExtension"):
            return {"discriminator": [{"type": "value", "path": "url"}], "rules": "open"}
        return None

    def slices(self, sliced_id: str) -> list[str]:
        """The names of the slices of an element, in the order they are defined."""
        names = self._slices.get(sliced_id)
        if names is None:
            prefix = sliced_id + ":"
            names = self._slices[sliced_id] = [
                key[len(prefix) :]
                for key in self.by_id
                if key.startswith(prefix) and not any(c in key[len(prefix) :] for c in "./")
            ]
        return names


@dataclass
class Expected:
    """What a slice's definition says at one discriminator path."""

    element: dict[str, Any] | None  # the element at the path, if the profile defines it
    fixed: Any = None  # a fixed or pattern value found at (or above) the path
    exact: bool = False  # fixed (equal) rather than pattern (contains)


def expected_at(definitions: Definitions, slice_id: str, steps: list[str]) -> Expected:
    """The definition a slice gives at a discriminator path: the element there, or a fixed or
    pattern value of an element above it, read down to the path."""
    element_id = slice_id
    element = definitions.get(element_id)
    holder, below = _fixed(element), 0  # the nearest fixed or pattern value, and its depth
    for depth, step in enumerate(steps, start=1):
        if step == "resolve()" or step.startswith("ofType("):
            return Expected(None)
        if step.startswith("extension("):
            found = _extension_slice(definitions, element_id, step[11:-2])
        else:
            found = _child(definitions, element_id, step)
        if found is None:  # not defined here; a deeper element may still be
            element_id, element = f"{element_id}.{step}", None
            continue
        element_id, element = found
        if _fixed(element) is not None:
            holder, below = _fixed(element), depth
    if element is not None:
        fixed = _fixed(element)
        if fixed is not None:
            return Expected(element, fixed[0], fixed[1])
    if holder is None:
        return (
            Expected(element)
            if element is not None
            else _through_slices(definitions, slice_id, steps)
        )
    value = holder[0]
    for step in steps[below:]:
        if step.startswith("extension("):
            return Expected(element)
        value = _descend(value, step)
        if value is None:
            return Expected(element)
    return Expected(element, value, holder[1])


def _through_slices(definitions: Definitions, slice_id: str, steps: list[str]) -> Expected:
    """A discriminator path that crosses a sliced element (bp's ``code.coding.code``, with the
    code fixed in the required slice ``code.coding:SBPCode``): the value the required slices fix
    there, when they agree on one."""
    element_id = slice_id
    for depth, step in enumerate(steps[:-1], start=1):
        found = _child(definitions, element_id, step)
        element_id = found[0] if found else f"{element_id}.{step}"
        values = []
        for name in definitions.slices(element_id):
            sliced = f"{element_id}:{name}"
            if ((definitions.get(sliced) or {}).get("min") or 0) >= 1:
                expected = expected_at(definitions, sliced, steps[depth:])
                if expected.fixed is not None:
                    values.append((expected.fixed, expected.exact))
        if values and all(v == values[0] for v in values):
            return Expected(None, values[0][0], values[0][1])
    return Expected(None)


def _child(
    definitions: Definitions, element_id: str, step: str
) -> tuple[str, dict[str, Any]] | None:
    for candidate in (f"{element_id}.{step}", f"{element_id}.{step}[x]"):
        element = definitions.get(candidate)
        if element is not None:
            return candidate, element
    return None


def _extension_slice(
    definitions: Definitions, element_id: str, url: str
) -> tuple[str, dict[str, Any]] | None:
    for name in definitions.slices(f"{element_id}.extension"):
        candidate = f"{element_id}.extension:{name}"
        element = definitions.get(candidate) or {}
        if url in profile_urls(element) or name == url:
            return candidate, element
    return None


def profile_urls(element: dict[str, Any]) -> list[str]:
    return [p for t in element.get("type", []) for p in t.get("profile", []) or []]


def _fixed(element: dict[str, Any] | None) -> tuple[Any, bool] | None:
    if not element:
        return None
    for key, value in element.items():
        if key.startswith("fixed"):
            return value, True
        if key.startswith("pattern"):
            return value, False
    return None


def _descend(value: Any, step: str) -> Any:
    """A pattern's value at a child path (``coding`` of a CodeableConcept pattern)."""
    if isinstance(value, list):
        found = [_descend(v, step) for v in value]
        found = [f for f in found if f is not None]
        return found[0] if len(found) == 1 else (found or None)
    if isinstance(value, dict):
        return value.get(step)
    return None


@dataclass
class Checks:
    """What slice matching asks of the validator: references resolved, conformance to a
    profile, membership of a ValueSet (None when it cannot be told offline)."""

    resolve: Callable[[str], dict[str, Any] | None]
    conforms: Callable[[Any, str], bool]
    in_value_set: Callable[[Any, str], bool | None]
    matches_pattern: Callable[[Any, Any], bool]


def in_slice(
    definitions: Definitions,
    slicing: dict[str, Any],
    slice_id: str,
    item: Item,
    checks: Checks,
) -> bool:
    """Whether ``item`` (an item of the sliced element) belongs to the slice ``slice_id``:
    every discriminator of the slicing holds. Raises Unsupported when one cannot be told."""
    discriminators = slicing.get("discriminator") or []
    if not discriminators:
        raise Unsupported("a slicing without discriminators")
    decided, missing = 0, None
    for discriminator in discriminators:
        try:
            if not _holds(definitions, discriminator, slice_id, item, checks):
                return False
            decided += 1
        except NoValue as e:
            missing = e
    if decided == 0 and missing is not None:
        raise missing
    return True


def _holds(
    definitions: Definitions, discriminator: Any, slice_id: str, item: Item, checks: Checks
) -> bool:
    kind = discriminator.get("type") if isinstance(discriminator, dict) else None
    path = discriminator.get("path", "$this") if isinstance(discriminator, dict) else "$this"
    if kind not in DISCRIMINATORS:
        raise Unsupported(f"discriminator type {kind!r}")
    steps = parse_path(path)
    found = values_at(item.value, item.type_code, steps, checks.resolve)
    if kind in ("value", "pattern"):
        return _value_holds(definitions, slice_id, steps, path, found, checks)
    if kind == "exists":
        element = definitions.expected(slice_id, steps).element
        if element is not None and element.get("max") == "0":
            return not found
        if element is not None and (element.get("min") or 0) >= 1:
            return bool(found)
        raise Unsupported(f"slice {slice_id} says neither min 1 nor max 0 at '{path}'")
    resolved = bool(steps) and steps[-1] == "resolve()"
    element = definitions.expected(slice_id, steps[:-1] if resolved else steps).element
    types = (element or {}).get("type") or []
    if kind == "type":
        codes = {t.get("code") for t in types}
        if resolved:
            codes = {p.rsplit("/", 1)[-1] for t in types for p in t.get("targetProfile") or []}
        if not codes:
            raise Unsupported(f"slice {slice_id} names no type at '{path}'")
        return any(i.type_code in codes for i in found)
    key = "targetProfile" if resolved else "profile"
    profiles = [p for t in types for p in t.get(key) or []]
    if not profiles and not resolved and any(t.get("code") for t in types):
        # no profile named: the type itself is the profile its items must meet
        return any(i.type_code in {t.get("code") for t in types} for i in found)
    if not profiles:
        raise Unsupported(f"slice {slice_id} names no profile at '{path}'")
    return any(checks.conforms(i.value, p) for i in found for p in profiles)


def _value_holds(
    definitions: Definitions,
    slice_id: str,
    steps: list[str],
    path: str,
    found: list[Item],
    checks: Checks,
) -> bool:
    expected = definitions.expected(slice_id, steps)
    if expected.fixed is not None:
        if expected.exact:
            return any(i.value == expected.fixed for i in found)
        return any(checks.matches_pattern(i.value, expected.fixed) for i in found)
    if steps == ["url"]:  # an extension slice is told by the url of the extension it profiles
        urls = profile_urls(definitions.get(slice_id) or {})
        if urls:
            return any(i.value in urls for i in found)
    binding = (expected.element or {}).get("binding") or {}
    if binding.get("strength") == "required" and isinstance(binding.get("valueSet"), str):
        answers = [checks.in_value_set(i.value, binding["valueSet"]) for i in found]
        if any(a is None for a in answers):
            raise Unsupported(f"the ValueSet {binding['valueSet']} cannot be expanded offline")
        return any(answers)
    raise NoValue(f"slice {slice_id} fixes no value at '{path}'")


def _keys(value: Any) -> set[tuple[Any, ...]]:
    """What an item's value offers to a slice index: its primitive value, or the system and code
    of each of its codings."""
    if isinstance(value, str | int | float | bool):
        return {("=", value)}
    if not isinstance(value, dict):
        return set()
    codings = value.get("coding") if isinstance(value.get("coding"), list) else [value]
    found: set[tuple[Any, ...]] = set()
    for coding in codings:
        if isinstance(coding, dict) and isinstance(coding.get("code"), str | int | float):
            found.add(("c", coding.get("system"), coding["code"]))
            found.add(("k", coding["code"]))
    return found


def _needed(expected: Expected) -> tuple[Any, ...] | None:
    """The one key an item must offer to match a slice's fixed or pattern value (see _keys), or
    None when the value cannot be reduced to one."""
    value = expected.fixed
    if isinstance(value, str | int | float | bool):
        return ("=", value)
    if not isinstance(value, dict):
        return None
    codings = value.get("coding") if isinstance(value.get("coding"), list) else [value]
    for coding in codings:
        if isinstance(coding, dict) and isinstance(coding.get("code"), str | int | float):
            system = coding.get("system")
            return ("c", system, coding["code"]) if system is not None else ("k", coding["code"])
    return None


@dataclass
class Index:
    """The slices of one slicing by the key their first value or pattern discriminator needs:
    an item is tested only against the slices whose key it offers, and those no key tells."""

    steps: list[str]
    by_key: dict[tuple[Any, ...], list[str]]
    always: list[str]


def index(definitions: Definitions, sliced_id: str) -> Index | None:
    """The index of a slicing, or None when no discriminator of it can be indexed."""
    slicing = definitions.slicing(sliced_id)
    for discriminator in (slicing or {}).get("discriminator") or []:
        if not isinstance(discriminator, dict) or discriminator.get("type") not in (
            "value",
            "pattern",
        ):
            continue
        try:
            steps = parse_path(discriminator.get("path", "$this"))
        except Unsupported:
            return None
        if any(s == "resolve()" or s.startswith(("ofType(", "extension(")) for s in steps):
            continue
        by_key: dict[tuple[Any, ...], list[str]] = {}
        always: list[str] = []
        for name in definitions.slices(sliced_id):
            needed = _needed(definitions.expected(f"{sliced_id}:{name}", steps))
            if needed is None:
                always.append(name)
            else:
                by_key.setdefault(needed, []).append(name)
        return Index(steps, by_key, always) if by_key else None
    return None


def candidates(
    found: Index, item: Item, resolve: Callable[[str], dict[str, Any] | None]
) -> set[str]:
    """The slices an item may be in, by the index: the others cannot match."""
    names = set(found.always)
    for value in values_at(item.value, item.type_code, found.steps, resolve):
        for key in _keys(value.value):
            names.update(found.by_key.get(key, ()))
    return names
