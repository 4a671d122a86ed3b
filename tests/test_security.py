"""Secrets never leave the process: bearer tokens, passwords and SMART keys are absent from every
output (stdout, stderr, log records, report and pulled files, exception messages and reprs), on
success and on failure; TLS is verified unless --insecure; plain http goes to loopback only; a key
file others can read is refused; messages name participants by their study ids only."""

from __future__ import annotations

import base64
import functools
import json
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import jwt
import pytest
import responses
from click.testing import CliRunner, Result
from cryptography.hazmat.primitives.asymmetric import ec

from fhir_admsc import auth as auth_module
from fhir_admsc.auth import connect
from fhir_admsc.cli import cli
from fhir_admsc.client import FhirClient
from fhir_admsc.errors import ServerError
from fhir_admsc.study import Study
from fhir_admsc.tables import write_study
from tests.servers import running_sekmet
from tests.test_auth import TOKEN_URL, TokenEndpoint, write_key
from tests.test_fuzz import SMALL, SMALL_FILES

TOKEN = "tok-5f3a9c1e-never-shown"
WRONG_TOKEN = "tok-0d6b44aa-never-shown"
USER = "site-pusher"
PASSWORD = "pw-8b2d7e4f-never-shown"
WRONG_PASSWORD = "pw-1c9e0f3b-never-shown"
CLIENT_ID = "study-pusher"
BASE = "https://fhir.example.test/r4"
OUTCOME = {
    "resourceType": "OperationOutcome",
    "issue": [{"severity": "error", "code": "exception", "diagnostics": "boom"}],
}


@dataclass(frozen=True)
class Keys:
    """A SMART client key the server knows, and one it does not."""

    key: Path
    stranger: Path
    public: ec.EllipticCurvePublicKey


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    folder = tmp_path_factory.mktemp("keys")
    registered = ec.generate_private_key(ec.SECP384R1())
    key = write_key(folder / "key.pem", registered)
    stranger = write_key(folder / "stranger.pem", ec.generate_private_key(ec.SECP384R1()))
    return Keys(key, stranger, registered.public_key())


@dataclass(frozen=True)
class Guarded:
    """A server that takes a bearer token, basic auth or SMART Backend Services."""

    base_url: str
    keys: Keys


@pytest.fixture(scope="module")
def guarded(keys: Keys, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guarded]:
    folder = tmp_path_factory.mktemp("guarded")
    jwk = json.loads(jwt.get_algorithm_by_name("ES384").to_jwk(keys.public))
    server_auth = {
        "types": ["bearer", "basic", "smart"],
        "tokens": [TOKEN],
        "users": {USER: PASSWORD},
        "smart_clients": [
            {
                "client_id": CLIENT_ID,
                "jwks": {"keys": [{**jwk, "alg": "ES384"}]},
                "scopes": "system/*.read system/*.write",
            }
        ],
    }
    with running_sekmet(folder, server_auth=server_auth) as server:
        yield Guarded(server.base_url, keys)


def secrets(*keys: Path) -> list[str]:
    """Every secret string of this module: tokens, passwords (also as a Basic header value), the
    body lines of the PEM keys."""
    found = [TOKEN, WRONG_TOKEN, PASSWORD, WRONG_PASSWORD]
    found += [base64.b64encode(f"{USER}:{p}".encode()).decode() for p in (PASSWORD, WRONG_PASSWORD)]
    for key in keys:
        found += [line for line in key.read_text().splitlines() if "-----" not in line]
    return found


def leaks(texts: list[str], *keys: Path) -> list[str]:
    """The secrets (and signed JWTs: SMART access tokens and client assertions) found in
    ``texts``."""
    everything = "\n".join(texts)
    found = [s for s in secrets(*keys) if s in everything]
    return found + re.findall(r"eyJ[\w-]+\.[\w-]+", everything)


class Outputs:
    """Everything a user or a log could see from a series of runs."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def run(self, *args: str | Path, env: dict[str, str] | None = None) -> Result:
        result = CliRunner().invoke(cli, [str(a) for a in args], env=env)
        self.texts += [result.stdout, result.stderr, repr(result.exception)]
        return result

    def files(self, folder: Path) -> None:
        self.texts += [p.read_text() for p in folder.rglob("*") if p.is_file()]


def credentials(way: str, keys: Keys, right: bool) -> dict[str, str]:
    """The environment of one way to authenticate, with the right or a wrong secret."""
    if way == "bearer":
        return {"FHIR_ADMSC_TOKEN": TOKEN if right else WRONG_TOKEN}
    if way == "basic":
        return {
            "FHIR_ADMSC_USERNAME": USER,
            "FHIR_ADMSC_PASSWORD": PASSWORD if right else WRONG_PASSWORD,
        }
    return {
        "FHIR_ADMSC_CLIENT_ID": CLIENT_ID,
        "FHIR_ADMSC_PRIVATE_KEY": str(keys.key if right else keys.stranger),
    }


def row_values(study: Study) -> list[str]:
    """Values of the study's rows that are not identifiers or codes: dates and free text."""
    values = set()
    for table in [study.participants, study.visits, study.procedures, study.adverse_events]:
        for row in table:
            for column, value in row:
                if column.endswith(("_on", "_date", "notes", "term", "reason", "action_taken")):
                    values.add(str(value))
    return sorted(values - {"None"})


