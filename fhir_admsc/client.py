"""A FHIR R4 REST client over one ``requests.Session``: auth, timeouts, retries, paging.

It knows nothing of the study: resources in, resources out. Every failure is a ``ServerError``
(unreachable, authentication, server fault: exit 4) or a ``RejectedError`` (the server refused
the data: exit 1), carrying the status, the URL and the server's OperationOutcome text.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from fhir_admsc import __version__
from fhir_admsc.errors import ConfigurationError, ExitCode, FhirAdmscError, ServerError
from fhir_admsc.fhir import FHIR_JSON

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
LOOPBACK = {"localhost", "127.0.0.1", "::1", "[::1]"}


class RejectedError(FhirAdmscError):
    """The server refused a request because of its content (400, 404, 409, 412, 422, ...)."""

    exit_code = ExitCode.INVALID_DATA

    def __init__(self, message: str, status: int, url: str, outcome: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.url, self.outcome = status, url, outcome


def outcome_text(body: Any) -> str:
    """The diagnostics of an OperationOutcome, one line, or '' when there is none."""
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        return ""
    parts = []
    for issue in body.get("issue", []):
        text = issue.get("diagnostics") or issue.get("details", {}).get("text") or issue.get("code")
        where = ", ".join(issue.get("expression", []) or issue.get("location", []))
        parts.append(f"{text} ({where})" if where else str(text))
    return "; ".join(p for p in parts if p)


@dataclass
class RetryPolicy:
    """When and how long to wait before trying a request again."""

    attempts: int = 5  # tries in all, the first included
    backoff: float = 0.5  # seconds before the first retry, doubled each time
    max_wait: float = 30.0  # the longest single wait, Retry-After included
    max_total_wait: float = 120.0  # give up once the waits would add up to more

    def delay(self, attempt: int, response: requests.Response | None) -> float:
        """Seconds to wait before try ``attempt + 1``; Retry-After wins when the server sends it."""
        wait = self.backoff * (2 ** (attempt - 1))
        header = response.headers.get("Retry-After") if response is not None else None
        if header:
            wait = _retry_after_seconds(header, wait)
        return min(max(wait, 0.0), self.max_wait)


def _retry_after_seconds(header: str, default: float) -> float:
    header = header.strip()
    if header.isdigit():
        return float(header)
    try:
        when = email.utils.parsedate_to_datetime(header)
    except (TypeError, ValueError):
        return default
    return when.timestamp() - time.time()


@dataclass(frozen=True)
class Capabilities:
    """What a server's CapabilityStatement says it can do, as far as push and pull care."""

    fhir_version: str
    transaction: bool
    batch: bool
    conditional_update: frozenset[str] = field(default_factory=frozenset)
    searchable: dict[str, frozenset[str]] = field(default_factory=dict)  # type -> parameters
    bulk_export: bool = False

    @classmethod
    def from_statement(cls, statement: dict[str, Any]) -> Capabilities:
        rest = (statement.get("rest") or [{}])[0]
        resources = rest.get("resource", [])
        system = {i.get("code") for i in rest.get("interaction", [])}
        conditional = frozenset(r.get("type", "") for r in resources if r.get("conditionalUpdate"))
        searchable = {
            r.get("type", ""): frozenset(p.get("name") for p in r["searchParam"])
            for r in resources
            if r.get("searchParam")
        }
        operations = {o.get("name") for o in rest.get("operation", [])}
        operations |= {o.get("name") for r in resources for o in r.get("operation", [])}
        return cls(
            str(statement.get("fhirVersion", "")),
            "transaction" in system,
            "batch" in system,
            conditional,
            searchable,
            "export" in operations,
        )

    def cannot_match_by_identifier(self, resource_types: set[str]) -> list[str]:
        """The types among ``resource_types`` the server says it cannot update conditionally on
        ``identifier`` (no conditionalUpdate, or searchParams declared without identifier)."""
        return sorted(
            t
            for t in resource_types
            if t not in self.conditional_update
            or ("identifier" not in self.searchable.get(t, {"identifier"}))
        )


