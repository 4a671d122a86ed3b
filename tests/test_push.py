"""Push planning and sending: order (of whole inputs and of NDJSON folders read a chunk at a time),
change detection, batches with failing entries, and the report as a journal that --resume reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import responses
from click.testing import CliRunner

from fhir_admsc.cli import cli
from fhir_admsc.client import FhirClient, RejectedError, RetryPolicy
from fhir_admsc.errors import ExitCode, InvalidDataError
from fhir_admsc.inputs import Source, ordered, read_fhir
from fhir_admsc.journal import content_hash
from fhir_admsc.output import write_files
from fhir_admsc.push import Pusher, same_content
from tests.validation.corpus import demo, demo_resources

BASE = "https://fhir.example.test/r4"
METADATA = {
    "resourceType": "CapabilityStatement",
    "fhirVersion": "4.0.1",
    "rest": [{"interaction": [{"code": "transaction"}, {"code": "batch"}]}],
}


def key(resource: dict) -> str:
    return f"{resource['resourceType']}/{resource['id']}"


def assert_referenced_first(resources: list[dict], order: list[dict]) -> None:
    position = {key(r): i for i, r in enumerate(order)}
    assert len(order) == len(position) == len(resources)
    assert set(position) == {key(r) for r in resources}
    for r in resources:
        for ref in json.dumps(r).split('"reference": "')[1:]:
            target = ref.split('"')[0]
            if target in position:
                assert position[target] < position[key(r)]


def test_ordered_puts_referenced_resources_first() -> None:
    resources = list(reversed(demo_resources()))
    assert_referenced_first(resources, ordered(resources))


def write_ndjson(folder: Path, files: dict[str, list[dict]]) -> Path:
    write_files(
        folder, {n: "".join(json.dumps(r) + "\n" for r in rs).encode() for n, rs in files.items()}
    )
    return folder


def by_type(resources: list[dict]) -> dict[str, list[dict]]:
    files: dict[str, list[dict]] = {}
    for r in resources:
        files.setdefault(f"{r['resourceType']}.ndjson", []).append(r)
    return files


@pytest.mark.parametrize(
    "layout",
    [
        pytest.param(lambda rs: by_type(rs), id="a-file-per-type"),
        pytest.param(lambda rs: by_type(list(reversed(rs))), id="a-file-per-type-reversed"),
        pytest.param(lambda rs: {"all.ndjson": list(reversed(rs))}, id="one-file-reversed"),
        pytest.param(
            lambda rs: {"a.ndjson": rs[1::2][::-1], "b.ndjson": rs[::2][::-1]}, id="mixed-files"
        ),
    ],
)
@pytest.mark.parametrize("size", [1, 7, 1000])
def test_an_ndjson_folder_is_read_a_chunk_at_a_time_referenced_first(
    tmp_path: Path, layout, size: int
) -> None:
    """Procedure and BiologicallyDerivedProduct refer to each other's type (and Procedure to
    itself): files like these are ordered resource by resource, the others streamed."""
    resources = list(demo_resources())
    source = Source(write_ndjson(tmp_path / "nd", layout(resources)))
    chunks = list(source.chunks(size))
    assert {len(c) for c in chunks[:-1]} <= {size} and 0 < len(chunks[-1]) <= size
    assert_referenced_first(resources, [r for c in chunks for r in c])
    assert source.total == len(resources)
    assert source.types == {r["resourceType"] for r in resources}


def test_a_bad_ndjson_line_is_named_by_file_and_line(tmp_path: Path) -> None:
    folder = write_ndjson(
        tmp_path / "nd", {"Patient.ndjson": [demo("patient", i) for i in range(3)]}
    )
    lines = (folder / "Patient.ndjson").read_text().splitlines()
    (folder / "Patient.ndjson").write_text("\n".join([*lines[:2], "", lines[2][:-1]]) + "\n")
    with pytest.raises(InvalidDataError, match=r"Patient.ndjson:4: is not valid JSON"):
        list(Source(folder).chunks(10))


def test_same_content_ignores_server_meta_and_number_form() -> None:
    ours = demo("odi")
    theirs = json.loads(json.dumps(ours))
    theirs["meta"].update(versionId="3", lastUpdated="2026-01-01T00:00:00Z")
    theirs["text"] = {"status": "generated", "div": "<div>x</div>"}
    theirs["valueQuantity"]["value"] = float(theirs["valueQuantity"]["value"])
    assert same_content(ours, theirs)
    theirs["status"] = "amended"
    assert not same_content(ours, theirs)
    assert not same_content(ours, None)
    extra = json.loads(json.dumps(ours))
    extra["note"] = [{"text": "added on the server"}]
    assert not same_content(ours, extra)


def test_read_fhir_accepts_bundle_ndjson_and_study(tmp_path: Path, study_dir: Path) -> None:
    resources = list(demo_resources())
    (tmp_path / "b.json").write_text(
        json.dumps(
            {
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [{"resource": r} for r in resources],
            }
        )
    )
    (tmp_path / "nd").mkdir()
    (tmp_path / "nd" / "All.ndjson").write_text("".join(json.dumps(r) + "\n" for r in resources))
    assert read_fhir(tmp_path / "b.json") == resources
    assert read_fhir(tmp_path / "nd") == resources
    assert read_fhir(study_dir) == resources
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(InvalidDataError, match="bad.json"):
        read_fhir(tmp_path / "bad.json")


class FakeServer:
    """Just enough of a FHIR server for batch semantics: reads, PUTs, scripted failures."""

    def __init__(self, fail: dict[str, list[int]] | None = None) -> None:
        self.store: dict[str, dict] = {}
        self.fail = fail or {}
        self.batches: list[int] = []
        self.entries: list[str] = []  # "GET url" or "PUT url", every entry of every Bundle

    def __call__(self, request):
        bundle = json.loads(request.body)
        self.batches.append(len(bundle["entry"]))
        answers = []
        for entry in bundle["entry"]:
            url = entry["request"]["url"]
            self.entries.append(f"{entry['request']['method']} {url}")
            if entry["request"]["method"] == "GET":
                found = self.store.get(url)
                answers.append(
                    {
                        "response": {"status": "200 OK" if found else "404 Not Found"},
                        **({"resource": found} if found else {}),
                    }
                )
                continue
            scripted = self.fail.get(url)
            if scripted:
                status = scripted.pop(0)
                answers.append(
                    {
                        "response": {
                            "status": str(status),
                            "outcome": {
                                "resourceType": "OperationOutcome",
                                "issue": [
                                    {
                                        "severity": "error",
                                        "code": "invalid",
                                        "diagnostics": f"scripted {status}",
                                    }
                                ],
                            },
                        }
                    }
                )
                continue
            created = url not in self.store
            self.store[url] = entry["resource"]
            answers.append(
                {
                    "response": {
                        "status": "201 Created" if created else "200 OK",
                        "location": f"{url}/_history/1",
                    }
                }
            )
        return (
            200,
            {},
            json.dumps({"resourceType": "Bundle", "type": "batch-response", "entry": answers}),
        )


def pusher_for(server: FakeServer) -> Pusher:
    responses.get(f"{BASE}/metadata", json=METADATA)
    responses.add_callback(responses.POST, BASE + "/", callback=server)
    client = FhirClient(BASE, retry=RetryPolicy(attempts=3), sleep=lambda s: None)
    return Pusher(client)


@responses.activate
def test_batch_resends_only_entries_that_can_succeed() -> None:
    resources = ordered([demo("patient", i) for i in range(4)])
    urls = [f"Patient/{r['id']}" for r in resources]
    server = FakeServer({urls[1]: [503, 503], urls[2]: [422]})
    pusher = pusher_for(server)
    outcomes = pusher.send(resources, pusher.plan(resources), "batch", chunk=10)
    assert [o.outcome for o in outcomes] == ["created", "created", "failed", "created"]
    assert outcomes[2].status == 422 and "scripted 422" in outcomes[2].message
    assert server.batches == [4, 4, 1, 1]  # the read, the batch, then entry 1 twice
    assert set(server.store) == {urls[0], urls[1], urls[3]}


@responses.activate
def test_second_push_sends_nothing() -> None:
    resources = [demo("patient", i) for i in range(3)]
    server = FakeServer()
    pusher = pusher_for(server)
    first = pusher.send(resources, pusher.plan(resources), "batch", chunk=2)
    assert [o.outcome for o in first] == ["created"] * 3
    plan = pusher.plan(resources)
    assert [o.outcome for o in plan] == ["unchanged"] * 3
    sent_before = len(server.batches)
    second = pusher.send(resources, plan, "batch", chunk=2)
    assert [o.outcome for o in second] == ["unchanged"] * 3
    assert len(server.batches) == sent_before


@responses.activate
def test_dry_run_plan_reports_create_update_unchanged() -> None:
    resources = [demo("patient", i) for i in range(3)]
    server = FakeServer()
    pusher = pusher_for(server)
    server.store[f"Patient/{resources[1]['id']}"] = resources[1]
    changed = json.loads(json.dumps(resources[2]))
    changed["gender"] = "other"
    server.store[f"Patient/{resources[2]['id']}"] = changed
    assert [o.outcome for o in pusher.plan(resources)] == ["create", "unchanged", "update"]


def test_identifier_mode_sends_conditional_references() -> None:
    subject, patient = demo("research-subject"), demo("patient")
    pusher = Pusher(FhirClient(BASE), match="identifier")
    sent = pusher.payload(subject, {key(patient): pusher.request_url(patient)})
    assert "id" not in sent
    assert sent["individual"]["reference"].startswith(
        "Patient?identifier=https://fhir-admsc.org/fhir/sid/patient|ADMSC-FSO794/"
    )
    assert pusher.request_url(patient).startswith("Patient?identifier=")


@responses.activate
def test_identifier_mode_refers_to_resources_of_earlier_chunks() -> None:
    subject, patient = demo("research-subject"), demo("patient")
    server = FakeServer()
    responses.get(f"{BASE}/metadata", json=METADATA)
    responses.add_callback(responses.POST, BASE + "/", callback=server)
    pusher = Pusher(FhirClient(BASE), match="identifier")
    for chunk in ([patient], [subject]):
        outcomes = pusher.send(chunk, pusher.plan(chunk), "transaction", chunk=10)
        assert [o.outcome for o in outcomes] == ["created"]
    stored = server.store[pusher.request_url(subject)]
    assert stored["individual"]["reference"] == pusher.request_url(patient)


def test_ordered_keeps_a_reference_cycle_whole() -> None:
    a = {"resourceType": "Basic", "id": "a", "subject": {"reference": "Basic/b"}}
    b = {"resourceType": "Basic", "id": "b", "subject": {"reference": "Basic/a"}}
    c = {"resourceType": "Basic", "id": "c", "subject": {"reference": "Basic/a"}}
    assert [r["id"] for r in ordered([c, a, b])] == ["b", "a", "c"]


def push_patients(folder: Path, report: Path, *options: str):
    return CliRunner().invoke(
        cli,
        ["push", str(folder), "--server", BASE, "--chunk", "2", "--report", str(report), *options],
    )


@pytest.fixture
def server() -> FakeServer:
    server = FakeServer()
    responses.get(f"{BASE}/metadata", json=METADATA)
    responses.add_callback(responses.POST, BASE + "/", callback=server)
    return server


@responses.activate
def test_resume_sends_only_what_the_report_does_not_say_is_done(
    tmp_path: Path, server: FakeServer
) -> None:
    patients = [demo("patient", i) for i in range(5)]
    urls = [key(p) for p in patients]
    folder = write_ndjson(tmp_path / "nd", {"Patient.ndjson": patients})
    report = tmp_path / "push.ndjson"
    assert push_patients(folder, report).exit_code == ExitCode.OK
    lines = report.read_text().splitlines()
    assert [json.loads(line)["sha256"] for line in lines] == [content_hash(p) for p in patients]

    # What a run killed while writing its third line leaves; then patient 1 changes.
    report.write_text("".join(line + "\n" for line in lines[:2]) + lines[2][:40])
    patients[1]["gender"] = "other"
    write_ndjson(folder, {"Patient.ndjson": patients})
    server.entries.clear()
    resumed = push_patients(folder, report, "--resume")
    assert resumed.exit_code == ExitCode.OK, resumed.output
    assert "1 done before" in resumed.stderr
    # In chunks of two: patient 0 skipped, 1 read and sent (changed), 2 to 4 read (unchanged).
    assert server.entries == [
        f"GET {urls[1]}",
        f"PUT {urls[1]}",
        *(f"GET {u}" for u in urls[2:]),
    ]
    final = [json.loads(line) for line in report.read_text().splitlines()]
    assert [(line["resource"], line["outcome"]) for line in final] == [
        (urls[0], "created"),
        (urls[1], "updated"),
        *((u, "unchanged") for u in urls[2:]),
    ]
    assert [line["sha256"] for line in final] == [content_hash(p) for p in patients]

    server.entries.clear()
    again = push_patients(folder, report, "--resume")
    assert again.exit_code == ExitCode.OK and "5 done before" in again.stderr
    assert server.entries == [] and report.read_text().splitlines() == [
        json.dumps(line) for line in final
    ]

    assert push_patients(folder, report).exit_code == ExitCode.OK  # no --resume: replaced
    final = [json.loads(line) for line in report.read_text().splitlines()]
    assert [line["outcome"] for line in final] == ["unchanged"] * 5


@responses.activate
def test_a_push_the_server_stops_keeps_the_lines_it_confirmed(tmp_path: Path) -> None:
    server = FakeServer()
    posts: list[object] = []

    def first_chunk_only(request):  # its read and its transaction; then the server fails
        posts.append(request)
        return server(request) if len(posts) <= 2 else (503, {}, "")

    responses.get(f"{BASE}/metadata", json=METADATA)
    responses.add_callback(responses.POST, BASE + "/", callback=first_chunk_only)
    patients = [demo("patient", i) for i in range(5)]
    folder = write_ndjson(tmp_path / "nd", {"Patient.ndjson": patients})
    report = tmp_path / "push.ndjson"
    result = push_patients(folder, report, "--retries", "0")
    assert result.exit_code == ExitCode.SERVER
    assert "HTTP 503" in result.stderr and "--resume" in result.stderr
    lines = [json.loads(line) for line in report.read_text().splitlines()]
    assert [(line["resource"], line["outcome"]) for line in lines] == [
        (key(p), "created") for p in patients[:2]
    ]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        pytest.param(["--resume"], "--resume needs --report", id="resume-without-report"),
        pytest.param(
            ["--resume", "--dry-run", "--report", "r.ndjson"],
            "nothing to resume",
            id="resume-a-dry-run",
        ),
    ],
)
def test_resume_usage_errors_exit_2(study_dir: Path, options: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["push", str(study_dir), "--server", BASE, *options])
    assert result.exit_code == ExitCode.USAGE and message in result.stderr


@responses.activate
def test_resume_refuses_a_report_that_is_not_one(tmp_path: Path, server: FakeServer) -> None:
    folder = write_ndjson(tmp_path / "nd", {"Patient.ndjson": [demo("patient")]})
    report = tmp_path / "push.csv"
    report.write_text("resource,outcome\n")
    result = push_patients(folder, report, "--resume")
    assert result.exit_code == ExitCode.USAGE
    assert f"{report}:1 is not a line of a push report" in result.stderr
    assert report.read_text() == "resource,outcome\n" and server.entries == []


NO_BATCH_LISTED = {**METADATA, "rest": [{"interaction": [{"code": "transaction"}]}]}


@responses.activate
def test_a_batch_of_reads_is_tried_where_the_capability_statement_lists_none() -> None:
    """HAPI 8.8 lists no batch interaction yet answers batch Bundles: the reads go in batches."""
    server = FakeServer()
    responses.get(f"{BASE}/metadata", json=NO_BATCH_LISTED)
    responses.add_callback(responses.POST, BASE + "/", callback=server)
    pusher = Pusher(FhirClient(BASE, retry=RetryPolicy(attempts=3), sleep=lambda s: None))
    resources = demo_resources()[:250]
    current = pusher.current(resources, chunk=100)
    assert current == [None] * 250
    assert server.batches == [100, 100, 50]
    assert not [
        c for c in responses.calls if c.request.method == "GET" and "metadata" not in c.request.url
    ]


@responses.activate
def test_a_server_that_refuses_a_batch_is_read_one_resource_at_a_time_after_one_try() -> None:
    responses.get(f"{BASE}/metadata", json=NO_BATCH_LISTED)
    refused = responses.post(BASE + "/", status=400, json={"resourceType": "OperationOutcome"})
    resources = demo_resources()[:30]
    for r in resources:
        responses.get(f"{BASE}/{r['resourceType']}/{r['id']}", status=404)
    pusher = Pusher(FhirClient(BASE, retry=RetryPolicy(attempts=3), sleep=lambda s: None))
    assert pusher.current(resources, chunk=10) == [None] * 30
    assert refused.call_count == 1  # tried once, then remembered
    reads = [
        c for c in responses.calls if c.request.method == "GET" and "metadata" not in c.request.url
    ]
    assert len(reads) == 30


@responses.activate
def test_a_server_that_lists_batches_and_fails_one_is_an_error() -> None:
    responses.get(f"{BASE}/metadata", json=METADATA)
    responses.post(BASE + "/", status=400, json={"resourceType": "OperationOutcome"})
    pusher = Pusher(FhirClient(BASE, retry=RetryPolicy(attempts=3), sleep=lambda s: None))
    with pytest.raises(RejectedError, match="400"):
        pusher.current(demo_resources()[:5])
