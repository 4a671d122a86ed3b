"""Read and write the study folder (study.json + CSV tables), reporting defects by file, line and column;
read it whole, or participant by participant in memory that does not grow with the study."""

from __future__ import annotations

import codecs
import contextlib
import csv
import difflib
import io
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from fhir_admsc import limits
from fhir_admsc.errors import InvalidDataError, Problem, file_access
from fhir_admsc.output import write_files
from fhir_admsc.study import (
    RULES,
    STUDY_FILE,
    TABLES,
    Procedure,
    RowProblem,
    Study,
    StudyInfo,
    Table,
    cell_text,
    check_study,
    columns_read_across,
)
from fhir_admsc.terminology import INJECTION_TYPE


def read_study(folder: str | Path, notify: Callable[[str], None] | None = None) -> Study:
    """Read and check a study folder; raise InvalidDataError listing every defect found, and
    tell ``notify`` of the files in it that are not read."""
    folder = _study_folder(folder)
    with file_access(folder, "read"):
        problems = _stray_files(folder, notify)
        info = _read_info(folder / STUDY_FILE, problems)
        rows: dict[str, list[BaseModel]] = {}
        lines: dict[str, list[int]] = {}
        for table in TABLES:
            rows[table.attribute], lines[table.file] = _read_table(folder, table, problems)
    if problems or info is None:
        raise InvalidDataError(problems)
    study = Study(info=info, **rows)
    problems = _located(folder, check_study(study), lines)
    if problems:
        raise InvalidDataError(problems)
    return study


def _study_folder(folder: str | Path) -> Path:
    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidDataError([Problem(str(folder), "is not a study folder (no such directory)")])
    return folder


_Entry = TypeVar("_Entry", bound=tuple)
_FILE_ORDER = {name: rank for rank, name in enumerate([STUDY_FILE, *(t.file for t in TABLES)])}
_TABLE = {table.attribute: table for table in TABLES}
_PARTICIPANTS = _TABLE["participants"].file

# The remedy for a table Excel saved in another form, naming the choice of its "Save as type" list.
_SAVE_AS_CSV = 'save it from Excel as "CSV UTF-8 (Comma delimited)"'
# Names of files that look like tables; which of them the contract does not name is an error (a
# table meant to be read must not be silently left out), unless they match _NOT_TABLES.
_TABLE_SUFFIXES = {".csv", ".tsv", ".txt", ".xlsx", ".xls", ".xlsm", ".ods", ".json"}
# Hidden files (.DS_Store), Excel's lock files of open workbooks (~$outcomes.xlsx), Windows' folder
# files and notes: never tables.
_NOT_TABLES = re.compile(r"\.|~\$|thumbs\.db$|desktop\.ini$|readme", re.IGNORECASE)
# The mark of a copy a file manager or browser made: "outcomes (1).csv"
_COPY_MARK = re.compile(r"\s*\(\d+\)$")


def _stray_files(folder: Path, notify: Callable[[str], None] | None) -> list[Problem]:
    """A problem for each file of ``folder`` that looks like a table the contract does not name,
    and a warning to ``notify`` for each other file or folder it does not name."""
    problems = []
    for path in sorted(folder.iterdir()):
        if path.name in _FILE_ORDER:
            continue
        if (
            path.is_file()
            and path.suffix.lower() in _TABLE_SUFFIXES
            and not _NOT_TABLES.match(path.name)
            and not _other_json(path)
        ):
            problems.append(Problem(str(path), _meant(path)))
        elif notify is not None:
            notify(f"{path}: is not part of the study data contract: ignored")
    return problems


def _other_json(path: Path) -> bool:
    """A JSON file not named like study.json (an export written beside the tables, say): not a
    table that would be left out, so only a warning."""
    if path.suffix.lower() != ".json":
        return False
    stem = _COPY_MARK.sub("", path.stem).lower()
    return not difflib.get_close_matches(stem, [Path(STUDY_FILE).stem], n=1)


