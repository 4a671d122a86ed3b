"""Where an engine reports errors, in a form two engines can be compared on: the resource and
the element, whatever each engine's path style."""

from __future__ import annotations

import re
from functools import cache
from typing import Any, NamedTuple

from fhir_admsc import r4
from fhir_admsc.validation.issues import Issue, at_least
from fhir_admsc.validation.run import validate_resources


class Site(NamedTuple):
    """Where an engine reports an error: the resource ("Type/id"; the Bundle itself for its own
    rules) and the element, normalised (see ``element``); an invariant may add ``#key``."""

    resource: str
    element: str


@cache
def _choices() -> dict[str, frozenset[str]]:
    """Choice element names of R4 (``value``) and the type suffixes they take (``Quantity``)."""
    found: dict[str, set[str]] = {}
    for type_name in [*sorted(r4.resource_types()), "Extension"]:
        for e in r4.base_elements(type_name):
            name = e.path.rsplit(".", 1)[-1]
            if name.endswith("[x]"):
                found.setdefault(name[:-3], set()).update(
                    t.code[:1].upper() + t.code[1:] for t in e.types
                )
    return {name: frozenset(types) for name, types in found.items()}


def element(path: str, key: str | None = None) -> str:
    """A path in any engine's style, normalised: ``Observation.value.ofType(integer)``,
    ``Observation.valueInteger`` and ``Observation.value[x]`` are all ``Observation.value``;
    comments (``/*Type/id*/``) and list indices are dropped; an invariant's key is added as
    ``#key``."""
    path = re.sub(r"/\*.*?\*/|\.ofType\([^)]*\)|\[\d+\]|\[x\]", "", path)
    parts = []
    for part in path.split("."):
        for name, types in _choices().items():
            if part.startswith(name) and part[len(name) :] in types:
                part = name
                break
        parts.append(part)
    return ".".join(parts) + (f"#{key}" if key else "")


def reference_of(resource: Any) -> str:
    return f"{resource.get('resourceType')}/{resource.get('id') or ''}"


def our_sites(document: dict[str, Any], *, keys: bool) -> frozenset[Site]:
    """Where our validator reports errors on a document (a resource or a Bundle); with ``keys``,
    an invariant's site carries its key."""
    errors = at_least(validate_resources([document]), "error")
    return frozenset(_our_site(issue, document, keys) for issue in errors)


def _our_site(issue: Issue, document: dict[str, Any], keys: bool) -> Site:
    # An invariant that cannot be evaluated is an error of that invariant too (not-supported).
    invariant = keys and issue.code in ("invariant", "not-supported") and "#" in issue.rule
    key = issue.rule.rsplit("#", 1)[1] if invariant else None
    if "/*" in issue.location:  # Bundle.entry[3].resource/*Type/id*/.rest
        reference, _, rest = issue.location.split("/*", 1)[1].partition("*/")
        return Site(reference, element(reference.split("/")[0] + rest, key))
    return Site(issue.resource or reference_of(document), element(issue.location, key))
