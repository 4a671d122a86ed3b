"""Output files written atomically: each through a temporary file beside it and a rename."""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from fhir_admsc.errors import ConfigurationError, file_access

Part = int | tuple[int, int]  # the order of a file's parts: all ints or all pairs within a file


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
        self._made = False
        self._parts: dict[str, dict[Part, tuple[BinaryIO | None, str]]] = {}

    def __enter__(self) -> StagedFiles:
        with file_access(self.folder, "write into"):
            self._made = output_folder(self.folder)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if kind is None:
            with file_access(self.folder, "write into"):
                self._commit()
            return
        self.discard()
        if self._made and not any(self.folder.iterdir()):
            self.folder.rmdir()  # made for this output: a failure leaves no trace

    def write(self, name: str, data: bytes, part: Part = 0) -> None:
        """Append ``data`` to part ``part`` of the file ``name``."""
        parts = self._parts.setdefault(name, {})
        try:  # called once a line: no context manager, no path built unless it fails
            handle = parts[part][0] if part in parts else self._open(name, part)
            assert handle is not None, "an adopted part is not written to"
            handle.write(data)
        except OSError:
            with file_access(self.folder / name, "write"):
                raise

    def _open(self, name: str, part: Part) -> BinaryIO:
        handle, temporary = _temporary(self.folder, name)
        self._parts[name][part] = (handle, temporary)
        return handle

    def hand_over(self) -> dict[str, dict[Part, str]]:
        """Close the parts written so far and give up their temporary files, by name and part,
        for another StagedFiles of the same folder to ``adopt`` (a forked worker's pieces)."""
        given = {}
        for name, parts in self._parts.items():
            for handle, _ in parts.values():
                if handle is not None:
                    handle.close()
            given[name] = {part: temporary for part, (_, temporary) in parts.items()}
        self._parts = {}
        return given

    def adopt(self, name: str, part: Part, temporary: str) -> None:
        """Take a closed temporary file (see ``hand_over``) of a folder on the same file system
        as part ``part`` of the file ``name``: it is moved here, then joined, committed or
        discarded with the rest."""
        moved = _moved(temporary, self.folder, name)
        self._parts.setdefault(name, {})[part] = (None, moved)

    @property
    def names(self) -> list[str]:
        """The names of the files written so far."""
        return list(self._parts)

    def _commit(self) -> None:
        try:
            staged = self._joined()
        except BaseException:
            self.discard()
            raise
        for done, (temporary, target) in enumerate(staged):
            try:
                os.replace(temporary, target)
            except BaseException:
                for left, _ in staged[done:]:
                    os.unlink(left)
                raise
        for name in self.stale:
            if name not in self._parts and (self.folder / name).exists():
                (self.folder / name).unlink()

    def _joined(self) -> list[tuple[str, Path]]:
        """Each file's parts copied after its first part, in part order, and synced: the first
        parts' paths with their targets. The copies (at offsets known from the parts' sizes) and
        the syncs run side by side on threads, in the kernel where it can."""
        files: list[tuple[str, Path, list[str]]] = []
        copies: list[tuple[str, str, int]] = []
        for name, parts in self._parts.items():
            (first, path), *rest = (parts[part] for part in sorted(parts))  # type: ignore[type-var]
            offset = _closed_size(first, path)
            for handle, temporary in rest:
                copies.append((temporary, path, offset))
                offset += _closed_size(handle, temporary)
            files.append((path, self.folder / name, [temporary for _, temporary in rest]))
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda copy: _copy_into(*copy), copies))
            list(pool.map(_sync, [path for path, _, _ in files]))
        for _, _, pieces in files:
            for piece in pieces:
                os.unlink(piece)
        return [(path, target) for path, target, _ in files]

    def discard(self) -> None:
        """Close and delete every temporary file (what leaving the block by an error does)."""
        for parts in self._parts.values():
            for handle, temporary in parts.values():
                if handle is not None:
                    handle.close()
                if os.path.exists(temporary):
                    os.unlink(temporary)