def _meant(path: Path) -> str:
    """What is wrong with a file that looks like a table but is not of the contract: the
    contract's file it most likely was meant to be, and how to make it that."""
    stem = _COPY_MARK.sub("", path.stem).lower().replace(" ", "_").replace("-", "_")
    stems = {Path(name).stem: name for name in _FILE_ORDER}
    close = difflib.get_close_matches(stem, stems, n=1)
    wrong = "is not a file of the study data contract"
    if not close:
        return f"{wrong} ({', '.join(_FILE_ORDER)}): rename it, or move it out of the folder"
    target = Path(stems[close[0]])
    if (path.parent / target).is_file():
        return f"{wrong}: a copy of {target}? (move it out of the folder)"
    if path.suffix.lower() == target.suffix:
        how = "rename it"
    elif target.suffix == ".csv":
        how = f"{_SAVE_AS_CSV} under that name"
    else:
        how = "write it as a JSON file of that name"
    return f"{wrong}: did you mean {target}? ({how})"


def _present(path: Path, problems: list[Problem], required: bool) -> bool:
    """Whether a file of the contract is in the folder; a missing required one is a problem."""
    if path.is_file():
        return True
    if required:
        problems.append(Problem(str(path), f"is missing: every study folder needs a {path.name}"))
    return False


def _located(
    folder: Path, found: Iterable[RowProblem], lines: Mapping[str, Sequence[int | None]]
) -> list[Problem]:
    """Cross-table defects as Problems at their line, listed by file and line; those of rows
    without a line (rows of other participants shown for context) are left out."""
    problems = []
    for p in found:
        line = None if p.index is None else lines[p.file][p.index]
        if p.index is None or line is not None:
            problems.append(Problem(str(folder / p.file), p.message, line, p.column, p.value))
    return sorted(problems, key=_position)


def _position(problem: Problem) -> tuple[int, int]:
    return _FILE_ORDER[Path(problem.file).name], problem.line or 0


class TableNotGrouped(Exception):
    """A table's rows are not grouped by participant in the order of participants.csv, so the
    study can only be read whole, with ``read_study``."""


def read_participant_groups(
    folder: str | Path, notify: Callable[[str], None] | None = None
) -> ParticipantGroups:
    """A study folder to read participant by participant; study.json and participants.csv are
    read at once (a defective study.json raises InvalidDataError with every defect of the
    folder's rows, as ``read_study`` does), and ``notify`` told of the files not read."""
    folder = _study_folder(folder)
    with file_access(folder, "read"):
        return ParticipantGroups(folder, notify)


