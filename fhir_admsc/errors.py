"""The exception tree and the one registry of exit codes.

    FhirAdmscError                 base; carries the exit code the CLI returns
    ├── InvalidDataError           exit 1: the input data is wrong (lists every Problem found)
    ├── ConfigurationError         exit 2: a usage or configuration mistake
    ├── ServerError                exit 4: a server could not be reached or refused us
    └── InternalError              exit 5: a bug in fhir-admsc

Exit code 3 (a dry run found changes) is a result, not an error: see ``ExitCode``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes of every fhir-admsc command; never a count."""

    OK = 0
    INVALID_DATA = 1
    USAGE = 2
    CHANGES_PENDING = 3
    SERVER = 4
    INTERNAL = 5


@dataclass(frozen=True)
class Problem:
    """One defect in the input: where it is, what was found and what was expected."""

    file: str
    message: str
    line: int | None = None
    column: str | None = None
    value: str | None = None

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        detail = self.message if self.value is None else f"{self.value!r} {self.message}"
        if self.column:
            detail = f"column '{self.column}': {detail}"
        return f"{where}: {detail}"


class FhirAdmscError(Exception):
    """Base of every error fhir-admsc raises on purpose."""

    exit_code: ExitCode = ExitCode.INTERNAL


class InvalidDataError(FhirAdmscError):
    """The input data breaks the study data contract; ``problems`` lists every defect."""

    exit_code = ExitCode.INVALID_DATA

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        count = len(problems)
        summary = f"{count} problem{'s' if count != 1 else ''} in the study data"
        super().__init__("\n".join([summary, *(f"  {p}" for p in problems)]))


class ConfigurationError(FhirAdmscError):
    """A usage or configuration mistake the user can fix by changing the command."""

    exit_code = ExitCode.USAGE


class ServerError(FhirAdmscError):
    """A FHIR server could not be reached, or refused the request."""

    exit_code = ExitCode.SERVER


class InternalError(FhirAdmscError):
    """Something that should never happen did: please report it."""

    exit_code = ExitCode.INTERNAL
