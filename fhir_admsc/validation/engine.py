"""The validation engine: structure, the R4 base rules, the profiles a resource claims, and the rules
of a Bundle. Every check reports an Issue located by FHIRPath; nothing is printed."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import date
from functools import cache, partial
from typing import Any

from fhir_admsc import r4
from fhir_admsc import terminology as term
from fhir_admsc.errors import ConfigurationError
from fhir_admsc.resources import label, reference_type
from fhir_admsc.validation import slicing, vital_signs
from fhir_admsc.validation.catalog import Catalog
from fhir_admsc.validation.definitions import choice_step, definition_issues, step_type
from fhir_admsc.validation.fhirpath import Evaluation, FhirPathError, Resolver, holds
from fhir_admsc.validation.issues import Issue, at_least

R4 = "fhir:R4"
MAX_STRING = 1024 * 1024  # bytes of UTF-8 in a string (R4 datatypes: "SHALL NOT exceed 1MB")
SEEN_LIMIT = 20_000  # remembered datatype values and extensions; bounds memory on large inputs
# Values that differ in every resource (a business identifier, a narrative): never remembered.
UNIQUE_DATATYPES = {"Identifier", "Narrative"}
PRIMITIVES_JSON = {
    "boolean": bool,
    "integer": int,
    "positiveInt": int,
    "unsignedInt": int,
    "decimal": (int, float),
}
# ElementDefinition properties that constrain nothing a validator checks.
DOCUMENTATION = {
    "id",
    "path",
    "short",
    "definition",
    "comment",
    "requirements",
    "alias",
    "mustSupport",
    "isModifier",
    "isModifierReason",
    "isSummary",
    "mapping",
    "example",
    "meaningWhenMissing",
    "label",
    "code",
    "orderMeaning",
    "representation",
    "base",
    "extension",
    "condition",
}


@dataclass
class Node:
    """A value in the instance with its FHIRPath location."""

    value: Any
    location: str
    type_code: str | None = None  # the type a choice element's value has (``ofType(...)``)
    bare: bool = False  # a primitive present only by its extensions (``_birthDate``): no value


class _Failed(Exception):
    """A fail-fast check found its first error."""


@dataclass
class Context:
    """What one resource's checks share."""

    resource: dict[str, Any]
    evaluation: Evaluation = field(default_factory=Evaluation)
    issues: list[Issue] = field(default_factory=list)
    # asked only whether there is an error (does a resource meet a profile?): stop at the first
    fail_fast: bool = False

    def add(self, severity: str, code: str, message: str, location: str, rule: str = R4) -> None:
        if self.fail_fast and severity in ("error", "fatal"):
            raise _Failed
        self.issues.append(
            Issue(
                severity,
                code,
                message,
                location,
                rule,  # type: ignore[arg-type]
                resource=label(self.resource),
            )
        )


def _type_suffix(code: str) -> str:
    return code[0].upper() + code[1:]


def profile_type(catalog: Catalog, url: str) -> str:
    """The type a profile constrains; ConfigurationError when no loaded package defines ``url``."""
    sd = catalog.structure(url)
    if sd is not None and isinstance(sd.get("type"), str):
        return sd["type"]
    if catalog.is_base_definition(url):
        return url.split("|")[0].rsplit("/", 1)[-1]
    raise ConfigurationError(
        f"`profiles` {url}: no loaded package defines this profile "
        "(give the package that does with `igs`)"
    )


