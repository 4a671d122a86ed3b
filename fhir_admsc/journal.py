"""The push report, kept as a journal: one line per resource pushed, appended and synced chunk by
chunk once the server has answered, so a push stopped anywhere can resume from it."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from fhir_admsc.errors import ConfigurationError, file_access
from fhir_admsc.output import StagedFiles
from fhir_admsc.resources import key

# Report outcomes that say the server holds the resource as it was sent: a resumed push skips them.
DONE = frozenset({"created", "updated", "unchanged"})


@dataclass
class PushResult:
    """What happened to one resource (one line of the push report)."""

    resource: str  # Type/id as exported
    identifier: str  # system|value of the business identifier
    outcome: str  # create | update | unchanged (dry run), created | updated | unchanged | failed
    status: int | None = None
    server_id: str | None = None
    message: str = ""
    sha256: str | None = None  # content_hash of the resource as read (report lines only)

    def json_line(self) -> str:
        return (
            json.dumps(
                {k: v for k, v in vars(self).items() if v not in (None, "")}, ensure_ascii=False
            )
            + "\n"
        )


def content_hash(resource: dict[str, Any]) -> str:
    """SHA-256 (hex) of a resource's canonical JSON: keys sorted, no spaces, UTF-8."""
    text = json.dumps(resource, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _digest(text: str) -> int:
    """63 bits of a hash of ``text``: the journal's index keeps these instead of strings."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") >> 1


SKIPPED = 1 << 63  # set on a content hash of the index: this run skipped the resource


class Journal:
    """The push report, kept as a journal: the lines of a chunk are appended and synced to disk as
    soon as the server has answered for it, so after a crash the report holds every result that was
    confirmed, and only those.

    Without ``resume`` an existing report is replaced. With it, a resource is skipped when the last
    line about it says it is done (``DONE``) with the content hash it has now; a torn last line (a
    run killed while writing) is dropped; and once the push has gone through its whole input
    (``finish``) the report is rewritten to one line per resource: the earlier line of each
    resource skipped, then the lines of this run.
    """

    def __init__(self, path: Path, *, resume: bool) -> None:
        self.path = path
        # resource -> content hash of its last line, if done (with SKIPPED once this run skips
        # it); about 150 bytes a resource
        self._done: dict[int, int] = {}
        self._hashes: dict[str, str] = {}  # resource -> content hash, of the chunks under way
        resumed = resume and path.exists()
        self._earlier = self._index() if resumed else 0  # bytes of the report from earlier runs
        with file_access(path, "write"):
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("r+b" if resumed else "wb")
        self._file.truncate(self._earlier)
        self._file.seek(self._earlier)

    def _index(self) -> int:
        """Note which resources earlier runs finished; return the length of the report up to
        its last whole line."""
        length = 0
        with file_access(self.path, "read"), self.path.open("rb") as file:
            for number, line in enumerate(file, start=1):
                if not line.endswith(b"\n"):
                    break
                resource, sha = self._entry(number, line)
                if sha is None:
                    self._done.pop(resource, None)
                else:
                    self._done[resource] = sha
                length += len(line)
        return length

    def _entry(self, number: int, line: bytes) -> tuple[int, int | None]:
        """The resource of a report line and, when the line says it is done, its content hash."""
        try:
            entry = json.loads(line)
            resource, outcome, sha = entry["resource"], entry["outcome"], entry.get("sha256")
            return _digest(resource), _digest(sha) if outcome in DONE and sha else None
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ConfigurationError(
                f"{self.path}:{number} is not a line of a push report: give `report` the report "
                "of an earlier run of the same push, or drop `resume`"
            ) from None

    def pending(self, part: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The resources of a chunk still to push (all of them unless resuming)."""
        todo = []
        for resource in part:
            name, sha = key(resource), content_hash(resource)
            if self._done and self._skip(_digest(name), _digest(sha)):
                continue
            self._hashes[name] = sha
            todo.append(resource)
        return todo

    def _skip(self, resource: int, sha: int) -> bool:
        """Whether an earlier run finished the resource with this content (then noted skipped)."""
        done = self._done.get(resource)
        if done is None or done & ~SKIPPED != sha:
            return False
        self._done[resource] = sha | SKIPPED
        return True

    def record(self, outcomes: list[PushResult]) -> None:
        """Append the lines of a chunk, each with its content hash, and sync them to disk."""
        text = "".join(
            replace(o, sha256=self._hashes.pop(o.resource, None)).json_line() for o in outcomes
        )
        with file_access(self.path, "write"):
            self._file.write(text.encode())
            self._file.flush()
            os.fsync(self._file.fileno())

    def close(self) -> None:
        self._file.close()

    def finish(self) -> None:
        """Close the report of a push that went through its whole input, one line a resource."""
        self.close()
        if self._earlier:
            self._compact()

    def _compact(self) -> None:
        name = self.path.name
        with StagedFiles(self.path.parent) as staged, self.path.open("rb") as old:
            staged.write(name, b"")  # rewritten even should no line be kept
            left, number = self._earlier, 0
            while left > 0:
                line = old.readline()
                left, number = left - len(line), number + 1
                resource, sha = self._entry(number, line)
                if sha is not None and self._done.get(resource) == sha | SKIPPED:
                    del self._done[resource]  # once, should the line be repeated
                    staged.write(name, line)
            while block := old.read(1 << 20):  # the lines of this run
                staged.write(name, block)
