"""The conformance resources a validation run knows: the project's package, any ``--ig`` packages or
folders, and the R4 base; with ValueSet expansion and code lookup."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable, Iterable
from functools import cache
from pathlib import Path
from typing import Any

from fhir_admsc import r4
from fhir_admsc.conformance import load_resources
from fhir_admsc.errors import ConfigurationError, file_access

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

    def structure(self, url: str) -> dict[str, Any] | None:
        return self.structures.get(_strip_version(url))

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
        return r4.expansion(url)
    if url in seen:
        return None
    codes: set[tuple[str, str]] = set()
    compose = vs.get("compose", {})
    for part, sign in ((compose.get("include", []), 1), (compose.get("exclude", []), -1)):
        for include in part:
            if include.get("filter"):
                return None
            system = include.get("system")
            found: set[tuple[str, str]] = set()
            if include.get("concept"):
                found = {(system, c["code"]) for c in include["concept"]}
            elif system:
                all_codes = catalog.code_system_codes(system)
                if all_codes is None:
                    return None
                found = {(system, c) for c in all_codes}
            for imported in include.get("valueSet", []):
                more = _expand(catalog, _strip_version(imported), seen | {url})
                if more is None:
                    return None
                found = (found & more) if found else set(more)
            codes = codes | found if sign > 0 else codes - found
    return frozenset(codes)


@cache
def project_catalog() -> Catalog:
    """The catalog of the project's own published conformance resources."""
    return Catalog(load_resources())


def load_ig(path: Path) -> list[dict[str, Any]]:
    """Conformance resources from a FHIR NPM package (.tgz) or a folder of JSON files."""
    if path.is_dir():
        resources = []
        for file in sorted(path.rglob("*.json")):
            with file_access(file, "read"):
                data = file.read_bytes()
            resources.extend(_conformance_json(data, str(file)))
        return resources
    if not path.is_file():
        raise ConfigurationError(f"`igs` {path}: no such package file or folder")
    try:
        with tarfile.open(path, "r:*") as tar:
            resources = []
            for member in tar.getmembers():
                if (
                    member.isfile()
                    and member.name.endswith(".json")
                    and not member.name.endswith(("package.json", ".index.json"))
                ):
                    data = tar.extractfile(member)
                    if data is not None:
                        resources.extend(_conformance_json(data.read(), f"{path}:{member.name}"))
            return resources
    except (tarfile.TarError, OSError) as e:
        raise ConfigurationError(f"`igs` {path}: not a FHIR package (.tgz): {e}") from None


def _conformance_json(data: bytes, where: str) -> list[dict[str, Any]]:
    try:
        resource = json.load(io.BytesIO(data))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigurationError(f"{where}: not valid JSON: {e}") from None
    kinds = {"StructureDefinition", "ValueSet", "CodeSystem", "ImplementationGuide"}
    if isinstance(resource, dict) and resource.get("resourceType") in kinds:
        return [resource]
    if isinstance(resource, dict) and resource.get("resourceType") == "Bundle":
        return [
            e["resource"]
            for e in resource.get("entry", [])
            if e.get("resource", {}).get("resourceType") in kinds
        ]
    return []