class ParticipantGroups:
    """A study folder read participant by participant, in memory that does not grow with the
    number of participants beyond participants.csv and a few small indexes of keys.

    Iterating reads the other tables in one forward pass each, in lockstep, and yields for each
    participant, in the order of participants.csv, a Study of study.json, that participant and
    their rows of every table (imaging findings go with their reports), checked by
    ``check_study`` as if it were the whole study. Groups are yielded while no defect has been
    found; the reading then goes on to the end and raises InvalidDataError listing every defect,
    as ``read_study`` does. Raises TableNotGrouped when a table is not grouped that way.
    """

    def __init__(self, folder: Path, notify: Callable[[str], None] | None = None) -> None:
        self.folder = folder
        self._others: _OtherRows | None = None
        # by file name; "" for the folder's own (files it should not hold)
        self._problems: dict[str, list[Problem]] = {"": _stray_files(folder, notify)}
        self._problems.update({name: [] for name in _FILE_ORDER})
        info = _read_info(folder / STUDY_FILE, self._problems[STUDY_FILE])
        self.participants, lines = _read_table(folder, TABLES[0], self._problems[_PARTICIPANTS])
        if info is None:
            for table in TABLES[1:]:
                for _ in _stream_rows(folder, table, self._problems[table.file]):
                    pass
            raise InvalidDataError([p for found in self._problems.values() for p in found])
        self.info = info
        self._positions: dict[str, int] = {}
        for position, participant in enumerate(self.participants):
            self._positions.setdefault(participant.participant_id, position)
        # Of two rows with one participant_id, the rules see the last, as in a whole study.
        self._latest = {p.participant_id: p for p in self.participants}
        whole = Study(info=info, participants=self.participants)
        self._cross = _located(folder, check_study(whole), {_PARTICIPANTS: lines})

    def __iter__(self) -> Iterator[Study]:
        return self.share(range(self.steps))

    @property
    def steps(self) -> int:
        """The steps of the reading: one per participant, then one for rows of no participant."""
        return len(self.participants) + 1

    def share(self, steps: range) -> Iterator[Study]:
        """The groups of the steps in ``steps`` only, as iterating yields them (and raising what
        it raises for those steps' rows): the rows before are read but not parsed, those after
        not read. Shares that cover every step together check every row once."""
        with file_access(self.folder, "read"):
            yield from self._groups(steps)

    def prepare(self) -> _OtherRows:
        """What every share needs of the whole folder (the ids other rows refer to), read on the
        first call."""
        if self._others is None:
            self._others = _OtherRows(self.folder)
        return self._others

    def _groups(self, steps: range) -> Iterator[Study]:
        others = self.prepare()
        tables = TABLES[1:]
        cursors = [  # rows before the share are only read as cells (to tell whose they are)
            _Cursor(_stream_rows(self.folder, t, self._problems[t.file], steps.start == 0))
            for t in tables
        ]
        for position in range(steps.stop):
            kept = position >= steps.start
            rows: dict[str, list[Any]] = {}
            lines: dict[str, list[int | None]] = {}
            for table, cursor in zip(tables, cursors, strict=True):
                rows[table.attribute], lines[table.file] = self._take(
                    cursor, table, position, self._owner(table, position, rows, others), kept
                )
            if not kept:
                continue
            participants = [
                self._latest[p.participant_id] for p in self.participants[position : position + 1]
            ]
            if any(self._problems.values()):
                continue  # defects of single rows hide those across tables, as in read_study
            group = Study(info=self.info, participants=participants, **rows)
            if participants or any(rows.values()):
                self._cross += self._check(group, lines, others)
            if participants and not self._cross:
                yield group
        problems = [p for found in self._problems.values() for p in found]
        if problems or self._cross:
            raise InvalidDataError(problems or sorted(self._cross, key=_position))

    def _owner(
        self, table: Table, position: int, rows: dict[str, list[Any]], others: _OtherRows
    ) -> Callable[[Any], int | None]:
        """How to tell the position of the participant a row of ``table`` belongs to (None: no
        known participant), while the rows of the participant at ``position`` are taken."""
        if table.attribute != "imaging_findings":
            return lambda row: self._positions.get(row.participant_id)
        # Findings go with their report: one of this participant's, else that of the report's id
        # (which of two reports with the same id is left to check_study to report).
        reports = {r.report_id for r in rows["imaging_reports"]}
        return lambda row: (
            position
            if row.report_id in reports
            else self._positions.get(others.participant_of("imaging_reports", row.report_id))
        )

    def _take(
        self,
        cursor: _Cursor,
        table: Table,
        position: int,
        owner: Callable[[Any], int | None],
        kept: bool = True,
    ) -> tuple[list[Any], list[int | None]]:
        """The rows under ``cursor`` that go with the participant at ``position``: theirs, and
        any of no known participant (check_study names those); rows read unparsed are parsed
        here when ``kept``."""
        rows: list[Any] = []
        lines: list[int | None] = []
        while cursor.row is not None:
            found = owner(cursor.row)
            if found is not None and found != position:
                if found < position:
                    raise TableNotGrouped(
                        f"{self.folder / table.file}:{cursor.line}: the rows are not grouped "
                        "by participant in the order of participants.csv"
                    )
                break
            row = cursor.row
            if kept and isinstance(row, _Unparsed):
                row = row.parse(self._problems[table.file])
            if row is not None:
                rows.append(row)
                lines.append(cursor.line)
            cursor.advance()
        return rows, lines

    def _check(
        self, group: Study, lines: dict[str, list[int | None]], others: _OtherRows
    ) -> list[Problem]:
        """The cross-table defects of ``group``'s rows, judged by the rules across participants
        with the rows of other participants they relate to next to them."""
        before, after = others.around(group, lines[_TABLE["procedures"].file])
        around, around_lines = group, dict(lines)
        if before or after:
            update = {}
            for attribute in before.keys() | after.keys():
                file = _TABLE[attribute].file
                ahead, behind = before.get(attribute, []), after.get(attribute, [])
                update[attribute] = [*ahead, *getattr(group, attribute), *behind]
                around_lines[file] = [*(None for _ in ahead), *lines[file], *(None for _ in behind)]
            around = group.model_copy(update=update)
        found: list[Problem] = []
        for rule in RULES:
            study, at = (around, around_lines) if rule.across_participants else (group, lines)
            own = (p for p in rule.check(study) if p.file not in (STUDY_FILE, _PARTICIPANTS))
            found += _located(self.folder, own, at)
        return sorted(found, key=_position)