class Validator:
    """Checks resources against the R4 base and the profiles of a Catalog."""

    def __init__(
        self,
        catalog: Catalog,
        profiles: Iterable[str] = (),
        extension_domains: Iterable[str] = (),
        example_urls: bool = True,
    ) -> None:
        self.catalog = catalog
        # URL prefixes of extensions that may be used without a definition
        self.extension_domains = tuple(extension_domains)
        # whether URLs of example domains (example.org, acme.com) are accepted: not in live data
        self.example_urls = example_urls
        # As the HL7 validator's -profile: a named profile applies to the resources of its type.
        self.extra_profiles: dict[str, list[str]] = {}
        for kind, urls in catalog.global_profiles.items():  # an IG's global profiles apply too
            self.extra_profiles[kind] = list(urls)
        for url in profiles:
            self.extra_profiles.setdefault(profile_type(catalog, url), []).append(url)
        self._seen: dict[tuple[str, str], tuple[tuple[str, str, str, str, str], ...]] = {}
        self._free: dict[str, bool] = {}
        self._conforming: set[tuple[int, str]] = set()
        self._targets: dict[tuple[str, ...], Any] = {}  # see _target_types
        # whether a resource conforms to a profile, by identity (kept with the resource)
        self._conformance: dict[tuple[int, str], tuple[Any, bool]] = {}
        # extensions whose definition was applied, by identity (the value is kept with it)
        self._applied: dict[tuple[int, str], Any] = {}
        # what applying a profile to a resource found, when a conformance check did it in full
        self._met: dict[tuple[int, str], tuple[Any, tuple[Issue, ...]]] = {}

    def _slice_urls(self, sd: dict[str, Any]) -> dict[str, str]:
        return self.catalog.derived("slice urls", sd, lambda: _slice_urls(sd))

    # -- one resource -------------------------------------------------------------------------

    def validate(
        self,
        resource: Any,
        resolver: Resolver | None = None,
        root: dict[str, Any] | None = None,
        profiled: dict[str, Any] | None = None,
    ) -> list[Issue]:
        """Every issue of one resource; locations start at its type (``Observation.status``).
        ``root`` is the resource that contains it, if it is contained (``%rootResource``);
        ``profiled`` is what its profiles are applied to, if not ``resource`` itself (a Bundle
        whose entries are checked on their own, given as stubs in ``resource``)."""
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            return [
                Issue("error", "structure", "is not a FHIR resource (no resourceType)", "$this", R4)
            ]
        kind = resource["resourceType"]
        ctx = Context(resource, Evaluation(resolver or Resolver(), self._member_of, root))
        if not r4.is_resource_type(kind):
            ctx.add("error", "structure", f"'{kind}' is not an R4 resource type", kind)
            return ctx.issues
        self._walk(ctx, resource, kind, kind, kind)
        meta = resource.get("meta")
        profiles = meta.get("profile") if isinstance(meta, dict) else None
        # a malformed meta or profile is reported by the walk; only well-formed claims are checked
        claimed = [p for p in profiles if isinstance(p, str)] if isinstance(profiles, list) else []
        named = self.extra_profiles.get(kind, ())
        whole = profiled if profiled is not None else resource
        if kind == "StructureDefinition":
            for location, message in definition_issues(resource):
                ctx.add("error", "structure", message, location, R4)
        urls = [*claimed, *(p for p in named if p not in claimed)]
        implied = vital_signs.required_profile(resource) if kind == "Observation" else None
        if implied is not None and implied[0] not in urls:
            ctx.add("information", "informational", implied[1], kind, implied[0])
            urls.append(implied[0])
        for url in urls:
            self._claimed_profile(ctx, url, whole, root)
        return ctx.issues

    def _claimed_profile(
        self, ctx: Context, url: str, whole: dict[str, Any], root: dict[str, Any] | None
    ) -> None:
        """Apply a profile to a resource; what a conformance check of the same resource found
        (a slice's or a reference's target, checked in full when it conformed) is reused, and a
        profile met is remembered for the conformance checks still to come."""
        kind = whole["resourceType"]
        key = (id(whole), url)
        if root is not None or whole is not ctx.resource:
            self._profile(ctx, url, [Node(whole, kind)], kind)
            return
        found = self._met.get(key)
        if found is not None and found[0] is whole:
            ctx.issues.extend(found[1])
            return
        before = len(ctx.issues)
        self._profile(ctx, url, [Node(whole, kind)], kind)
        if not at_least(ctx.issues[before:], "error"):
            self._remember(self._conformance, key, (whole, True))

    # -- the R4 base: walk every element with its definition ----------------------------------

    def _walk(
        self, ctx: Context, value: dict[str, Any], type_name: str, def_path: str, location: str
    ) -> None:
        """Check an element of complex type against the R4 base definitions, recursively."""
        children, required, constraints = _shape(type_name, def_path)
        if not value:
            ctx.add(
                "error", "structure", "an element must have a value or children (ele-1)", location
            )
            return
        seen: dict[str, int] = {}
        for key, item in value.items():
            if key == "resourceType" and location.count(".") == 0:
                continue
            if key.startswith("_"):
                self._primitive_extension(ctx, item, f"{location}.{key[1:]}")
                continue
            match = _match(type_name, def_path, key)
            if match is None:
                ctx.add(
                    "error",
                    "structure",
                    f"'{key}' is not an element of {def_path} in R4",
                    f"{location}.{key}",
                )
                continue
            element, type_code, name, step = match
            seen[name] = seen.get(name, 0) + (len(item) if isinstance(item, list) else 1)
            self._element(ctx, element, type_code, key, item, location + step)
        for name, minimum in required:
            if seen.get(name, 0) < minimum:
                ctx.add(
                    "error",
                    "required",
                    f"'{name.replace('[x]', '')}' is required (minimum {minimum})",
                    f"{location}.{name.replace('[x]', '')}",
                )
        # FHIRPath types a backbone element by its path (Parameters.parameter): that is how its
        # choice elements (value[x]) are found
        fhirpath_type = def_path if "." in def_path else type_name
        for constraint in constraints:
            self._invariant(ctx, constraint, value, location, fhirpath_type, R4)

    def _element(
        self,
        ctx: Context,
        element: r4.ElementDef,
        type_code: str,
        key: str,
        item: Any,
        step: str,
    ) -> None:
        if isinstance(item, list):
            if element.max == "1":
                ctx.add("error", "structure", f"'{key}' holds a list but allows one value", step)
            elif not item:
                ctx.add("error", "structure", "an empty list is not allowed (ele-1)", step)
            nodes = [(v, f"{step}[{i}]") for i, v in enumerate(item)]
        else:
            if element.max == "*":
                ctx.add("error", "structure", f"'{key}' must be a list (it repeats)", step)
            nodes = [(item, step)]
        if element.max not in ("*", "0", "1") and len(nodes) > int(element.max):
            ctx.add("error", "structure", f"'{key}' allows at most {element.max} values", step)
        if element.max == "0":
            ctx.add("error", "structure", f"'{key}' is not allowed", step)
        for value, where in nodes:
            self._typed(ctx, element, type_code, value, where)

    def _typed(
        self, ctx: Context, element: r4.ElementDef, type_code: str, value: Any, where: str
    ) -> None:
        if value is None or value == "" or value == {} or value == []:
            ctx.add("error", "structure", "an element must have a value or children (ele-1)", where)
            return
        is_primitive = type_code[0].islower() or type_code.startswith("http://")
        if is_primitive:
            # Resource.id is a System.String in R4 whose regex is that of id
            regex = _pattern("id" if element.path in _RESOURCE_IDS else type_code)
            self._primitive(ctx, type_code, regex, value, where)
        elif type_code in ("BackboneElement", "Element") or element.content_reference:
            if not isinstance(value, dict):
                ctx.add("error", "structure", "must be an object", where)
                return
            inner = (element.content_reference or "").lstrip("#") or element.path
            root = inner.split(".")[0]
            self._walk(ctx, value, root, inner, where)
        elif element.path == "Bundle.entry.resource":
            return  # each entry's resource is checked on its own, with its own line
        elif type_code == "Resource" or r4.is_resource_type(type_code):
            if isinstance(value, dict) and isinstance(value.get("resourceType"), str):
                root = (
                    ctx.evaluation.root or ctx.resource
                    if element.path.endswith(".contained")
                    else None
                )
                for issue in self.validate(value, ctx.evaluation.resolver, root):
                    ctx.issues.append(
                        Issue(
                            issue.severity,
                            issue.code,
                            issue.message,
                            f"{where}/*{label(value)}*/"
                            + issue.location[len(value["resourceType"]) :],
                            issue.rule,
                            label(ctx.resource),
                        )
                    )
            else:
                ctx.add("error", "structure", "must be a resource (with resourceType)", where)
        else:
            if not isinstance(value, dict):
                ctx.add("error", "structure", f"must be an object ({type_code})", where)
                return
            self._datatype(ctx, type_code, value, where)
            if type_code == "Reference":  # the R4 definition's own target types
                targets = [
                    p for t in element.types if t.code == type_code for p in t.target_profiles
                ]
                if targets:
                    self._reference_target(ctx, Node(value, where), targets, R4)
        if element.binding is not None and element.binding.strength in ("required", "extensible"):
            self._binding(
                ctx,
                element.binding.strength,
                element.binding.value_set,
                type_code,
                value,
                where,
                R4,
            )

    def _datatype(self, ctx: Context, type_code: str, value: dict[str, Any], where: str) -> None:
        """Check a value of a complex datatype; equal values give equal findings, so they are
        remembered (exports repeat the same codings, units, meta and study links thousands of
        times). A local reference (``#id``) depends on the resource around it, and identifiers
        differ in every resource: those are not remembered."""
        text = "" if type_code in UNIQUE_DATATYPES else _KEY.encode(value)
        if not text or '"#' in text:
            self._walk(ctx, value, type_code, type_code, where)
            self._codes(ctx, type_code, value, where)
            if type_code == "Attachment":
                _attachment_size(ctx, type_code, value, where)
            return
        found = self._seen.get((type_code, text))
        if found is None:
            inner = Context(ctx.resource, ctx.evaluation)
            self._walk(inner, value, type_code, type_code, "")
            self._codes(inner, type_code, value, "")
            if type_code == "Attachment":
                _attachment_size(inner, type_code, value, "")
            found = tuple((i.severity, i.code, i.message, i.location, i.rule) for i in inner.issues)
            if len(self._seen) >= SEEN_LIMIT:
                self._seen.clear()
            self._seen[(type_code, text)] = found
        for severity, code, message, location, rule in found:
            ctx.add(severity, code, message, where + location, rule)

    def _primitive(
        self, ctx: Context, type_code: str, regex: re.Pattern[str] | None, value: Any, where: str
    ) -> None:
        expected = PRIMITIVES_JSON.get(type_code, str)
        if isinstance(value, bool) and type_code != "boolean" or not isinstance(value, expected):
            ctx.add(
                "error", "structure", f"{json.dumps(value)[:60]} is not a valid {type_code}", where
            )
            return
        text = (
            json.dumps(value)
            if type_code == "decimal"
            else str(value).lower()
            if type_code == "boolean"
            else str(value)
        )
        if (
            isinstance(value, str)
            and len(value) > MAX_STRING // 4
            and len(value.encode()) > MAX_STRING
        ):
            ctx.add(
                "error", "structure", "is longer than 1 MB, the most a FHIR string may hold", where
            )
            return
        # FHIR's regexes are XML Schema ones, where \s is only space, tab, CR and LF: in ASCII
        # mode Python agrees, and a no-break or ideographic space is text, not whitespace.
        if regex and not regex.fullmatch(text):
            ctx.add("error", "structure", f"'{text[:60]}' is not a valid {type_code}", where)
        elif type_code in ("date", "dateTime", "instant") and not _calendar_ok(text):
            ctx.add("error", "structure", f"'{text}' is not a calendar date", where)
        elif type_code == "positiveInt" and value < 1:
            ctx.add("error", "structure", f"{value} is not a positiveInt (>= 1)", where)
        elif type_code in URL_TYPES and not self.example_urls and _EXAMPLE_URL.match(text):
            ctx.add(
                "error",
                "value",
                f"'{text[:60]}' is an example URL (example domains are refused here)",
                where,
            )
        elif type_code == "canonical" and not _CANONICAL.match(text):
            ctx.add(
                "error",
                "value",
                f"'{text[:60]}' is not an absolute URL: a canonical reference names a resource "
                "by its url, or a contained one by #id",
                where,
            )

    def _primitive_extension(self, ctx: Context, item: Any, where: str) -> None:
        for i, value in enumerate(item if isinstance(item, list) else [item]):
            if value is not None:
                here = f"{where}[{i}]" if isinstance(item, list) else where
                self._walk(ctx, value, "Element", "Element", here)

    def _codes(self, ctx: Context, type_code: str, value: dict[str, Any], where: str) -> None:
        """Codings of known code systems must exist there; external ones must be well-formed."""
        if type_code != "Coding" or "system" not in value or "code" not in value:
            return
        system, code = value["system"], value["code"]
        if not isinstance(system, str) or not isinstance(code, str):
            return  # the walk has reported the wrong types
        problem = term.external_code_problem(system, code)
        if problem:
            ctx.add("error", "code-invalid", f"'{code}' {problem}", f"{where}.code")
            return
        codes = self.catalog.code_system_codes(system)
        if codes is not None and code not in codes:
            ctx.add("error", "code-invalid", f"'{code}' is not a code of {system}", f"{where}.code")
        elif codes is not None and "display" in value:
            display = self.catalog.display(system, code)
            if display is not None and display != value["display"]:
                ctx.add(
                    "warning",
                    "value",
                    f"display '{value['display']}' differs from '{display}' for {system}#{code}",
                    f"{where}.display",
                )

    # -- bindings and invariants --------------------------------------------------------------

    def _member_of(self, value: Any, url: str) -> bool | None:
        codes = self.catalog.expansion(url)
        if codes is None:
            return None
        return bool(_codes_in(value, codes))

    def _binding(
        self,
        ctx: Context,
        strength: str,
        url: str,
        type_code: str,
        value: Any,
        where: str,
        rule: str,
    ) -> None:
        if type_code not in ("code", "Coding", "CodeableConcept", "Quantity", "string", "uri"):
            return
        codes = self.catalog.expansion(url)
        if codes is None:
            if strength == "required" and not self.catalog.is_core(url) and rule != R4:
                ctx.add(
                    "warning",
                    "not-supported",
                    f"cannot check the binding to {url}: the "
                    "ValueSet is not available or cannot be expanded offline",
                    where,
                    rule,
                )
            return
        candidates = _coded_values(type_code, value)
        if candidates is None:
            return
        if not candidates:
            if strength == "required" and type_code == "CodeableConcept":
                ctx.add(
                    "error",
                    "code-invalid",
                    f"has no coding from the required ValueSet {url}",
                    where,
                    rule,
                )
            return
        if not _codes_in(value, codes, type_code):
            shown = ", ".join(f"{s}#{c}" if s else c for s, c in candidates)[:200]
            expected = ""
            if len(codes) <= 12:
                expected = f" (expected one of: {', '.join(sorted(c for _, c in codes))})"
            severity = "error" if strength == "required" else "warning"
            ctx.add(
                severity,
                "code-invalid",
                f"'{shown}' is not in the {strength} ValueSet {url}{expected}",
                where,
                rule,
            )

    def _invariant(
        self, ctx: Context, constraint: Any, node: Any, location: str, type_name: str, rule: str
    ) -> None:
        if isinstance(constraint, dict):  # a profile's constraint, as JSON
            key, expression = constraint["key"], constraint.get("expression")
            human = constraint.get("human", "")
            severity = constraint.get("severity", "error")
        else:  # an R4 base constraint (r4.Constraint)
            key, expression = constraint.key, constraint.expression
            human, severity = constraint.human, constraint.severity
        if key in SKIPPED_INVARIANTS or not expression:
            return
        try:
            ok = holds(expression, node, ctx.resource, type_name, ctx.evaluation)
        except FhirPathError as e:
            ctx.add(
                "error",
                "not-supported",
                f"invariant {key} cannot be checked: {e}",
                location,
                f"{rule}#{key}",
            )
            return
        if not ok:
            ctx.add(
                severity, "invariant", f"rule {key} not met: {human}", location, f"{rule}#{key}"
            )

    # -- profiles -----------------------------------------------------------------------------

    def _profile(self, ctx: Context, url: str, roots: list[Node], type_name: str) -> None:
        """Check ``roots`` (the resource, or the extensions of a slice) against a profile chain."""
        sd = self.catalog.structure(url)
        if sd is None:
            if self.catalog.is_base_definition(url) or (
                type_name == "Extension" and self.catalog.is_core(url)
            ):
                # The R4 core extension definitions are not shipped: a profile that slices one
                # constrains its value itself (as ours do for workflow-researchStudy).
                return
            # As the HL7 validator: a claim of a profile nobody loaded is a warning; the
            # resource is checked against everything else.
            ctx.add(
                "warning" if type_name != "Extension" else "error",
                "not-found",
                f"claims conformance to {url}, which is not loaded, so it was not checked "
                "(give its package with `igs`)",
                roots[0].location if roots else type_name,
                url,
            )
            return
        if sd.get("type") != type_name:
            ctx.add(
                "error",
                "structure",
                f"profile {url} is for {sd.get('type')}, not {type_name}",
                roots[0].location if roots else type_name,
                url,
            )
            return
        parent = sd.get("baseDefinition", "")
        inherits = bool(parent) and not self.catalog.is_base_definition(parent)
        # Reports read base first; a yes-or-no check starts with what the profile itself adds,
        # where the values that tell profiles apart (a fixed code, say) are.
        if inherits and not ctx.fail_fast:
            self._profile(ctx, parent, roots, type_name)
        # A differential says what the profile adds; a snapshot-only profile is applied whole.
        view = sd.get("differential") or sd.get("snapshot")
        if view is None:
            ctx.add(
                "error",
                "not-supported",
                f"profile {url} has neither differential nor snapshot",
                type_name,
                url,
            )
            return
        urls = self._slice_urls(sd)
        made: list[Member] = []

        def member(sliced_id: str, name: str, node: Node) -> bool:
            """Slice membership: extension slices by url here, others built on first need."""
            url = urls.get(f"{sliced_id}:{name}")
            if url is not None:
                return isinstance(node.value, dict) and node.value.get("url") == url
            if not made:
                made.append(self._slice_member(ctx, sd))
            return made[0](sliced_id, name, node)

        selected: dict[tuple[str, ...], list[Node]] = {(): roots}

        def select(path: tuple[str, ...]) -> list[Node]:
            """The nodes at ``path`` (element id parts after the type), each step walked once."""
            if path not in selected:
                selected[path] = _select(
                    sd["type"], member, select(path[:-1]), list(path), len(path) - 1
                )
            return selected[path]

        before = len(ctx.issues)
        for element in view.get("element", []):
            self._profile_element(ctx, sd, element, roots, select, member)
        if inherits and ctx.fail_fast:
            middle = len(ctx.issues)
            self._profile(ctx, parent, roots, type_name)
            # the findings in the order a report gives them: the base's first
            ctx.issues[before:] = ctx.issues[middle:] + ctx.issues[before:middle]

    def _definitions(self, sd: dict[str, Any]) -> slicing.Definitions:
        """The elements of ``sd`` and of the profiles it derives from, by id."""

        def chain() -> slicing.Definitions:
            found, url = [sd], sd.get("baseDefinition", "")
            while url and not self.catalog.is_base_definition(url) and len(found) < 20:
                parent = self.catalog.structure(url)
                if parent is None:
                    break
                found.append(parent)
                url = parent.get("baseDefinition", "")
            return slicing.Definitions(found)

        return self.catalog.derived("definitions", sd, chain)

    def _slice_member(self, ctx: Context, sd: dict[str, Any]) -> Member:
        """Whether a node is in a slice of ``sd`` (sliced element id, slice name, node); a
        slicing that cannot be told apart is reported once and matches nothing (fails closed)."""
        definitions = self._definitions(sd)
        conformance: dict[tuple[int, str], bool] = {}
        reported: set[str] = set()

        def conforms(value: Any, url: str) -> bool:
            target = self.catalog.structure(url)
            kind = (target or {}).get("type") or url.rsplit("/", 1)[-1]
            actual = value.get("resourceType") if isinstance(value, dict) else None
            if actual is not None:  # a resource: remembered by the validator
                return actual == kind and self._conforms(ctx, value, url)
            key = (id(value), url)
            if key not in conformance:  # a datatype (a profiled Coding, say)
                scratch = Context(ctx.resource, ctx.evaluation, fail_fast=True)
                try:
                    self._profile(scratch, url, [Node(value, kind)], kind)
                    conformance[key] = True
                except _Failed:
                    conformance[key] = False
            return conformance[key]

        def resolve(reference: str) -> dict[str, Any] | None:
            if reference.startswith("#"):  # a contained resource of the resource (or its root)
                root = ctx.evaluation.root or ctx.resource
                for contained in root.get("contained") or []:
                    if isinstance(contained, dict) and contained.get("id") == reference[1:]:
                        return contained
                return None
            return ctx.evaluation.resolver(reference)

        checks = slicing.Checks(resolve, conforms, self._member_of, _matches_pattern)

        memo: dict[tuple[str, str, int, str | None], bool] = {}
        possible: dict[tuple[str, int, str | None], set[str] | None] = {}

        def member(sliced_id: str, name: str, node: Node) -> bool:
            # (extension slices, by url, are told apart before: see _profile)
            # the slices an item may be in, told by the slicing's index once per item
            near = (sliced_id, id(node.value), node.type_code)
            if near not in possible:
                found = self.catalog.derived(
                    f"slice index {sliced_id}",
                    definitions,
                    lambda: slicing.index(definitions, sliced_id),
                )
                item = slicing.Item(node.value, node.type_code)
                possible[near] = None if found is None else slicing.candidates(found, item, resolve)
            if possible[near] is not None and name not in possible[near]:
                return False
            key = (sliced_id, name, id(node.value), node.type_code)  # values outlive this memo
            if key not in memo:
                memo[key] = in_slice(sliced_id, name, node)
            return memo[key]

        def in_slice(sliced_id: str, name: str, node: Node) -> bool:
            slice_id = f"{sliced_id}:{name}"
            rules = definitions.slicing(sliced_id)
            try:
                if rules is None:
                    raise slicing.Unsupported(f"no slicing is defined for {sliced_id}")
                item = slicing.Item(node.value, node.type_code)
                return slicing.in_slice(definitions, rules, slice_id, item, checks)
            except slicing.Unsupported as e:
                if sliced_id not in reported:
                    reported.add(sliced_id)
                    ctx.add(
                        "error",
                        "not-supported",
                        f"cannot tell the slices of {sliced_id} apart: {e} is not supported "
                        "by this validator",
                        node.location,
                        sd["url"],
                    )
                return False

        return member

    def _profile_element(
        self,
        ctx: Context,
        sd: dict[str, Any],
        element: dict[str, Any],
        roots: list[Node],
        select: Callable[[tuple[str, ...]], list[Node]],
        member: Member,
    ) -> None:
        unsupported = self.catalog.derived("unsupported", element, lambda: _unsupported(element))
        if unsupported is None:
            return  # documentation only (a short, a mustSupport): nothing to check
        url = sd["url"]
        element_id = element.get("id") or element["path"]
        rule = f"{url}#{element_id}"
        if unsupported:
            ctx.add(
                "error",
                "not-supported",
                f"profile feature(s) {sorted(unsupported)} of "
                f"{element_id} are not supported by this validator",
                roots[0].location if roots else element_id,
                rule,
            )
            return
        parts = element_id.split(".")
        path = parts[1:]
        parents = select(tuple(path[:-1]))
        if isinstance(element.get("slicing"), dict) and len(parts) > 1:
            self._slicing_rules(ctx, sd, element, element_id, select(tuple(path)), member, rule)
        if len(parts) == 1:
            for node in roots:
                for constraint in element.get("constraint", []):
                    self._invariant(
                        ctx,
                        constraint,
                        node.value,
                        node.location,
                        parts[0],
                        constraint.get("source", url),
                    )
            return
        last = parts[-1]
        for parent in parents:
            nodes = _select(sd["type"], member, [parent], path, start=len(path) - 1)
            minimum, maximum = element.get("min"), element.get("max")
            where = f"{parent.location}.{choice_step(element.get('path', '')) or _step_name(last)}"
            if minimum is not None and len(nodes) < minimum:
                ctx.add(
                    "error",
                    "required",
                    f"{_describe(last)} is required by profile "
                    f"{sd.get('name', url)} (minimum {minimum}, found {len(nodes)})",
                    where,
                    rule,
                )
            if maximum not in (None, "*") and len(nodes) > int(maximum):
                ctx.add(
                    "error",
                    "structure",
                    f"{_describe(last)} allows at most {maximum} "
                    f"(found {len(nodes)}) in profile {sd.get('name', url)}",
                    where,
                    rule,
                )
            for node in nodes:
                self._constrain(ctx, sd, element, node, rule)

    def _resource_profiles(
        self, ctx: Context, types: list[dict[str, Any]], node: Node, rule: str
    ) -> None:
        """A resource in an element (a Bundle entry's, a parameter's) that the profile types
        with profiles must conform to one of them."""
        kind = node.value.get("resourceType") if isinstance(node.value, dict) else None
        if not isinstance(kind, str):
            return
        profiles = [p for t in types if t.get("code") == kind for p in t.get("profile") or []]
        if len(profiles) == 1:
            inner = Context(node.value, ctx.evaluation, ctx.issues, ctx.fail_fast)
            self._profile(inner, profiles[0], [Node(node.value, node.location)], kind)
        elif profiles and not any(self._conforms(ctx, node.value, p) for p in profiles):
            ctx.add(
                "error",
                "structure",
                f"conforms to none of the profiles {', '.join(profiles)}",
                node.location,
                rule,
            )

    def _conforms(self, ctx: Context, value: dict[str, Any], url: str) -> bool:
        """Whether a resource meets a profile (a reference's target, a slice's entry); a check
        already under way (references in a cycle) counts as met."""
        key = (id(value), url)
        known = self._conformance.get(key)
        if known is not None and known[0] is value:
            return known[1]
        if key in self._conforming:
            return True
        self._conforming.add(key)
        scratch = Context(value, ctx.evaluation, fail_fast=True)
        try:
            kind = value["resourceType"]
            self._profile(scratch, url, [Node(value, kind)], kind)
            answer = True
        except _Failed:
            answer = False
        finally:
            self._conforming.discard(key)
        if answer and ctx.evaluation.root is None:  # checked in full: its findings are complete
            self._remember(self._met, key, (value, tuple(scratch.issues)))
        # the value is kept, so its id is not reused
        self._remember(self._conformance, key, (value, answer))
        return answer

    @staticmethod
    def _remember(table: dict[Any, Any], key: Any, value: Any) -> None:
        if len(table) >= SEEN_LIMIT:
            table.clear()
        table[key] = value

    def _slicing_rules(
        self,
        ctx: Context,
        sd: dict[str, Any],
        element: dict[str, Any],
        element_id: str,
        items: list[Node],
        member: Member,
        rule: str,
    ) -> None:
        """Closed, ordered and openAtEnd slicings: which slice each item is in, and where."""
        rules = element["slicing"].get("rules", "open")
        ordered = element["slicing"].get("ordered") is True
        if rules == "open" and not ordered:
            return
        names = self._definitions(sd).slices(element_id)
        last, unmatched_seen = -1, False
        for node in items:
            matched = [i for i, name in enumerate(names) if member(element_id, name, node)]
            if not matched:
                unmatched_seen = True
                if rules == "closed":
                    ctx.add(
                        "error",
                        "structure",
                        f"matches none of the slices of {element_id} "
                        f"({', '.join(names) or 'none defined'}), and the slicing is closed",
                        node.location,
                        rule,
                    )
                continue
            if rules == "openAtEnd" and unmatched_seen:
                ctx.add(
                    "error",
                    "structure",
                    f"is in slice '{names[matched[0]]}' after an item of no slice, but the "
                    f"slicing of {element_id} is open only at the end",
                    node.location,
                    rule,
                )
            if ordered and matched[0] < last:
                ctx.add(
                    "error",
                    "structure",
                    f"slice '{names[matched[0]]}' comes after '{names[last]}', but the slices "
                    f"of {element_id} are ordered",
                    node.location,
                    rule,
                )
            last = max(last, matched[0])

    def _constrain(
        self, ctx: Context, sd: dict[str, Any], element: dict[str, Any], node: Node, rule: str
    ) -> None:
        if node.bare:
            return  # no value to constrain; it counts towards the element's cardinality
        type_code = node.type_code
        for key, expected in self.catalog.derived(
            "value rules", element, lambda: _value_rules(element)
        ):
            if key.startswith("fixed") and node.value != expected:
                ctx.add(
                    "error", "value", f"must be exactly {json.dumps(expected)}", node.location, rule
                )
            elif key.startswith("pattern") and not _matches_pattern(node.value, expected):
                ctx.add(
                    "error",
                    "value",
                    f"must match the pattern {json.dumps(expected)}",
                    node.location,
                    rule,
                )
            elif key.startswith("minValue") and _compare(node.value) < _compare(expected):
                ctx.add("error", "value", f"must be at least {expected}", node.location, rule)
            elif key.startswith("maxValue") and _compare(node.value) > _compare(expected):
                ctx.add("error", "value", f"must be at most {expected}", node.location, rule)
        if (
            "maxLength" in element
            and isinstance(node.value, str)
            and len(node.value) > element["maxLength"]
        ):
            ctx.add("error", "value", f"is longer than {element['maxLength']}", node.location, rule)
        types = element.get("type", [])
        allowed = {t["code"] for t in types}
        if (
            allowed
            and type_code is not None
            and type_code not in allowed
            and element["path"].endswith("[x]")
        ):
            ctx.add(
                "error",
                "structure",
                f"type {type_code} is not allowed here (allowed: {', '.join(sorted(allowed))})",
                node.location,
                rule,
            )
        for t in types:
            if t["code"] == "Reference" and t.get("targetProfile"):
                self._reference_target(ctx, node, t["targetProfile"], rule)
            if t["code"] == "Extension" and t.get("profile") and ":" in element.get("id", ""):
                for profile in t["profile"]:
                    self._extension_profile(ctx, profile, Node(node.value, node.location))
        if isinstance(node.value, dict) and "resourceType" in node.value:
            self._resource_profiles(ctx, types, node, rule)
        if "binding" in element:
            binding = element["binding"]
            if binding.get("strength") in ("required", "extensible") and binding.get("valueSet"):
                self._binding(
                    ctx,
                    binding["strength"],
                    binding["valueSet"],
                    type_code or _guess_type(node.value),
                    node.value,
                    node.location,
                    rule,
                )
        if element.get("constraint"):
            self._profile_invariants(ctx, sd, element, node)

    def _profile_invariants(
        self, ctx: Context, sd: dict[str, Any], element: dict[str, Any], node: Node
    ) -> None:
        """A profile element's constraints on one node; inside a contained resource, %resource
        is that resource and %rootResource its container."""
        enclosing = _enclosing(ctx.resource, node.location)
        inner = ctx
        if enclosing is not ctx.resource:
            root = ctx.evaluation.root or ctx.resource
            inner = Context(
                enclosing, replace(ctx.evaluation, root=root), ctx.issues, ctx.fail_fast
            )
        kind = node.type_code or _node_type(element, node.value, enclosing)
        for constraint in element["constraint"]:
            self._invariant(
                inner,
                constraint,
                node.value,
                node.location,
                kind,
                constraint.get("source", sd["url"]),
            )

    def _reference_target(self, ctx: Context, node: Node, targets: list[str], rule: str) -> None:
        reference = node.value.get("reference") if isinstance(node.value, dict) else None
        if not isinstance(reference, str) or reference.startswith("#"):
            return
        resolved = ctx.evaluation.resolver(reference)
        target_type = resolved["resourceType"] if resolved else reference_type(reference)
        if target_type is not None and not r4.is_resource_type(target_type):
            target_type = None
        if target_type is None:
            return
        known = self._targets.get(tuple(targets))
        if known is None:
            known = self._targets[tuple(targets)] = self._target_types(targets)
        if known[0] is None:
            return  # a profile nobody loaded: the type it allows is not known here
        types, profiled = known
        said = any(
            i.location == node.location and i.message.startswith("refers to") for i in ctx.issues
        )
        if "Resource" not in types and target_type not in types and not said:
            ctx.add(
                "error",
                "structure",
                f"refers to {'an' if target_type[0] in 'AEIOU' else 'a'} {target_type}, which is "
                f"not allowed here (allowed: {', '.join(sorted(types))})",
                node.location,
                rule,
            )
            return
        # a resolved target must conform to one of the profiles (not base types) named
        profiles = profiled.get(target_type, [])
        if resolved and profiles and not any(self._conforms(ctx, resolved, p) for p in profiles):
            ctx.add(
                "error",
                "structure",
                f"refers to {label(resolved)}, which conforms to none of the profiles "
                f"{', '.join(profiles)}",
                node.location,
                rule,
            )

    def _target_types(
        self, targets: list[str]
    ) -> tuple[frozenset[str] | None, dict[str, list[str]]]:
        """The resource types a reference's target profiles allow (None when one is a profile
        nobody loaded), and the profiles (not base types) of each type."""
        types, profiled = set(), {}
        for target in targets:
            sd = self.catalog.structure(target)
            if sd is None and not self.catalog.is_base_definition(target):
                return None, {}
            kind = sd["type"] if sd else target.split("|")[0].rsplit("/", 1)[-1]
            types.add(kind)
            if sd is not None and not self.catalog.is_base_definition(target):
                profiled.setdefault(kind, []).append(target)
        return frozenset(types), profiled

    # -- extensions anywhere -------------------------------------------------------------------

    def check_extensions(
        self, resource: dict[str, Any], resolver: Resolver | None = None
    ) -> list[Issue]:
        """Extensions the profiles do not slice: known ones are checked against their
        definition and context, unknown ones in a loaded namespace are errors."""
        ctx = Context(resource, Evaluation(resolver or Resolver(), self._member_of))
        kind = resource.get("resourceType", "")
        for node in _extensions(resource, kind):
            url = node.value.get("url") if isinstance(node.value, dict) else None
            if not isinstance(url, str) or ":" not in url:
                continue  # a relative url names a part of a complex extension: its parent checks it
            if "|" in url:
                ctx.add(
                    "error",
                    "value",
                    f"an extension's url names it without a version (not {url})",
                    node.location,
                    url,
                )
            sd = self.catalog.structure(url)
            if sd is None:
                # As the HL7 validator: an extension nobody defined is not allowed, unless its
                # domain is allowed. R4's own extensions are known there; they are not shipped
                # here, so they are accepted unchecked.
                if not self.catalog.is_core(url) and not url.startswith(self.extension_domains):
                    ctx.add(
                        "error",
                        "not-found",
                        f"extension {url} is not defined in the loaded packages, so it is not "
                        "allowed here (give its package with `igs`, or allow its domain with "
                        "`extension_domains`)",
                        node.location,
                        url,
                    )
                continue
            contexts = sd.get("context", [])
            named = self.catalog.derived("contexts", sd, partial(_element_contexts, contexts))
            host = None if named is None else _host(resource, node.location)
            if (
                host
                and not host.names & named
                and not any(_context_allows(c, host) for c in contexts)
            ):
                allowed = ", ".join(c.get("expression", "") for c in contexts)
                ctx.add(
                    "error",
                    "structure",
                    f"extension {url} is not allowed on {host.path} (context: {allowed})",
                    node.location,
                    url,
                )
            self._extension_profile(ctx, url, node)
        return ctx.issues

    def _extension_profile(self, ctx: Context, url: str, node: Node) -> None:
        """Apply an extension's definition; equal extensions give equal findings, so they are
        remembered (every exported resource carries the same study link), unless the value holds
        a reference whose target only the resources around it tell (``#id``, ``urn:``)."""
        key = (id(node.value), url)
        done = self._applied.get(key)
        if done is not None and done is node.value:
            return  # applied already, by the profile that slices it: reported once
        if not ctx.fail_fast:  # a yes-or-no check keeps no findings
            self._remember(self._applied, key, node.value)
        text = _KEY.encode(node.value)
        if '"#' in text or '"urn:' in text or not self._context_free(url):
            self._profile(ctx, url, [node], "Extension")
            return
        found = self._seen.get((url, text))
        if found is None:
            inner = Context(ctx.resource, ctx.evaluation)
            self._profile(inner, url, [Node(node.value, "")], "Extension")
            found = tuple((i.severity, i.code, i.message, i.location, i.rule) for i in inner.issues)
            if len(self._seen) >= SEEN_LIMIT:
                self._seen.clear()
            self._seen[(url, text)] = found
        for severity, code, message, location, rule in found:
            ctx.add(severity, code, message, node.location + location, rule)

    def _context_free(self, url: str) -> bool:
        """Whether no invariant of the profile chain of ``url`` looks outside the element."""
        known = self._free.get(url)
        if known is None:
            known, chain = True, url
            while chain and not self.catalog.is_base_definition(chain):
                sd = self.catalog.structure(chain) or {}
                for element in sd.get("differential", {}).get("element", []):
                    for constraint in element.get("constraint", []):
                        expression = constraint.get("expression", "")
                        if any(word in expression for word in ("%resource", "%root", "resolve(")):
                            known = False
                chain = sd.get("baseDefinition", "")
            self._free[url] = known
        return known


