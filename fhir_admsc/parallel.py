"""Work on every core: worker processes forked from the one that read the inputs (what they
read is shared as it is, nothing is sent to them), their results returned in input order.

Validation checks the resources of one input in ranges (``run_in_order``); rules that look across
resources stay with the caller, which sees every resource, and each worker resolves references
against the whole input, as one process does. Export maps shares of the participants
(``run_forked``), each worker writing its own pieces of the output files.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from multiprocessing.sharedctypes import Synchronized
from typing import Any, TypeVar

from fhir_admsc.errors import InternalError

Item = TypeVar("Item")
Found = TypeVar("Found")

# below this many resources (or bytes of NDJSON) a worker costs more than it saves
SMALLEST = 2_000
SMALLEST_BYTES = 2 * 1024 * 1024
RANGE = 500  # resources per task: the progress line moves, and the cores stay busy to the end

# what the forked workers read: set before the fork (_forked), cleared after
_WORK: tuple[Callable[[Any], Any], Sequence[Any]] | None = None


def cpus() -> int:
    """The cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _run_range(bounds: tuple[int, int]) -> list[Any]:
    assert _WORK is not None
    check, items = _WORK
    return [check(items[i]) for i in range(*bounds)]


def run_in_order(
    check: Callable[[Item], Found],
    items: Sequence[Item],
    jobs: int,
    smallest: int = SMALLEST,
) -> Iterator[list[Found]]:
    """``check`` of each item, in item order, a range at a time; in ``jobs`` forked processes
    where there are ``smallest`` items or more and the platform forks, else here."""
    size = max(1, min(RANGE, len(items) // max(jobs, 1)))
    bounds = [(start, min(start + size, len(items))) for start in range(0, len(items), size)]
    if jobs <= 1 or len(items) < smallest or not can_fork():
        for start, end in bounds:
            yield [check(items[i]) for i in range(start, end)]
        return
    with _forked(check, items, jobs) as pool:
        yield from pool.map(_run_range, bounds)


class WorkerLost(InternalError):
    """A forked worker ended without a result (killed, or out of memory)."""


@contextmanager
def _forked(
    work: Callable[[Any], Any], items: Sequence[Any], jobs: int
) -> Iterator[ProcessPoolExecutor]:
    """A pool of ``jobs`` workers forked from this process when the first task is given, which
    reach ``work`` and ``items`` through the fork. A worker that dies breaks the pool: its tasks
    raise WorkerLost rather than leave the caller waiting. What exists at the fork is kept from
    the workers' cycle collector (``gc.freeze``): walking it would copy every page it touches
    out of the memory they share with this process."""
    global _WORK
    _WORK = (work, items)
    pool = ProcessPoolExecutor(
        jobs, mp_context=multiprocessing.get_context("fork"), initializer=gc.freeze
    )
    try:
        yield pool
    except BrokenProcessPool as e:
        raise WorkerLost(
            "a worker process ended abruptly (killed, or out of memory?): try one process"
        ) from e
    finally:
        pool.shutdown(cancel_futures=True)
        _WORK = None


def can_fork() -> bool:
    """Whether workers can be forked here (not on Windows)."""
    return "fork" in multiprocessing.get_all_start_methods()


def counter() -> Synchronized[int]:
    """A count that forked workers add to and the parent reads (progress)."""
    return multiprocessing.get_context("fork").Value("q", 0)


def run_forked(
    task: Callable[[Item], Found],
    items: Sequence[Item],
    poll: Callable[[], None] | None = None,
) -> list[Found]:
    """``task`` of each item, each in a worker forked from this process, all at once; the results
    in item order. ``poll`` is called about five times a second while they run. ``task`` is
    reached through the fork, so it may be any callable (a closure over what was read). Raises
    WorkerLost when a worker dies, and what ``task`` raised."""
    with _forked(task, items, len(items)) as pool:
        futures = [pool.submit(_run_one, index) for index in range(len(items))]
        while wait(futures, timeout=0.2, return_when=FIRST_EXCEPTION).not_done:
            if poll:
                poll()
        return [future.result() for future in futures]


def _run_one(index: int) -> Any:
    assert _WORK is not None
    task, items = _WORK
    return task(items[index])
