"""Push planning and sending: order, change detection, and batches with failing entries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import responses

from fhir_admsc.bundle import read_resources
from fhir_admsc.client import FhirClient, RetryPolicy
from fhir_admsc.errors import InvalidDataError
from fhir_admsc.push import Pusher, ordered, same_content
from tests.validation.corpus import demo, demo_resources

BASE = "https://fhir.example.test/r4"
METADATA = {
    "resourceType": "CapabilityStatement",
    "fhirVersion": "4.0.1",
    "rest": [{"interaction": [{"code": "transaction"}, {"code": "batch"}]}],
}


def test_ordered_puts_referenced_resources_first() -> None:
    resources = list(reversed(demo_resources()))
    position = {f"{r['resourceType']}/{r['id']}": i for i, r in enumerate(ordered(resources))}
    assert len(position) == len(resources)
    for r in resources:
        for ref in json.dumps(r).split('"reference": "')[1:]:
            target = ref.split('"')[0]
            if target in position:
                assert position[target] < position[f"{r['resourceType']}/{r['id']}"]


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


def test_read_resources_accepts_bundle_ndjson_and_study(tmp_path: Path, study_dir: Path) -> None:
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
    assert read_resources(tmp_path / "b.json") == resources
    assert read_resources(tmp_path / "nd") == resources
    assert read_resources(study_dir) == resources
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(InvalidDataError, match="bad.json"):
        read_resources(tmp_path / "bad.json")


class FakeServer:
    """Just enough of a FHIR server for batch semantics: reads, PUTs, scripted failures."""

    def __init__(self, fail: dict[str, list[int]] | None = None) -> None:
        self.store: dict[str, dict] = {}
        self.fail = fail or {}
        self.batches: list[int] = []

    def __call__(self, request):
        bundle = json.loads(request.body)
        self.batches.append(len(bundle["entry"]))
        answers = []
        for entry in bundle["entry"]:
            url = entry["request"]["url"]
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
    sent = pusher.payload(subject, {f"Patient/{patient['id']}": patient})
    assert "id" not in sent
    assert sent["individual"]["reference"].startswith(
        "Patient?identifier=https://fhir-admsc.org/fhir/sid/patient|ADMSC-FSO794/"
    )
    assert pusher.request_url(patient).startswith("Patient?identifier=")


def test_ordered_keeps_a_reference_cycle_whole() -> None:
    a = {"resourceType": "Basic", "id": "a", "subject": {"reference": "Basic/b"}}
    b = {"resourceType": "Basic", "id": "b", "subject": {"reference": "Basic/a"}}
    c = {"resourceType": "Basic", "id": "c", "subject": {"reference": "Basic/a"}}
    assert [r["id"] for r in ordered([c, a, b])] == ["b", "a", "c"]
