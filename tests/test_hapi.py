"""HAPI FHIR's JPA server: where its defaults differ from Medplum and sekmet in ways that fhir-admsc's
client has to handle (each test names one), its $validate, and Bulk Data $export end to end."""

from __future__ import annotations

import functools
import json
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner

from fhir_admsc.cli import cli
from fhir_admsc.client import FhirClient
from fhir_admsc.ids import identifier, resource_id
from fhir_admsc.mappings import study_to_fhir
from fhir_admsc.push import Pusher, business_identifier, same_content
from fhir_admsc.study import Study
from fhir_admsc.tables import write_study
from tests.servers import FhirServer
from tests.test_server_round_trip import renamed

FHIR_JSON = "application/fhir+json"
TIMEOUT = 30
EXPORT_DEADLINE = 120.0  # seconds for a whole $export of a few hundred resources (about 4 s here)
POLL_CAP = 2.0  # seconds: the longest wait between two polls of the export status


@pytest.fixture
def http() -> requests.Session:
    """Plain requests, each bounded in time, FHIR JSON unless a call says otherwise."""
    session = requests.Session()
    session.headers.update({"Accept": FHIR_JSON, "Content-Type": FHIR_JSON})
    session.request = functools.partial(session.request, timeout=TIMEOUT)  # type: ignore[method-assign]
    return session


def patients(study_id: str, count: int, **fields: Any) -> list[dict[str, Any]]:
    """Patients with fhir-admsc business identifiers and ids of a study of their own."""
    return [
        {
            "resourceType": "Patient",
            "id": resource_id(study_id, "Patient", f"P{n:03}"),
            "identifier": [identifier(study_id, "patient", f"P{n:03}")],
            **fields,
        }
        for n in range(count)
    ]


def write_bundle(path: Path, resources: list[dict[str, Any]]) -> Path:
    entries = [{"resource": r} for r in resources]
    path.write_text(json.dumps({"resourceType": "Bundle", "type": "collection", "entry": entries}))
    return path


def test_a_search_repeated_within_a_minute_comes_from_hapis_cache(hapi_server: FhirServer, http):
    """HAPI answers a search repeated within 60 s from the results it stored the first time, so it
    misses what was written in between, unless the request says Cache-Control: no-cache. The
    client sends it with every request: a pull right after a push sees the push."""
    url = f"{hapi_server.base_url}/Patient"
    system = f"urn:fhir-admsc:test:{uuid.uuid4().hex}"
    query = {"identifier": f"{system}|"}
    assert http.get(url, params=query).json()["total"] == 0
    pid = f"cached-{uuid.uuid4().hex[:12]}"
    patient = {
        "resourceType": "Patient",
        "id": pid,
        "identifier": [{"system": system, "value": "1"}],
    }
    assert http.put(f"{url}/{pid}", json=patient).status_code == 201

    assert http.get(url, params=query).json()["total"] == 0  # the stale answer
    fresh = http.get(url, params=query, headers={"Cache-Control": "no-cache"}).json()
    assert fresh["total"] == 1
    client = FhirClient(hapi_server.base_url)
    assert client.session.headers["Cache-Control"] == "no-cache"
    assert [p["id"] for p in client.search("Patient", query)] == [pid]


def test_capabilities_declare_transactions_and_export_but_not_batch(hapi_server: FhirServer):
    """HAPI's CapabilityStatement names no "batch" interaction though its transaction endpoint takes
    batch Bundles (push tries one batch of reads, and keeps to batches when it is answered)."""
    capabilities = FhirClient(hapi_server.base_url).capabilities()
    assert capabilities.fhir_version == "4.0.1"
    assert capabilities.transaction and not capabilities.batch
    assert capabilities.bulk_export
    assert (
        capabilities.cannot_match_by_identifier({"Patient", "ResearchStudy", "Observation"}) == []
    )


