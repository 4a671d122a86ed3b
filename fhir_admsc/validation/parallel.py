"""Validation on every core: the resources of one input are checked by worker processes forked
from the one that read them (the packages, the inputs and the resolver of references are shared as
they are, nothing is sent but the findings), in ranges whose findings come back in input order.

Rules that look across resources (Bundle rules, the study's rules) stay with the caller, which sees
every resource; each worker resolves references against the whole input, as one process does.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

Item = TypeVar("Item")
Found = TypeVar("Found")

# below this many resources (or bytes of NDJSON) a worker costs more than it saves
SMALLEST = 2_000
SMALLEST_BYTES = 2 * 1024 * 1024
RANGE = 500  # resources per task: the progress line moves, and the cores stay busy to the end

# what the forked workers read: set by run_in_order before the fork, cleared after
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
    if jobs <= 1 or len(items) < smallest or "fork" not in multiprocessing.get_all_start_methods():
        for start, end in bounds:
            yield [check(items[i]) for i in range(start, end)]
        return
    global _WORK
    _WORK = (check, items)
    try:
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            yield from pool.imap(_run_range, bounds)
    finally:
        _WORK = None
