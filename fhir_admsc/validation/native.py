"""Python versions of the invariants evaluated most often, for speed.

An export checks a dozen invariants per resource (ele-1, ext-1, ref-1, dom-2..5, obs-6/7, qty-3,
per-1, and the profiles' own generated ones), and a general FHIRPath engine spends ~0.2 ms on each.
Here each frequent expression, matched on its exact text so that a changed definition falls back to
FHIRPath, is answered directly on the JSON. A function returns True or False exactly as FHIRPath's
result ``== [True]`` would, or None for inputs it does not decide (then FHIRPath runs): tests compare
both on every evaluation of the validator's corpus and on variants of each input.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import datetime
from functools import cache
from typing import Any

Native = Callable[[Any, dict[str, Any]], bool | None]


def _present(value: Any) -> bool:
    """Whether FHIRPath's exists() is true of a JSON member: null and [] are absent, {} is not."""
    return value is not None and value != []


def _items(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _choice(node: dict[str, Any], name: str) -> list[tuple[str, Any]]:
    """The ``name[x]`` members of an element: (type suffix, value)."""
    size = len(name)
    return [
        (key[size:], value)
        for key, value in node.items()
        if key.startswith(name) and len(key) > size and key[size].isupper() and _present(value)
    ]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _no_contained(node: Any, _: dict[str, Any]) -> bool | None:
    """dom-3/4/5: about contained resources; true when there are none."""
    if not isinstance(node, dict):
        return None
    return True if not _present(node.get("contained")) else None


def _strings(value: Any) -> Iterator[str]:
    """Every string inside a JSON value."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _dom_3(node: Any, resource: dict[str, Any]) -> bool | None:
    """dom-3: every contained resource is pointed to ('#id') from somewhere in the resource, or
    points to its container ('#'). Read over every string, where FHIRPath reads references,
    canonicals, uris and urls: a '#id' text anywhere else is all it could take for one."""
    if not isinstance(node, dict):
        return None
    contained = _items(node.get("contained"))
    if not contained:
        return True
    if not all(isinstance(c, dict) for c in contained):
        return None
    pointers = {text for text in _strings(resource) if text.startswith("#")}
    for c in contained:
        own = c.get("id")
        if isinstance(own, str) and f"#{own}" not in pointers and "#" not in set(_strings(c)):
            return False
    return True


def _dom_2(node: Any, _: dict[str, Any]) -> bool | None:
    if not isinstance(node, dict):
        return None
    contained = _items(node.get("contained"))
    if not all(isinstance(c, dict) for c in contained):
        return None
    return not any(_present(c.get("contained")) for c in contained)


def _ext_1(node: Any, _: dict[str, Any]) -> bool | None:
    if not isinstance(node, dict):
        return None
    return _present(node.get("extension")) != bool(_choice(node, "value"))


def _ref_1(node: Any, resource: dict[str, Any]) -> bool | None:
    """ref-1. A Reference without a reference (a display only) holds, as in the HL7 validator
    (its startsWith() of nothing is false); so does '#', a contained resource's reference to
    its container (the HL7 validator accepts it; substring(1) is then empty)."""
    if not isinstance(node, dict):
        return None
    if node.get("reference") is None:
        return True
    if not isinstance(node["reference"], str):
        return None
    reference = node["reference"]
    if not reference.startswith("#") or reference == "#":  # '#' alone is the container
        return True
    contained = _items(resource.get("contained"))
    if not all(isinstance(c, dict) for c in contained):
        return None
    return reference[1:] in [c.get("id") for c in contained]


def _tim_9(node: Any, _: dict[str, Any]) -> bool | None:
    """tim-9: an offset only with a time of day that is not a meal (C, CM, CD, CV). fhirpathpy
    cannot evaluate ``in`` with a union on its right."""
    if not isinstance(node, dict):
        return None
    if not _present(node.get("offset")):
        return True
    when = _items(node.get("when"))
    if not all(isinstance(w, str) for w in when):
        return None
    return bool(when) and not any(w in ("C", "CM", "CD", "CV") for w in when)


def _rng_2(node: Any, _: dict[str, Any]) -> bool | None:
    """rng-2: low <= high, for two quantities of the same unit (fhirpathpy cannot compare
    quantities); quantities of different units are left to FHIRPath."""
    if not isinstance(node, dict):
        return None
    low, high = node.get("low"), node.get("high")
    if low is None or high is None:
        return True
    if not isinstance(low, dict) or not isinstance(high, dict):
        return None
    values = low.get("value"), high.get("value")
    same_unit = all(low.get(k) == high.get(k) for k in ("system", "code")) and (
        "code" in low or low.get("unit") == high.get("unit")
    )
    if not same_unit or not all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in values
    ):
        return None
    return values[0] <= values[1]


def _entry_content(node: Any, _: dict[str, Any]) -> bool | None:
    if not isinstance(node, dict):
        return None
    return any(_present(node.get(k)) for k in ("resource", "request", "response"))


def _entry_no_history(node: Any, _: dict[str, Any]) -> bool | None:
    """bdl-8. Without a fullUrl (optional outside transactions) FHIRPath's answer is empty; the
    HL7 validator passes the entry (its contains() of no string is false), and so do we."""
    if not isinstance(node, dict):
        return None
    if node.get("fullUrl") is None:
        return True
    if not isinstance(node["fullUrl"], str):
        return None
    return "/_history/" not in node["fullUrl"]


def _obs_6(node: Any, _: dict[str, Any]) -> bool | None:
    if not isinstance(node, dict):
        return None
    return not (_present(node.get("dataAbsentReason")) and _choice(node, "value"))


def _obs_7(node: Any, _: dict[str, Any]) -> bool | None:
    """obs-7: with a value, no component's code shares a Coding (all of it) with the code. The
    invariant sits on the Observation, so %resource is the node itself."""
    if not isinstance(node, dict):
        return None
    if not _choice(node, "value") or not _present(node.get("component")):
        return True
    if node.get("resourceType") != "Observation":
        return None
    code = node.get("code")
    own = _items(code.get("coding")) if isinstance(code, dict) else []
    components = _items(node.get("component"))
    if not all(isinstance(c, dict) for c in [*own, *components]):
        return None
    for component in components:
        inner = component.get("code")
        codings = _items(inner.get("coding")) if isinstance(inner, dict) else []
        if not all(isinstance(c, dict) for c in codings):
            return None
        if any(c in own for c in codings):
            return False
    return True


def _qty_3(node: Any, _: dict[str, Any]) -> bool | None:
    if not isinstance(node, dict):
        return None
    return not _present(node.get("code")) or _present(node.get("system"))


def _per_1(node: Any, _: dict[str, Any]) -> bool | None:
    if not isinstance(node, dict):
        return None
    start, end = node.get("start"), node.get("end")
    if not isinstance(start, str) or not isinstance(end, str):
        return True if "start" not in node or "end" not in node else None
    if len(start) == len(end) and _DATE.fullmatch(start) and _DATE.fullmatch(end):
        return start <= end  # same precision, no time zone: text order is time order
    return _partial_order(start, end)


def _partial_order(start: str, end: str) -> bool | None:
    """``start <= end`` for dateTimes of any precision, as FHIRPath compares them: two times
    compare as instants; otherwise the date parts the less precise value has decide, and where
    they are equal and the precisions differ the answer is empty (so the invariant fails, as in
    the HL7 validator)."""
    dates = _DATE.match(start), _DATE.match(end)
    if dates[0] is None or dates[1] is None:
        return None
    timed = len(start) > 10, len(end) > 10
    if all(timed):
        try:
            first, second = (datetime.fromisoformat(v) for v in (start, end))
            return first <= second
        except (ValueError, TypeError):  # no offset on one side, or not a dateTime
            return None
    common = min(dates[0].end(), dates[1].end())
    if start[:common] != end[:common]:
        return start[:common] < end[:common]
    return start == end


_DATE = re.compile(r"\d{4}(-\d{2}(-\d{2})?)?")


def _entries(node: Any) -> list[dict[str, Any]] | None:
    entries = _items(node.get("entry"))
    return entries if all(isinstance(e, dict) for e in entries) else None


def _entries_carry(member: str, types: tuple[str, ...]) -> Native:
    """bdl-3/bdl-4: every entry has a request (response) exactly when the Bundle type needs one."""

    def check(node: Any, resource: dict[str, Any]) -> bool | None:
        if not isinstance(node, dict) or (entries := _entries(node)) is None:
            return None
        if not entries:
            return True
        if not isinstance(resource.get("type"), str):  # %resource.type: the Bundle checked
            return None
        wanted = resource["type"] in types
        return all(_present(e.get(member)) == wanted for e in entries)

    return check


def _bdl_2(node: Any, _: dict[str, Any]) -> bool | None:
    if not isinstance(node, dict) or (entries := _entries(node)) is None:
        return None
    if not any(_present(e.get("search")) for e in entries):
        return True
    return node["type"] == "searchset" if isinstance(node.get("type"), str) else None


def _bdl_1(node: Any, _: dict[str, Any]) -> bool | None:
    if not isinstance(node, dict):
        return None
    if not _present(node.get("total")):
        return True
    return node["type"] in ("searchset", "history") if isinstance(node.get("type"), str) else None


def _bdl_7(node: Any, _: dict[str, Any]) -> bool | None:
    if not isinstance(node, dict) or (entries := _entries(node)) is None:
        return None
    if node.get("type") == "history":
        return True
    keys = []
    for entry in entries:
        full_url, resource = entry.get("fullUrl"), entry.get("resource")
        if full_url is None:
            continue
        meta = resource.get("meta") if isinstance(resource, dict) else None
        version = meta.get("versionId") if isinstance(meta, dict) else None
        if not isinstance(full_url, str) or not isinstance(version, str | None):
            return None
        keys.append(full_url + (version or ""))
    return len(keys) == len(set(keys))


def _unless_type(kind: str) -> Native:
    """bdl-9..12: ``type = kind implies ...`` is true for every other Bundle type."""

    def check(node: Any, _: dict[str, Any]) -> bool | None:
        if not isinstance(node, dict) or not isinstance(node.get("type"), str):
            return None
        return True if node["type"] != kind else None

    return check


def _medication_text(node: Any, _: dict[str, Any]) -> bool | None:
    if not isinstance(node, dict):
        return None
    concept = node.get("medicationCodeableConcept")
    if concept is None:
        return False
    return _present(concept.get("text")) if isinstance(concept, dict) else None


def _birth_year(node: Any, _: dict[str, Any]) -> bool | None:
    if not isinstance(node, dict):
        return None
    born = node.get("birthDate")
    if born is None:
        return True
    return len(born) == 4 if isinstance(born, str) else None


def _withdrawn_has_end(node: Any, _: dict[str, Any]) -> bool | None:
    if not isinstance(node, dict) or not isinstance(node.get("status"), str):
        return None
    if node["status"] != "withdrawn":
        return True
    period = node.get("period")
    return _present(period.get("end")) if isinstance(period, dict) else None


def _ucum_coded(node: Any, _: dict[str, Any]) -> bool | None:
    """sqty-1/age-1-like: a coded quantity is a UCUM one with a value."""
    if not isinstance(node, dict):
        return None
    if not _present(node.get("code")):
        return True
    system = node.get("system")
    if system is None:
        return False  # the conjunction is empty or false: never true
    return system == UCUM and _present(node.get("value")) if isinstance(system, str) else None


UCUM = "http://unitsofmeasure.org"
QUANTITIES = {"Quantity", "Age", "Count", "Distance", "Duration"}

_EXACT: dict[str, Native] = {
    "medication.ofType(CodeableConcept).text.exists()": _medication_text,
    "birthDate.empty() or birthDate.toString().length() = 4": _birth_year,
    "status = 'withdrawn' implies period.end.exists()": _withdrawn_has_end,
    "code.exists() implies ((system = %ucum) and value.exists())": _ucum_coded,
    "total.empty() or (type = 'searchset') or (type = 'history')": _bdl_1,
    "entry.search.empty() or (type = 'searchset')": _bdl_2,
    "entry.all(request.exists() = (%resource.type = 'batch' or %resource.type = 'transaction' "
    "or %resource.type = 'history'))": _entries_carry(
        "request", ("batch", "transaction", "history")
    ),
    "entry.all(response.exists() = (%resource.type = 'batch-response' or "
    "%resource.type = 'transaction-response' or %resource.type = 'history'))": _entries_carry(
        "response", ("batch-response", "transaction-response", "history")
    ),
    "(type = 'history') or entry.where(fullUrl.exists()).select(fullUrl&resource.meta.versionId)"
    ".isDistinct()": _bdl_7,
    "type = 'document' implies (identifier.system.exists() and identifier.value.exists())": (
        _unless_type("document")
    ),
    "type = 'document' implies (timestamp.hasValue())": _unless_type("document"),
    "type = 'document' implies entry.first().resource.is(Composition)": _unless_type("document"),
    "type = 'message' implies entry.first().resource.is(MessageHeader)": _unless_type("message"),
    "contained.contained.empty()": _dom_2,
    "low.empty() or high.empty() or (low <= high)": _rng_2,
    "offset.empty() or (when.exists() and ((when in ('C' | 'CM' | 'CD' | 'CV')).not()))": _tim_9,
    "contained.meta.versionId.empty() and contained.meta.lastUpdated.empty()": _no_contained,
    "contained.meta.security.empty()": _no_contained,
    "contained.where((('#'+id in (%resource.descendants().reference | "
    "%resource.descendants().as(canonical) | %resource.descendants().as(uri) | "
    "%resource.descendants().as(url))) or descendants().where(reference = '#').exists() or "
    "descendants().where(as(canonical) = '#').exists() or "
    "descendants().where(as(canonical) = '#').exists()).not()).trace('unmatched', id).empty()": (
        _dom_3
    ),
    "extension.exists() != value.exists()": _ext_1,
    "reference.startsWith('#').not() or (reference.substring(1).trace('url') in "
    "%rootResource.contained.id.trace('ids'))": _ref_1,
    "resource.exists() or request.exists() or response.exists()": _entry_content,
    "fullUrl.contains('/_history/').not()": _entry_no_history,
    "dataAbsentReason.empty() or value.empty()": _obs_6,
    "value.empty() or component.code.where(coding.intersect(%resource.code.coding).exists())"
    ".empty()": _obs_7,
    "code.empty() or system.exists()": _qty_3,
    "start.hasValue().not() or end.hasValue().not() or (start <= end)": _per_1,
}

_STRING = r"'([^'\\]*)'"
_NUMBER = r"(-?\d+(?:\.\d+)?)"


def _has_identifier(system: str) -> Native:
    def check(node: Any, _: dict[str, Any]) -> bool | None:
        if not isinstance(node, dict):
            return None
        idents = _items(node.get("identifier"))
        if not all(isinstance(i, dict) for i in idents):
            return None
        return any(i.get("system") == system and _present(i.get("value")) for i in idents)

    return check


def _integer_range(low: str, high: str) -> Native:
    def check(node: Any, _: dict[str, Any]) -> bool | None:
        if not isinstance(node, dict):
            return None
        value = node.get("valueInteger")
        if value is None and "valueInteger" not in node:
            return False  # empty >= low is empty, and so is the conjunction
        if not _number(value) or isinstance(value, float):
            return None
        return float(low) <= value <= float(high)

    return check


def _quantity_bounds(low: str, high: str | None, strict: bool) -> Native:
    def check(node: Any, _: dict[str, Any]) -> bool | None:
        if not isinstance(node, dict):
            return None
        quantity = node.get("valueQuantity")
        if quantity is None and "valueQuantity" not in node:
            return False
        if not isinstance(quantity, dict) or not _number(quantity.get("value")):
            return None
        value = quantity["value"]
        above = value > float(low) if strict else value >= float(low)
        return above and (high is None or value <= float(high))

    return check


def _quantity_unit(system: str, code: str) -> Native:
    def check(node: Any, _: dict[str, Any]) -> bool | None:
        if not isinstance(node, dict):
            return None
        values = _choice(node, "value")
        if not values:
            return True  # all() of nothing
        if len(values) != 1 or values[0][0] not in QUANTITIES or not isinstance(values[0][1], dict):
            return None
        quantity = values[0][1]
        if not _number(quantity.get("value")):
            return None
        return (
            quantity.get("system") == system
            and quantity.get("code") == code
            and quantity["value"] >= 0
        )

    return check


_SHAPES: list[tuple[re.Pattern[str], Callable[..., Native]]] = [
    (
        re.compile(rf"identifier\.where\(system = {_STRING} and value\.exists\(\)\)\.exists\(\)"),
        _has_identifier,
    ),
    (
        re.compile(
            rf"value\.ofType\(integer\) >= {_NUMBER} and value\.ofType\(integer\) <= {_NUMBER}"
        ),
        _integer_range,
    ),
    (
        re.compile(
            rf"value\.ofType\(Quantity\)\.value >= {_NUMBER} and "
            rf"value\.ofType\(Quantity\)\.value <= {_NUMBER}"
        ),
        lambda low, high: _quantity_bounds(low, high, strict=False),
    ),
    (
        re.compile(rf"value\.ofType\(Quantity\)\.value >= {_NUMBER}"),
        lambda low: _quantity_bounds(low, None, strict=False),
    ),
    (
        re.compile(rf"value\.ofType\(Quantity\)\.value > {_NUMBER}"),
        lambda low: _quantity_bounds(low, None, strict=True),
    ),
    (
        re.compile(
            rf"value\.all\(system = {_STRING} and code = {_STRING} and value\.exists\(\) "
            r"and value >= 0\)"
        ),
        _quantity_unit,
    ),
]


# The natives whose second argument is %rootResource rather than %resource.
ON_ROOT = frozenset({_ref_1})


@cache
def native(expression: str) -> Native | None:
    """The Python version of ``expression``, or None when there is none."""
    if expression in _EXACT:
        return _EXACT[expression]
    for pattern, make in _SHAPES:
        match = pattern.fullmatch(expression)
        if match:
            return make(*match.groups())
    return None
