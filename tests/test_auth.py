"""SMART Backend Services against a token endpoint that verifies the signed client assertion."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from urllib.parse import parse_qs

import jwt
import pytest
import responses
from click.testing import CliRunner
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from fhir_admsc.auth import ASSERTION_TYPE, SmartBackendAuth
from fhir_admsc.cli import cli
from fhir_admsc.client import FhirClient
from fhir_admsc.errors import ConfigurationError, ServerError

BASE = "https://fhir.example.test/r4"
TOKEN_URL = "https://auth.example.test/token"


def write_key(path: Path, key) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    os.chmod(path, 0o600)
    return path


@pytest.fixture(params=["RS384", "ES384"])
def key(request, tmp_path: Path):
    private = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if request.param == "RS384"
        else ec.generate_private_key(ec.SECP384R1())
    )
    return request.param, private, write_key(tmp_path / "key.pem", private)


class TokenEndpoint:
    """Issues tokens only for assertions signed by the registered key, with the right claims."""

    def __init__(self, public_key, algorithm: str, client_id: str = "study-pusher") -> None:
        self.public_key, self.algorithm, self.client_id = public_key, algorithm, client_id
        self.issued: list[str] = []
        self.seen_jti: set[str] = set()

    def __call__(self, request):
        form = {k: v[0] for k, v in parse_qs(request.body).items()}
        try:
            assert form["grant_type"] == "client_credentials"
            assert form["client_assertion_type"] == ASSERTION_TYPE
            # leeway: one test moves the client's clock ahead to expire its cached token
            claims = jwt.decode(
                form["client_assertion"],
                self.public_key,
                algorithms=[self.algorithm],
                audience=TOKEN_URL,
                leeway=600,
            )
            assert claims["iss"] == claims["sub"] == self.client_id
            assert claims["exp"] - claims["iat"] <= 300
            assert claims["jti"] not in self.seen_jti
        except (AssertionError, KeyError, jwt.PyJWTError) as e:
            return (
                400,
                {},
                json.dumps({"error": "invalid_client", "error_description": type(e).__name__}),
            )
        self.seen_jti.add(claims["jti"])
        token = f"token-{len(self.issued) + 1}"
        self.issued.append(token)
        return (
            200,
            {},
            json.dumps(
                {
                    "access_token": token,
                    "token_type": "bearer",
                    "expires_in": 300,
                    "scope": form["scope"],
                }
            ),
        )


@responses.activate
def test_token_is_fetched_with_a_verified_assertion_and_cached(key) -> None:
    algorithm, private, path = key
    endpoint = TokenEndpoint(private.public_key(), algorithm)
    responses.add_callback(responses.POST, TOKEN_URL, callback=endpoint)
    responses.get(f"{BASE}/.well-known/smart-configuration", json={"token_endpoint": TOKEN_URL})
    responses.get(f"{BASE}/Patient/1", json={"resourceType": "Patient", "id": "1"})
    now = [time.time()]
    auth = SmartBackendAuth(BASE, "study-pusher", path, clock=lambda: now[0])
    client = FhirClient(BASE, auth)
    client.read("Patient", "1")
    client.read("Patient", "1")
    assert endpoint.issued == ["token-1"]
    assert responses.calls[-1].request.headers["Authorization"] == "Bearer token-1"
    now[0] += 290  # within 30 s of expiry: renewed
    client.read("Patient", "1")
    assert endpoint.issued == ["token-1", "token-2"]
    assert "token" not in repr(auth) and "BEGIN" not in repr(auth)


@responses.activate
def test_401_fetches_a_new_token(key) -> None:
    algorithm, private, path = key
    endpoint = TokenEndpoint(private.public_key(), algorithm)
    responses.add_callback(responses.POST, TOKEN_URL, callback=endpoint)
    responses.get(f"{BASE}/Patient/1", status=401)
    responses.get(f"{BASE}/Patient/1", json={"resourceType": "Patient", "id": "1"})
    client = FhirClient(BASE, SmartBackendAuth(BASE, "study-pusher", path, token_url=TOKEN_URL))
    assert client.read("Patient", "1")["id"] == "1"
    assert endpoint.issued == ["token-1", "token-2"]


@responses.activate
def test_wrong_key_is_refused_by_the_endpoint(tmp_path: Path) -> None:
    registered = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other = write_key(
        tmp_path / "other.pem", rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    responses.add_callback(
        responses.POST, TOKEN_URL, callback=TokenEndpoint(registered.public_key(), "RS384")
    )
    auth = SmartBackendAuth(BASE, "study-pusher", other, token_url=TOKEN_URL)
    with pytest.raises(ServerError, match="HTTP 400: invalid_client"):
        auth.token()


def test_key_readable_by_others_is_refused(key) -> None:
    _, _, path = key
    os.chmod(path, 0o644)
    with pytest.raises(ConfigurationError, match="chmod 600"):
        SmartBackendAuth(BASE, "c", path)


def test_key_of_the_wrong_kind_is_refused(tmp_path: Path) -> None:
    path = write_key(tmp_path / "p256.pem", ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(ConfigurationError, match="RSA or an EC P-384"):
        SmartBackendAuth(BASE, "c", path)


@responses.activate
def test_cli_uses_smart_and_never_prints_the_token(key, monkeypatch) -> None:
    algorithm, private, path = key
    monkeypatch.setenv("FHIR_ADMSC_CLIENT_ID", "study-pusher")
    monkeypatch.setenv("FHIR_ADMSC_PRIVATE_KEY", str(path))
    monkeypatch.setenv("FHIR_ADMSC_TOKEN_URL", TOKEN_URL)
    responses.add_callback(
        responses.POST, TOKEN_URL, callback=TokenEndpoint(private.public_key(), algorithm)
    )
    responses.get(f"{BASE}/metadata", status=403)
    result = CliRunner().invoke(cli, ["pull", "--server", BASE, "--study", "S", "-o", "x"])
    assert result.exit_code == 4
    assert "token-1" not in result.output and "BEGIN" not in result.output
    assert responses.calls[1].request.headers["Authorization"] == "Bearer token-1"


def test_push_and_pull_with_smart_against_a_real_server(tmp_path: Path, study_dir: Path) -> None:
    """End to end against sekmet-fhir, which verifies the assertion against the registered JWKS:
    push and pull work with the right key; with another key the token is refused (exit 4)."""
    from tests.servers import running_sekmet

    registered = ec.generate_private_key(ec.SECP384R1())
    key = write_key(tmp_path / "key.pem", registered)
    stranger = write_key(tmp_path / "other.pem", ec.generate_private_key(ec.SECP384R1()))
    jwk = json.loads(jwt.get_algorithm_by_name("ES384").to_jwk(registered.public_key()))
    clients = [
        {
            "client_id": "study-pusher",
            "jwks": {"keys": [{**jwk, "alg": "ES384"}]},
            "scopes": "system/*.read system/*.write",
        }
    ]
    (tmp_path / "server").mkdir()
    with running_sekmet(
        tmp_path / "server", server_auth={"types": ["smart"], "smart_clients": clients}
    ) as server:
        common = ["--server", server.base_url, "--client-id", "study-pusher"]
        result = CliRunner().invoke(
            cli, ["push", str(study_dir), *common, "--private-key", str(key)]
        )
        assert result.exit_code == 0, result.output
        result = CliRunner().invoke(
            cli,
            [
                "pull",
                *common,
                "--private-key",
                str(key),
                "--study",
                "ADMSC-FSO794",
                "-o",
                str(tmp_path / "back"),
            ],
        )
        assert result.exit_code == 0, result.output
        assert (tmp_path / "back" / "outcomes.csv").exists()
        result = CliRunner().invoke(
            cli,
            [
                "pull",
                *common,
                "--private-key",
                str(stranger),
                "--study",
                "ADMSC-FSO794",
                "-o",
                str(tmp_path / "x"),
            ],
        )
        assert result.exit_code == 4
        assert "token request was refused" in result.stderr
        assert not (tmp_path / "x").exists()
