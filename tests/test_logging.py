"""What the logs tell a user: every request at INFO (method, URL, status, time), every retry at
WARNING while it waits, in words, and the steps of a push and a pull; never a secret."""

from __future__ import annotations

import functools
import json
import logging
import re
import socket
from pathlib import Path

import pytest
import requests
import responses
from click.testing import CliRunner

from fhir_admsc import auth as auth_module
from fhir_admsc.cli import cli
from fhir_admsc.client import BearerToken, FhirClient, RetryPolicy
from fhir_admsc.errors import ExitCode, ServerError
from fhir_admsc.inputs import Source, ordered
from fhir_admsc.pull import pull_study
from fhir_admsc.push import Pusher
from fhir_admsc.study import Study
from fhir_admsc.tables import write_study
from tests.servers import FhirServer
from tests.test_push import FakeServer
from tests.test_server_round_trip import renamed
from tests.validation.corpus import demo

BASE = "https://fhir.example.test/r4"
TOKEN = "tok-77e1c2d9-never-logged"
PATIENT = {"resourceType": "Patient", "id": "1"}
METADATA = {
    "resourceType": "CapabilityStatement",
    "fhirVersion": "4.0.1",
    "rest": [{"mode": "server", "interaction": [{"code": "transaction"}, {"code": "batch"}]}],
}
ANSWER = r"in \d+\.\d\d s"  # how long an answer took, as the INFO lines say it


