"""A wrong server URL or study id ends with what to check, never as a problem in the study data: a
URL where no FHIR server answers is exit 4 ("is ... the FHIR base URL?"), a study the server does
not hold exit 2 (check --study), a study the server holds twice exit 4."""

from __future__ import annotations

from pathlib import Path

import pytest
import responses
from click.testing import CliRunner

from fhir_admsc.cli import cli
from fhir_admsc.client import FhirClient
from fhir_admsc.errors import ConfigurationError, ExitCode, ServerError
from fhir_admsc.ids import identifier_system
from fhir_admsc.pull import the_study
from tests.servers import FhirServer

BASE = "https://fhir.example.test/r4"


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


@pytest.mark.parametrize(
    "wrong",
    [
        pytest.param(lambda base: base.rsplit("/fhir", 1)[0], id="server-root"),
        pytest.param(lambda base: f"{base}/Patient", id="a-resource-type"),
    ],
)
@pytest.mark.parametrize("command", ["pull", "push"])
def test_a_url_that_is_not_the_fhir_base_is_exit_4_and_says_so(
    sekmet_server: FhirServer, study_dir: Path, tmp_path: Path, wrong, command: str
) -> None:
    url = wrong(sekmet_server.base_url)
    if command == "pull":
        result = run("pull", "--server", url, "--study", "S", "-o", str(tmp_path / "out"))
    else:
        result = run("push", str(study_dir), "--server", url, "--dry-run")
    assert result.exit_code == ExitCode.SERVER, result.output
    assert f"GET {url}/metadata: HTTP 404" in result.stderr
    assert f"is {url} the FHIR base URL?" in result.stderr
    assert "problem" not in result.stderr and not (tmp_path / "out").exists()


@responses.activate
@pytest.mark.parametrize(
    ("answer", "what"),
    [
        pytest.param(
            {"status": 404, "body": "<html>no</html>", "content_type": "text/html"},
            "HTTP 404 Not Found",
            id="404",
        ),
        pytest.param(
            {"status": 405, "json": {"error": "method"}},
            "HTTP 405 Method Not Allowed",
            id="405",
        ),
        pytest.param(
            {"body": "<!doctype html><p>Welcome</p>", "content_type": "text/html; charset=utf-8"},
            "the answer is an HTML page, not a CapabilityStatement",
            id="html-page",
        ),
        pytest.param(
            {"json": {"resourceType": "Bundle", "type": "searchset"}},
            "the answer is a FHIR Bundle, not a CapabilityStatement",
            id="another-resource",
        ),
        pytest.param(
            {"json": [{"name": "a web API"}]},
            "the answer is JSON that is no FHIR resource, not a CapabilityStatement",
            id="other-json",
        ),
        pytest.param(
            {"body": "OK", "content_type": "text/plain"},
            "the answer is not JSON (text/plain), not a CapabilityStatement",
            id="text",
        ),
        pytest.param({"body": ""}, "the answer is empty, not a CapabilityStatement", id="empty"),
    ],
)
def test_an_answer_that_is_no_capability_statement_asks_for_the_base_url(
    answer: dict, what: str
) -> None:
    responses.get(f"{BASE}/metadata", **answer)
    with pytest.raises(ServerError) as caught:
        FhirClient(BASE).capabilities()
    assert caught.value.exit_code == ExitCode.SERVER
    assert str(caught.value) == f"GET {BASE}/metadata: {what}: is {BASE} the FHIR base URL?"


def study(resource_id: str, study_id: str) -> dict:
    return {
        "resourceType": "ResearchStudy",
        "id": resource_id,
        "identifier": [{"system": identifier_system("research-study"), "value": study_id}],
    }


def test_a_study_the_server_does_not_hold_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError) as caught:
        the_study([study("1", "OTHER")], "MINE", BASE)
    assert caught.value.exit_code == ExitCode.USAGE
    assert str(caught.value) == (
        f"no study with id MINE is on {BASE} (no ResearchStudy with identifier "
        f"{identifier_system('research-study')}|MINE): check `study_id`"
    )


def test_a_study_the_server_holds_twice_is_a_server_error() -> None:
    with pytest.raises(ServerError) as caught:
        the_study([study("1", "MINE"), study("2", "MINE")], "MINE", BASE)
    assert caught.value.exit_code == ExitCode.SERVER
    assert "holds 2 ResearchStudy resources" in str(caught.value)
    assert "remove the duplicates" in str(caught.value)
