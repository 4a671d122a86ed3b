"""push under faults, against a real FHIR server (sekmet) behind a fault-injecting proxy: the server
goes away and comes back, connections reset mid-answer, 429 with Retry-After, 5xx bursts, answers
slower than the client waits, batch entries that fail, and a push killed outright. Whatever
happens, a push that failed and is run again leaves the server with every resource of the study
exactly once: one chunk at a time, and, for the faults that stop a push, four at a time
(``--concurrency 4``)."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from fhir_admsc.bundle import ndjson_files
from fhir_admsc.cli import cli
from fhir_admsc.errors import ExitCode
from fhir_admsc.journal import DONE
from fhir_admsc.mappings import study_to_fhir
from fhir_admsc.output import write_files
from fhir_admsc.push import business_identifier
from fhir_admsc.study import Study
from tests.fault_proxy import FaultProxy, nth_write
from tests.servers import FhirServer
from tests.test_server_round_trip import counts_by_identifier, renamed

pytestmark = pytest.mark.faults

CHUNK = 50  # resources a chunk: the demo study is pushed in 14 of them
FAST = ["--retries", "3", "--retry-wait", "0.05"]  # four tries, waits of 50 ms


@dataclass
class Export:
    """A study exported as an NDJSON folder, and where its push report goes."""

    study_id: str
    folder: Path
    report: Path
    resources: list[dict]
    concurrency: int = 1

    def command(self, server: str, *options: str) -> list[str]:
        """The push command, the same for a first run and a re-run: --resume continues from the
        report when there is one."""
        return [
            "push",
            str(self.folder),
            "--server",
            server,
            "--chunk",
            str(CHUNK),
            "--report",
            str(self.report),
            "--resume",
            "--concurrency",
            str(self.concurrency),
            *options,
        ]

    def report_lines(self) -> list[dict]:
        return [json.loads(line) for line in self.report.read_text().splitlines()]


@pytest.fixture
def export(
    request: pytest.FixtureRequest, demo_study: Study, tmp_path: Path, concurrency: int
) -> Export:
    """The demo study under a study id of the test's own (its namespace on the shared server)."""
    test = hashlib.sha256(request.node.nodeid.encode()).hexdigest()[:12]
    study = renamed(demo_study, f"FLT-{test}")
    resources = list(study_to_fhir(study))
    folder = tmp_path / "ndjson"
    write_files(folder, {name: text.encode() for name, text in ndjson_files(resources).items()})
    return Export(study.info.study_id, folder, tmp_path / "push.ndjson", resources, concurrency)


@pytest.fixture
def concurrency() -> int:
    """Chunks sent at a time: one, unless a test says otherwise (``BOTH``)."""
    return 1


# The faults that stop a push while other chunks may be under way, at one chunk at a time and at
# four: those under way must still be recorded, and the re-run must send each resource once.
BOTH = pytest.mark.parametrize("concurrency", [1, 4], ids=["one-chunk", "four-chunks"])


@pytest.fixture
def proxy(sekmet_server: FhirServer) -> Iterator[FaultProxy]:
    with FaultProxy(sekmet_server.base_url) as proxy:
        yield proxy


def push(proxy: FaultProxy, export: Export, *options: str) -> Result:
    return CliRunner().invoke(cli, export.command(proxy.base_url, *options))


def rerun(proxy: FaultProxy, export: Export, *options: str) -> Result:
    """The same command again, once the faults are gone; it must succeed."""
    proxy.clear()
    assert proxy.up.wait(timeout=30)
    result = push(proxy, export, *options)
    assert result.exit_code == ExitCode.OK, result.output
    return result


def assert_held_exactly_once(server: FhirServer, export: Export) -> None:
    """The server holds every resource of the study once: none missing, none duplicated."""
    counts = counts_by_identifier(server.base_url, export.study_id)
    assert set(counts.values()) == {1}
    assert len(counts) == len(export.resources)
    held = {pair for key in counts for pair in key}
    assert {business_identifier(r) for r in export.resources} <= held


def assert_one_done_line_per_resource(export: Export) -> dict[str, dict]:
    lines = export.report_lines()
    by_resource = {line["resource"]: line for line in lines}
    assert len(lines) == len(by_resource) == len(export.resources)
    assert set(by_resource) == {f"{r['resourceType']}/{r['id']}" for r in export.resources}
    assert {line["outcome"] for line in lines} <= DONE
    return by_resource


def sent_again(proxy: FaultProxy, name: str) -> list:
    """The exchanges that carried the same Bundle of PUTs as the first one the fault hit."""
    first = proxy.applied(name)[0]
    return [e for e in proxy.exchanges if e.writes == first.writes]


