"""FHIR JSON in: the one reader of JSON resources, Bundles, NDJSON files and folders of them, and
the one place that names a resource by ``Type/id`` and reads a reference back to one.

A reference is relative (``Patient/1``), absolute (``https://host/fhir/Patient/1``), versioned
(``Patient/1/_history/2``), a Bundle-local ``urn:uuid:``/``urn:oid:`` or a contained ``#id``: only
the first three name a ``Type/id``, which is what ``reference_key`` returns for them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fhir_admsc import limits
from fhir_admsc.errors import InvalidDataError, NoResourcesError, Problem
from fhir_admsc.parallel import SMALLEST_BYTES, run_in_order

FHIR_SUFFIXES = (".json", ".ndjson")
_DECODER = json.JSONDecoder()
_WHITESPACE = " \t\n\r"


def key(resource: dict[str, Any]) -> str:
    """``Type/id`` of a resource that has both (a KeyError otherwise)."""
    return f"{resource['resourceType']}/{resource['id']}"


def label(resource: Any) -> str | None:
    """``Type/id`` of a resource for messages, ``Type/?`` when it has no id; None for a value
    that is no resource."""
    if isinstance(resource, dict) and "resourceType" in resource:
        return f"{resource['resourceType']}/{resource.get('id', '?')}"
    return None


def reference_key(reference: str) -> str:
    """``Type/id`` of a relative, absolute or versioned reference: its last two path segments
    once any ``/_history/...`` is dropped (meaningless for ``urn:`` and ``#`` references)."""
    return "/".join(reference.split("/_history")[0].rstrip("/").split("/")[-2:])


def reference_type(reference: str) -> str | None:
    """The type segment of a relative, absolute or versioned reference; None when it has none
    (the caller checks that it names a resource type)."""
    parts = reference_key(reference).split("/")
    return parts[0] if len(parts) == 2 else None


def reference_id(reference: str) -> str:
    """The id a relative, absolute or versioned reference (or a Location header) ends with."""
    return reference_key(reference).rsplit("/", 1)[-1]


def references_in(value: Any) -> Iterator[dict[str, Any]]:
    """Every Reference object (with a string ``reference``) inside a resource or part of one."""
    if isinstance(value, dict):
        if isinstance(value.get("reference"), str):
            yield value
        for item in value.values():
            yield from references_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from references_in(item)


@dataclass
class Document:
    """One JSON document read: a resource or Bundle of a JSON file, or one NDJSON line, with the
    file and line it starts on."""

    source: str
    line: int
    value: Any
    entry_lines: list[int] | None = None  # for a Bundle: the line of each entry's resource


@dataclass(frozen=True)
class Unreadable:
    """A file or line that holds no JSON document: where, and why."""

    source: str
    message: str
    line: int | None = None


def fhir_files(path: Path) -> list[Path]:
    """The files ``path`` names: itself, or every ``.json`` and ``.ndjson`` file under a folder,
    sorted (hidden files and folders, such as a writer's temporary files, left out)."""
    if not path.is_dir():
        return [path]
    return sorted(
        p
        for p in path.rglob("*")
        if p.suffix in FHIR_SUFFIXES
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(path).parts)
    )


def read_documents(
    path: Path, share: tuple[int, int] | None = None
) -> Iterator[Document | Unreadable]:
    """The documents of a file or of every FHIR file of a folder, in file order; what cannot be
    read comes as ``Unreadable`` in its place. NDJSON is read a line at a time; with ``share``
    ``(k, n)`` only its lines numbered k modulo n are decoded (one of n readers sharing a file)."""
    if not path.exists():
        yield Unreadable(str(path), "no such file or folder")
        return
    for file in fhir_files(path):
        yield from (_read_ndjson(file, share) if file.suffix == ".ndjson" else _read_json(file))


def read_resources(path: Path) -> list[dict[str, Any]]:
    """The resources of a JSON resource, a Bundle (its entries), an NDJSON file or a folder of
    them, each a resource with an id (what push and the reverse mappings need).

    Raises InvalidDataError naming every file and line that is not so, and NoResourcesError
    when there is none."""
    return [resource for _, resource in _resources(path)]


INPUT = "the FHIR input"  # what the problems of FHIR files are problems in


