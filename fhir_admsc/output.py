"""Output files written atomically: each through a temporary file beside it and a rename."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _stage(folder: Path, name: str, data: bytes) -> str:
    """Write ``data`` to a new temporary file in ``folder``, synced, and return its path."""
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    try:
        os.fchmod(handle, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual mode
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        os.unlink(temporary)
        raise
    return temporary


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename: never half-written."""
    write_files(Path(path).parent, {Path(path).name: data})


def write_files(folder: str | Path, contents: dict[str, bytes], stale: Iterable[str] = ()) -> None:
    """Write several files into ``folder`` and delete the ``stale`` ones not among them.

    Every file is staged under a temporary name first; targets are replaced only once all are
    staged, so a failure while writing leaves the folder as it was.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    staged: list[tuple[str, Path]] = []
    try:
        for name, data in contents.items():
            staged.append((_stage(folder, name, data), folder / name))
    except BaseException:
        for temporary, _ in staged:
            os.unlink(temporary)
        raise
    for temporary, target in staged:
        os.replace(temporary, target)
    for name in stale:
        if name not in contents and (folder / name).exists():
            (folder / name).unlink()