@pytest.mark.parametrize("match", ["id", "identifier"])
def test_push_reads_what_hapi_holds_in_batches(
    hapi_server: FhirServer, tmp_path: Path, match: str
) -> None:
    """Though its CapabilityStatement lists no batch, HAPI answers a batch of reads (by id, and of
    searches by identifier): push reads what it holds a chunk at a time, not with a GET each."""
    study_id = f"HAPI-READS-{match}-{uuid.uuid4().hex[:8]}"
    resources = patients(study_id, 12)
    client = FhirClient(hapi_server.base_url)
    seen: list[str] = []
    client.session.hooks["response"].append(lambda r, *a, **k: seen.append(r.request.method))
    assert Pusher(client, match).current(resources, chunk=5) == [None] * 12  # nothing there yet
    assert seen.count("POST") == 3 and seen.count("GET") == 1  # the batches; /metadata
    source = write_bundle(tmp_path / "patients.json", resources)
    pushed = CliRunner().invoke(
        cli, ["push", str(source), "--server", hapi_server.base_url, "--match", match]
    )
    assert pushed.exit_code == 0, pushed.output
    seen.clear()
    held = Pusher(client, match).current(resources, chunk=5)
    assert [h and business_identifier(h) for h in held] == [
        business_identifier(r) for r in resources
    ]
    assert seen == ["POST"] * 3


def test_count_above_50_is_cut_to_pages_of_50(hapi_server: FhirServer, http, tmp_path: Path):
    """HAPI serves at most 50 matches a page whatever _count asks (pull asks for 500), with a next
    link to the rest; the client follows it to every match."""
    study_id = f"HAPI-PAGES-{uuid.uuid4().hex[:8]}"
    resources = patients(study_id, 60)
    source = write_bundle(tmp_path / "patients.json", resources)
    assert (
        CliRunner().invoke(cli, ["push", str(source), "--server", hapi_server.base_url]).exit_code
        == 0
    )
    system = identifier(study_id, "patient", "P000")["system"]
    page = http.get(
        f"{hapi_server.base_url}/Patient",
        params={"identifier": f"{system}|", "_count": "500"},
        headers={"Cache-Control": "no-cache"},
    ).json()
    assert len(page["entry"]) == 50
    assert any(link["relation"] == "next" for link in page["link"])
    found = FhirClient(hapi_server.base_url).search(
        "Patient", {"identifier": f"{system}|", "_count": "500"}
    )
    ours = {r["id"] for r in resources}
    assert sorted(r["id"] for r in found if r["id"] in ours) == sorted(ours)


@pytest.mark.parametrize("mode", ["batch", "transaction"])
def test_push_isolates_an_entry_hapi_cannot_parse(
    hapi_server: FhirServer, tmp_path: Path, mode: str
) -> None:
    """HAPI parses a whole Bundle before it runs an entry: one entry that is not valid FHIR (here a
    birthDate that is no date) fails the whole batch or transaction with 400. Push halves the Bundle
    until that entry is alone, so the others are stored and the report names the one that failed."""
    study_id = f"HAPI-PARSE-{mode}-{uuid.uuid4().hex[:8]}"
    resources = patients(study_id, 5, birthDate="1970-01-01")
    resources[3]["birthDate"] = "not-a-date"
    source = write_bundle(tmp_path / "patients.json", resources)
    report = tmp_path / "report.ndjson"
    result = CliRunner().invoke(
        cli,
        ["push", str(source), "--server", hapi_server.base_url, "--mode", mode]
        + ["--report", str(report)],
    )
    assert result.exit_code == 1, result.output
    lines = [json.loads(line) for line in report.read_text().splitlines()]
    assert [line["outcome"] for line in lines] == ["created"] * 3 + ["failed", "created"]
    assert lines[3]["status"] == 400 and "not-a-date" in lines[3]["message"]
    assert f"failed: Patient/{resources[3]['id']}" in result.stderr
    client = FhirClient(hapi_server.base_url)
    assert [client.read("Patient", r["id"]) is not None for r in resources] == [True] * 3 + [
        False,
        True,
    ]


