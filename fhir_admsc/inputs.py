"""One way in: every form of FHIR input the commands take (a study folder, a Bundle, a JSON
resource, an NDJSON file, a folder of any of them) read the same way, and the order a push sends
them in, referenced resources before those that refer to them."""

from __future__ import annotations

import itertools
import json
import logging
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fhir_admsc import limits
from fhir_admsc.errors import InvalidDataError, NoResourcesError, Problem, file_access
from fhir_admsc.export import study_resources
from fhir_admsc.resources import fhir_files, key, read_resources, references_in
from fhir_admsc.study import STUDY_FILE

log = logging.getLogger(__name__)


def is_study_folder(path: Path) -> bool:
    """Whether ``path`` is a study folder (it holds study.json), read as study tables."""
    return path.is_dir() and (path / STUDY_FILE).is_file()


def read_fhir(path: Path, notify: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    """The resources of any input: a study folder mapped to FHIR (``notify`` is told of files it
    does not read), else the resources of its FHIR files (see ``resources.read_resources``)."""
    return study_resources(path, notify) if is_study_folder(path) else read_resources(path)


class Source:
    """The resources of a push, referenced ones before those that refer to them, a chunk at a time.

    A study folder, a Bundle, a JSON or NDJSON file, or a folder that holds JSON files is read
    whole. A folder of NDJSON files only (its subfolders too) is scanned once
    (counts, types and references, without parsing JSON) and then streamed file by file, files of
    referenced types first; only files whose resources refer to each other are ordered resource by
    resource, from an index of where each line starts. Memory stays bounded by the chunk (and that
    index), whatever the size of the folder.
    """

    def __init__(self, path: Path, notify: Callable[[str], None] | None = None) -> None:
        self._resources: list[dict[str, Any]] | None = None
        self._groups: list[list[_NdjsonFile]] = []
        files = [] if is_study_folder(path) or not path.is_dir() else fhir_files(path)
        if files and all(f.suffix == ".ndjson" for f in files):
            scanned = [_scan(f) for f in files]
            self._groups = _groups(scanned)
            self.total = sum(f.count for f in scanned)
            self.types: set[str] = set().union(*(f.types for f in scanned))
            if not self.total:
                raise NoResourcesError(f"no resources found in {path}")
            log.info(
                "%s: %d resources in %d NDJSON files, streamed in %d groups of files",
                path,
                self.total,
                len(files),
                len(self._groups),
            )
        else:
            self._resources = ordered(read_fhir(path, notify))
            self.total = len(self._resources)
            self.types = {r["resourceType"] for r in self._resources}
            log.info("%s: %d resources, read whole", path, self.total)

    def chunks(self, size: int) -> Iterator[list[dict[str, Any]]]:
        """The resources, ``size`` at a time."""
        resources: Iterator[dict[str, Any]] = (
            iter(self._resources)
            if self._resources is not None
            else itertools.chain.from_iterable(_group_resources(g) for g in self._groups)
        )
        while part := list(itertools.islice(resources, size)):
            yield part


def _needs(references: Iterable[Iterable[str]], position: Mapping[str, int]) -> list[list[int]]:
    """For each node, the positions of the other nodes among ``position`` it refers to."""
    return [
        [position[r] for r in refs if r in position and position[r] != i]
        for i, refs in enumerate(references)
    ]


def _topological(needs: list[list[int]]) -> list[int]:
    """The nodes 0..n-1 with every node after those it needs (stable otherwise; a cycle keeps
    input order for its members)."""
    placed: list[int] = []
    state = [0] * len(needs)  # 0 new, 1 in progress, 2 placed
    for start in range(len(needs)):
        stack = [(start, iter(needs[start]))]
        if state[start]:
            continue
        state[start] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                state[node] = 2
                placed.append(node)
            elif state[child] == 0:
                state[child] = 1
                stack.append((child, iter(needs[child])))
    return placed


def ordered(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The resources with every referenced one before those that refer to it (stable otherwise;
    a reference cycle keeps input order for its members)."""
    position = {key(r): i for i, r in enumerate(resources)}
    references = ([ref["reference"] for ref in references_in(r)] for r in resources)
    return [resources[i] for i in _topological(_needs(references, position))]


# What the scan of an NDJSON file reads without parsing JSON: the type of a line whose first key
# is resourceType (as FHIR servers and this tool write them), and the types its "Type/id"
# references point to.
_RESOURCE_TYPE = re.compile(rb'\s*\{\s*"resourceType"\s*:\s*"([A-Za-z]+)"')
_REFERENCE_TYPE = re.compile(rb'"reference"\s*:\s*"([A-Z][A-Za-z]+)/[A-Za-z0-9.\-]{1,64}"')


@dataclass
class _NdjsonFile:
    """One NDJSON file of a folder, as its scan found it."""

    path: Path
    count: int  # resources (non-blank lines)
    types: set[str]  # the resource types of its lines
    refers_to: set[str]  # the resource types its resources refer to


def _lines(path: Path) -> Iterator[tuple[int, int, bytes]]:
    """The non-blank lines of a file: (line number, byte offset, line)."""
    with file_access(path, "read"), path.open("rb") as file:
        offset = 0
        for number, line in enumerate(file, start=1):
            if line.strip():
                yield number, offset, line
            offset += len(line)


def _parse(path: Path, number: int, line: bytes) -> dict[str, Any]:
    """The resource on one NDJSON line, or an InvalidDataError naming the file and line."""
    try:
        resource = limits.loads(line, str(path), number)
    except json.JSONDecodeError as e:
        raise InvalidDataError(
            [Problem(str(path), f"is not valid JSON: {e.msg}", number)]
        ) from None
    if not (
        isinstance(resource, dict)
        and isinstance(resource.get("resourceType"), str)
        and isinstance(resource.get("id"), str)
    ):
        raise InvalidDataError([Problem(str(path), "holds no FHIR resource with an id", number)])
    return resource


def _scan(path: Path) -> _NdjsonFile:
    scanned = _NdjsonFile(path, 0, set(), set())
    for number, _, line in _lines(path):
        scanned.count += 1
        first = _RESOURCE_TYPE.match(line.removeprefix(b"\xef\xbb\xbf"))
        scanned.types.add(
            first[1].decode() if first else _parse(path, number, line)["resourceType"]
        )
        scanned.refers_to.update(t.decode() for t in _REFERENCE_TYPE.findall(line))
    return scanned


def _groups(files: list[_NdjsonFile]) -> list[list[_NdjsonFile]]:
    """The files in an order where those holding referenced types come first, in groups read
    together: a file whose resources refer to its own types, or to types of a file placed after
    it (a cycle between types), shares a group with every file up to that one."""
    holders: dict[str, list[int]] = defaultdict(list)
    for i, file in enumerate(files):
        for kind in file.types:
            holders[kind].append(i)
    order = _topological(
        [sorted({j for t in f.refers_to for j in holders[t]} - {i}) for i, f in enumerate(files)]
    )
    position = {file: p for p, file in enumerate(order)}
    groups: list[list[_NdjsonFile]] = []
    end = -1  # the last position the current group must reach
    for p, i in enumerate(order):
        if p > end:
            groups.append([])
        groups[-1].append(files[i])
        end = max([end, *(position[j] for t in files[i].refers_to for j in holders[t])])
    return groups


def _line_order(group: list[_NdjsonFile]) -> tuple[list[tuple[int, int, int]], list[int]]:
    """Where each resource of a group starts (file, line number, byte offset), and the order to
    read them in, computed from their references: the resources themselves are not kept."""
    lines: list[tuple[int, int, int]] = []
    position: dict[str, int] = {}
    references: list[list[str]] = []
    for f, file in enumerate(group):
        for number, offset, line in _lines(file.path):
            resource = _parse(file.path, number, line)
            position[key(resource)] = len(lines)
            lines.append((f, number, offset))
            references.append([ref["reference"] for ref in references_in(resource)])
    return lines, _topological(_needs(references, position))


def _group_resources(group: list[_NdjsonFile]) -> Iterator[dict[str, Any]]:
    """The resources of a group of files: line after line, or, where they refer to each other,
    in an order computed from their references."""
    if len(group) == 1 and not group[0].types & group[0].refers_to:
        for number, _, line in _lines(group[0].path):
            yield _parse(group[0].path, number, line)
        return
    lines, order = _line_order(group)
    with ExitStack() as stack, file_access(group[0].path.parent, "read"):
        files = [stack.enter_context(file.path.open("rb")) for file in group]
        for i in order:
            f, number, offset = lines[i]
            files[f].seek(offset)
            yield _parse(group[f].path, number, files[f].readline())
