"""The exception tree and the one registry of exit codes.

    FhirAdmscError                 base; carries the exit code the CLI returns
    ├── InvalidDataError           exit 1: the data read is wrong (lists every Problem found)
    ├── ConfigurationError         exit 2: a usage or configuration mistake
    │   └── FileAccessError        exit 2: a file or folder cannot be read or written (says which)
    ├── ServerError                exit 4: a server could not be reached or refused us
    └── InternalError              exit 5: a bug in fhir-admsc

Exit code 3 (a dry run found changes) is a result, not an error: see ``ExitCode``.

Messages name what was read (a study folder, a Bundle, a server's answer) and never a command-line
option: a setting is named as the library parameter, in backquotes (`base_url`), and
``FhirAdmscError.describe`` renders it as the caller knows it (the CLI passes its option names).
Any other exception, ``OSError`` included, is a bug: the library turns the file errors it expects
into ``FileAccessError``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path


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


# A setting named in a message: a library parameter name in backquotes.
_SETTING = re.compile(r"`([a-z][a-z0-9_]*)`")


def rename_settings(text: str, names: Mapping[str, str]) -> str:
    """``text`` with each `setting` it names written as ``names`` has it (others left as they are)."""
    return _SETTING.sub(lambda m: names.get(m[1], m[0]), text)


class FhirAdmscError(Exception):
    """Base of every error fhir-admsc raises on purpose."""

    exit_code: ExitCode = ExitCode.INTERNAL

    def describe(self, names: Mapping[str, str]) -> str:
        """The message, each `setting` it names written as ``names`` has it (the CLI: options)."""
        return rename_settings(str(self), names)


# Rows of one file, column and kind of problem listed before "and N more rows".
SHOWN_ROWS = 3


class InvalidDataError(FhirAdmscError):
    """The input data breaks the study data contract; ``problems`` lists every defect.

    Its text counts every problem and lists them by file, column and kind of problem, the first
    ``SHOWN_ROWS`` rows of each kind and how many more there are: one wrong column of a large
    table is a few lines, not one a row. ``render(None)`` lists every one.
    """

    exit_code = ExitCode.INVALID_DATA

    def __init__(self, problems: list[Problem], subject: str = "the study data") -> None:
        self.problems = problems
        self.subject = subject
        super().__init__(self.render())

    def render(self, shown: int | None = SHOWN_ROWS) -> str:
        """The count line, then the problems, at most ``shown`` rows of each kind (None: all)."""
        count = len(self.problems)
        lines = [f"{count} problem{'s' if count != 1 else ''} in {self.subject}"]
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


class FileAccessError(ConfigurationError):
    """A file or folder the command names cannot be read or written (missing, a folder where a
    file was meant, no permission, disk full); the message names it and the system's reason."""


@contextmanager
def file_access(path: str | Path, doing: str) -> Iterator[None]:
    """Turn an ``OSError`` raised inside the block into a ``FileAccessError`` naming the file
    (when reading, the one the error names, else ``path``) and what was being done (``doing``:
    "read", "write", ...)."""
    try:
        yield
    except FileAccessError:
        raise
    except OSError as e:
        reason = (e.strerror or os.strerror(e.errno)) if e.errno else str(e)
        # reading a folder, the file that failed; writing, the target (not a staging file)
        where = e.filename if doing == "read" and e.filename else path
        raise FileAccessError(f"cannot {doing} {where}: {reason}") from e


class NoResourcesError(FhirAdmscError):
    """An input holds no resource at all: a missing artefact never passes."""

    exit_code = ExitCode.INVALID_DATA


class ServerError(FhirAdmscError):
    """A FHIR server could not be reached, or refused the request."""

    exit_code = ExitCode.SERVER


class InternalError(FhirAdmscError):
    """Something that should never happen did: please report it."""

    exit_code = ExitCode.INTERNAL
