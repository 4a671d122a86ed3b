"""LINK.csv: which hospital patient each study participant is. It holds the only hospital
identifiers the tool is given; messages name the participant and the line, never the identifier."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidDataError, Problem, file_access

COLUMNS = ["participant_id", "patient_identifier"]


@dataclass(frozen=True)
class Link:
    """A study participant and the hospital's identifier of the patient (``system|value``)."""

    participant_id: str
    system: str
    value: str

    @property
    def token(self) -> str:
        """The identifier as a FHIR token search parameter value."""
        return f"{self.system}|{self.value}"

    def __repr__(self) -> str:  # never show the hospital identifier
        return f"Link({self.participant_id!r})"


def read_links(path: Path, participants: set[str]) -> list[Link]:
    """The links of ``path`` (columns participant_id, patient_identifier as ``system|value``), each
    naming a participant of the study once; every defect is listed, by line and column."""
    with file_access(path, "read"), path.open(encoding="utf-8-sig", newline="") as text:
        rows = list(csv.reader(text))
    name = str(path)
    if not rows or [cell.strip() for cell in rows[0]] != COLUMNS:
        raise InvalidDataError(
            [Problem(name, f"the header must be {','.join(COLUMNS)}", line=1)], subject=name
        )
    problems: list[Problem] = []
    links: list[Link] = []
    seen: set[str] = set()
    for line, row in enumerate(rows[1:], start=2):
        if not any(cell.strip() for cell in row):
            continue
        pid, identifier = ([cell.strip() for cell in row] + ["", ""])[:2]
        system, bar, value = identifier.partition("|")
        if pid not in participants:
            problems.append(
                Problem(name, "is not a participant of the study", line, COLUMNS[0], pid)
            )
        elif pid in seen:
            problems.append(Problem(name, "is linked twice", line, COLUMNS[0], pid))
        if not bar or not system or not value:
            problems.append(
                Problem(
                    name, "must be the hospital's system|value (not shown here)", line, COLUMNS[1]
                )
            )
        seen.add(pid)
        links.append(Link(pid, system, value))
    if problems:
        raise InvalidDataError(problems, subject=name)
    return links
