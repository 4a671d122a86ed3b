"""FHIRPath for invariants: fhirpathpy with the R4 model, each expression compiled once, and the
functions fhirpathpy lacks (``hasValue``, ``resolve`` within the checked resources, ``memberOf``)."""

from __future__ import annotations

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
        root = evaluation.root if evaluation is not None and evaluation.root else resource
        answer = shortcut(node, root if shortcut in ON_ROOT else resource)
        if answer is not None:
            return answer
    return evaluate(expression, node, resource, root_type, evaluation)


def evaluate(
    expression: str,
    node: Any,
    resource: dict[str, Any],
    root_type: str | None = None,
    evaluation: Evaluation | None = None,
) -> bool:
    """``holds`` through the FHIRPath engine alone."""
    function = compiled(expression)
    target = node
    if root_type is not None and isinstance(node, dict):
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
