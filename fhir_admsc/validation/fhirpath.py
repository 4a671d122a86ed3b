"""FHIRPath for invariants: fhirpathpy with the R4 model, each expression compiled once, and the
functions fhirpathpy lacks (``hasValue``, ``resolve`` within the checked resources, ``memberOf``)."""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import fhirpathpy
from fhirpathpy.engine.invocations import strings
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models

from fhir_admsc.resources import reference_key
from fhir_admsc.validation.native import ON_ROOT, native

_MODEL = models["r4"]


class Resolver:
    """Resolves references to resources among those being validated together."""

    def __init__(self, resources: dict[str, dict[str, Any]] | None = None) -> None:
        self.resources = resources or {}

    def __call__(self, reference: str) -> dict[str, Any] | None:
        if reference in self.resources:
            return self.resources[reference]
        return self.resources.get(reference_key(reference))


@dataclass(frozen=True)
class Evaluation:
    """What FHIRPath functions need of the validation under way: the resolver of references and
    the ValueSet membership test of its validator's catalog."""

    resolver: Resolver = field(default_factory=Resolver)
    member_of: Callable[[Any, str], bool | None] = lambda value, url: None
    # %rootResource when it is not %resource: the container of a contained resource
    root: dict[str, Any] | None = None


# The evaluation the expression being run belongs to, set for the length of each run: the
# compiled expressions and their function table are shared, the state they read is not.
_CURRENT: ContextVar[Evaluation] = ContextVar("fhirpath_evaluation")


def _has_value(inputs: list[Any]) -> list[bool]:
    return [len(inputs) == 1 and not isinstance(inputs[0], dict | list) and inputs[0] is not None]


def _resolve(inputs: list[Any]) -> list[Any]:
    out = []
    for item in inputs:
        reference = item.get("reference") if isinstance(item, dict) else item
        if isinstance(reference, str):
            found = _CURRENT.get().resolver(reference)
            if found is not None:
                out.append(ResourceNode.create_node(found, found["resourceType"]))
    return out


def _member_of(inputs: list[Any], url: Any) -> list[bool]:
    url = url[0] if isinstance(url, list) and url else url
    results = [_CURRENT.get().member_of(item, url) for item in inputs]
    return [] if not results or None in results else [all(results)]


def _on_one_item(test: Callable[..., Any]) -> Callable[[list[Any], Any], Any]:
    """A string test (contains, startsWith, endsWith) as the HL7 validator evaluates it: false on
    anything but one item, where FHIRPath says empty. Base invariants rely on it: bdl-8,
    ``fullUrl.contains('/_history/').not()``, holds for an entry without a fullUrl, and ref-1,
    ``reference.startsWith('#').not() or ...``, for a Reference with only a display."""

    def run(focus: list[Any], text: Any) -> Any:
        text = text[0] if isinstance(text, list) and text else text
        return test(None, focus, text) if len(focus) == 1 else False

    return run


def _member_step(model: Any, key: str) -> Callable[[list[Any], Any], list[Any]]:
    """One member step (``birthDate``) of fhirpathpy's evaluator, as FHIRPath defines it for JSON:
    a primitive and its ``_birthDate`` (id, extensions) are one node, not two. fhirpathpy 2.2
    made them two, so ``birthDate.toString()`` was empty whenever the date had an extension (a
    false error on an AU Base example); the node keeps the extensions in ``_data``, where the
    next step looks."""

    def step(found: list[Any], item: Any) -> list[Any]:
        node = ResourceNode.create_node(item)
        path = f"{node.path}.{key}" if node.path else f"_.{key}"
        full = (f"{node.propName}.{key}" if node.propName else path).replace("_", "")
        data = node.data if isinstance(node.data, dict) else node._data
        value = extra = None
        if isinstance(model, dict):
            path = model["pathsDefinedElsewhere"].get(path, path)
            choices = model["choiceTypePaths"].get(path)
        else:
            choices = None
        if choices and isinstance(data, dict):
            for suffix in choices:
                value, extra = data.get(f"{key}{suffix}"), data.get(f"_{key}{suffix}")
                if value is not None or extra is not None:
                    path += suffix
                    break
        elif isinstance(data, dict):
            value, extra = data.get(key), data.get(f"_{key}")
            if key == "extension":
                path = "Extension"
        elif key == "length" and not isinstance(node.data, dict):
            value = len(node.data)
        if isinstance(model, dict) and "path2Type" in model:
            path = model["path2Type"].get(path, path)
        values = value if isinstance(value, list) else [] if value is None else [value]
        extras = extra if isinstance(extra, list) else [] if extra is None else [extra]
        listed = isinstance(value, list) or isinstance(extra, list)
        for i in range(max(len(values), len(extras))):
            item_value = values[i] if i < len(values) else None
            item_extra = extras[i] if i < len(extras) else None
            name = f"{full}[{i}]" if listed else full
            index = i if listed else None
            if item_value is None and item_extra is None:
                continue
            if item_value is None:  # extensions only: the node is what they say
                found.append(ResourceNode.create_node(item_extra, path, None, name, index))
            else:
                found.append(ResourceNode.create_node(item_value, path, item_extra, name, index))
        return found

    return step


