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


# Rows of one file, column and kind of problem listed before "and N more rows".
SHOWN_ROWS = 3


class InvalidDataError(FhirAdmscError):
    """The input data breaks the study data contract; ``problems`` lists every defect.

    Its text counts every problem and lists them by file, column and kind of problem, the first
    ``SHOWN_ROWS`` rows of each kind and how many more there are: one wrong column of a large
    table is a few lines, not one a row. ``render(None)`` lists every one.
    """

    exit_code = ExitCode.INVALID_DATA

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__(self.render())

    def render(self, shown: int | None = SHOWN_ROWS) -> str:
        """The count line, then the problems, at most ``shown`` rows of each kind (None: all)."""
        count = len(self.problems)
        lines = [f"{count} problem{'s' if count != 1 else ''} in the study data"]
        for kind in self._kinds():
            lines += [f"  {p}" for p in kind[:shown]]
            more = len(kind) - len(kind[:shown])
            if more:
                column = f": column '{kind[0].column}'" if kind[0].column else ""
                rows = f"row{'s' if more != 1 else ''}"
                lines.append(f"  {kind[0].file}{column}: and {more} more {rows} with this problem")
        return "\n".join(lines)

    def hidden(self, shown: int = SHOWN_ROWS) -> int:
        """How many problems ``render(shown)`` leaves out."""
        return sum(max(len(kind) - shown, 0) for kind in self._kinds())

    def _kinds(self) -> list[list[Problem]]:
        """The problems grouped by file, column and message, in the order each group first
        appears; a problem of no row (of a whole file) is a group of its own."""
        kinds: dict[object, list[Problem]] = {}
        for index, p in enumerate(self.problems):
            key = (p.file, p.column, p.message) if p.line is not None else index
            kinds.setdefault(key, []).append(p)
        return list(kinds.values())


class ConfigurationError(FhirAdmscError):
    """A usage or configuration mistake the user can fix by changing the command."""

    exit_code = ExitCode.USAGE


class ServerError(FhirAdmscError):
    """A FHIR server could not be reached, or refused the request."""

    exit_code = ExitCode.SERVER


class InternalError(FhirAdmscError):
    """Something that should never happen did: please report it."""

    exit_code = ExitCode.INTERNAL
