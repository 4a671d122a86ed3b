"""pull --bulk: the Bulk Data $export protocol against a simulated server (``responses``), for the
faults and timings a real server will not produce on demand, and end to end against HAPI and sekmet."""

from __future__ import annotations

import email.utils
import functools
import http.server
import json
import logging
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from click.testing import CliRunner

from fhir_admsc import auth as auth_module
from fhir_admsc.bulk import GROUP_TYPES, BulkExport, bulk_pull_study
from fhir_admsc.bundle import ndjson_files
from fhir_admsc.cli import cli
from fhir_admsc.client import BearerToken, FhirClient
from fhir_admsc.errors import ExitCode, ServerError
from fhir_admsc.ids import resource_id
from fhir_admsc.inputs import read_fhir
from fhir_admsc.mappings import study_from_fhir, study_to_fhir
from fhir_admsc.pull import STUDY_TYPES
from fhir_admsc.study import Study
from fhir_admsc.tables import read_study, write_study
from tests.helpers import scaled_study, table_differences
from tests.servers import FhirServer
from tests.test_server_round_trip import renamed

BASE = "https://fhir.example.test/r4"
STATUS = f"{BASE}/bulk-status/job-1"
FILES = "https://files.example.test/export/job-1"
TOKEN = "secret-token-123"
IMPORT_DEADLINE = 120.0  # seconds for a HAPI $import of the demo study (about 8 s here)
LAST = "DiagnosticReport"  # the type HAPI's $import must get in a job of its own, after the rest
OUTCOME = {
    "resourceType": "OperationOutcome",
    "issue": [{"severity": "error", "code": "processing", "diagnostics": "no such type Foo"}],
}


def metadata(system: bool = True, group: bool = True) -> dict[str, Any]:
    """A CapabilityStatement that declares $export at the given levels."""
    export = [{"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/export"}]
    return {
        "resourceType": "CapabilityStatement",
        "fhirVersion": "4.0.1",
        "rest": [
            {
                "mode": "server",
                "interaction": [{"code": "transaction"}],
                "operation": export if system else [],
                "resource": [{"type": "Group", "operation": export if group else []}],
            }
        ],
    }


class Clock:
    """A fake clock that the fake sleep advances; records every wait."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The fake clock, also behind every client the command line makes (retries, polls)."""
    fake = Clock()
    monkeypatch.setattr(auth_module, "FhirClient", functools.partial(FhirClient, sleep=fake.sleep))
    return fake


@pytest.fixture
def client(clock: Clock) -> FhirClient:
    return FhirClient(BASE, BearerToken(TOKEN), sleep=clock.sleep)


@pytest.fixture(scope="module")
def studies(demo_study: Study) -> tuple[Study, Study]:
    """The study to pull and another one that the same server's export holds too."""
    return renamed(demo_study, "SIM-A"), renamed(scaled_study(demo_study, 2), "SIM-B")


def serve_export(
    studies: tuple[Study, ...],
    *,
    polls: Sequence[dict[str, str]] = (),
    requires_token: bool = True,
    errors: Sequence[dict[str, Any]] = (),
    bodies: dict[str, str] | None = None,
) -> None:
    """A server whose system export answers 202 to each of ``polls`` (their headers), then a
    manifest of one NDJSON file per type of ``studies`` (or ``bodies``), and ``errors`` as its
    error file."""
    responses.get(f"{BASE}/metadata", json=metadata())
    responses.get(f"{BASE}/$export", status=202, headers={"Content-Location": STATUS})
    for headers in polls:
        responses.get(STATUS, status=202, headers=headers)
    if bodies is None:
        bodies = ndjson_files(r for study in studies for r in study_to_fhir(study))
    manifest: dict[str, Any] = {
        "transactionTime": "2026-01-01T00:00:00Z",
        "request": f"{BASE}/$export",
        "requiresAccessToken": requires_token,
        "output": [
            {"type": name.removesuffix(".ndjson"), "url": f"{FILES}/{name}"} for name in bodies
        ],
        "error": [],
    }
    if errors:
        manifest["error"] = [{"type": "OperationOutcome", "url": f"{FILES}/errors.ndjson"}]
        body = "".join(json.dumps(outcome) + "\n" for outcome in errors)
        responses.get(f"{FILES}/errors.ndjson", body=body)
    responses.get(STATUS, json=manifest)
    for name, text in bodies.items():
        responses.get(f"{FILES}/{name}", body=text, content_type="application/fhir+ndjson")
    responses.delete(STATUS, status=202)