@BOTH
@pytest.mark.parametrize(
    ("seconds", "options", "first_exit"),
    [
        pytest.param(0.3, ["--retries", "10", "--retry-wait", "0.1"], 0, id="back-in-time"),
        pytest.param(1.0, FAST, 4, id="down-too-long"),
    ],
)
def test_server_stops_in_the_middle_and_comes_back(
    proxy, sekmet_server, export, seconds, options, first_exit
) -> None:
    proxy.arm("refuse", nth_write(4), seconds=seconds)
    first = push(proxy, export, *options)
    assert first.exit_code == first_exit, first.output
    tries = sent_again(proxy, "refuse")
    if first_exit == ExitCode.SERVER:
        # The retries met a closed port (refused before reaching the proxy): the client counts them.
        assert "could not connect after 4 attempts" in first.stderr
        assert "--resume" in first.stderr
        assert len(tries) == 1
        rerun(proxy, export, *options)
    else:
        assert len(tries) == 2 and tries[-1].status == 200
    assert_one_done_line_per_resource(export)
    assert_held_exactly_once(sekmet_server, export)


@pytest.mark.parametrize(
    ("times", "first_exit"),
    [
        pytest.param(2, 0, id="retried"),
        pytest.param(4, 4, id="every-try"),
    ],
)
def test_connections_reset_mid_answer(proxy, sekmet_server, export, times, first_exit) -> None:
    proxy.arm("reset", nth_write(3), times=times)
    first = push(proxy, export, *FAST)
    assert first.exit_code == first_exit, first.output
    tries = sent_again(proxy, "reset")
    assert len(tries) == min(times + 1, 4) and all(e.forwarded for e in tries)
    if first_exit == ExitCode.SERVER:
        rerun(proxy, export, *FAST)
    lines = assert_one_done_line_per_resource(export)
    if first_exit == ExitCode.SERVER:
        # The server stored the transaction whose answers broke off: the re-run finds it so.
        assert {lines[url]["outcome"] for url in tries[0].writes} == {"unchanged"}
    assert_held_exactly_once(sekmet_server, export)


def test_429_with_retry_after_is_waited_for(proxy, sekmet_server, export) -> None:
    proxy.arm("status", nth_write(3), times=2, status=(429,), headers={"Retry-After": "1"})
    first = push(proxy, export, "--retries", "3", "--retry-wait", "5")
    assert first.exit_code == ExitCode.OK, first.output
    tries = sent_again(proxy, "status")
    assert [e.status for e in tries] == [429, 429, 200]
    gaps = [b.started - a.started for a, b in zip(tries, tries[1:], strict=False)]
    assert min(gaps) >= 0.9  # Retry-After: 1, not the 0.5 s backoff
    assert_one_done_line_per_resource(export)
    assert_held_exactly_once(sekmet_server, export)


@BOTH
@pytest.mark.parametrize(
    ("statuses", "first_exit"),
    [
        pytest.param((503, 500, 503), 0, id="shorter-than-the-retries"),
        pytest.param((503, 500, 503, 503, 500), 4, id="longer-than-the-retries"),
    ],
)
def test_5xx_bursts(proxy, sekmet_server, export, statuses, first_exit) -> None:
    proxy.arm("status", nth_write(2), times=len(statuses), status=statuses)
    first = push(proxy, export, *FAST)
    assert first.exit_code == first_exit, first.output
    tries = sent_again(proxy, "status")
    assert [e.status for e in tries] == [*statuses, 200][:4]
    if first_exit == ExitCode.SERVER:
        assert "HTTP 503" in first.stderr
        confirmed = len(export.report_lines())
        assert confirmed == CHUNK  # the first chunk; the second never reached the server
        result = rerun(proxy, export, *FAST)
        assert f"{CHUNK} done before" in result.stderr
        # The re-run compares only what the report does not say is done, and sends only that.
        read = sum(len(e.reads) for e in proxy.exchanges)
        written = sum(len(e.writes) for e in proxy.exchanges)
        assert read == written == len(export.resources) - confirmed
    assert_one_done_line_per_resource(export)
    assert_held_exactly_once(sekmet_server, export)