class FhirClient:
    """Talks to one FHIR R4 server."""

    def __init__(
        self,
        base_url: str,
        auth: requests.auth.AuthBase | None = None,
        *,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        verify: bool = True,
        allow_http: bool = False,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigurationError(f"--server {base_url!r} is not an http(s) URL")
        if parts.scheme == "http" and parts.hostname not in LOOPBACK and not allow_http:
            raise ConfigurationError(
                f"--server {base_url} is plain http to a non-loopback host: "
                "use https, or --allow-http if you really mean it"
            )
        self.base_url = base_url.rstrip("/") + "/"
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.session = requests.Session()
        self.session.verify = verify
        self.session.auth = auth
        self.session.headers.update(
            {
                "Accept": FHIR_JSON,
                "Content-Type": FHIR_JSON,
                "User-Agent": f"fhir-admsc/{__version__}",
                # HAPI FHIR answers a search repeated within 60 s (its default) from the results
                # it cached the first time, so a search after a push would miss what was just
                # written; no-cache makes it search afresh (in a batch's GET entries too).
                "Cache-Control": "no-cache",
            }
        )
        self._capabilities: Capabilities | None = None

    def url(self, path: str) -> str:
        """An absolute URL for ``path`` relative to the base (absolute URLs pass through)."""
        return path if "://" in path else urljoin(self.base_url, path.lstrip("/"))

    # -- requests ---------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        idempotent: bool | None = None,
    ) -> requests.Response:
        """Send a request, retrying what can safely be retried; raise on a final failure."""
        url = self.url(path)
        safe = method in IDEMPOTENT if idempotent is None else idempotent
        waited = 0.0
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            response: requests.Response | None = None
            try:
                response = self.session.request(
                    method, url, json=json, params=params, headers=headers, timeout=self.timeout
                )
            except requests.exceptions.SSLError as e:
                raise ServerError(
                    f"{method} {url}: TLS verification failed ({e.__class__.__name__}"
                    "); fix the certificate or pass --insecure"
                ) from None
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as e:
                if (
                    not (safe or isinstance(e, requests.exceptions.ConnectTimeout))
                    or attempt >= self.retry.attempts
                ):
                    raise ServerError(
                        f"{method} {url}: {_describe(e)} after {attempt} "
                        f"attempt{'s' if attempt > 1 else ''}"
                    ) from None
            else:
                if (
                    response.status_code == 401
                    and not refreshed
                    and hasattr(self.session.auth, "invalidate")
                ):
                    self.session.auth.invalidate()  # a cached token expired early: fetch anew
                    refreshed = True
                    attempt -= 1
                    continue
                retryable = response.status_code in RETRY_STATUSES and (
                    safe or response.status_code == 429
                )
                if not retryable or attempt >= self.retry.attempts:
                    return self._checked(method, url, response)
            wait = self.retry.delay(attempt, response)
            if waited + wait > self.retry.max_total_wait:
                if response is not None:
                    return self._checked(method, url, response)
                raise ServerError(f"{method} {url}: gave up after waiting {waited:.0f} s")
            waited += wait
            self.sleep(wait)

    def _checked(self, method: str, url: str, response: requests.Response) -> requests.Response:
        if response.status_code < 400:
            return response
        body = _json_or_none(response)
        text = outcome_text(body) or response.reason or ""
        message = f"{method} {url}: HTTP {response.status_code} {text}".rstrip()
        if response.status_code in (401, 403):
            raise ServerError(message + " (check the credentials)")
        if response.status_code in RETRY_STATUSES or response.status_code >= 500:
            raise ServerError(message)
        raise RejectedError(message, response.status_code, url, body)

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """The JSON body of a successful request (None for an empty body)."""
        response = self.request(method, path, **kwargs)
        if not response.content:
            return None
        body = _json_or_none(response)
        if body is None:
            raise ServerError(
                f"{method} {self.url(path)}: the server answered "
                f"HTTP {response.status_code} with a body that is not JSON"
            )
        return body

    # -- FHIR interactions ------------------------------------------------------------------

    def capabilities(self) -> Capabilities:
        """The server's capabilities (GET /metadata, once); FHIR 4.0.x is required."""
        if self._capabilities is None:
            statement = self.json("GET", "metadata")
            if (
                not isinstance(statement, dict)
                or statement.get("resourceType") != "CapabilityStatement"
            ):
                raise ServerError(f"{self.url('metadata')}: no CapabilityStatement")
            caps = Capabilities.from_statement(statement)
            if not caps.fhir_version.startswith("4.0"):
                raise ServerError(
                    f"{self.base_url} speaks FHIR {caps.fhir_version or '?'}, not R4 (4.0.x)"
                )
            self._capabilities = caps
        return self._capabilities

    def read(self, resource_type: str, resource_id: str) -> dict[str, Any] | None:
        """The current version of a resource, or None when it does not exist (404/410)."""
        try:
            return self.json("GET", f"{resource_type}/{resource_id}")
        except RejectedError as e:
            if e.status in (404, 410):
                return None
            raise

    def bundle(self, bundle: dict[str, Any], *, idempotent: bool = False) -> dict[str, Any]:
        """POST a transaction or batch Bundle and return the response Bundle."""
        body = self.json("POST", "", json=bundle, idempotent=idempotent)
        if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
            raise ServerError(
                f"POST {self.base_url}: the answer to a {bundle.get('type')} is not a Bundle"
            )
        return body

    def search(
        self, resource_type: str, params: dict[str, str] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every match of a search, page after page (``link[relation=next]``, followed exactly;
        a link seen before ends the search)."""
        page = self.json("GET", resource_type, params=params)
        seen: set[str] = set()
        while True:
            if not isinstance(page, dict) or page.get("resourceType") != "Bundle":
                raise ServerError(f"search {resource_type}: the server did not answer a Bundle")
            for entry in page.get("entry", []):
                if entry.get("search", {}).get("mode", "match") == "match" and "resource" in entry:
                    yield entry["resource"]
            following = next(
                (
                    link.get("url")
                    for link in page.get("link", [])
                    if link.get("relation") == "next"
                ),
                None,
            )
            if not following or following in seen:
                return
            seen.add(following)
            page = self.json("GET", following)

    def close(self) -> None:
        self.session.close()


def _json_or_none(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _describe(error: Exception) -> str:
    if isinstance(error, requests.exceptions.Timeout):
        return "timed out"
    return (
        "could not connect"
        if isinstance(error, requests.exceptions.ConnectionError)
        else str(error)
    )


class BearerToken(requests.auth.AuthBase):
    """A fixed bearer token."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:  # never show the token
        return "BearerToken(***)"
