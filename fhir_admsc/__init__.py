"""fhir-admsc: move the data of an ADMSC cell-therapy study into and out of FHIR R4 systems."""

from __future__ import annotations

from fhir_admsc.bundle import bundle, ndjson_files
from fhir_admsc.errors import (
    ConfigurationError,
    ExitCode,
    FhirAdmscError,
    InternalError,
    InvalidDataError,
    Problem,
    ServerError,
)
from fhir_admsc.mappings import study_from_fhir, study_to_fhir
from fhir_admsc.study import Study
from fhir_admsc.tables import read_study, write_study

__version__ = "0.1.0"

__all__ = [
    "ConfigurationError",
    "ExitCode",
    "FhirAdmscError",
    "InternalError",
    "InvalidDataError",
    "Problem",
    "ServerError",
    "Study",
    "__version__",
    "bundle",
    "ndjson_files",
    "read_study",
    "study_from_fhir",
    "study_to_fhir",
    "write_study",
]
