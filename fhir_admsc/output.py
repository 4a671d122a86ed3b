"""Output files written atomically: each through a temporary file beside it and a rename."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import BinaryIO


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temporary(folder: Path, name: str) -> tuple[BinaryIO, str]:
    """A new temporary file in ``folder`` for ``name``, open for writing, and its path."""
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    try:
        os.fchmod(handle, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual mode
        return os.fdopen(handle, "wb"), temporary
    except BaseException:
        os.close(handle)
        os.unlink(temporary)
        raise


class StagedFiles:
    """Files written piece by piece under temporary names in ``folder``, put in place together.

    Used as a context manager: every file is renamed to its name (and the ``stale`` ones not
    written are deleted) when the block ends normally; an exception removes every temporary
    file, so the folder is left as it was. A file may be written in several parts, joined in
    part order when the block ends: writers can interleave and still keep an order within a file.
    """

    def __init__(self, folder: str | Path, stale: Iterable[str] = ()) -> None:
        self.folder = Path(folder)
        self.stale = list(stale)
        self._parts: dict[str, dict[int, tuple[BinaryIO, str]]] = {}

    def __enter__(self) -> StagedFiles:
        self.folder.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if kind is None:
            self._commit()
        else:
            self._discard()

    def write(self, name: str, data: bytes, part: int = 0) -> None:
        """Append ``data`` to part ``part`` of the file ``name``."""
        parts = self._parts.setdefault(name, {})
        if part not in parts:
            parts[part] = _temporary(self.folder, name)
        parts[part][0].write(data)

    @property
    def names(self) -> list[str]:
        """The names of the files written so far."""
        return list(self._parts)

    def _commit(self) -> None:
        try:
            staged = [
                (self._join(parts), self.folder / name) for name, parts in self._parts.items()
            ]
        except BaseException:
            self._discard()
            raise
        for temporary, target in staged:
            os.replace(temporary, target)
        for name in self.stale:
            if name not in self._parts and (self.folder / name).exists():
                (self.folder / name).unlink()

    def _join(self, parts: dict[int, tuple[BinaryIO, str]]) -> str:
        """The parts of one file appended to its first part, synced; the first part's path."""
        (out, path), *rest = (parts[part] for part in sorted(parts))
        for handle, temporary in rest:
            handle.close()
            with open(temporary, "rb") as piece:
                shutil.copyfileobj(piece, out, 1024 * 1024)
        out.flush()
        os.fsync(out.fileno())
        out.close()
        for _, temporary in rest:
            os.unlink(temporary)
        return path

    def _discard(self) -> None:
        for parts in self._parts.values():
            for handle, temporary in parts.values():
                handle.close()
                if os.path.exists(temporary):
                    os.unlink(temporary)


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename: never half-written."""
    write_files(Path(path).parent, {Path(path).name: data})


def write_files(folder: str | Path, contents: dict[str, bytes], stale: Iterable[str] = ()) -> None:
    """Write several files into ``folder`` and delete the ``stale`` ones not among them.

    Every file is staged under a temporary name first; targets are replaced only once all are
    staged, so a failure while writing leaves the folder as it was.
    """
    with StagedFiles(folder, stale) as staged:
        for name, data in contents.items():
            staged.write(name, data)