def test_validate_runs_offline(hapi_server: FhirServer, http):
    """$validate checks a resource against R4's own definitions, with no terminology server: a
    missing required element is an error, an unknown code system only a warning."""
    url = f"{hapi_server.base_url}/Observation/$validate"
    loinc = {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]}
    valid = {"resourceType": "Observation", "status": "final", "code": loinc}
    response = http.post(url, json=valid)
    assert response.status_code == 200, response.text
    issues = response.json()["issue"]
    assert not [i for i in issues if i["severity"] in ("error", "fatal")]
    assert any("http://loinc.org" in i.get("diagnostics", "") for i in issues)

    response = http.post(url, json={"resourceType": "Observation", "status": "final"})
    assert response.status_code == 200  # R4 reports the outcome; HAPI does not fail the request
    errors = [i["diagnostics"] for i in response.json()["issue"] if i["severity"] == "error"]
    assert any("Observation.code: minimum required = 1" in e for e in errors)


def retry_after(response: requests.Response) -> float:
    """The wait a status answer asks for (Retry-After in seconds), at most POLL_CAP: HAPI asks
    for 120 s whatever the progress, and a test export is done in a few seconds."""
    header = response.headers.get("Retry-After", "")
    return min(float(header) if header.isdigit() else 1.0, POLL_CAP)


def test_bulk_data_export_end_to_end(
    hapi_server: FhirServer, demo_study: Study, tmp_path: Path, http
) -> None:
    """The Bulk Data kick-off, status and download protocol with plain HTTP: a system $export of
    the study's types returns every resource push stored, unchanged, as NDJSON per type."""
    study = renamed(demo_study, "BULK-hapi")
    write_study(study, tmp_path / "in")
    pushed = CliRunner().invoke(
        cli, ["push", str(tmp_path / "in"), "--server", hapi_server.base_url]
    )
    assert pushed.exit_code == 0, pushed.output
    ours = {f"{r['resourceType']}/{r['id']}": r for r in study_to_fhir(study)}
    types = sorted({r["resourceType"] for r in ours.values()})

    kickoff = http.get(
        f"{hapi_server.base_url}/$export",
        params={"_type": ",".join(types)},
        headers={"Prefer": "respond-async"},
    )
    assert kickoff.status_code == 202, kickoff.text
    status_url = kickoff.headers["Content-Location"]
    assert status_url.startswith(f"{hapi_server.base_url}/$export-poll-status?_jobId=")

    deadline = time.monotonic() + EXPORT_DEADLINE
    polls = Counter()
    while True:
        status = http.get(status_url, headers={"Accept": "application/json"})
        polls[status.status_code] += 1
        if status.status_code != 202:
            break
        assert status.headers["Retry-After"] == "120"  # HAPI's fixed answer
        assert status.headers["X-Progress"].startswith("Build in progress")
        assert time.monotonic() < deadline, f"$export not done in {EXPORT_DEADLINE:.0f} s"
        time.sleep(retry_after(status))
    assert status.status_code == 200, status.text
    assert status.headers["Content-Type"].startswith("application/json")
    manifest = status.json()
    assert manifest["request"].startswith(f"{hapi_server.base_url}/$export?_type=")
    assert manifest["error"] == []
    # HAPI says a token is needed to download even on a server without authentication
    assert manifest["requiresAccessToken"] is True
    assert {o["type"] for o in manifest["output"]} == set(types)

    exported: dict[str, dict[str, Any]] = {}
    for output in manifest["output"]:
        assert output["url"].startswith(f"{hapi_server.base_url}/Binary/")
        download = http.get(output["url"], headers={"Accept": "application/fhir+ndjson"})
        assert download.status_code == 200
        assert download.headers["Content-Type"].startswith("application/fhir+ndjson")
        for line in download.text.splitlines():
            resource = json.loads(line)
            assert resource["resourceType"] == output["type"]
            exported[f"{resource['resourceType']}/{resource['id']}"] = resource
    assert set(ours) <= set(exported)  # the export holds other tests' resources too
    assert [ref for ref, r in ours.items() if not same_content(r, exported[ref])] == []