def check_resources(path: Path, types: dict[str, set[Any]] | None = None, jobs: int = 1) -> int:
    """How many resources ``path`` holds, read and checked as ``read_resources`` does (the same
    errors) without keeping them: for a reader that then reads the files itself. ``types`` is
    told the resource types each file holds. NDJSON alone is checked by ``jobs`` processes, each
    reading every n-th line of every file."""
    files = fhir_files(path) if path.exists() else []
    if (
        any(f.suffix != ".ndjson" for f in files)
        or sum(f.stat().st_size for f in files) < SMALLEST_BYTES
    ):
        jobs = 1  # JSON documents are read whole, and a small input is quicker in one process
    shares = [(path, k, jobs) for k in range(jobs)] if jobs > 1 else [(path, 0, 0)]
    rank = {str(f): i for i, f in enumerate(files)}

    def order(problem: Problem) -> tuple[int, int]:
        return rank.get(problem.file, -1), problem.line or 0

    count, problems, seen, stops = 0, [], set(), []
    for found in run_in_order(_checked_share, shares, jobs, smallest=1):
        for share_count, share_types, share_problems, stop in found:
            count += share_count
            for source, kinds in share_types.items():
                if types is not None:
                    types.setdefault(source, set()).update(kinds)
            for problem in share_problems:
                if problem not in seen:  # a whole file's problem is met by every share
                    seen.add(problem)
                    problems.append(problem)
            if stop is not None:
                stops.append(stop)
    if stops:  # a limit stops the reading: one process would have met the first one only
        first, subject = min(stops, key=lambda stop: order(stop[0][0]))
        raise InvalidDataError(first, subject=subject)
    problems.sort(key=order)
    if problems:
        raise InvalidDataError(problems, subject=INPUT)
    if not count:
        raise NoResourcesError(f"no resources found in {path}")
    return count


def _checked_share(
    share: tuple[Path, int, int],
) -> tuple[int, dict[str, set[Any]], list[Problem], tuple[list[Problem], str] | None]:
    """The resources, types by file and problems of one share of ``path``'s lines (k, n: the
    lines numbered k modulo n; n = 0: every line), and the limit that stopped it, if one did."""
    path, k, n = share
    count, types = 0, {}
    try:
        for source, resource in _resources(path, (k, n) if n else None):
            count += 1
            types.setdefault(source, set()).add(resource["resourceType"])
    except InvalidDataError as e:
        if e.subject == INPUT:  # every problem of the share, found once all was read
            return count, types, e.problems, None
        return count, types, [], (e.problems, e.subject)  # a limit, met part way
    except NoResourcesError:
        pass
    return count, types, [], None


def _resources(
    path: Path, share: tuple[int, int] | None = None
) -> Iterator[tuple[str, dict[str, Any]]]:
    """The resources of ``path`` one at a time, with the file each is in; the errors once all
    are read (``share``: see ``read_documents``)."""
    count = 0
    problems: list[Problem] = []
    for item in read_documents(path, share):
        if isinstance(item, Unreadable):
            problems.append(Problem(item.source, item.message, item.line))
            continue
        for value in _entry_resources(item, problems):
            if _has_id(value):
                count += 1
                yield item.source, value
            else:
                problems.append(
                    Problem(item.source, "holds no FHIR resource with an id", item.line)
                )
    if problems:
        raise InvalidDataError(problems, subject=INPUT)
    if not count:
        raise NoResourcesError(f"no resources found in {path}")


def _has_id(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and isinstance(value.get("resourceType"), str)
        and isinstance(value.get("id"), str)
    )


def _entry_resources(document: Document, problems: list[Problem]) -> list[Any]:
    """The resources a document holds: a Bundle's entries' resources, else the document."""
    value = document.value
    if not (isinstance(value, dict) and value.get("resourceType") == "Bundle"):
        return [value]
    entries = value.get("entry", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        problems.append(Problem(document.source, "holds a Bundle whose entries are not objects"))
        return []
    return [e["resource"] for e in entries if "resource" in e]


def _read_json(path: Path) -> Iterator[Document | Unreadable]:
    name = str(path)
    try:
        text = limits.read_text(path)
    except UnicodeDecodeError as e:
        yield Unreadable(name, f"is not UTF-8 text (byte {e.start})")
        return
    except OSError as e:
        yield Unreadable(name, f"cannot be read: {e.strerror or e}")
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


def _read_ndjson(
    path: Path, share: tuple[int, int] | None = None
) -> Iterator[Document | Unreadable]:
    """The lines of an NDJSON file, read one at a time: memory does not grow with the file."""
    name = str(path)
    try:
        limits.check_size(path)
        handle = path.open("rb")
    except OSError as e:
        yield Unreadable(name, f"cannot be read: {e.strerror or e}")
        return
    with handle:
        # binary lines end at "\n" only: text may hold U+2028 or U+0085, which str lines split on
        for number, raw in enumerate(handle, start=1):
            if share is not None and number % share[1] != share[0]:
                continue
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as e:
                yield Unreadable(name, f"is not UTF-8 text (byte {e.start} of the line)", number)
                continue
            if not line.strip():
                continue
            try:
                yield Document(name, number, limits.loads(line, name, number))
            except json.JSONDecodeError as e:
                yield _not_json(e, name, number)


def _not_json(error: json.JSONDecodeError, source: str, line: int) -> Unreadable:
    return Unreadable(source, f"is not valid JSON: {error.msg} (column {error.colno})", line)


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
