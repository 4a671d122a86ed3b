"""fhir-admsc: move the data of an ADMSC cell-therapy study into and out of FHIR R4 systems.

The public API is listed in ``__all__``; each name is imported from its module when first used,
so that importing one part of the package (``fhir_admsc.client``) does not load the others.
"""

from __future__ import annotations

import importlib
from typing import Any

from fhir_admsc.__version__ import __version__

_HOMES = {
    "ConfigurationError": "fhir_admsc.errors",
    "ExitCode": "fhir_admsc.errors",
    "FhirAdmscError": "fhir_admsc.errors",
    "InternalError": "fhir_admsc.errors",
    "InvalidDataError": "fhir_admsc.errors",
    "Problem": "fhir_admsc.errors",
    "ServerError": "fhir_admsc.errors",
    "Study": "fhir_admsc.study",
    "bundle": "fhir_admsc.bundle",
    "ndjson_files": "fhir_admsc.bundle",
    "read_study": "fhir_admsc.tables",
    "study_from_fhir": "fhir_admsc.mappings",
    "study_to_fhir": "fhir_admsc.mappings",
    "write_study": "fhir_admsc.tables",
}

__all__ = ["__version__", *sorted(_HOMES)]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'fhir_admsc' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})