def pull(tmp_path: Path, *extra: str):
    return CliRunner().invoke(
        cli,
        ["pull", "--bulk", "--server", BASE, "--token", TOKEN, "--study", "SIM-A"]
        + ["-o", str(tmp_path / "out"), *extra],
    )


def calls(method: str, url: str) -> list[requests.PreparedRequest]:
    return [
        c.request
        for c in responses.calls
        if c.request.method == method and c.request.url.split("?")[0] == url
    ]


def assert_deleted_once() -> None:
    """The export job was deleted, once, after every other request of the export."""
    assert [c.request.method for c in responses.calls][-1] == "DELETE"
    assert len(calls("DELETE", STATUS)) == 1


# -- the protocol, simulated --------------------------------------------------------------------


@responses.activate
@pytest.mark.parametrize(
    "requires_token",
    [pytest.param(True, id="token-required"), pytest.param(False, id="no-token-required")],
)
def test_system_export_gives_back_this_study_alone(
    clock: Clock, studies: tuple[Study, Study], tmp_path: Path, requires_token: bool
) -> None:
    """The kick-off asks for the study's types asynchronously; the downloads carry the token only
    when the manifest says they need it; the other study in the export is left out; the job is
    deleted when done."""
    serve_export(
        studies, polls=[{"Retry-After": "2", "X-Progress": "50%"}], requires_token=requires_token
    )
    result = pull(tmp_path)
    assert result.exit_code == 0, result.output
    assert table_differences(studies[0], read_study(tmp_path / "out")) == {}
    assert "export: 50%" in result.stderr
    assert clock.waits == [2.0]

    (kickoff,) = calls("GET", f"{BASE}/$export")
    assert kickoff.headers["Prefer"] == "respond-async"
    assert kickoff.headers["Accept"] == "application/fhir+json"
    assert parse_qs(urlsplit(kickoff.url).query)["_type"] == [",".join(STUDY_TYPES)]
    assert kickoff.headers["Authorization"] == f"Bearer {TOKEN}"
    downloads = [c.request for c in responses.calls if c.request.url.startswith(FILES)]
    assert len(downloads) == len({r["resourceType"] for s in studies for r in study_to_fhir(s)})
    assert {"Authorization" in d.headers for d in downloads} == {requires_token}
    assert {d.headers["Accept"] for d in downloads} == {"application/fhir+ndjson"}
    assert_deleted_once()
    assert TOKEN not in result.output


@responses.activate
@pytest.mark.parametrize(
    ("polls", "cap", "expected"),
    [
        pytest.param([{"Retry-After": "3"}, {"Retry-After": "5"}], 10.0, [3, 5], id="seconds"),
        pytest.param([{"Retry-After": "120"}], 10.0, [10], id="capped"),
        pytest.param([{"Retry-After": "120"}], 2.5, [2.5], id="cap-option"),
        pytest.param([{}, {}, {}, {}], 3.0, [1, 2, 3, 3], id="none-doubles-to-the-cap"),
    ],
)
def test_polling_honours_retry_after_up_to_the_cap(
    client: FhirClient, clock: Clock, polls, cap: float, expected: list[float]
) -> None:
    serve_export((), polls=polls, bodies={})
    progress: list[str] = []
    with BulkExport(
        client, ["Patient"], poll_interval_max=cap, notify=progress.append, clock=clock
    ) as export:
        manifest = export.manifest()
    assert manifest.output == [] and manifest.requires_access_token
    assert clock.waits == expected
    assert progress == ["export: in progress"] * len(polls)


@responses.activate
def test_polling_honours_retry_after_as_an_http_date(client: FhirClient, clock: Clock) -> None:
    later = email.utils.formatdate(time.time() + 6, usegmt=True)
    serve_export((), polls=[{"Retry-After": later}], bodies={})
    with BulkExport(client, ["Patient"], clock=clock) as export:
        export.manifest()
    assert clock.waits == [pytest.approx(6, abs=1.5)]


@responses.activate
def test_an_export_not_done_in_time_is_a_server_error_and_is_deleted(
    client: FhirClient, clock: Clock
) -> None:
    responses.get(f"{BASE}/$export", status=202, headers={"Content-Location": STATUS})
    responses.get(STATUS, status=202, headers={"Retry-After": "10", "X-Progress": "3 of 9 types"})
    responses.delete(STATUS, status=202)
    with (
        pytest.raises(ServerError, match=r"not done within 30 s \(last progress: 3 of 9 types\)"),
        BulkExport(client, ["Patient"], timeout=30, clock=clock) as export,
    ):
        export.manifest()
    assert clock.waits == [10, 10, 10]
    assert_deleted_once()