@pytest.mark.parametrize("way", ["bearer", "basic", "smart"])
def test_no_secret_or_row_value_escapes_a_push_and_pull(
    guarded: Guarded, tmp_path: Path, caplog: pytest.LogCaptureFixture, way: str
) -> None:
    caplog.set_level(logging.DEBUG)
    seen = Outputs()
    folder = tmp_path / "study"
    write_study(SMALL, folder)
    env = credentials(way, guarded.keys, right=True)
    server = ["--server", guarded.base_url]

    # -vv: every log record of the library, DEBUG included, also goes to stderr
    pushed = seen.run(
        "push", "-vv", folder, *server, "--report", tmp_path / "report.ndjson", env=env
    )
    assert pushed.exit_code == 0, pushed.output
    seen.files(tmp_path / "report.ndjson")

    # A transaction the server refuses (an element R4 does not know): that entry fails.
    bundle = json.loads(SMALL_FILES["transaction"])
    patient = next(
        e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"
    )
    patient["colour"] = "blue"
    (tmp_path / "refused.json").write_text(json.dumps(bundle))
    refused = seen.run("push", "-vv", tmp_path / "refused.json", *server, env=env)
    assert refused.exit_code == 1, refused.output
    assert f"failed: Patient/{patient['id']}" in refused.stderr

    pulled = seen.run(
        "pull", "-vv", *server, "--study", SMALL.info.study_id, "-o", tmp_path / "out", env=env
    )
    assert pulled.exit_code == 0, pulled.output
    seen.files(tmp_path / "out")

    wrong = credentials(way, guarded.keys, right=False)
    denied = seen.run(
        "pull", "-vv", *server, "--study", SMALL.info.study_id, "-o", tmp_path / "x", env=wrong
    )
    assert denied.exit_code == 4, denied.output
    assert not (tmp_path / "x").exists()

    seen.texts.append(caplog.text)
    assert any(
        guarded.base_url in r.getMessage() or "127.0.0.1" in r.getMessage() for r in caplog.records
    )
    # the library's own records were among those scanned: requests, push and pull steps, tokens
    logged = {r.name for r in caplog.records if r.levelno == logging.INFO}
    assert {"fhir_admsc.client", "fhir_admsc.push", "fhir_admsc.pull"} <= logged
    assert ("fhir_admsc.auth" in logged) == (way == "smart")
    assert f"GET {guarded.base_url}/metadata -> 200 in " in pulled.stderr
    assert leaks(seen.texts, guarded.keys.key, guarded.keys.stranger) == []
    messages = "\n".join([r.stderr for r in (pushed, refused, pulled, denied)] + [caplog.text])
    values = row_values(SMALL)
    assert len(values) > 20 and [v for v in values if v in messages] == []


