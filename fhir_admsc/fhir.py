"""The one place that imports fhir.resources: FHIR R4 models (through R4B) and FHIR constants.

fhir.resources 8.x ships no pure R4 models; its R4B models are wire-compatible with R4 for every
resource this project emits. Change ``_MODELS`` here and nowhere else to switch.
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import Any

_MODELS = "fhir.resources.R4B"

FHIR_JSON = "application/fhir+json"


@cache
def model_class(resource_type: str) -> type:
    """The fhir.resources model class of a resource type."""
    module = importlib.import_module(f"{_MODELS}.{resource_type.lower()}")
    return getattr(module, resource_type)


def parse(resource: dict[str, Any]) -> Any:
    """Parse a resource dict with the structural model of its type; raises pydantic's ValidationError."""
    return model_class(resource["resourceType"]).model_validate(resource)