SKIPPED_INVARIANTS = {
    # ele-1 is checked natively (empty values); the narrative checks need an XHTML engine.
    "ele-1",
    "txt-1",
    "txt-2",
    # dom-6 is a best-practice guideline (resources should carry narrative); exports carry none on
    # purpose: a narrative would repeat the data, and could repeat it wrongly.
    "dom-6",
}


def _attachment_size(ctx: Context, type_code: str, value: dict[str, Any], where: str) -> None:
    """An Attachment's size is the number of bytes of its data (as the HL7 validator checks)."""
    if type_code != "Attachment" or not isinstance(value.get("data"), str):
        return
    size = value.get("size")
    if not isinstance(size, int) or isinstance(size, bool):
        return
    try:
        actual = len(base64.b64decode(value["data"], validate=False))
    except (binascii.Error, ValueError):
        return  # the base64Binary check reports it
    if actual != size:
        ctx.add("error", "value", f"size says {size} bytes, but data holds {actual}", where)


def _enclosing(resource: dict[str, Any], location: str) -> dict[str, Any]:
    """The resource nearest to the element at ``location`` (``Patient.contained[0].name[0]``):
    the contained resource it is in, or ``resource``."""
    steps = location.split(".")[1:-1]  # a contained resource itself is in its container
    if not any(step.startswith("contained[") for step in steps):
        return resource
    value: Any = resource
    found = resource
    last = max(i for i, step in enumerate(steps) if step.startswith("contained["))
    for step in steps[: last + 1]:
        name, _, index = step.partition("[")
        value = value.get(name) if isinstance(value, dict) else None
        if index and isinstance(value, list):
            position = int(index.rstrip("]"))
            value = value[position] if position < len(value) else None
        if name == "contained" and isinstance(value, dict) and "resourceType" in value:
            found = value
    return found


