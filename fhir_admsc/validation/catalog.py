"""The conformance resources a validation run knows: the project's package, any ``--ig`` packages or
folders, and the R4 base; with ValueSet expansion and code lookup."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path
from typing import Any

from fhir_admsc import r4
from fhir_admsc.conformance import load_resources
from fhir_admsc.validation.packages import load_package

CORE = "http://hl7.org/fhir/StructureDefinition/"


def _strip_version(url: str) -> str:
    return url.split("|", 1)[0]


class Catalog:
    """StructureDefinitions, ValueSets and CodeSystems by canonical URL."""

    def __init__(self, resources: Iterable[dict[str, Any]]) -> None:
        self.structures: dict[str, dict[str, Any]] = {}
        self.value_sets: dict[str, dict[str, Any]] = {}
        self.code_systems: dict[str, dict[str, Any]] = {}
        self.canonical_bases: set[str] = set()
        # profiles an ImplementationGuide declares for every resource of a type (IG.global)
        self.global_profiles: dict[str, list[str]] = {}
        # what loading the packages could not find (a dependency), said once per run
        self.notes: list[str] = []
        # answers computed from the loaded resources, asked once per coded element: kept until
        # the next add()
        self._memo: dict[tuple[str, str, str], Any] = {}
        # values derived from one loaded definition, by its identity: the definitions themselves
        # (a user's --ig resources among them) are never written to
        self._derived: dict[tuple[str, int], tuple[Any, Any]] = {}
        for resource in resources:
            self.add(resource)

    def _remembered(self, kind: str, a: str, b: str, compute: Any) -> Any:
        key = (kind, a, b)
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def derived(self, kind: str, definition: Any, compute: Callable[[], Any]) -> Any:
        """What ``compute`` finds in ``definition`` (a profile or one of its elements), computed
        once and kept beside it, not in it."""
        key = (kind, id(definition))
        found = self._derived.get(key)
        if found is None or found[0] is not definition:
            found = (definition, compute())
            self._derived[key] = found
        return found[1]

    def add(self, resource: dict[str, Any]) -> None:
        if resource.get("resourceType") == "ImplementationGuide":
            for item in resource.get("global", []):
                if isinstance(item, dict) and isinstance(item.get("type"), str):
                    profile = item.get("profile")
                    if isinstance(profile, str):
                        self.global_profiles.setdefault(item["type"], []).append(profile)
            return
        table = {
            "StructureDefinition": self.structures,
            "ValueSet": self.value_sets,
            "CodeSystem": self.code_systems,
        }.get(resource.get("resourceType", ""))
        if table is not None and "url" in resource:
            table[resource["url"]] = resource
            self.canonical_bases.add(resource["url"].rsplit("/", 2)[0])
            self._memo.clear()

    def extended(self, resources: Iterable[dict[str, Any]]) -> Catalog:
        """A new catalog: this one's conformance resources and ``resources``."""
        return Catalog(
            [
                *self.structures.values(),
                *self.value_sets.values(),
                *self.code_systems.values(),
                *resources,
            ]
        )

    def structure(self, url: str) -> dict[str, Any] | None:
        """A loaded StructureDefinition, or one R4 itself defines (its extensions, vital signs)."""
        found = self.structures.get(_strip_version(url))
        if found is None:
            found = r4.core_definition(url)
            if found is not None and found["resourceType"] != "StructureDefinition":
                return None
        return found

    def is_base_definition(self, url: str) -> bool:
        """Whether ``url`` is the R4 definition of a resource type or datatype itself."""
        name = _strip_version(url).removeprefix(CORE)
        return _strip_version(url).startswith(CORE) and (
            r4.is_resource_type(name) or r4.is_datatype(name)
        )

    def is_core(self, url: str) -> bool:
        return _strip_version(url).startswith(CORE)

    def expansion(self, url: str) -> frozenset[tuple[str, str]] | None:
        """(system, code) pairs of a ValueSet, or None when it cannot be enumerated offline."""
        return self._remembered("expansion", url, "", lambda: _expand(self, _strip_version(url)))

    def code_system_codes(self, system: str) -> frozenset[str] | None:
        """Every code of a complete CodeSystem this run knows (loaded or R4 base), or None."""
        return self._remembered("codes", system, "", lambda: self._code_system_codes(system))

    def _code_system_codes(self, system: str) -> frozenset[str] | None:
        cs = self.code_systems.get(system)
        if cs is None:
            return r4.code_system_codes(system)
        if cs.get("content") != "complete":
            return None
        return frozenset(_concept_codes(cs.get("concept", [])))

    def display(self, system: str, code: str) -> str | None:
        """The display of ``code`` in a loaded CodeSystem, or None."""
        return self._remembered("display", system, code, lambda: self._display(system, code))

    def _display(self, system: str, code: str) -> str | None:
        cs = self.code_systems.get(system)
        for concept in _concepts(cs.get("concept", []) if cs else []):
            if concept.get("code") == code:
                return concept.get("display")
        return None


def _concepts(concepts: list[dict[str, Any]]) -> Iterable[dict[str, Any]]:
    for concept in concepts:
        yield concept
        yield from _concepts(concept.get("concept", []))


def _concept_codes(concepts: list[dict[str, Any]]) -> Iterable[str]:
    return (c["code"] for c in _concepts(concepts))