def _moved(temporary: str, folder: Path, name: str) -> str:
    """Move a temporary file into ``folder`` under a new temporary name for ``name``, without
    renaming over a file (on ext4 that would write the moved file's data out at once)."""
    while True:
        moved = str(folder / f".{name}.{secrets.token_hex(6)}.tmp")
        try:
            os.link(temporary, moved)
        except FileExistsError:
            continue
        except OSError:  # a file system without hard links
            os.replace(temporary, moved)
            return moved
        os.unlink(temporary)
        return moved


def _closed_size(handle: BinaryIO | None, path: str) -> int:
    """The size of a staged part, its handle (if still open) closed first."""
    if handle is not None:
        handle.close()
    return os.path.getsize(path)


def _copy_into(source: str, target: str, offset: int) -> None:
    """Copy the file ``source`` into ``target`` at ``offset``: in the kernel where it can (no
    copy through Python), else through a buffer."""
    with open(source, "rb") as piece, open(target, "r+b") as out:
        size, done = os.fstat(piece.fileno()).st_size, 0
        try:
            while done < size:
                sent = os.copy_file_range(
                    piece.fileno(), out.fileno(), size - done, done, offset + done
                )
                if sent == 0:
                    break
                done += sent
        except (AttributeError, OSError):  # not Linux, or not between these file systems
            pass
        piece.seek(done)
        while done < size and (block := piece.read(1024 * 1024)):
            os.pwrite(out.fileno(), block, offset + done)
            done += len(block)


def _sync(path: str) -> None:
    descriptor = os.open(path, os.O_RDWR)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


@contextmanager
def scratch_folder(folder: Path) -> Iterator[Path]:
    """A new hidden folder inside ``folder`` for temporary files, removed with whatever it holds
    when the block ends, however it ends."""
    scratch = Path(tempfile.mkdtemp(dir=folder, prefix=".scratch-"))
    try:
        yield scratch
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def output_folder(folder: Path) -> bool:
    """Make sure ``folder`` can take outputs: an existing folder, or a new one in an existing
    folder (a missing parent is more likely a typo than a wish). Whether it was made now."""
    if folder.is_dir():
        return False
    if folder.exists():
        raise ConfigurationError(f"{folder}: is a file, not a folder: give a folder to write into")
    parent = folder.absolute().parent
    if not parent.is_dir():
        raise ConfigurationError(
            f"{folder}: the folder {parent} does not exist (create it first, or check the path)"
        )
    folder.mkdir()
    return True


def refuse_non_empty_folder(folder: Path, force: bool) -> None:
    """Refuse to write a study folder into a folder that holds anything, unless ``force`` (the
    writer then replaces only its study files)."""
    if not force and folder.is_dir() and any(folder.iterdir()):
        raise ConfigurationError(
            f"{folder} is not empty: choose a new folder, or give `force` to replace its study files"
        )


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename: never half-written.
    The folder it goes in must exist; ``path`` must not be a folder."""
    _writable_file(Path(path))
    write_files(Path(path).parent, {Path(path).name: data})


@contextmanager
def written_elsewhere(path: str | Path) -> Iterator[str]:
    """A temporary name beside ``path`` for a writer that opens the file itself (a database's
    COPY): renamed to ``path`` when the block ends normally, removed if it raises."""
    path = Path(path)
    _writable_file(path)
    handle, temporary = _temporary(path.absolute().parent, path.name)
    handle.close()
    os.unlink(temporary)  # the writer makes it; only the unused name is kept
    try:
        yield temporary
        with file_access(path, "write"):
            os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def _writable_file(path: Path) -> None:
    if path.is_dir():
        raise ConfigurationError(f"{path}: is a folder: give the name of a file to write")
    if not path.absolute().parent.is_dir():
        raise ConfigurationError(
            f"{path}: the folder {path.absolute().parent} does not exist "
            "(create it first, or check the path)"
        )


def write_files(folder: str | Path, contents: dict[str, bytes], stale: Iterable[str] = ()) -> None:
    """Write several files into ``folder`` and delete the ``stale`` ones not among them.

    Every file is staged under a temporary name first; targets are replaced only once all are
    staged, so a failure while writing leaves the folder as it was.
    """
    with StagedFiles(folder, stale) as staged:
        for name, data in contents.items():
            staged.write(name, data)