def _node_type(element: dict[str, Any], value: Any, enclosing: dict[str, Any]) -> str:
    """The type FHIRPath gives a profiled node (``%context.type()``)."""
    if isinstance(value, dict) and isinstance(value.get("resourceType"), str):
        return value["resourceType"]
    codes = [t.get("code") for t in element.get("type", [])]
    single = codes[0] if len(codes) == 1 and isinstance(codes[0], str) else None
    if single and not single.startswith("http") and single != "BackboneElement":
        return single
    path = element.get("path", "")
    if ".contained." in path and isinstance(enclosing.get("resourceType"), str):
        path = enclosing["resourceType"] + "." + path.rsplit(".contained.", 1)[1]
    parent, _, name = path.rpartition(".")
    root = parent.split(".")[0]
    known = r4.is_resource_type(root) or r4.is_datatype(root)
    found = _children(root, parent).get(name) if parent and known else None
    if found is not None and len(found.types) == 1:
        code = found.types[0].code
        if code == "BackboneElement":
            return path  # FHIRPath knows a backbone element by its path (its choices, value[x])
        return "Element" if code.startswith("http") else code
    return "Element"


# The R4 resources a context of CanonicalResource or MetadataResource (types of later versions,
# used by extensions written for several versions) stands for.
CANONICAL_RESOURCES = frozenset(
    [
        "ActivityDefinition",
        "CapabilityStatement",
        "ChargeItemDefinition",
        "CodeSystem",
        "CompartmentDefinition",
        "ConceptMap",
        "EffectEvidenceSynthesis",
        "EventDefinition",
        "Evidence",
        "EvidenceVariable",
        "ExampleScenario",
        "GraphDefinition",
        "ImplementationGuide",
        "Library",
        "Measure",
        "MessageDefinition",
        "NamingSystem",
        "OperationDefinition",
        "PlanDefinition",
        "Questionnaire",
        "ResearchDefinition",
        "ResearchElementDefinition",
        "RiskEvidenceSynthesis",
        "SearchParameter",
        "StructureDefinition",
        "StructureMap",
        "TerminologyCapabilities",
        "TestScript",
        "ValueSet",
    ]
)