@responses.activate
def test_an_interrupt_while_polling_still_deletes_the_job(client: FhirClient, clock: Clock) -> None:
    serve_export((), polls=[{"Retry-After": "1"}], bodies={})

    def interrupt(_: str) -> None:
        raise KeyboardInterrupt

    with (
        pytest.raises(KeyboardInterrupt),
        BulkExport(client, ["Patient"], notify=interrupt, clock=clock) as export,
    ):
        export.manifest()
    assert_deleted_once()


@responses.activate
@pytest.mark.parametrize(
    ("group", "url", "types", "status", "exit_code"),
    [
        pytest.param(None, f"{BASE}/$export", STUDY_TYPES, 400, 1, id="system-400"),
        pytest.param(
            "cohort-1", f"{BASE}/Group/cohort-1/$export", GROUP_TYPES, 404, 1, id="group-404"
        ),
        pytest.param(None, f"{BASE}/$export", STUDY_TYPES, 403, 4, id="system-403"),
        pytest.param(None, f"{BASE}/$export", STUDY_TYPES, 503, 4, id="system-503"),
    ],
)
def test_a_refused_kick_off_says_why(
    clock: Clock, tmp_path: Path, group, url: str, types, status: int, exit_code: int
) -> None:
    responses.get(f"{BASE}/metadata", json=metadata())
    responses.get(url, status=status, json=OUTCOME)
    result = pull(tmp_path, *(["--group", group] if group else []))
    assert result.exit_code == exit_code
    assert f"HTTP {status} no such type Foo" in result.stderr
    (kickoff,) = calls("GET", url)  # not even a 503: each kick-off would start a job
    assert parse_qs(urlsplit(kickoff.url).query)["_type"] == [",".join(types)]
    assert kickoff.headers["Prefer"] == "respond-async"
    assert not calls("DELETE", STATUS) and not (tmp_path / "out").exists()


@responses.activate
def test_a_failed_export_is_exit_4_with_the_servers_reason(clock: Clock, tmp_path: Path) -> None:
    responses.get(f"{BASE}/metadata", json=metadata())
    responses.get(f"{BASE}/$export", status=202, headers={"Content-Location": STATUS})
    responses.get(STATUS, status=500, json=OUTCOME)
    responses.delete(STATUS, status=202)
    result = pull(tmp_path)
    assert result.exit_code == ExitCode.SERVER
    assert f"GET {STATUS}: HTTP 500 no such type Foo" in result.stderr
    assert_deleted_once()
    assert not (tmp_path / "out").exists()


@responses.activate
@pytest.mark.parametrize(
    ("severity", "exit_code", "said"),
    [
        pytest.param("warning", 0, "warning: the export reports: Ignored _since", id="warning"),
        pytest.param("error", 4, "it reports 1 error: Ignored _since", id="error"),
    ],
)
def test_the_exports_error_file_is_surfaced(
    clock: Clock, studies, tmp_path: Path, severity: str, exit_code: int, said: str
) -> None:
    """Warnings are shown and the pull goes on; an error means an incomplete export: nothing is
    written."""
    issue = {"severity": severity, "code": "processing", "diagnostics": "Ignored _since"}
    serve_export(studies, errors=[{"resourceType": "OperationOutcome", "issue": [issue]}])
    result = pull(tmp_path)
    assert result.exit_code == exit_code, result.output
    assert said in result.stderr
    assert (tmp_path / "out").exists() == (exit_code == 0)
    assert_deleted_once()


@responses.activate
def test_a_broken_ndjson_line_is_a_server_error_naming_it(
    clock: Clock, studies, tmp_path: Path
) -> None:
    bodies = ndjson_files(study_to_fhir(studies[0]))
    lines = bodies["Observation.ndjson"].splitlines(keepends=True)
    lines[2] = lines[2][:40] + "\n"
    bodies["Observation.ndjson"] = "".join(lines)
    serve_export(studies, bodies=bodies)
    result = pull(tmp_path)
    # the server's export is broken, not the study data
    assert result.exit_code == ExitCode.SERVER
    assert f"GET {FILES}/Observation.ndjson: line 3 is not valid NDJSON" in result.stderr
    assert "problem" not in result.stderr
    assert_deleted_once()
    assert not (tmp_path / "out").exists()