def messages(caplog: pytest.LogCaptureFixture, level: int, logger: str = "fhir_admsc") -> list[str]:
    """The messages logged at ``level`` by ``logger`` and its children."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == level and (r.name == logger or r.name.startswith(f"{logger}."))
    ]


def matching(pattern: str, lines: list[str]) -> list[str]:
    return [line for line in lines if re.fullmatch(pattern, line)]


@pytest.fixture
def caplog(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    """Every record of the package, DEBUG included, whatever level a command set before."""
    caplog.set_level(logging.DEBUG, logger="fhir_admsc")
    return caplog


@pytest.fixture
def waits() -> list[float]:
    return []


@pytest.fixture
def client(waits: list[float]) -> FhirClient:
    return FhirClient(BASE, BearerToken(TOKEN), retry=RetryPolicy(attempts=4), sleep=waits.append)


# -- retries, in words ----------------------------------------------------------------------------


@responses.activate
@pytest.mark.parametrize(
    ("answers", "warning"),
    [
        pytest.param(
            [{"status": 503}],
            "HTTP 503 Service Unavailable, retry 1 of 3 in 0.5 s",
            id="503",
        ),
        pytest.param(
            [{"status": 429, "headers": {"Retry-After": "5"}}],
            "server busy (429), retry 1 of 3 in 5 s (Retry-After)",
            id="429-retry-after",
        ),
        pytest.param(
            [{"body": requests.exceptions.ReadTimeout("slow")}],
            "server not answering (no answer within 30 s), retry 1 of 3 in 0.5 s",
            id="read-timeout",
        ),
        pytest.param(
            [{"body": requests.exceptions.ChunkedEncodingError("reset mid-body")}],
            "the answer broke off (connection lost), retry 1 of 3 in 0.5 s",
            id="broke-off",
        ),
    ],
)
def test_a_retry_is_a_warning_in_words_and_every_answer_an_info_line(
    client: FhirClient, caplog: pytest.LogCaptureFixture, answers: list[dict], warning: str
) -> None:
    url = f"{BASE}/Patient/1"
    for answer in answers:
        responses.get(url, **answer)
    responses.get(url, json=PATIENT)
    assert client.read("Patient", "1") == PATIENT
    assert messages(caplog, logging.WARNING) == [f"GET {url}: {warning}"]
    statuses = [a["status"] for a in answers if "status" in a] + [200]
    lines = messages(caplog, logging.INFO, "fhir_admsc.client")
    assert statuses == [int(line.split(" -> ")[1][:3]) for line in lines]
    assert all(re.fullmatch(rf"GET {re.escape(url)} -> \d{{3}} {ANSWER}", line) for line in lines)
    assert TOKEN not in caplog.text


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_refused_connection_warns_at_each_retry_then_fails_with_exit_4(
    caplog: pytest.LogCaptureFixture, waits: list[float]
) -> None:
    base = f"http://127.0.0.1:{closed_port()}/fhir"
    client = FhirClient(base, retry=RetryPolicy(attempts=3, backoff=0.1), sleep=waits.append)
    with pytest.raises(ServerError) as caught:
        client.capabilities()
    assert caught.value.exit_code == ExitCode.SERVER
    assert str(caught.value) == (
        f"GET {base}/metadata: could not connect after 3 attempts (connection refused)"
    )
    assert messages(caplog, logging.WARNING) == [
        f"GET {base}/metadata: server not answering (connection refused), retry 1 of 2 in 0.1 s",
        f"GET {base}/metadata: server not answering (connection refused), retry 2 of 2 in 0.2 s",
    ]
    assert waits == [0.1, 0.2]


def test_pull_from_a_closed_port_shows_each_retry_by_default_and_exits_4(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        auth_module, "FhirClient", functools.partial(FhirClient, sleep=lambda _: None)
    )
    base = f"http://127.0.0.1:{closed_port()}/fhir"
    result = CliRunner().invoke(
        cli, ["pull", "--server", base, "--study", "S", "-o", str(tmp_path / "out")]
    )
    assert result.exit_code == ExitCode.SERVER
    for retry, wait in enumerate(["0.5", "1", "2", "4"], start=1):
        assert (
            f"GET {base}/metadata: server not answering (connection refused), "
            f"retry {retry} of 4 in {wait} s"
        ) in result.stderr
    assert "could not connect after 5 attempts (connection refused)" in result.stderr


# -- push: chunks, halving, batch retries ---------------------------------------------------------


def refusing(bad: str):
    """A server that holds nothing, and refuses a whole transaction that holds the entry ``bad``
    (HTTP 400) but stores the others."""

    def answer(request: requests.PreparedRequest):
        bundle = json.loads(request.body)
        urls = [e["request"]["url"] for e in bundle["entry"]]
        if bundle["type"] == "batch":  # the reads of the plan
            entries = [{"response": {"status": "404 Not Found"}} for _ in urls]
        elif bad in urls:
            return 400, {}, json.dumps({"resourceType": "OperationOutcome", "issue": []})
        else:
            entries = [{"response": {"status": "201 Created", "location": u}} for u in urls]
        return 200, {}, json.dumps({"resourceType": "Bundle", "entry": entries})

    return answer


@responses.activate
def test_push_logs_its_plan_its_chunks_and_each_halving(caplog: pytest.LogCaptureFixture) -> None:
    resources = ordered([demo("patient", i) for i in range(4)])
    responses.get(f"{BASE}/metadata", json=METADATA)
    responses.add_callback(
        responses.POST, f"{BASE}/", callback=refusing(f"Patient/{resources[3]['id']}")
    )
    pusher = Pusher(FhirClient(BASE))
    outcomes = pusher.send(resources, pusher.plan(resources), "transaction", chunk=4)
    assert [o.outcome for o in outcomes] == ["created"] * 3 + ["failed"]
    assert messages(caplog, logging.INFO, "fhir_admsc.push") == [
        "compared 4 resources with the server: 4 to create, 0 to update, 0 unchanged",
        "sending 4 new or changed resources in 1 transaction of at most 4 entries, matched by id",
        "the server refused a transaction of 4 entries (HTTP 400): sending it again as two of "
        "2 and 2, to find the entries it refuses",
        "the server refused a transaction of 2 entries (HTTP 400): sending it again as two of "
        "1 and 1, to find the entries it refuses",
    ]
    assert messages(caplog, logging.WARNING) == []


@responses.activate
def test_batch_entries_sent_again_are_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    resources = [demo("patient", i) for i in range(3)]
    server = FakeServer({f"Patient/{resources[1]['id']}": [503, 429]})
    responses.get(f"{BASE}/metadata", json=METADATA)
    responses.add_callback(responses.POST, f"{BASE}/", callback=server)
    pusher = Pusher(FhirClient(BASE, retry=RetryPolicy(attempts=3), sleep=lambda _: None))
    outcomes = pusher.send(resources, pusher.plan(resources), "batch", chunk=2)
    assert [o.outcome for o in outcomes] == ["created"] * 3
    assert messages(caplog, logging.WARNING) == [
        "batch: 1 of 2 entries failed for a reason that can pass (HTTP 503), retry 1 of 2 in 0.5 s",
        "batch: 1 of 1 entries failed for a reason that can pass (HTTP 429), retry 2 of 2 in 1 s",
    ]
    assert (
        "sending 3 new or changed resources in 2 batches of at most 2 entries, matched by id"
        in (messages(caplog, logging.INFO))
    )


# -- a push and a pull against a real server ------------------------------------------------------


def test_push_and_pull_against_a_real_server_log_each_request_and_step(
    sekmet_server: FhirServer, demo_study: Study, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    base = sekmet_server.base_url
    study = renamed(demo_study, "LOG-1")
    write_study(study, tmp_path / "in")
    source = Source(tmp_path / "in")
    pusher = Pusher(FhirClient(base))
    for part in source.chunks(500):
        pusher.send(part, pusher.plan(part), "transaction", 500)
    read = messages(caplog, logging.INFO, "fhir_admsc.inputs")
    assert read == [f"{tmp_path / 'in'}: 675 resources, read whole"]
    push_lines = messages(caplog, logging.INFO, "fhir_admsc.push")
    assert matching(r"compared 500 resources with the server: \d+ to create, .*", push_lines)
    assert matching(r"compared 175 resources with the server: \d+ to create, .*", push_lines)

    caplog.clear()
    received: list[int] = []
    resources = pull_study(FhirClient(base), "LOG-1", progress=received.append)
    assert len(resources) == 675
    requests_logged = messages(caplog, logging.INFO, "fhir_admsc.client")
    escaped = re.escape(base)
    assert matching(
        rf"GET {escaped}/ResearchStudy\?identifier=https://fhir-admsc\.org/fhir/sid/"
        rf"research-study\|LOG-1 -> 200 {ANSWER}",
        requests_logged,
    )
    assert matching(
        rf"GET {escaped}/Observation\?identifier=https://fhir-admsc\.org/fhir/sid/"
        rf"observation\|&_count=500 -> 200 {ANSWER}",
        requests_logged,
    )
    assert all(
        re.fullmatch(rf"GET {escaped}/\S+ -> 200 {ANSWER}", line) for line in requests_logged
    )
    pull_lines = messages(caplog, logging.INFO, "fhir_admsc.pull")
    assert pull_lines[0].startswith(f"found study LOG-1 on {base}: ResearchStudy/")
    assert "Observation: 468 resources of the study" in pull_lines
    assert pull_lines[-1] == "675 resources of study LOG-1 in all"
    assert messages(caplog, logging.WARNING) == []

    # progress: the total received so far, after each page and each resource read alone
    assert received == sorted(received) and len(set(received)) == len(received)
    assert received[-1] >= len(resources) and len(received) >= 12