@dataclass(frozen=True)
class _Host:
    """The element an extension sits on, by the names an extension context may give it: its path
    from the resource (``Patient.name``), from the nearest datatype (``HumanName.family``), its
    type, and the url of the extension it sits on, if it does."""

    path: str
    names: frozenset[str]
    is_resource: bool
    extension_url: str | None


def _host(resource: dict[str, Any], location: str) -> _Host | None:
    """The host of the extension at ``location``; None where the R4 definitions do not say."""
    kind = resource.get("resourceType", "")
    if location.count(".") == 1:  # on the resource itself
        return _Host(kind, frozenset({kind}), r4.is_resource_type(kind), None)
    steps = [s.split("[", 1)[0] for s in location.split(".")[1:-1]]
    value: Any = resource
    path, root, type_code = kind, kind, kind
    names: set[str] = {kind}
    for step, raw in zip(steps, location.split(".")[1:-1], strict=True):
        found = step_type(root, step)
        if found is None:
            return None
        root, type_code = found
        value = _at(value, raw)
        path = f"{path}.{step}"
        if type_code == "Resource" and isinstance(value, dict):
            type_code = value.get("resourceType", "Resource")
            path = root = type_code
        names = {path, root, type_code}
        if type_code not in ("BackboneElement", "Element"):
            root = type_code
    url = value.get("url") if type_code == "Extension" and isinstance(value, dict) else None
    return _Host(path, frozenset(names), r4.is_resource_type(type_code), url)