def _expand(
    catalog: Catalog, url: str, seen: frozenset[str] = frozenset()
) -> frozenset[tuple[str, str]] | None:
    vs = catalog.value_sets.get(url)
    if vs is None:
        known = r4.expansion(url)
        vs = r4.core_definition(url) if known is None else None
        if vs is None or vs["resourceType"] != "ValueSet":
            return known
    if url in seen:
        return None
    codes: set[tuple[str, str]] = set()
    compose = vs.get("compose", {})
    if not compose:
        return _expansion_contains(vs)
    for part, sign in ((compose.get("include", []), 1), (compose.get("exclude", []), -1)):
        for include in part:
            system = include.get("system")
            found: set[tuple[str, str]] = set()
            if include.get("concept"):
                found = {(system, c["code"]) for c in include["concept"]}
            elif system and include.get("filter"):
                cs = catalog.code_systems.get(system)
                matched = _filtered(catalog, cs, include["filter"]) if cs else None
                if matched is None:
                    return _expansion_contains(vs)
                found = {(system, c) for c in matched}
            elif system:
                all_codes = catalog.code_system_codes(system)
                if all_codes is None:
                    return _expansion_contains(vs)
                found = {(system, c) for c in all_codes}
            for imported in include.get("valueSet", []):
                more = _expand(catalog, _strip_version(imported), seen | {url})
                if more is None:
                    return None
                found = (found & more) if found else set(more)
            codes = codes | found if sign > 0 else codes - found
    return frozenset(codes)


def _expansion_contains(vs: dict[str, Any]) -> frozenset[tuple[str, str]] | None:
    """The codes of a ValueSet's own expansion (shipped with it), or None without one."""
    expansion = vs.get("expansion")
    if not isinstance(expansion, dict) or "contains" not in expansion:
        return None
    found: set[tuple[str, str]] = set()
    stack = list(expansion.get("contains") or [])
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if isinstance(item.get("code"), str) and not item.get("abstract"):
                found.add((item.get("system"), item["code"]))
            stack.extend(item.get("contains") or [])
    return frozenset(found)


class _Hierarchy:
    """A complete CodeSystem's concepts: parents (nested concepts and 'parent' properties) and
    properties, for ValueSet filters."""

    def __init__(self, cs: dict[str, Any]) -> None:
        self.codes: list[str] = []
        self.parents: dict[str, set[str]] = {}
        self.properties: dict[str, dict[str, list[Any]]] = {}
        stack = [(c, None) for c in cs.get("concept") or []]
        while stack:
            concept, parent = stack.pop()
            code = concept.get("code")
            if not isinstance(code, str):
                continue
            self.codes.append(code)
            parents = self.parents.setdefault(code, set())
            if parent:
                parents.add(parent)
            props = self.properties.setdefault(code, {})
            for prop in concept.get("property") or []:
                values = [v for k, v in prop.items() if k.startswith("value")]
                props.setdefault(prop.get("code"), []).extend(values)
                if prop.get("code") == "parent":
                    parents.update(v for v in values if isinstance(v, str))
            stack.extend((c, code) for c in concept.get("concept") or [])

    def descendants(self, code: str) -> set[str]:
        children: dict[str, set[str]] = {}
        for child, parents in self.parents.items():
            for parent in parents:
                children.setdefault(parent, set()).add(child)
        found, stack = set(), [code]
        while stack:
            for child in children.get(stack.pop(), ()):
                if child not in found:
                    found.add(child)
                    stack.append(child)
        return found

    def ancestors(self, code: str) -> set[str]:
        found, stack = set(), [code]
        while stack:
            for parent in self.parents.get(stack.pop(), ()):
                if parent not in found:
                    found.add(parent)
                    stack.append(parent)
        return found


def _filtered(
    catalog: Catalog, cs: dict[str, Any], filters: list[dict[str, Any]]
) -> set[str] | None:
    """The codes of a complete CodeSystem that every filter of an include selects (is-a,
    descendent-of, is-not-a, generalizes, =, in, not-in, regex, exists), or None when a filter
    cannot be applied offline."""
    if cs.get("content") != "complete":
        return None
    tree: _Hierarchy = catalog.derived("hierarchy", cs, lambda: _Hierarchy(cs))
    selected = set(tree.codes)
    for f in filters:
        prop, op, value = f.get("property"), f.get("op"), f.get("value")
        if not isinstance(value, str):
            return None
        if op in ("is-a", "descendent-of", "is-not-a", "generalizes") and prop in (
            "concept",
            "code",
            "parent",
        ):
            below = tree.descendants(value)
            chosen = {
                "is-a": below | {value},
                "descendent-of": below,
                "is-not-a": set(tree.codes) - below - {value},
                "generalizes": tree.ancestors(value) | {value},
            }[op]
        elif op in ("=", "in", "not-in", "regex", "exists"):
            chosen = _by_property(tree, prop, op, value)
            if chosen is None:
                return None
        else:
            return None
        selected &= chosen
    return selected


def _by_property(tree: _Hierarchy, prop: Any, op: str, value: str) -> set[str] | None:
    def values(code: str) -> list[str]:
        if prop in ("concept", "code"):
            return [code]
        return [
            str(v.get("code") if isinstance(v, dict) else v)
            for v in tree.properties[code].get(prop, [])
        ]

    if op == "exists":
        wanted = value == "true"
        return {c for c in tree.codes if bool(values(c)) == wanted}
    if op == "regex":
        try:
            pattern = re.compile(value)
        except re.error:
            return None
        return {c for c in tree.codes if any(pattern.fullmatch(v) for v in values(c))}
    listed = {v.strip() for v in value.split(",")} if op in ("in", "not-in") else {value}
    chosen = {c for c in tree.codes if listed & set(values(c))}
    return set(tree.codes) - chosen if op == "not-in" else chosen


@cache
def project_catalog() -> Catalog:
    """The catalog of the project's own published conformance resources."""
    return Catalog(load_resources())


def load_ig(path: Path) -> list[dict[str, Any]]:
    """Conformance resources from a FHIR NPM package (.tgz), a folder of JSON files, or a
    ``name#version`` of the local package cache (without its dependencies: see packages)."""
    return load_package(path).resources
