"""One build at a time: the suite's workers (pytest-xdist) share the Node and Maven projects under
tests/, and the first worker to need one builds it while the others wait, then find it built."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def one_at_a_time(project: Path) -> Iterator[None]:
    """Hold ``project``'s build lock (a file beside it that the operating system releases when
    the holder exits, whatever way it exits)."""
    with (project.parent / f".{project.name}.build-lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