def _at(value: Any, step: str) -> Any:
    name, _, index = step.partition("[")
    found = value.get(name, value.get("_" + name)) if isinstance(value, dict) else None
    if index and isinstance(found, list):
        i = int(index.rstrip("]"))
        return found[i] if i < len(found) else None
    return found


def _element_contexts(contexts: list[dict[str, Any]]) -> frozenset[str] | None:
    """The element contexts an extension names, by which a host's names are told at once; None
    when it has none or allows every element."""
    names = frozenset(
        c.get("expression", "") for c in contexts if c.get("type", "element") == "element"
    )
    return None if not contexts or "Element" in names else names


def _context_allows(context: dict[str, Any], host: _Host) -> bool:
    """Whether an extension context allows ``host``."""
    expression = context.get("expression", "")
    if context.get("type") == "fhirpath":
        return True  # an expression over the instance: not judged here
    if context.get("type") == "extension":
        return host.extension_url == expression
    if expression == "Element" or expression in host.names:
        return True
    if not host.is_resource:
        return False
    if expression in ("Resource", "DomainResource"):
        return True
    kind = host.path
    return expression in ("CanonicalResource", "MetadataResource") and kind in CANONICAL_RESOURCES


URL_TYPES = frozenset({"uri", "url", "canonical"})
# A URL whose host is a domain kept for examples (RFC 2606 and the spec's acme.com/.org).
_EXAMPLE_URL = re.compile(
    r"[A-Za-z][A-Za-z0-9+.-]*://([^/?#]*\.)?(example\.(org|com|net)|acme\.(com|org))([:/?#]|$)"
)
# A canonical: an absolute URI (a scheme, then anything), or #id of a contained resource.
_CANONICAL = re.compile(r"#|[A-Za-z][A-Za-z0-9+.-]*:")


