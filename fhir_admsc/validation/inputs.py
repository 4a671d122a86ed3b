"""Read what is to be validated: JSON resources and Bundles, NDJSON files, folders of them;
each resource with the file and line it starts on."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fhir_admsc import limits
from fhir_admsc.validation.issues import Issue

_DECODER = json.JSONDecoder()
_WHITESPACE = " \t\n\r"


@dataclass
class Document:
    """One input document: a resource or Bundle from a JSON file, or one NDJSON line."""

    source: str
    line: int
    value: Any
    entry_lines: list[int] | None = None  # for a Bundle: the line of each entry's resource


def read_documents(path: Path) -> Iterator[Document | Issue]:
    """The documents of a file or folder (``*.json`` and ``*.ndjson``); unreadable ones as Issues."""
    if path.is_dir():
        files = sorted(
            p for p in path.rglob("*") if p.suffix in (".json", ".ndjson") and p.is_file()
        )
        for file in files:
            yield from _read_file(file)
    elif path.is_file():
        yield from _read_file(path)
    else:
        yield Issue("fatal", "not-found", "no such file or folder", str(path), source=str(path))


def _read_file(path: Path) -> Iterator[Document | Issue]:
    name = str(path)
    if path.suffix == ".ndjson":
        yield from _read_ndjson(path)
        return
    try:
        text = limits.read_text(path)
    except (OSError, UnicodeDecodeError) as e:
        yield Issue("fatal", "structure", f"cannot be read: {e}", "$this", source=name)
        return
    try:
        value = limits.loads(text, name)
    except json.JSONDecodeError as e:
        yield _not_json(e, name, e.lineno)
        return
    start = len(text) - len(text.lstrip(_WHITESPACE + "\ufeff"))
    entry_lines = None
    if isinstance(value, dict) and value.get("resourceType") == "Bundle":
        entry_lines = _entry_lines(text, start)
    yield Document(name, text.count("\n", 0, start) + 1, value, entry_lines)


def _read_ndjson(path: Path) -> Iterator[Document | Issue]:
    """The lines of an NDJSON file, read one at a time: memory does not grow with the file."""
    name = str(path)
    try:
        limits.check_size(path)
        handle = path.open("rb")
    except OSError as e:
        yield Issue("fatal", "structure", f"cannot be read: {e}", "$this", source=name)
        return
    with handle:
        # binary lines end at "\n" only: text may hold U+2028 or U+0085, which str lines split on
        for number, raw in enumerate(handle, start=1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as e:
                message = f"cannot be read: not UTF-8 text (byte {e.start} of the line)"
                yield Issue("fatal", "structure", message, "$this", source=name, line=number)
                continue
            if not line.strip():
                continue
            try:
                yield Document(name, number, limits.loads(line, name, number))
            except json.JSONDecodeError as e:
                yield _not_json(e, name, number)


def _not_json(error: json.JSONDecodeError, source: str, line: int) -> Issue:
    return Issue(
        "fatal",
        "structure",
        f"is not valid JSON: {error.msg} (column {error.colno})",
        "$this",
        source=source,
        line=line,
    )


def _skip(text: str, at: int) -> int:
    while at < len(text) and text[at] in _WHITESPACE:
        at += 1
    return at


def _entry_lines(text: str, at: int) -> list[int]:
    """Line of ``entry[i].resource`` for each entry of the Bundle object starting at ``at``."""
    lines: list[int] = []
    offsets = _object_members(text, at, "entry")
    if offsets is None:
        return lines
    at = _skip(text, offsets)
    if text[at] != "[":
        return lines
    at = _skip(text, at + 1)
    line, counted = 1, 0
    while at < len(text) and text[at] != "]":
        resource = _object_members(text, at, "resource")
        if resource is None:
            lines.append(0)
        else:
            line += text.count("\n", counted, resource)
            counted = resource
            lines.append(line)
        _, end = _DECODER.raw_decode(text, at)
        at = _skip(text, end)
        if at < len(text) and text[at] == ",":
            at = _skip(text, at + 1)
    return lines


def _object_members(text: str, at: int, wanted: str) -> int | None:
    """The offset of member ``wanted``'s value in the JSON object at ``at``, if present."""
    at = _skip(text, at)
    if at >= len(text) or text[at] != "{":
        return None
    at = _skip(text, at + 1)
    while at < len(text) and text[at] != "}":
        key, at = _DECODER.raw_decode(text, at)
        at = _skip(text, at)
        at = _skip(text, at + 1)  # the colon
        if key == wanted:
            return at
        _, at = _DECODER.raw_decode(text, at)
        at = _skip(text, at)
        if text[at] == ",":
            at = _skip(text, at + 1)
    return None