@pytest.mark.parametrize(
    ("times", "first_exit"),
    [
        pytest.param(1, 0, id="one-slow-answer"),
        pytest.param(4, 4, id="every-try-slow"),
    ],
)
def test_answers_slower_than_the_client_waits(
    proxy, sekmet_server, export, times, first_exit
) -> None:
    """A transaction the client gave up on may have been committed: the server had it."""
    proxy.arm("slow", nth_write(2), times=times, seconds=1.5)
    first = push(proxy, export, *FAST, "--timeout", "1")
    assert first.exit_code == first_exit, first.output
    tries = sent_again(proxy, "slow")
    assert len(tries) == min(times + 1, 4) and all(e.forwarded for e in tries)
    if first_exit == ExitCode.SERVER:
        assert "timed out after 4 attempts" in first.stderr
        rerun(proxy, export, *FAST)
        assert not set(tries[0].writes) & {u for e in proxy.exchanges for u in e.writes}
    lines = assert_one_done_line_per_resource(export)
    if first_exit == ExitCode.SERVER:
        assert {lines[url]["outcome"] for url in tries[0].writes} == {"unchanged"}
    assert_held_exactly_once(sekmet_server, export)


def test_batch_entries_that_fail_for_a_passing_reason_are_resent(
    proxy, sekmet_server, export
) -> None:
    proxy.arm("fail-entries", nth_write(2), entries=3, status=(503,))
    first = push(proxy, export, *FAST, "--mode", "batch")
    assert first.exit_code == ExitCode.OK, first.output
    failed = proxy.applied("fail-entries")[0]
    later = proxy.exchanges[proxy.exchanges.index(failed) + 1]
    assert later.bundle == "batch" and later.writes == failed.writes[:3]
    assert_one_done_line_per_resource(export)
    assert_held_exactly_once(sekmet_server, export)


@BOTH
def test_batch_entries_the_server_refuses_are_sent_by_the_rerun(
    proxy, sekmet_server, export
) -> None:
    proxy.arm("break-entries", nth_write(2), entries=2)
    first = push(proxy, export, *FAST, "--mode", "batch")
    assert first.exit_code == ExitCode.INVALID_DATA, first.output
    broken = proxy.applied("break-entries")[0].writes[:2]
    failed = [line for line in export.report_lines() if line["outcome"] == "failed"]
    assert sorted(line["resource"] for line in failed) == sorted(broken)
    assert all(line["status"] == 400 for line in failed)
    assert first.stderr.count("failed: ") == 2
    rerun(proxy, export, *FAST, "--mode", "batch")
    assert sorted(u for e in proxy.exchanges for u in e.writes) == sorted(broken)
    assert sorted(u for e in proxy.exchanges for u in e.reads) == sorted(broken)
    assert_one_done_line_per_resource(export)
    assert_held_exactly_once(sekmet_server, export)


@BOTH
def test_a_killed_push_resumes_where_its_report_ends(
    proxy, sekmet_server, export, tmp_path: Path
) -> None:
    """SIGKILL while the server has stored a transaction it never got to answer: the report holds
    only resources the server has, and the resumed push sends only what the server lacks."""
    proxy.arm("stall", nth_write(5))
    command = [sys.executable, "-c", "from fhir_admsc.cli import main; main()"]
    process = subprocess.Popen(
        [*command, *export.command(proxy.base_url)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert proxy.stalled.wait(timeout=120)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL
    stalled = proxy.applied("stall")[0]
    lines = export.report_lines()
    assert {line["outcome"] for line in lines} == {"created"}
    held = counts_by_identifier(sekmet_server.base_url, export.study_id)
    held_identifiers = {pair for key in held for pair in key}
    assert {tuple(line["identifier"].split("|", 1)) for line in lines} <= held_identifiers
    if export.concurrency == 1:
        assert len(lines) == 4 * CHUNK  # the four chunks before the stalled one
        assert len(held) == len(lines) + len(stalled.writes)  # the stalled chunk is stored too
    else:
        # Chunks are recorded whole, once answered; others under way when the push was killed
        # may be stored without a line, as the stalled one is.
        assert len(lines) % CHUNK == 0 and len(lines) <= 4 * CHUNK
        assert len(held) >= len(lines) + len(stalled.writes)

    result = rerun(proxy, export)
    read = [u for e in proxy.exchanges for u in e.reads]
    written = [u for e in proxy.exchanges for u in e.writes]
    assert len(read) == len(export.resources) - len(lines)
    assert len(written) == len(export.resources) - len(held)
    assert not set(written) & set(stalled.writes)
    assert f"{len(lines)} done before" in result.stderr
    by_resource = assert_one_done_line_per_resource(export)
    assert {by_resource[url]["outcome"] for url in stalled.writes} == {"unchanged"}
    assert_held_exactly_once(sekmet_server, export)