def _calendar_ok(text: str) -> bool:
    parts = text[:10].split("-")
    if len(parts) < 3:
        return True
    try:
        date(int(parts[0]), int(parts[1]), int(parts[2]))
    except ValueError:
        return False
    return True


# The paths ``<ResourceType>.id``.
_RESOURCE_IDS = frozenset(f"{kind}.id" for kind in r4.resource_types())


def _children(type_name: str, def_path: str) -> dict[str, r4.ElementDef]:
    return _children_index(type_name).get(def_path, {})


_CHILDREN_CACHE: dict[str, dict[str, dict[str, r4.ElementDef]]] = {}


def _children_index(type_name: str) -> dict[str, dict[str, r4.ElementDef]]:
    index = _CHILDREN_CACHE.get(type_name)
    if index is None:
        index = {}
        for element in r4.base_elements(type_name)[1:]:
            parent, name = element.path.rsplit(".", 1)
            index.setdefault(parent, {})[name] = element
        _CHILDREN_CACHE[type_name] = index
    return index


Shape = tuple[dict[str, r4.ElementDef], tuple[tuple[str, int], ...], tuple[Any, ...]]
Match = tuple[r4.ElementDef, str, str, str]


_KEY = json.JSONEncoder(separators=(",", ":"))
VALUE_RULES = ("fixed", "pattern", "minValue", "maxValue")


def _value_rules(element: dict[str, Any]) -> list[tuple[str, Any]]:
    """The fixed, pattern, minValue and maxValue properties of a profile element."""
    return [(k, v) for k, v in element.items() if k.startswith(VALUE_RULES)]


def _unsupported(element: dict[str, Any]) -> list[str] | None:
    """The properties of a profile element this validator cannot check; None when the element
    says nothing a validator checks."""
    if not set(element) - DOCUMENTATION - {"sliceName"}:
        return None
    return sorted(
        set(element) - DOCUMENTATION - SUPPORTED - {k for k in element if k.startswith(VALUE_RULES)}
    )


SUPPORTED = {
    "sliceName",
    "min",
    "max",
    "type",
    "binding",
    "constraint",
    "slicing",
    "contentReference",
    "maxLength",
}


@cache
def _pattern(type_code: str) -> re.Pattern[str] | None:
    """The compiled R4 regex of a primitive type (ASCII classes: see _primitive)."""
    regex = r4.primitive_regex(type_code)
    return re.compile(regex, re.ASCII) if regex else None


