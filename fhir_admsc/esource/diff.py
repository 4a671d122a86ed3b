"""Source data verification: the study tables the site typed against a draft pulled from the
hospital, cell by cell. Rows are matched by what they are about (participant, visit, measure, ...),
never by the ids each side gave them; a cell is the same, differs, or is only in one of them."""

from __future__ import annotations

import csv
import json
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import ConfigurationError, file_access
from ..study import TABLES

# The columns naming what a row is about; the procedures of a kind are matched in date order.
KEYS = {
    "participants.csv": ["participant_id"],
    "visits.csv": ["participant_id", "visit"],
    "procedures.csv": ["participant_id", "type", "#"],
    "outcomes.csv": ["participant_id", "visit", "measure"],
    "medications.csv": ["participant_id", "visit", "medication"],
    "adverse_events.csv": ["participant_id", "onset_on", "term"],
    "imaging_reports.csv": ["participant_id", "visit"],
    "imaging_findings.csv": ["participant_id", "visit", "disc_level", "finding"],
}
# Ids each side gives its own rows: not compared.
OWN_IDS = {
    "procedure_id",
    "report_id",
    "event_id",
    "harvest_procedure_id",
    "suspected_procedure_id",
}
SAME, DIFFERS, ONLY_STUDY, ONLY_EHR = "same", "differs", "only in the study", "only in the EHR"


@dataclass(frozen=True)
class Cell:
    """One compared cell: its table, the row it is in (by key), its column and both values."""

    file: str
    row: str
    column: str
    study: str
    ehr: str
    status: str


def _rows(folder: Path, file: str) -> list[dict[str, str]]:
    path = folder / file
    if not path.exists():
        return []
    with file_access(path, "read"), path.open(encoding="utf-8-sig", newline="") as text:
        return [{k: (v or "").strip() for k, v in row.items() if k} for row in csv.DictReader(text)]


def _keyed(folder: Path) -> dict[str, dict[tuple[str, ...], dict[str, str]]]:
    """Every table of ``folder`` by row key (findings take their report's participant and visit)."""
    if not folder.is_dir():
        raise ConfigurationError(f"{folder}: not a folder")
    tables = {table.file: _rows(folder, table.file) for table in TABLES}
    reports = {r.get("report_id"): r for r in tables["imaging_reports.csv"]}
    for finding in tables["imaging_findings.csv"]:
        report = reports.get(finding.get("report_id"), {})
        finding["participant_id"] = report.get("participant_id", "")
        finding["visit"] = report.get("visit", "")
    order: Counter = Counter()
    for p in sorted(tables["procedures.csv"], key=lambda p: p.get("performed_on", "")):
        order[(p.get("participant_id"), p.get("type"))] += 1
        p["#"] = str(order[(p.get("participant_id"), p.get("type"))])
    return {
        file: {tuple(row.get(k, "") for k in KEYS[file]): row for row in rows}
        for file, rows in tables.items()
    }


def _same(a: str, b: str) -> bool:
    try:
        return float(a) == float(b)
    except ValueError:
        return a == b


def compare(study_dir: Path, draft_dir: Path) -> list[Cell]:
    """Every cell that holds a value on either side, in table and row order."""
    study, draft = _keyed(study_dir), _keyed(draft_dir)
    cells = []
    for table in TABLES:
        file = table.file
        columns = [c for c in table.columns if c not in KEYS[file] and c not in OWN_IDS]
        for key in sorted(set(study[file]) | set(draft[file])):
            ours, theirs = study[file].get(key, {}), draft[file].get(key, {})
            row = " ".join(k for k in key if k)
            for column in columns:
                a, b = ours.get(column, ""), theirs.get(column, "")
                if not a and not b:
                    continue
                status = (
                    ONLY_EHR if not a else ONLY_STUDY if not b else SAME if _same(a, b) else DIFFERS
                )
                cells.append(Cell(file, row, column, a, b, status))
    return cells


def summary(cells: list[Cell]) -> dict[str, dict[str, int]]:
    counts: dict[str, Counter] = defaultdict(Counter)
    for cell in cells:
        counts[cell.file][cell.status] += 1
    return {file: dict(c) for file, c in counts.items()}


def render_json(cells: list[Cell]) -> str:
    return (
        json.dumps({"summary": summary(cells), "cells": [asdict(c) for c in cells]}, indent=2)
        + "\n"
    )


def render_text(cells: list[Cell]) -> str:
    """The counts by table, every cell that differs or is only in the EHR, and the columns of
    cells only in the study (what the hospital's records do not cover), counted."""
    lines = []
    for file, counts in summary(cells).items():
        shown = ", ".join(f"{counts.get(s, 0)} {s}" for s in (SAME, DIFFERS, ONLY_EHR, ONLY_STUDY))
        lines.append(f"{file}: {shown}")
    for cell in cells:
        if cell.status == DIFFERS:
            lines.append(
                f"differs  {cell.file} {cell.row} {cell.column}: study {cell.study!r}, EHR {cell.ehr!r}"
            )
        elif cell.status == ONLY_EHR:
            lines.append(f"EHR only {cell.file} {cell.row} {cell.column}: {cell.ehr!r}")
    uncovered = Counter((c.file, c.column) for c in cells if c.status == ONLY_STUDY)
    for (file, column), n in sorted(uncovered.items()):
        lines.append(f"not in the EHR: {file} {column} ({n} cells)")
    return "\n".join(lines) + "\n"


def differences(cells: list[Cell]) -> bool:
    """Whether the EHR says anything the study does not: a different value, or one it lacks."""
    return any(c.status in (DIFFERS, ONLY_EHR) for c in cells)
