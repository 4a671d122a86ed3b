"""Read and write the study folder (study.json + CSV tables), reporting defects by file, line and column."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from fhir_admsc.errors import InvalidDataError, Problem
from fhir_admsc.output import write_files
from fhir_admsc.study import STUDY_FILE, TABLES, Study, StudyInfo, Table, cell_text, check_study


def read_study(folder: str | Path) -> Study:
    """Read and check a study folder; raise InvalidDataError listing every defect found."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidDataError([Problem(str(folder), "is not a study folder (no such directory)")])
    problems: list[Problem] = []
    info = _read_info(folder / STUDY_FILE, problems)
    rows: dict[str, list[BaseModel]] = {}
    lines: dict[str, list[int]] = {}
    for table in TABLES:
        rows[table.attribute], lines[table.file] = _read_table(folder, table, problems)
    if problems or info is None:
        raise InvalidDataError(problems)
    study = Study(info=info, **rows)
    for p in check_study(study):
        line = None if p.index is None else lines.get(p.file, [])[p.index]
        problems.append(Problem(str(folder / p.file), p.message, line, p.column, p.value))
    if problems:
        raise InvalidDataError(problems)
    return study


def _problems_of(
    error: ValidationError, file: str, line: int | None, prefix: str = ""
) -> list[Problem]:
    """Translate a pydantic error into Problems with the column and value named."""
    problems = []
    for detail in error.errors():
        column = prefix + ".".join(str(part) for part in detail["loc"])
        value = detail.get("input")
        if detail["type"] == "missing":
            message, value = "is required", None
        elif value is None:
            message = "is required (the cell is empty)"
        elif detail["type"] == "literal_error":
            message = f"is not allowed: expected {detail['ctx']['expected']}"
        elif detail["type"] == "extra_forbidden":
            message = "is not a known key"
        elif detail["type"] == "value_error":
            message = str(detail["ctx"]["error"])
        else:
            message = detail["msg"]
        shown = value if value is None or isinstance(value, str) else json.dumps(value)
        problems.append(Problem(file, message, line, column or None, shown))
    return problems


def _read_info(path: Path, problems: list[Problem]) -> StudyInfo | None:
    if not path.is_file():
        problems.append(Problem(str(path), "is missing: every study folder needs a study.json"))
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError as e:
        problems.append(Problem(str(path), f"is not UTF-8 text ({e.reason})"))
        return None
    except json.JSONDecodeError as e:
        problems.append(
            Problem(str(path), f"is not valid JSON: {e.msg} (column {e.colno})", e.lineno)
        )
        return None
    if not isinstance(data, dict):
        problems.append(Problem(str(path), "must hold one JSON object"))
        return None
    try:
        return StudyInfo.model_validate(data)
    except ValidationError as e:
        problems.extend(_problems_of(e, str(path), None))
        return None


def _read_table(folder: Path, table: Table, problems: list[Problem]) -> tuple[list[Any], list[int]]:
    """The rows of one table and the line each starts on; defects go to ``problems``."""
    path = folder / table.file
    if not path.exists():
        return [], []
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        problems.append(Problem(name, f"is not UTF-8 text (byte {e.start})"))
        return [], []
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
    except csv.Error as e:
        problems.append(Problem(name, f"is not valid CSV: {e}", 1))
        return [], []
    if header is None:
        return [], []
    header_problems = _check_header(name, table, header)
    if header_problems:
        problems.extend(header_problems)
        return [], []
    rows, lines = [], []
    line = reader.line_num + 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            problems.append(Problem(name, f"is not valid CSV: {e}", line))
            break
        start, line = line, reader.line_num + 1
        if not cells:
            continue
        if len(cells) != len(header):
            problems.append(
                Problem(name, f"has {len(cells)} cells, the header has {len(header)}", start)
            )
            continue
        record = {
            column: (cell if cell != "" else None)
            for column, cell in zip(header, cells, strict=True)
        }
        try:
            rows.append(table.model.model_validate(record))
            lines.append(start)
        except ValidationError as e:
            problems.extend(_problems_of(e, name, start))
    return rows, lines


def _check_header(name: str, table: Table, header: list[str]) -> list[Problem]:
    known = table.columns
    problems = [
        Problem(name, f"is not a column of {table.file} (expected {', '.join(known)})", 1, column)
        for column in header
        if column not in known
    ]
    problems += [
        Problem(name, "appears twice in the header", 1, column)
        for column in sorted({c for c in header if header.count(c) > 1})
    ]
    required = [c for c, f in table.model.model_fields.items() if f.is_required()]
    problems += [
        Problem(name, "is missing from the header (a required column)", 1, column)
        for column in required
        if column not in header
    ]
    return problems


def study_info_json(info: StudyInfo) -> str:
    """study.json text: keys in contract order, unset keys left out."""
    return (
        json.dumps(info.model_dump(mode="json", exclude_none=True), indent=2, ensure_ascii=False)
        + "\n"
    )


def table_csv(table: Table, rows: Iterable[BaseModel]) -> str:
    """One table as CSV text, columns in contract order."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(table.columns)
    for row in rows:
        writer.writerow([cell_text(getattr(row, column)) for column in table.columns])
    return out.getvalue()


def write_study(study: Study, folder: str | Path) -> None:
    """Write ``study`` as a study folder, atomically; tables without rows are left out."""
    contents = {STUDY_FILE: study_info_json(study.info).encode()}
    for table in TABLES:
        rows = getattr(study, table.attribute)
        if rows:
            contents[table.file] = table_csv(table, rows).encode()
    write_files(folder, contents, stale=[table.file for table in TABLES])