@responses.activate
@pytest.mark.parametrize(
    ("status", "warned"),
    [
        pytest.param(202, False, id="202"),
        pytest.param(404, False, id="404-finished-job"),
        pytest.param(403, True, id="403"),
    ],
)
def test_a_failed_cleanup_is_a_warning(
    clock: Clock, studies, tmp_path: Path, status: int, warned: bool
) -> None:
    serve_export(studies)
    responses.replace(responses.DELETE, STATUS, status=status, json=OUTCOME)
    result = pull(tmp_path)
    assert result.exit_code == 0, result.output
    assert ("warning: could not delete the export job" in result.stderr) == warned


@responses.activate
@pytest.mark.parametrize(
    ("capabilities", "extra", "said"),
    [
        pytest.param({"system": False}, [], "declares no system-level $export", id="system"),
        pytest.param({"group": False}, ["--group", "g"], "no Group-level $export", id="group"),
    ],
)
def test_a_server_without_export_is_a_usage_error(
    clock: Clock, tmp_path: Path, capabilities, extra, said: str
) -> None:
    responses.get(f"{BASE}/metadata", json=metadata(**capabilities))
    result = pull(tmp_path, *extra)
    assert result.exit_code == ExitCode.USAGE
    assert said in result.stderr and "pull without --bulk" in result.stderr
    assert len(responses.calls) == 1


@responses.activate
def test_a_study_the_export_does_not_hold_is_a_usage_error(
    clock: Clock, studies, tmp_path: Path
) -> None:
    serve_export(studies)
    result = pull(tmp_path, "--study", "NOT-THERE")  # the last --study wins
    assert result.exit_code == ExitCode.USAGE
    assert f"no study with id NOT-THERE is on {BASE}" in result.stderr
    assert "check --study" in result.stderr
    assert_deleted_once()


@responses.activate
def test_progress_counts_each_downloaded_chunk_and_the_steps_are_logged(
    client: FhirClient, clock: Clock, studies, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="fhir_admsc")
    serve_export(studies, polls=[{"Retry-After": "2", "X-Progress": "50%"}])
    received: list[int] = []
    resources = bulk_pull_study(client, "SIM-A", progress=received.append)
    exported = sum(1 for s in studies for _ in study_to_fhir(s))
    # one call per chunk of 64 KiB at least: the Observations alone are several
    assert received == sorted(received) and received[-1] == exported
    assert len(received) > len({r["resourceType"] for r in resources})
    logged = [r.getMessage() for r in caplog.records if r.name == "fhir_admsc.bulk"]
    assert logged[0] == (
        f"export of {', '.join(STUDY_TYPES)} kicked off; its status is at {STATUS}"
    )
    assert logged[1] == "export: 50%; next status check in 2 s"
    assert logged[2] == f"export done: {len(STUDY_TYPES)} output files, 0 error files"
    assert logged[3].startswith("downloaded ") and logged[3].endswith(".ndjson")
    observations = sum(
        1 for s in studies for r in study_to_fhir(s) if r["resourceType"] == "Observation"
    )
    assert (
        f"downloaded {observations} resources of Observation from {FILES}/Observation.ndjson"
        in logged
    )


def test_group_needs_bulk(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["pull", "--server", BASE, "--study", "S", "-o", str(tmp_path), "--group", "g"]
    )
    assert result.exit_code == ExitCode.USAGE and "--group needs --bulk" in result.stderr


