"""The FHIR client under faults a real server will not produce on demand (``responses``)."""

from __future__ import annotations

import email.utils
import json
import time

import pytest
import requests
import responses

from fhir_admsc.client import BearerToken, FhirClient, RejectedError, RetryPolicy
from fhir_admsc.errors import ConfigurationError, ExitCode, ServerError

BASE = "https://fhir.example.test/r4"
OUTCOME = {
    "resourceType": "OperationOutcome",
    "issue": [
        {
            "severity": "error",
            "code": "invalid",
            "diagnostics": "bad gender",
            "expression": ["Patient.gender"],
        }
    ],
}
METADATA = {
    "resourceType": "CapabilityStatement",
    "fhirVersion": "4.0.1",
    "rest": [
        {
            "mode": "server",
            "interaction": [{"code": "transaction"}, {"code": "batch"}],
            "resource": [{"type": "Patient", "conditionalUpdate": True}],
        }
    ],
}


@pytest.fixture
def waits() -> list[float]:
    return []


@pytest.fixture
def client(waits: list[float]) -> FhirClient:
    return FhirClient(
        BASE,
        retry=RetryPolicy(attempts=4, backoff=0.5, max_wait=10, max_total_wait=30),
        sleep=waits.append,
    )


@responses.activate
@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_transient_statuses_are_retried_with_backoff(client, waits, status) -> None:
    url = f"{BASE}/Patient/1"
    responses.get(url, status=status)
    responses.get(url, status=status)
    responses.get(url, json={"resourceType": "Patient", "id": "1"})
    assert client.read("Patient", "1")["id"] == "1"
    assert waits == [0.5, 1.0]


@responses.activate
def test_retry_after_seconds_is_honoured(client, waits) -> None:
    url = f"{BASE}/Patient/1"
    responses.get(url, status=429, headers={"Retry-After": "7"})
    responses.get(url, json={"resourceType": "Patient", "id": "1"})
    client.read("Patient", "1")
    assert waits == [7.0]


@responses.activate
def test_retry_after_http_date_is_honoured_and_capped(client, waits) -> None:
    url = f"{BASE}/Patient/1"
    later = email.utils.formatdate(time.time() + 3600, usegmt=True)
    responses.get(url, status=503, headers={"Retry-After": later})
    responses.get(url, json={"resourceType": "Patient", "id": "1"})
    client.read("Patient", "1")
    assert waits == [10.0]  # an hour, capped at max_wait


@responses.activate
def test_gives_up_after_the_attempts_with_exit_4(client, waits) -> None:
    url = f"{BASE}/Patient/1"
    for _ in range(4):
        responses.get(url, status=503, json=OUTCOME)
    with pytest.raises(ServerError) as caught:
        client.read("Patient", "1")
    assert caught.value.exit_code == ExitCode.SERVER
    assert "HTTP 503" in str(caught.value) and url in str(caught.value)
    assert len(responses.calls) == 4 and waits == [0.5, 1.0, 2.0]


@responses.activate
def test_total_wait_is_capped(waits) -> None:
    client = FhirClient(
        BASE,
        retry=RetryPolicy(attempts=10, backoff=10, max_wait=20, max_total_wait=25),
        sleep=waits.append,
    )
    for _ in range(10):
        responses.get(f"{BASE}/Patient/1", status=503)
    with pytest.raises(ServerError):
        client.read("Patient", "1")
    assert waits == [10] and len(responses.calls) == 2  # the next wait (20 s) would pass 25


@responses.activate
def test_post_is_not_retried_on_5xx_unless_idempotent(client, waits) -> None:
    responses.post(BASE + "/", status=503)
    responses.post(BASE + "/", status=503)
    responses.post(BASE + "/", json={"resourceType": "Bundle", "type": "transaction-response"})
    with pytest.raises(ServerError):
        client.bundle({"resourceType": "Bundle", "type": "batch", "entry": []})
    assert len(responses.calls) == 1
    reply = client.bundle(
        {"resourceType": "Bundle", "type": "transaction", "entry": []}, idempotent=True
    )
    assert reply["type"] == "transaction-response" and len(responses.calls) == 3