@responses.activate
@pytest.mark.parametrize("way", ["bearer", "basic", "smart"])
def test_no_secret_escapes_server_faults(
    keys: Keys,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    way: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setattr(
        auth_module, "FhirClient", functools.partial(FhirClient, sleep=lambda _: None)
    )
    seen = Outputs()
    env = credentials(way, keys, right=True) | {"FHIR_ADMSC_TOKEN_URL": TOKEN_URL}
    endpoint = TokenEndpoint(keys.public, "ES384", CLIENT_ID)
    responses.add_callback(responses.POST, TOKEN_URL, callback=endpoint)
    pull = ["pull", "-vv", "--server", BASE, "--study", "S", "-o", tmp_path / "out"]
    responses.upsert(responses.GET, f"{BASE}/metadata", status=500, json=OUTCOME)
    failed = seen.run(*pull, env=env)
    assert failed.exit_code == 4 and "HTTP 500 boom" in failed.stderr
    assert "HTTP 500 Internal Server Error, retry 1 of 4" in failed.stderr
    responses.upsert(responses.GET, f"{BASE}/metadata", status=401, json=OUTCOME)
    denied = seen.run(*pull, env=env)
    assert denied.exit_code == 4 and "check the credentials" in denied.stderr
    sent = [
        c.request.headers.get("Authorization") for c in responses.calls if BASE in c.request.url
    ]
    assert sent and all(sent)

    client = connect(
        BASE,
        token=env.get("FHIR_ADMSC_TOKEN"),
        username=env.get("FHIR_ADMSC_USERNAME"),
        password=env.get("FHIR_ADMSC_PASSWORD"),
        client_id=env.get("FHIR_ADMSC_CLIENT_ID"),
        private_key=keys.key if way == "smart" else None,
        token_url=TOKEN_URL,
        scopes="system/*.read",
        timeout=5.0,
    )
    with pytest.raises(ServerError) as caught:
        client.capabilities()
    seen.texts += [str(caught.value), repr(caught.value), repr(caught.value.args)]
    seen.texts += [repr(client.session.auth), repr(client.session), repr(client)]
    seen.texts.append(caplog.text)
    assert leaks(seen.texts, keys.key, keys.stranger) == []
    assert way != "smart" or endpoint.issued  # tokens were issued, sent, and never shown


def test_secrets_in_the_environment_are_not_shown_by_help() -> None:
    env = {"FHIR_ADMSC_TOKEN": TOKEN, "FHIR_ADMSC_PASSWORD": PASSWORD}
    for command in (["push", "--help"], ["pull", "--help"], ["report", "--help"]):
        result = CliRunner().invoke(cli, command, env=env)
        assert result.exit_code == 0
        assert TOKEN not in result.output and PASSWORD not in result.output


@responses.activate
def test_credentials_in_the_server_url_are_refused_and_never_echoed(tmp_path: Path) -> None:
    url = f"https://{USER}:{PASSWORD}@fhir.example.test/r4"
    result = CliRunner().invoke(
        cli, ["pull", "--server", url, "--study", "S", "-o", str(tmp_path / "o")]
    )
    assert result.exit_code == 2
    assert "--username/--password" in result.stderr
    assert PASSWORD not in result.output
    assert len(responses.calls) == 0


# -- TLS, plain http and key files ------------------------------------------------------------------


@responses.activate
@pytest.mark.parametrize(
    ("flags", "verify"),
    [pytest.param([], True, id="default"), pytest.param(["--insecure"], False, id="insecure")],
)
@pytest.mark.parametrize("way", ["bearer", "smart"])
def test_tls_is_verified_unless_insecure_is_given(
    keys: Keys, tmp_path: Path, flags: list[str], verify: bool, way: str
) -> None:
    endpoint = TokenEndpoint(keys.public, "ES384", CLIENT_ID)
    responses.add_callback(responses.POST, TOKEN_URL, callback=endpoint)
    responses.get(f"{BASE}/metadata", status=403)
    env = credentials(way, keys, right=True) | {"FHIR_ADMSC_TOKEN_URL": TOKEN_URL}
    # a CA bundle in the environment must neither weaken the default nor undo --insecure
    env["REQUESTS_CA_BUNDLE"] = str(tmp_path / "ca.pem")
    pull = ["pull", "--server", BASE, "--study", "S", "-o", str(tmp_path / "o")]
    assert CliRunner().invoke(cli, [*pull, *flags], env=env).exit_code == 4
    assert len(responses.calls) == (2 if way == "smart" else 1)  # token request, metadata
    expected = {str(tmp_path / "ca.pem")} if verify else {False}  # verified against that bundle
    assert {c.request.req_kwargs["verify"] for c in responses.calls} == expected


@responses.activate
@pytest.mark.parametrize(
    ("flags", "exit_code"),
    [pytest.param([], 2, id="refused"), pytest.param(["--allow-http"], 4, id="allowed")],
)
def test_plain_http_to_another_host_needs_allow_http(
    tmp_path: Path, flags: list[str], exit_code: int
) -> None:
    url = "http://fhir.example.test/r4"
    responses.get(f"{url}/metadata", status=403)
    result = CliRunner().invoke(
        cli,
        ["pull", "--server", url, "--study", "S", "-o", str(tmp_path / "o"), *flags],
        env={"FHIR_ADMSC_TOKEN": TOKEN},
    )
    assert result.exit_code == exit_code, result.output
    if exit_code == 2:
        assert "--allow-http" in result.stderr
        assert len(responses.calls) == 0  # the token never went out in the clear
    assert TOKEN not in result.output


@responses.activate
@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o400])
def test_a_key_file_others_can_read_is_refused_before_any_request(
    keys: Keys, tmp_path: Path, mode: int
) -> None:
    key = tmp_path / "key.pem"
    key.write_bytes(keys.key.read_bytes())
    os.chmod(key, mode)
    responses.add_callback(
        responses.POST, TOKEN_URL, callback=TokenEndpoint(keys.public, "ES384", CLIENT_ID)
    )
    responses.get(f"{BASE}/metadata", status=403)
    result = CliRunner().invoke(
        cli,
        ["pull", "--server", BASE, "--study", "S", "-o", str(tmp_path / "o")],
        env={
            "FHIR_ADMSC_CLIENT_ID": CLIENT_ID,
            "FHIR_ADMSC_PRIVATE_KEY": str(key),
            "FHIR_ADMSC_TOKEN_URL": TOKEN_URL,
        },
    )
    if mode & 0o077:
        assert result.exit_code == 2
        assert f"mode {mode:03o}" in result.stderr and "chmod 600" in result.stderr
        assert len(responses.calls) == 0
    else:  # readable by its owner alone: used
        assert result.exit_code == 4 and len(responses.calls) == 2
    assert leaks([result.output], key) == []