# -- real servers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("server", "level"),
    [
        pytest.param("hapi", "system", id="hapi-system"),
        pytest.param("hapi", "group", id="hapi-group"),
        pytest.param("sekmet", "system", id="sekmet-system"),
        # sekmet's Group export leaves ResearchSubject and AdverseEvent out: they are searched for
        pytest.param("sekmet", "group", id="sekmet-group"),
    ],
)
def test_bulk_pull_equals_the_search_pull(
    request: pytest.FixtureRequest, demo_study: Study, tmp_path: Path, server: str, level: str
) -> None:
    """Two studies on one server; the bulk pull of one gives its tables back, and the same
    resources, in the same order, as the search-based pull."""
    base = request.getfixturevalue(f"{server}_server").base_url
    tag = uuid.uuid4().hex[:8]
    study = renamed(demo_study, f"BULK-{tag}")
    other = renamed(demo_study, f"BULK-OTHER-{tag}")
    for pushed in (study, other):
        write_study(pushed, tmp_path / pushed.info.study_id)
        result = CliRunner().invoke(
            cli, ["push", str(tmp_path / pushed.info.study_id), "--server", base]
        )
        assert result.exit_code == 0, result.output
    extra = ["--poll-interval-max", "1"]
    if level == "group":  # the study's participants and one of the other study's
        members = [
            resource_id(s.info.study_id, "Patient", p.participant_id)
            for s, p in [*((study, p) for p in study.participants), (other, other.participants[0])]
        ]
        group = {
            "resourceType": "Group",
            "type": "person",
            "actual": True,
            "member": [{"entity": {"reference": f"Patient/{m}"}} for m in members],
        }
        response = requests.put(
            f"{base}/Group/{tag}",
            json={**group, "id": tag},
            headers={"Content-Type": "application/fhir+json"},
            timeout=30,
        )
        assert response.status_code in (200, 201), response.text
        extra += ["--group", tag]

    for how, options in (("bulk", ["--bulk", *extra]), ("search", [])):
        result = CliRunner().invoke(
            cli,
            ["pull", "--server", base, "--study", study.info.study_id, "--format", "ndjson"]
            + ["-o", str(tmp_path / how), *options],
        )
        assert result.exit_code == 0, result.output
    bulk = {p.name: p.read_text() for p in (tmp_path / "bulk").glob("*.ndjson")}
    search = {p.name: p.read_text() for p in (tmp_path / "search").glob("*.ndjson")}
    assert bulk == search
    assert table_differences(study, study_from_fhir(read_fhir(tmp_path / "bulk"))) == {}


@pytest.fixture
def file_server(tmp_path: Path):
    """A loopback HTTP server of the files in ``tmp_path / "files"``, NDJSON as
    application/fhir+ndjson (HAPI's $import refuses any other content type)."""
    folder = tmp_path / "files"
    folder.mkdir()

    class Files(http.server.SimpleHTTPRequestHandler):
        extensions_map = {".ndjson": "application/fhir+ndjson"}

        def log_message(self, *_: object) -> None:  # the test output is not an access log
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Files, directory=str(folder))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def hapi_import(base: str, urls: dict[str, str]) -> requests.Response:
    """Run one HAPI $import job of ``urls`` (type -> NDJSON URL) to its end; its last status."""
    inputs = [
        {
            "name": "input",
            "part": [{"name": "type", "valueCode": t}, {"name": "url", "valueUri": u}],
        }
        for t, u in urls.items()
    ]
    parameters = {
        "resourceType": "Parameters",
        "parameter": [{"name": "inputFormat", "valueCode": "application/fhir+ndjson"}, *inputs],
    }
    kickoff = requests.post(
        f"{base}/$import",
        json=parameters,
        headers={"Content-Type": "application/fhir+json", "Prefer": "respond-async"},
        timeout=30,
    )
    assert kickoff.status_code == 202, kickoff.text
    deadline = time.monotonic() + IMPORT_DEADLINE
    while True:
        status = requests.get(kickoff.headers["Content-Location"], timeout=30)
        if status.status_code != 202:
            return status
        assert time.monotonic() < deadline, f"$import not done in {IMPORT_DEADLINE:.0f} s"
        time.sleep(1)  # HAPI asks for 120 s whatever the progress


def test_ndjson_export_loads_through_hapis_bulk_import(
    hapi_server: FhirServer, demo_study: Study, tmp_path: Path, file_server
) -> None:
    """`export --format ndjson` is what $import takes: HAPI loads the files from a URL and the
    study pulls back equal. HAPI checks references on import but stores DiagnosticReport before
    the Observations its `result` names, so DiagnosticReport.ndjson goes in a second job."""
    folder, files = file_server
    study = renamed(demo_study, f"IMPORT-{uuid.uuid4().hex[:8]}")
    write_study(study, tmp_path / "in")
    exported = CliRunner().invoke(
        cli, ["export", str(tmp_path / "in"), "--format", "ndjson", "-o", str(folder)]
    )
    assert exported.exit_code == 0, exported.output
    urls = {p.stem: f"{files}/{p.name}" for p in sorted(folder.glob("*.ndjson"))}
    assert set(urls) == set(STUDY_TYPES)
    first = hapi_import(hapi_server.base_url, {t: u for t, u in urls.items() if t != LAST})
    assert first.status_code == 200, first.text
    second = hapi_import(hapi_server.base_url, {LAST: urls[LAST]})
    assert second.status_code == 200, second.text

    pulled = CliRunner().invoke(
        cli,
        ["pull", "--server", hapi_server.base_url, "--study", study.info.study_id]
        + ["-o", str(tmp_path / "out")],
    )
    assert pulled.exit_code == 0, pulled.output
    assert table_differences(study, read_study(tmp_path / "out")) == {}