@responses.activate
def test_post_is_retried_on_429(client, waits) -> None:
    responses.post(BASE + "/", status=429, headers={"Retry-After": "2"})
    responses.post(BASE + "/", json={"resourceType": "Bundle", "type": "batch-response"})
    assert client.bundle({"resourceType": "Bundle", "type": "batch"})["type"] == "batch-response"
    assert waits == [2.0]


@responses.activate
def test_timeouts_and_resets_are_retried_for_reads(client, waits) -> None:
    url = f"{BASE}/Patient/1"
    responses.get(url, body=requests.exceptions.ReadTimeout("slow"))
    responses.get(url, body=requests.exceptions.ConnectionError("reset by peer"))
    responses.get(url, body=requests.exceptions.ChunkedEncodingError("reset mid-body"))
    responses.get(url, json={"resourceType": "Patient", "id": "1"})
    assert client.read("Patient", "1")["id"] == "1"
    assert len(waits) == 3


@responses.activate
@pytest.mark.parametrize(
    ("error", "message"),
    [
        pytest.param(requests.exceptions.ReadTimeout("slow"), "timed out", id="timeout"),
        pytest.param(
            requests.exceptions.ChunkedEncodingError("reset mid-body"),
            "the answer broke off",
            id="answer-broke-off",
        ),
    ],
)
def test_a_post_the_server_may_have_run_is_not_retried(client, error, message) -> None:
    responses.post(BASE + "/", body=error)
    with pytest.raises(ServerError, match=f"{message} after 1 attempt") as caught:
        client.bundle({"resourceType": "Bundle", "type": "batch"})
    assert caught.value.exit_code == ExitCode.SERVER and len(responses.calls) == 1


@responses.activate
def test_an_idempotent_bundle_whose_answer_broke_off_is_sent_again(client, waits) -> None:
    responses.post(BASE + "/", body=requests.exceptions.ChunkedEncodingError("reset mid-body"))
    responses.post(BASE + "/", json={"resourceType": "Bundle", "type": "transaction-response"})
    reply = client.bundle({"resourceType": "Bundle", "type": "transaction"}, idempotent=True)
    assert reply["type"] == "transaction-response" and len(responses.calls) == 2


@responses.activate
def test_rejection_carries_status_url_and_outcome_text(client) -> None:
    responses.put(f"{BASE}/Patient/1", status=422, json=OUTCOME)
    with pytest.raises(RejectedError) as caught:
        client.request("PUT", "Patient/1", json={"resourceType": "Patient", "id": "1"})
    error = caught.value
    assert error.status == 422 and error.exit_code == ExitCode.INVALID_DATA
    assert str(error) == f"PUT {BASE}/Patient/1: HTTP 422 bad gender (Patient.gender)"
    assert error.outcome == OUTCOME


@responses.activate
def test_auth_failure_is_exit_4_and_never_shows_the_token() -> None:
    client = FhirClient(BASE, BearerToken("s3cret-token"))
    responses.get(f"{BASE}/metadata", status=401)
    with pytest.raises(ServerError) as caught:
        client.capabilities()
    assert "check the credentials" in str(caught.value)
    assert "s3cret" not in str(caught.value) and "s3cret" not in repr(client.session.auth)
    assert responses.calls[0].request.headers["Authorization"] == "Bearer s3cret-token"


@responses.activate
def test_401_refreshes_a_cached_token_once(client) -> None:
    class Refreshing(requests.auth.AuthBase):
        def __init__(self) -> None:
            self.tokens = iter(["old", "new"])
            self.token = next(self.tokens)

        def invalidate(self) -> None:
            self.token = next(self.tokens)

        def __call__(self, request):
            request.headers["Authorization"] = f"Bearer {self.token}"
            return request

    client.session.auth = Refreshing()
    responses.get(f"{BASE}/Patient/1", status=401)
    responses.get(f"{BASE}/Patient/1", json={"resourceType": "Patient", "id": "1"})
    assert client.read("Patient", "1")["id"] == "1"
    assert [c.request.headers["Authorization"] for c in responses.calls] == [
        "Bearer old",
        "Bearer new",
    ]


