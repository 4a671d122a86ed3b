"""Helpers to edit CSV tables of a scratch study folder."""

from __future__ import annotations

import csv
from pathlib import Path


def read_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def write_rows(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f, lineterminator="\n").writerows([header, *rows])


def set_cell(folder: Path, file: str, index: int, column: str, value: str) -> int:
    """Set one cell of a table; returns the line number of that row (header is line 1)."""
    header, rows = read_rows(folder / file)
    rows[index][header.index(column)] = value
    write_rows(folder / file, header, rows)
    return index + 2
