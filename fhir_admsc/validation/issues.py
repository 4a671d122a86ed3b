"""What the validator finds: one Issue per problem, with severity, location, rule and source line."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

Severity = Literal["fatal", "error", "warning", "information"]

SEVERITY_RANK = {"information": 0, "warning": 1, "error": 2, "fatal": 3}


@dataclass(frozen=True)
class Issue:
    """One finding.

    ``location`` is a FHIRPath into the checked input; inside a Bundle it names the entry and the
    resource, as ``Bundle.entry[3].resource/*Observation/abc*/.value.ofType(Quantity)``.
    ``code`` is the OperationOutcome issue type (structure, required, value, invariant,
    code-invalid, not-found, not-supported, processing). ``rule`` names what was broken: a
    profile URL with ``#`` and the constraint key or element id, or ``fhir:R4`` for base rules.
    """

    severity: Severity
    code: str
    message: str
    location: str
    rule: str = ""
    resource: str | None = None
    source: str | None = None
    line: int | None = None

    def at(self, source: str | None, line: int | None, prefix: str = "") -> Issue:
        """The same issue, placed in an input file (and under a location prefix)."""
        location = f"{prefix}{self.location}" if prefix else self.location
        return replace(self, source=source, line=line, location=location)

    def __str__(self) -> str:
        where = (
            f"{self.source}:{self.line}: "
            if self.source and self.line
            else (f"{self.source}: " if self.source else "")
        )
        rule = f" [{self.rule}]" if self.rule else ""
        return f"{where}{self.severity}: {self.location}: {self.message}{rule}"


def at_least(issues: list[Issue], level: str) -> list[Issue]:
    """The issues at or above severity ``level``."""
    floor = SEVERITY_RANK[level]
    return [i for i in issues if SEVERITY_RANK[i.severity] >= floor]