@cache
def _shape(type_name: str, def_path: str) -> Shape:
    """An element's children by name, its required children (name, min), its invariants."""
    children = _children(type_name, def_path)
    required = tuple((name, e.min) for name, e in children.items() if e.min > 0)
    constraints: tuple[Any, ...] = ()
    for element in r4.base_elements(type_name):
        if element.path == def_path:
            constraints = tuple(c for c in element.constraints if c.key not in SKIPPED_INVARIANTS)
            break
    return children, required, constraints


@cache
def _match(type_name: str, def_path: str, key: str) -> Match | None:
    """The child element a JSON member names: (definition, type, element name, FHIRPath step)."""
    children = _children(type_name, def_path)
    element = children.get(key)
    if element is not None and not element.path.endswith("[x]"):
        return (
            element,
            element.types[0].code if element.types else "BackboneElement",
            key,
            f".{key}",
        )
    for name, element in children.items():
        if name.endswith("[x]") and key.startswith(name[:-3]):
            suffix = key[len(name) - 3 :]
            for t in element.types:
                if _type_suffix(t.code) == suffix:
                    return element, t.code, name, f".{name[:-3]}.ofType({t.code})"
    return None


Member = Callable[[str, str, Node], bool]


def _select(
    type_name: str,
    member: Member,
    roots: list[Node],
    parts: list[str],
    start: int = 0,
) -> list[Node]:
    """The nodes that element id ``<type>.<parts>`` of a profile names, walking ``parts[start:]``
    from ``roots``; a slice keeps the items ``member`` puts in it."""
    nodes = roots
    for depth in range(start, len(parts)):
        part = parts[depth]
        name, _, slice_name = part.partition(":")
        under = "_" + name
        found: list[Node] = []
        step: str | None = None  # how the location names the element (see _choice_label)
        for node in nodes:
            if not isinstance(node.value, dict):
                continue
            if name.endswith("[x]"):
                prefix = name[:-3]
                size = len(prefix)
                for key, value in node.value.items():
                    bare = key[:1] == "_" and key[1:] not in node.value
                    if bare:  # a primitive with extensions and no value
                        key = key[1:]
                    if key.startswith(prefix) and key[size : size + 1].isupper():
                        code = slicing.type_code(key[size:])
                        where = f"{node.location}.{prefix}.ofType({code})"
                        found.extend(_as_nodes(value, where, code, bare))
            elif name in node.value:
                if step is None:
                    step = _choice_label(type_name, parts, depth, name)
                found.extend(_as_nodes(node.value[name], f"{node.location}.{step}"))
            elif under in node.value:  # a primitive with extensions and no value
                found.extend(_as_nodes(node.value[under], f"{node.location}.{name}", bare=True))
        if slice_name:
            sliced_id = ".".join([type_name, *parts[:depth], name])
            found = [n for n in found if member(sliced_id, slice_name, n)]
        nodes = found
    return nodes


def _slice_urls(sd: dict[str, Any]) -> dict[str, str]:
    """Element id -> extension url, for every extension slice of a profile."""
    found = {}
    for element in sd.get("differential", {}).get("element", []):
        types = element.get("type", [])
        extension = bool(types) and types[0].get("code") == "Extension"
        if element.get("sliceName") and extension and types[0].get("profile"):
            found[element["id"]] = types[0]["profile"][0]
    return found


def _as_nodes(
    value: Any, location: str, type_code: str | None = None, bare: bool = False
) -> list[Node]:
    if isinstance(value, list):
        return [Node(v, f"{location}[{i}]", type_code, bare) for i, v in enumerate(value)]
    return [Node(value, location, type_code, bare)]


@cache
def _maybe_choice(name: str) -> bool:
    """Whether an element name begins with the name of an R4 choice element and a capital
    letter (``valueQuantity``), so that it may name one type of that choice."""
    return any(name[i].isupper() and name[:i] in r4.choice_names() for i in range(1, len(name)))


def _choice_label(type_name: str, parts: list[str], depth: int, name: str) -> str:
    """``value.ofType(Quantity)`` where a profile names one type of a choice (``valueQuantity``),
    else the element's name."""
    if not _maybe_choice(name):
        return name  # no choice element's name followed by a type
    path = ".".join([type_name, *(p.partition(":")[0] for p in parts[: depth + 1])])
    return choice_step(path) or name


def _step_name(part: str) -> str:
    name, _, slice_name = part.partition(":")
    return name.replace("[x]", "")


def _describe(part: str) -> str:
    name, _, slice_name = part.partition(":")
    return f"slice '{slice_name}'" if slice_name else f"'{name.replace('[x]', '')}'"


def _guess_type(value: Any) -> str:
    if isinstance(value, str):
        return "code"
    if isinstance(value, dict) and "coding" in value or isinstance(value, dict) and "text" in value:
        return "CodeableConcept"
    if isinstance(value, dict) and "code" in value and "value" not in value:
        return "Coding"
    return "Quantity" if isinstance(value, dict) else "unknown"


def _coded_values(type_code: str, value: Any) -> list[tuple[str | None, str]] | None:
    if type_code in ("code", "string", "uri"):
        return [(None, value)] if isinstance(value, str) else None
    if not isinstance(value, dict):
        return None
    # codes and systems that are not strings the walk has reported: they are no candidates
    if type_code in ("Coding", "Quantity"):
        return [(value.get("system"), value["code"])] if _is_coding(value) else []
    if type_code == "CodeableConcept":
        codings = value.get("coding")
        return [
            (c.get("system"), c["code"])
            for c in (codings if isinstance(codings, list) else [])
            if _is_coding(c)
        ]
    return None


def _is_coding(value: Any) -> bool:
    """Whether ``value`` has a code and, if any, a system of the right JSON type."""
    return (
        isinstance(value, dict)
        and isinstance(value.get("code"), str)
        and isinstance(value.get("system", ""), str)
    )


def _codes_in(value: Any, codes: frozenset[tuple[str, str]], type_code: str | None = None) -> bool:
    if isinstance(value, str):
        return any(code == value for _, code in codes)
    if not isinstance(value, dict):
        return False
    kind = "CodeableConcept" if "coding" in value or type_code == "CodeableConcept" else "Coding"
    return any(pair in codes for pair in _coded_values(kind, value) or [])


def _matches_pattern(value: Any, pattern: Any) -> bool:
    if value == pattern:
        return True  # equal values match, whatever the pattern's shape
    if isinstance(pattern, dict):
        if not isinstance(value, dict):
            return False
        for key, part in pattern.items():
            if key not in value or not _matches_pattern(value[key], part):
                return False
        return True
    if isinstance(pattern, list) and isinstance(value, list):
        return all(any(_matches_pattern(item, part) for item in value) for part in pattern)
    return False


def _compare(value: Any) -> Any:
    return value.get("value") if isinstance(value, dict) else value


def _extensions(value: Any, location: str) -> Iterator[Node]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("extension", "modifierExtension") and isinstance(item, list):
                for i, ext in enumerate(item):
                    yield Node(ext, f"{location}.{key}[{i}]")
                    yield from _extensions(ext, f"{location}.{key}[{i}]")
            elif key not in ("contained",) and isinstance(item, dict | list):
                yield from _extensions(item, f"{location}.{key.lstrip('_')}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _extensions(item, f"{location}[{i}]")