@responses.activate
def test_broken_json_is_a_server_error(client) -> None:
    responses.get(f"{BASE}/Patient/1", body="{not json", content_type="application/fhir+json")
    with pytest.raises(ServerError, match="not JSON"):
        client.read("Patient", "1")


@responses.activate
def test_read_of_missing_or_deleted_resource_is_none(client) -> None:
    responses.get(f"{BASE}/Patient/1", status=404, json=OUTCOME)
    responses.get(f"{BASE}/Patient/2", status=410)
    assert client.read("Patient", "1") is None and client.read("Patient", "2") is None


def page(ids: list[str], following: str | None) -> dict:
    link = [{"relation": "self", "url": "x"}]
    if following:
        link.append({"relation": "next", "url": following})
    return {
        "resourceType": "Bundle",
        "type": "searchset",
        "link": link,
        "entry": [
            {"resource": {"resourceType": "Patient", "id": i}, "search": {"mode": "match"}}
            for i in ids
        ]
        + [{"resource": {"resourceType": "OperationOutcome"}, "search": {"mode": "outcome"}}],
    }


@responses.activate
def test_search_follows_next_links_exactly(client) -> None:
    responses.get(f"{BASE}/Patient", json=page(["a", "b"], f"{BASE}/Patient?page=2&_x=1"))
    responses.get(f"{BASE}/Patient?page=2&_x=1", json=page(["c"], None))
    assert [r["id"] for r in client.search("Patient", {"gender": "female"})] == ["a", "b", "c"]
    assert responses.calls[1].request.url == f"{BASE}/Patient?page=2&_x=1"


@responses.activate
def test_search_stops_on_a_repeated_link(client) -> None:
    loop = f"{BASE}/Patient?page=2"
    responses.get(f"{BASE}/Patient", json=page(["a"], loop))
    responses.get(loop, json=page(["b"], loop))
    assert [r["id"] for r in client.search("Patient")] == ["a", "b"]
    assert len(responses.calls) == 2


@responses.activate
def test_capabilities(client) -> None:
    responses.get(f"{BASE}/metadata", json=METADATA)
    caps = client.capabilities()
    assert caps.transaction and caps.batch and "Patient" in caps.conditional_update
    client.capabilities()
    assert len(responses.calls) == 1


@responses.activate
def test_a_server_that_is_not_r4_is_refused(client) -> None:
    responses.get(f"{BASE}/metadata", json={**METADATA, "fhirVersion": "5.0.0"})
    with pytest.raises(ServerError, match="FHIR 5.0.0, not R4"):
        client.capabilities()


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        pytest.param("http://fhir.example.test/r4", False, id="plain-http-remote"),
        pytest.param("http://127.0.0.1:8080/fhir", True, id="plain-http-loopback"),
        pytest.param("https://fhir.example.test/r4", True, id="https"),
        pytest.param("ftp://fhir.example.test", False, id="not-http"),
    ],
)
def test_plain_http_only_to_loopback(url: str, allowed: bool) -> None:
    if allowed:
        assert FhirClient(url).base_url.startswith(url)
    else:
        with pytest.raises(ConfigurationError):
            FhirClient(url)
    assert FhirClient("http://fhir.example.test/r4", allow_http=True)


def test_tls_verification_is_on_by_default() -> None:
    assert FhirClient(BASE).session.verify is True
    assert FhirClient(BASE, verify=False).session.verify is False


@responses.activate
def test_requests_carry_fhir_json_headers(client) -> None:
    responses.put(f"{BASE}/Patient/1", json={"resourceType": "Patient", "id": "1"}, status=201)
    client.request("PUT", "Patient/1", json={"resourceType": "Patient", "id": "1"})
    headers = responses.calls[0].request.headers
    assert headers["Content-Type"] == "application/fhir+json"
    assert headers["Accept"] == "application/fhir+json"
    assert json.loads(responses.calls[0].request.body)["id"] == "1"