def _extension(_: Any, inputs: list[Any], url: Any) -> list[Any]:
    """extension(url): every extension with that url, of elements and of primitives (whose
    extensions are in ``_data``); fhirpathpy gave the first one of elements only."""
    url = url[0] if isinstance(url, list) and url else url
    found = []
    for item in inputs:
        data = item.data if isinstance(item, ResourceNode) else item
        if not isinstance(data, dict) and isinstance(item, ResourceNode):
            data = item._data
        if isinstance(data, dict) and isinstance(data.get("extension"), list):
            found.extend(
                ResourceNode.create_node(e, "Extension")
                for e in data["extension"]
                if isinstance(e, dict) and e.get("url") == url
            )
    return found


_FUNCTIONS = {
    "contains": {"fn": _on_one_item(strings.contains_fn), "arity": {1: ["String"]}},
    "startsWith": {"fn": _on_one_item(strings.starts_with), "arity": {1: ["String"]}},
    "endsWith": {"fn": _on_one_item(strings.ends_with), "arity": {1: ["String"]}},
    "hasValue": {"fn": _has_value, "arity": {0: []}},
    "resolve": {"fn": _resolve, "arity": {0: []}},
    "memberOf": {"fn": _member_of, "arity": {1: ["String"]}},
}


def _quiet(*_: Any) -> None:
    """trace() output of base invariants (ref-1 uses it) is not for users."""


class FhirPathError(Exception):
    """An expression could not be compiled or evaluated."""


@cache
def compiled(expression: str) -> Callable[..., list[Any]]:
    """The compiled expression; raises FhirPathError when fhirpathpy cannot parse it."""
    try:
        return fhirpathpy.compile(
            expression, _MODEL, {"userInvocationTable": _FUNCTIONS, "traceFn": _quiet}
        )
    except Exception as e:  # noqa: BLE001 - fhirpathpy raises many kinds; report as one
        raise FhirPathError(f"cannot compile {expression!r}: {e}") from None


def holds(
    expression: str,
    node: Any,
    resource: dict[str, Any],
    root_type: str | None = None,
    evaluation: Evaluation | None = None,
) -> bool:
    """Whether the invariant ``expression`` is true on ``node`` (empty counts as false)."""
    shortcut = native(expression)
    if shortcut is not None:
        if evaluation is not None and evaluation.root is not None and shortcut in ON_ROOT:
            answer = shortcut(node, evaluation.root)
        else:
            answer = shortcut(node, resource)
        if answer is not None:
            return answer
    return evaluate(expression, node, resource, root_type, evaluation)


_CAST = re.compile(r"^\(\$this as ([A-Za-z]+)\)")


def evaluate(
    expression: str,
    node: Any,
    resource: dict[str, Any],
    root_type: str | None = None,
    evaluation: Evaluation | None = None,
) -> bool:
    """``holds`` through the FHIRPath engine alone."""
    cast = _CAST.match(expression)
    if cast and root_type is not None and cast.group(1) != root_type:
        # As the HL7 validator reads vs-1 (``($this as dateTime)...`` on effective[x]): an
        # invariant about one type of a choice element says nothing about its other types.
        return True
    function = compiled(expression)
    target = node
    if root_type is not None and isinstance(node, dict | str | int | float | bool):
        target = ResourceNode.create_node(node, root_type)
    evaluation = evaluation or Evaluation()
    token = _CURRENT.set(evaluation)
    variables = {"resource": _typed(resource), "rootResource": _typed(evaluation.root or resource)}
    try:
        result = function(target, variables)
    except Exception as e:  # noqa: BLE001
        raise FhirPathError(f"cannot evaluate {expression!r}: {e}") from None
    finally:
        _CURRENT.reset(token)
    return result == [True]


def _typed(resource: Any) -> Any:
    """A resource as a node that knows its type (``%resource.type()``, ``is()``)."""
    kind = resource.get("resourceType") if isinstance(resource, dict) else None
    return ResourceNode.create_node(resource, kind) if isinstance(kind, str) else resource


# fhirpathpy's member step and extension(), replaced by the versions above: the module, not the
# dict of the same name that fhirpathpy.engine exports; extension(url) must see the nodes
# themselves (a user function gets their bare values)
importlib.import_module(
    "fhirpathpy.engine.evaluators"
).create_reduce_member_invocation = _member_step
_REGISTRY = importlib.import_module("fhirpathpy.engine.invocations").invocation_registry
_REGISTRY["extension"] = {**_REGISTRY["extension"], "fn": _extension}