def _shared(index: dict[str, _Entry], keys: Iterable[str]) -> Iterator[tuple[str, _Entry]]:
    """The index entries (row count first) of the keys that rows outside ``keys`` also have."""
    for key, count in Counter(keys).items():
        entry = index.get(key)
        if entry is not None and entry[0] > count:
            yield key, entry


class _Cursor:
    """One table read forward: the row under the cursor and the line it starts on."""

    def __init__(self, rows: Iterator[tuple[int, Any]]) -> None:
        self._rows = rows
        self.advance()

    def advance(self) -> None:
        self.line, self.row = next(self._rows, (0, None))


class _OtherRows:
    """What the rules across participants must see of other participants' rows to judge one
    participant's: by id, every procedure, adverse event and imaging report (the last row with
    the id, and how many rows have it), and the first injection of every product lot.

    Read in a first pass over those three tables, keeping of each row its participant and the
    columns that ``RULES`` across participants read, as small tuples; a row is rebuilt from them
    only to be shown next to a participant's rows that refer to it or share a key with it.
    """

    def __init__(self, folder: Path) -> None:
        self.columns = {
            attribute: list(dict.fromkeys([key, "participant_id", *columns_read_across(attribute)]))
            for attribute, key in _KEYS.items()
        }
        self.rows: dict[str, dict[str, tuple[int, tuple[Any, ...]]]] = {}
        self.lots: dict[str, tuple[int, tuple[Any, ...]]] = {}  # line and row, by lot
        ignored: list[Problem] = []  # the second pass over the tables reports them
        for attribute, key in _KEYS.items():
            index = self.rows[attribute] = {}
            for line, row in _stream_rows(folder, _TABLE[attribute], ignored):
                values = tuple(getattr(row, column) for column in self.columns[attribute])
                index[getattr(row, key)] = (index.get(getattr(row, key), (0,))[0] + 1, values)
                if attribute == "procedures" and _first_of_lot(row):
                    self.lots.setdefault(row.product_lot, (line, values))

    def participant_of(self, attribute: str, key: str) -> str:
        """The participant of the last row of table ``attribute`` with id ``key`` ("" if none)."""
        return self.rows[attribute].get(key, (0, ("", "")))[1][1]

    def around(
        self, group: Study, procedure_lines: Sequence[int | None]
    ) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
        """Rows of others to show before and after ``group``'s own rows, by Study attribute.

        Before: the first injection of each lot the group uses, when not one of the group's
        rows (at ``procedure_lines``), in file order (it stays first of its lot). After: a row
        with each procedure, event or report id that the group shares with rows outside it, and
        the procedures its rows refer to.
        """
        own = {p.procedure_id for p in group.procedures}
        lots: dict[int, Any] = {}
        for p in group.procedures:
            if _first_of_lot(p) and p.product_lot in self.lots:
                line, first = self.lots[p.product_lot]
                if line not in procedure_lines:
                    lots[line] = self._row("procedures", first)
        procedures = self.rows["procedures"]
        shared = [key for key, _ in _shared(procedures, (p.procedure_id for p in group.procedures))]
        references = [p.harvest_procedure_id for p in group.procedures]
        references += [e.suspected_procedure_id for e in group.adverse_events]
        shared += [r for r in references if r not in own and r in procedures]
        after = {
            "procedures": [
                self._row("procedures", procedures[key][1]) for key in dict.fromkeys(shared)
            ],
            **{
                attribute: [
                    self._row(attribute, values)
                    for _, (_, values) in _shared(
                        self.rows[attribute],
                        (getattr(row, _KEYS[attribute]) for row in getattr(group, attribute)),
                    )
                ]
                for attribute in ("adverse_events", "imaging_reports")
            },
        }
        before = {"procedures": [lots[line] for line in sorted(lots)]} if lots else {}
        return before, {attribute: rows for attribute, rows in after.items() if rows}

    def _row(self, attribute: str, values: tuple[Any, ...]) -> Any:
        """A row of table ``attribute`` with only the kept columns filled in."""
        model = _TABLE[attribute].model
        return model.model_construct(**dict(zip(self.columns[attribute], values, strict=True)))


# The tables whose rows other participants' rows refer to or share ids with, and their id.
_KEYS = {"procedures": "procedure_id", "adverse_events": "event_id", "imaging_reports": "report_id"}


