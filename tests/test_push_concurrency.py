"""push --concurrency: chunks go side by side, but never before the chunks holding what they
refer to are done, never more than N at once; after a failure nothing new starts and what was
under way is handed back (so the report records it) before the failure is raised."""

from __future__ import annotations

import threading
import time

import pytest

from fhir_admsc.errors import ServerError
from fhir_admsc.journal import PushResult
from fhir_admsc.push import _InFlight


def resource(name: str, *refers_to: str) -> dict:
    kind, rid = name.split("/")
    return {
        "resourceType": kind,
        "id": rid,
        "extension": [{"url": "x", "valueReference": {"reference": r}} for r in refers_to],
    }


class Recorder:
    """The work of a push: records when each chunk (named by its first resource) ran."""

    def __init__(self, seconds: float = 0.2, fail: str | None = None) -> None:
        self.seconds, self.fail = seconds, fail
        self.spans: dict[str, tuple[float, float]] = {}
        self.lock = threading.Lock()

    def __call__(self, todo: list[dict]) -> list[PushResult]:
        name = f"{todo[0]['resourceType']}/{todo[0]['id']}"
        start = time.monotonic()
        time.sleep(self.seconds)
        with self.lock:
            self.spans[name] = (start, time.monotonic())
        if name == self.fail:
            raise ServerError(f"{name}: HTTP 500")
        return [PushResult(f"{r['resourceType']}/{r['id']}", "s|v", "created", 201) for r in todo]

    def overlap(self, a: str, b: str) -> bool:
        (s1, e1), (s2, e2) = self.spans[a], self.spans[b]
        return s1 < e2 and s2 < e1

    def most_at_once(self) -> int:
        edges = sorted(
            [(s, 1) for s, _ in self.spans.values()] + [(e, -1) for _, e in self.spans.values()]
        )
        now = best = 0
        for _, step in edges:
            now += step
            best = max(best, now)
        return best


def run(flight: _InFlight, chunks: list[list[dict]]) -> list[tuple[list[PushResult], int]]:
    handed = []
    try:
        for chunk in chunks:
            handed += flight.send(chunk, len(chunk))
        handed += flight.drain()
    finally:
        flight.close()
    return handed


CHUNKS = [
    [resource("Patient/1")],
    [resource("Patient/2")],
    [resource("Observation/a", "Patient/1")],  # after Patient/1 only
    [resource("Observation/b", "Patient/2")],
    [resource("Observation/c")],
    [resource("Observation/d")],
]


def test_chunks_go_side_by_side_after_those_they_refer_to() -> None:
    work = Recorder()
    handed = run(_InFlight(work, 3), CHUNKS)
    assert sorted(o.resource for outcomes, _ in handed for o in outcomes) == sorted(
        f"{c[0]['resourceType']}/{c[0]['id']}" for c in CHUNKS
    )
    assert sum(size for _, size in handed) == len(CHUNKS)
    assert work.spans["Patient/1"][1] <= work.spans["Observation/a"][0]
    assert work.spans["Patient/2"][1] <= work.spans["Observation/b"][0]
    assert work.overlap("Patient/1", "Patient/2")  # independent: side by side
    assert work.most_at_once() <= 3


def test_one_at_a_time_keeps_input_order() -> None:
    work = Recorder(seconds=0.01)
    handed = run(_InFlight(work, 1), CHUNKS)
    assert [outcomes[0].resource for outcomes, _ in handed] == [
        f"{c[0]['resourceType']}/{c[0]['id']}" for c in CHUNKS
    ]
    assert work.most_at_once() == 1


def test_after_a_failure_what_was_under_way_is_handed_back_and_nothing_starts() -> None:
    work = Recorder(fail="Patient/1")
    flight = _InFlight(work, 2)
    handed: list = []
    with pytest.raises(ServerError, match="Patient/1: HTTP 500"):
        run_into(flight, CHUNKS, handed)
    assert [outcomes[0].resource for outcomes, _ in handed] == ["Patient/2"]
    assert "Observation/a" not in work.spans  # it needed the chunk that failed
    assert set(work.spans) <= {"Patient/1", "Patient/2", "Observation/b"}


def run_into(flight: _InFlight, chunks: list[list[dict]], handed: list) -> None:
    try:
        for chunk in chunks:
            for finished in flight.send(chunk, len(chunk)):
                handed.append(finished)
        for finished in flight.drain():
            handed.append(finished)
    finally:
        flight.close()


def test_a_chunk_with_nothing_to_send_is_handed_back_at_once() -> None:
    work = Recorder()
    flight = _InFlight(work, 2)
    assert list(flight.send([], 7)) == [([], 7)]
    flight.close()
    assert work.spans == {}
