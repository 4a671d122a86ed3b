"""SMART Backend Services: client credentials with a signed JWT client assertion (RS384 or ES384),
the token cached until it expires and fetched anew when the server says 401."""

from __future__ import annotations

import logging
import stat
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import jwt
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from requests.auth import HTTPBasicAuth

from fhir_admsc.client import ANSWERED, BearerToken, FhirClient
from fhir_admsc.defaults import DEFAULT_SCOPES
from fhir_admsc.errors import ConfigurationError, ServerError, file_access

log = logging.getLogger(__name__)

# What a client asks the token endpoint for unless told otherwise.

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
EARLY = 30  # seconds before expiry at which a cached token is renewed


def load_private_key(path: Path) -> tuple[Any, str]:
    """The key and its JWS algorithm (RS384 for RSA, ES384 for EC P-384); the file must be
    readable by its owner only."""
    try:
        mode = path.stat().st_mode
    except OSError as e:
        raise ConfigurationError(f"`private_key` {path}: {e.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigurationError(
            f"`private_key` {path} can be read by others (mode "
            f"{stat.S_IMODE(mode):03o}): chmod 600 it"
        )
    try:
        with file_access(path, "read"):
            data = path.read_bytes()
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as e:
        raise ConfigurationError(
            f"`private_key` {path}: not an unencrypted PEM private key ({e.__class__.__name__})"
        ) from None
    if isinstance(key, rsa.RSAPrivateKey):
        return key, "RS384"
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp384r1":
        return key, "ES384"
    raise ConfigurationError(
        f"`private_key` {path}: SMART backend services needs an RSA or an EC P-384 key"
    )


class SmartBackendAuth(requests.auth.AuthBase):
    """Authorises requests with a backend-services access token."""

    def __init__(
        self,
        base_url: str,
        client_id: str,
        key_path: Path,
        *,
        token_url: str | None = None,
        scopes: str = DEFAULT_SCOPES,
        key_id: str | None = None,
        timeout: float = 30.0,
        verify: bool = True,
        clock=time.time,
    ) -> None:
        self.base_url = base_url.rstrip("/") + "/"
        self.client_id = client_id
        self.key, self.algorithm = load_private_key(key_path)
        self.token_url = token_url
        self.scopes = scopes
        self.key_id = key_id
        self.timeout = timeout
        self.verify = verify
        self.clock = clock
        self._token: str | None = None
        self._expires = 0.0

    def __repr__(self) -> str:  # never show the token or the key
        return f"SmartBackendAuth(client_id={self.client_id!r})"

    def invalidate(self) -> None:
        """Forget the cached token (the server refused it)."""
        self._token = None

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.token()}"
        return request

    def token(self) -> str:
        if self._token is None or self.clock() >= self._expires - EARLY:
            self._fetch()
        assert self._token is not None
        return self._token

    def discover_token_url(self) -> str:
        """The token endpoint from ``.well-known/smart-configuration`` (or the flag)."""
        if self.token_url:
            return self.token_url
        url = urljoin(self.base_url, ".well-known/smart-configuration")
        started = time.monotonic()
        try:
            response = requests.get(
                url,
                headers={"Accept": "application/json"},
                timeout=self.timeout,
                verify=self.verify,
            )
            log.info(ANSWERED, "GET", url, response.status_code, time.monotonic() - started)
            response.raise_for_status()
            endpoint = response.json().get("token_endpoint")
        except (requests.RequestException, ValueError) as e:
            raise ServerError(
                f"{url}: cannot read the SMART configuration "
                f"({e.__class__.__name__}); give `token_url`"
            ) from None
        if not isinstance(endpoint, str):
            raise ServerError(f"{url} names no token_endpoint; give `token_url`")
        log.info("the SMART configuration names the token endpoint %s", endpoint)
        self.token_url = endpoint
        return endpoint

    def assertion(self, token_url: str) -> str:
        now = int(self.clock())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": token_url,
            "exp": now + 240,  # SMART: at most five minutes ahead; some servers refuse 300
            "iat": now,
            "jti": str(uuid.uuid4()),
        }
        headers = {"typ": "JWT", **({"kid": self.key_id} if self.key_id else {})}
        return jwt.encode(claims, self.key, algorithm=self.algorithm, headers=headers)

    def _fetch(self) -> None:
        token_url = self.discover_token_url()
        form = {
            "grant_type": "client_credentials",
            "scope": self.scopes,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": self.assertion(token_url),
        }
        started = time.monotonic()
        try:
            response = requests.post(
                token_url,
                data=form,
                timeout=self.timeout,
                verify=self.verify,
                headers={"Accept": "application/json"},
            )
        except requests.RequestException as e:
            raise ServerError(f"POST {token_url}: {e.__class__.__name__}") from None
        log.info(ANSWERED, "POST", token_url, response.status_code, time.monotonic() - started)
        if response.status_code != 200:
            detail = ""
            try:
                body = response.json()
                detail = f": {body.get('error', '')} {body.get('error_description', '')}".rstrip()
            except ValueError:
                pass
            raise ServerError(
                f"POST {token_url}: HTTP {response.status_code}{detail} "
                "(the token request was refused; check the client id and key)"
            )
        body = response.json()
        if not isinstance(body.get("access_token"), str):
            raise ServerError(f"POST {token_url}: the answer has no access_token")
        lifetime = float(body.get("expires_in", 300))
        self._token = body["access_token"]
        self._expires = self.clock() + lifetime
        log.info(
            "access token received from %s for scopes '%s', valid for %g s",
            token_url,
            body.get("scope") or self.scopes,
            lifetime,
        )


def connect(
    base_url: str,
    *,
    token: str | None = None,
    username: str | None = None,
    password: str | None = None,
    client_id: str | None = None,
    private_key: Path | None = None,
    token_url: str | None = None,
    scopes: str = DEFAULT_SCOPES,
    timeout: float = 30.0,
    insecure: bool = False,
    allow_http: bool = False,
) -> FhirClient:
    """A client of the server at ``base_url``, authenticated in at most one way: a bearer
    ``token``, basic auth, or SMART Backend Services (``client_id`` and ``private_key``)."""
    ways = [bool(token), bool(username or password), bool(client_id or private_key)]
    if sum(ways) > 1:
        raise ConfigurationError(
            "give one way to authenticate: `token`, `username`/`password`, "
            "or `client_id`/`private_key`"
        )
    if bool(username) != bool(password):
        raise ConfigurationError("basic auth needs both `username` and `password`")
    if bool(client_id) != bool(private_key):
        raise ConfigurationError("SMART backend services needs both `client_id` and `private_key`")
    auth: requests.auth.AuthBase | None = None
    if token:
        auth = BearerToken(token)
    elif username:
        auth = HTTPBasicAuth(username, password)
    elif client_id and private_key:
        auth = SmartBackendAuth(
            base_url,
            client_id,
            private_key,
            token_url=token_url,
            scopes=scopes,
            timeout=timeout,
            verify=not insecure,
        )
    return FhirClient(base_url, auth, timeout=timeout, verify=not insecure, allow_http=allow_http)