def _first_of_lot(procedure: Procedure) -> bool:
    """Whether ``procedure`` may be the first injection of its product lot."""
    return procedure.type == INJECTION_TYPE and procedure.product_lot is not None


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
    if not _present(path, problems, required=True):
        return None
    try:
        data = limits.loads(limits.read_text(path), str(path))
    except UnicodeDecodeError:
        problems.append(_not_utf8(path, None))
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
    if not _present(path, problems, required=table.required):
        return [], []
    name = str(path)
    try:
        text = limits.read_text(path)
    except UnicodeDecodeError:
        problems.append(_not_utf8(path, table))
        return [], []
    limits.check_rows(text, name)
    rows, lines = [], []
    for line, row in _parse_rows(name, table, io.StringIO(text, newline=""), problems):
        rows.append(row)
        lines.append(line)
    return rows, lines


# How workbooks begin (.xlsx and .ods are ZIP files, .xls an OLE2 file), renamed .csv or not
_WORKBOOKS = (b"PK\x03\x04", b"\xd0\xcf\x11\xe0")
# Bytes that are not UTF-8, as the "surrogateescape" error handler decodes them
_NOT_UTF8 = re.compile("[\udc80-\udcff]")


def _not_utf8(path: Path, table: Table | None) -> Problem:
    """The problem of a file that is not UTF-8 (a table, or study.json when ``table`` is None):
    its encoding when it can be told, where the first text that is not UTF-8 is (line, and
    column with the cell's text for a table) and how to save the file as UTF-8."""
    remedy = _SAVE_AS_CSV if table else "save it as UTF-8"
    with path.open("rb") as file:
        start = file.read(4)
    if start[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        excel = ' (Excel\'s "Unicode Text")' if table else ""
        return Problem(str(path), f"is UTF-16 text{excel}, not UTF-8: {remedy}")
    if start in _WORKBOOKS:
        return Problem(str(path), f"is a spreadsheet workbook, not text: {remedy}")
    with path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as text:
        places = _cells(text) if table else ((n, None, line) for n, line in enumerate(text, 1))
        line, column, found = next((p for p in places if _NOT_UTF8.search(p[2])), (None, None, ""))
    raw = found.encode("utf-8", "surrogateescape")
    shown, encoding = raw.decode("utf-8", "backslashreplace"), ""
    with contextlib.suppress(UnicodeDecodeError):  # five byte values are not Windows-1252
        if raw:
            shown = raw.decode("cp1252")
            excel = ', as Excel\'s "CSV (Comma delimited)" saves it' if table else ""
            encoding = f" (the file looks like Windows-1252{excel})"
    value = shown if table and line is not None else None
    return Problem(str(path), f"is not UTF-8 text{encoding}: {remedy}", line, column, value)


def _cells(text: Iterable[str]) -> Iterator[tuple[int, str | None, str]]:
    """Each cell of CSV text, with the line its row starts on and its column (None in the
    header); as far as the text reads as CSV."""
    reader = csv.reader(text)
    header: list[str] | None = None
    line = 1
    try:
        for cells in reader:
            for index, cell in enumerate(cells):
                yield line, header[index] if header and index < len(header) else None, cell
            header = cells if header is None else header
            line = reader.line_num + 1
    except csv.Error:
        return


def _stream_rows(
    folder: Path, table: Table, problems: list[Problem], parse: bool = True
) -> Iterator[tuple[int, Any]]:
    """The rows of one table and the line each starts on, read from the file as they are used
    (``_Unparsed`` unless ``parse``); defects go to ``problems``, as with ``_read_table``."""
    path = folder / table.file
    if not _present(path, problems, required=table.required):
        return
    if not _is_utf8(path):
        problems.append(_not_utf8(path, table))
        return
    with path.open(encoding="utf-8-sig", newline="") as text:
        yield from _parse_rows(str(path), table, text, problems, parse)


def _is_utf8(path: Path) -> bool:
    """Whether a file is UTF-8 text, read a piece at a time."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    with path.open("rb") as file:
        try:
            while piece := file.read(limits.MB):
                decoder.decode(piece)
            decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return False
    return True


def _parse_rows(
    name: str, table: Table, text: Iterable[str], problems: list[Problem], parse: bool = True
) -> Iterator[tuple[int, Any]]:
    """Each row of one table's CSV text (lines read with newline="") and the line it starts on,
    as ``_Unparsed`` unless ``parse``; defects go to ``problems``."""
    reader = csv.reader(text, strict=True)
    try:
        header = next(reader, None)
    except csv.Error as e:
        problems.append(Problem(name, f"is not valid CSV: {e}", 1))
        return
    if header is None:
        return
    header_problems = _check_header(name, table, header)
    if header_problems:
        problems.extend(header_problems)
        return
    line = reader.line_num + 1
    columns = {column: index for index, column in enumerate(header)}
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            problems.append(Problem(name, f"is not valid CSV: {e}", line))
            break
        start, line = line, reader.line_num + 1
        if not any(cells):  # a blank line, or a row of empty cells: Excel writes those
            continue
        if len(cells) != len(header):
            problems.append(
                Problem(name, f"has {len(cells)} cells, the header has {len(header)}", start)
            )
            continue
        if not parse:
            yield start, _Unparsed(name, table, start, columns, cells)
            continue
        record = {
            column: (cell if cell != "" else None)
            for column, cell in zip(header, cells, strict=True)
        }
        try:
            row = table.model.model_validate(record)
        except ValidationError as e:
            problems.extend(_problems_of(e, name, start))
        else:
            yield start, row


class _Unparsed:
    """A row read as cells, parsed only when its group is kept (``ParticipantGroups.share``); its
    keys are the cells as written (a valid id is its cell)."""

    __slots__ = ("name", "table", "line", "columns", "cells")

    def __init__(
        self, name: str, table: Table, line: int, columns: dict[str, int], cells: list[str]
    ) -> None:
        self.name, self.table, self.line = name, table, line
        self.columns, self.cells = columns, cells  # the header's columns by name, the row's cells

    def _cell(self, column: str) -> str | None:
        index = self.columns.get(column)
        return self.cells[index] or None if index is not None else None

    @property
    def participant_id(self) -> str | None:
        return self._cell("participant_id")

    @property
    def report_id(self) -> str | None:
        return self._cell("report_id")

    def parse(self, problems: list[Problem]) -> Any:
        """The row's model, or None with its defects added to ``problems``."""
        record = {column: self.cells[index] or None for column, index in self.columns.items()}
        try:
            return self.table.model.model_validate(record)
        except ValidationError as e:
            problems.extend(_problems_of(e, self.name, self.line))
            return None


# Separators of files that are not comma separated: what the file uses, and the remedy. Excel
# separates cells by the list separator of the computer's region settings, ';' where ',' is the
# decimal comma, whichever "CSV" it saves.
_SEPARATORS = {
    ";": (
        "';'",
        "save it as CSV (comma delimited) with ',' between cells (in Excel: set the list "
        "separator of the computer's region settings to ',' first)",
    ),
    "\t": ("tabs", _SAVE_AS_CSV),
}


def _check_header(name: str, table: Table, header: list[str]) -> list[Problem]:
    if len(header) == 1:  # every table has several columns: the cells are not split at ','
        for separator, (uses, remedy) in _SEPARATORS.items():
            if separator in header[0]:
                return [Problem(name, f"uses {uses} as its separator, not ',': {remedy}", 1)]
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


class CsvText:
    """One table's CSV text, built row by row: the header, then cells in the order of
    ``columns`` (a table's columns in contract order)."""

    def __init__(self, columns: list[str]) -> None:
        self.columns = columns
        self.rows = 0
        self._out = io.StringIO()
        self._plain = csv.writer(self._out, lineterminator="\n")
        # Python 3.11 quotes only the characters of the line terminator: a cell with a bare CR,
        # which readers take for a line end, needs its row quoted in full.
        self._quoted = csv.writer(self._out, lineterminator="\n", quoting=csv.QUOTE_ALL)
        self._plain.writerow(self.columns)

    def add(self, cells: list[str]) -> None:
        (self._quoted if any("\r" in cell for cell in cells) else self._plain).writerow(cells)
        self.rows += 1

    def value(self) -> str:
        return self._out.getvalue()


def table_csv(table: Table, rows: Iterable[BaseModel]) -> str:
    """One table as CSV text, columns in contract order."""
    text = CsvText(table.columns)
    for row in rows:
        text.add([cell_text(getattr(row, column)) for column in table.columns])
    return text.value()


def write_study(study: Study, folder: str | Path) -> None:
    """Write ``study`` as a study folder, atomically; tables without rows are left out."""
    contents = {STUDY_FILE: study_info_json(study.info).encode()}
    for table in TABLES:
        rows = getattr(study, table.attribute)
        if rows:
            contents[table.file] = table_csv(table, rows).encode()
    write_files(folder, contents, stale=[table.file for table in TABLES])
