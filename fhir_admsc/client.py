"""A FHIR R4 REST client over one ``requests.Session``: auth, timeouts, retries, paging.

It knows nothing of the study: resources in, resources out. Every failure is a ``ServerError``
(unreachable, authentication, server fault, no FHIR server at the URL: exit 4) or a
``RejectedError`` (the server refused the data: exit 1), carrying the status, the URL and the
server's OperationOutcome text. Each answer is logged at INFO (method, URL, status, seconds) and
each retry at WARNING while it waits; URLs are shown as the user gave them, never a credential.
"""

from __future__ import annotations

import email.utils
import logging
import socket
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

from fhir_admsc import limits
from fhir_admsc.__version__ import __version__
from fhir_admsc.defaults import RETRY_ATTEMPTS, RETRY_MAX_WAIT
from fhir_admsc.errors import (
    ConfigurationError,
    ExitCode,
    FhirAdmscError,
    InvalidDataError,
    ServerError,
)
from fhir_admsc.fhir import FHIR_JSON

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
LOOPBACK = {"localhost", "127.0.0.1", "::1", "[::1]"}
# How each answer is logged: method, URL, status, seconds.
ANSWERED = "%s %s -> %s in %.2f s"
# The operating system's reasons for a failed connection, as a user reads them.
_OS_CAUSES: list[tuple[type[BaseException], str]] = [
    (ConnectionRefusedError, "connection refused"),
    (ConnectionResetError, "connection reset"),
    (ConnectionAbortedError, "connection aborted"),
    (socket.gaierror, "host not found"),
]


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
    issues = body.get("issue")
    for issue in issues if isinstance(issues, list) else []:
        if not isinstance(issue, dict):
            continue
        details = issue["details"] if isinstance(issue.get("details"), dict) else {}
        text = issue.get("diagnostics") or details.get("text") or issue.get("code")
        paths = issue.get("expression") or issue.get("location") or []
        where = ", ".join(map(str, paths)) if isinstance(paths, list) else str(paths)
        parts.append(f"{text} ({where})" if where else str(text))
    return "; ".join(p for p in parts if p)


@dataclass
class RetryPolicy:
    """When and how long to wait before trying a request again."""

    attempts: int = RETRY_ATTEMPTS  # tries in all, the first included
    backoff: float = 0.5  # seconds before the first retry, doubled each time
    max_wait: float = RETRY_MAX_WAIT  # the longest single wait, Retry-After included
    max_total_wait: float = 120.0  # give up once the waits would add up to more

    def delay(self, attempt: int, response: requests.Response | None) -> float:
        """Seconds to wait before try ``attempt + 1``; Retry-After wins when the server sends it."""
        wait = self.backoff * (2 ** (attempt - 1))
        header = response.headers.get("Retry-After") if response is not None else None
        if header:
            wait = retry_after_seconds(header, wait)
        return min(max(wait, 0.0), self.max_wait)


def retry_after_seconds(header: str, default: float) -> float:
    """The seconds a Retry-After header asks for (seconds or an HTTP date); ``default`` if neither."""
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
    bulk_export: bool = False  # a system-level $export
    group_export: bool = False  # Group/[id]/$export
    patient_everything: bool = False  # Patient/[id]/$everything

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
        group = next((r for r in resources if r.get("type") == "Group"), {})
        patient = next((r for r in resources if r.get("type") == "Patient"), {})
        return cls(
            str(statement.get("fhirVersion", "")),
            "transaction" in system,
            "batch" in system,
            conditional,
            searchable,
            "export" in operations,
            "export" in {o.get("name") for o in group.get("operation", [])},
            "everything" in {o.get("name") for o in patient.get("operation", [])},
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
        if parts.username is not None or parts.password is not None:
            # every message names the URL: a password in it would be shown
            raise ConfigurationError(
                "`base_url` must not hold credentials: give them with `username`/`password` "
                "or `token`"
            )
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigurationError(f"`base_url` {base_url!r} is not an http(s) URL")
        if parts.scheme == "http" and parts.hostname not in LOOPBACK and not allow_http:
            raise ConfigurationError(
                f"`base_url` {base_url} is plain http to a non-loopback host: "
                "use https, or `allow_http` if you really mean it"
            )
        self.given_url = base_url  # as the user gave it: messages name it so
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
        # eSource: a hospital's ids and identifiers stay out of messages and logs
        self.private = False

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
        authenticated: bool = True,
        stream: bool = False,
    ) -> requests.Response:
        """Send a request, retrying what can safely be retried; raise on a final failure.
        ``authenticated=False`` sends no credentials; ``stream=True`` leaves the body unread.
        Each answer is logged at INFO, each retry at WARNING while it waits."""
        url = self.url(path)
        shown = self.shown(url, params)  # in messages and logs
        safe = method in IDEMPOTENT if idempotent is None else idempotent
        waited = 0.0
        refreshed = False
        attempt = 0
        while True:
            attempt += 1
            response: requests.Response | None = None
            started = time.monotonic()
            try:
                response = self.session.request(
                    method,
                    url,
                    json=json,
                    params=params,
                    headers=headers,
                    timeout=self.timeout,
                    stream=stream,
                    # given per request, or REQUESTS_CA_BUNDLE would turn --insecure back on
                    verify=self.session.verify,
                    # requests falls back to the session's auth when a request's is None
                    auth=None if authenticated else _anonymous,
                )
            except requests.exceptions.SSLError as e:
                raise ServerError(
                    f"{method} {shown}: TLS verification failed ({e.__class__.__name__}"
                    "); fix the certificate or pass `insecure`"
                ) from None
            except (
                requests.exceptions.ConnectionError,
                requests.exceptions.Timeout,
                # The connection broke while the answer came in (reset mid-body): the request
                # may have been carried out, so only an idempotent one is tried again.
                requests.exceptions.ChunkedEncodingError,
            ) as e:
                if (
                    not (safe or isinstance(e, requests.exceptions.ConnectTimeout))
                    or attempt >= self.retry.attempts
                ):
                    raise ServerError(
                        f"{method} {shown}: {_describe(e)} after {attempt} "
                        f"attempt{'s' if attempt > 1 else ''} ({self._cause(e)})"
                    ) from None
                problem = (
                    f"the answer broke off ({self._cause(e)})"
                    if isinstance(e, requests.exceptions.ChunkedEncodingError)
                    else f"server not answering ({self._cause(e)})"
                )
            else:
                log.info(ANSWERED, method, shown, response.status_code, time.monotonic() - started)
                if (
                    response.status_code == 401
                    and authenticated
                    and not refreshed
                    and hasattr(self.session.auth, "invalidate")
                ):
                    log.info("the server refused the access token: fetching a new one")
                    self.session.auth.invalidate()  # a cached token expired early: fetch anew
                    refreshed = True
                    attempt -= 1
                    continue
                retryable = response.status_code in RETRY_STATUSES and (
                    safe or response.status_code == 429
                )
                if not retryable or attempt >= self.retry.attempts:
                    return self._checked(method, shown, response)
                problem = (
                    "server busy (429)"
                    if response.status_code == 429
                    else f"HTTP {response.status_code} {response.reason or ''}".rstrip()
                )
            wait = self.retry.delay(attempt, response)
            if waited + wait > self.retry.max_total_wait:
                if response is not None:
                    return self._checked(method, shown, response)
                raise ServerError(f"{method} {shown}: gave up after waiting {waited:.0f} s")
            waited += wait
            if response is not None:
                response.close()  # a streamed answer holds its connection until closed
            asked = response is not None and "Retry-After" in response.headers
            log.warning(
                "%s %s: %s, retry %d of %d in %s s%s",
                method,
                shown,
                problem,
                attempt,
                self.retry.attempts - 1,
                f"{round(wait, 1):g}",
                " (Retry-After)" if asked else "",
            )
            self.sleep(wait)

    def shown(self, url: str, params: Mapping[str, str] | None = None) -> str:
        """``url`` and its ``params`` as messages and logs show them: readable, and without the
        query of a URL outside the base URL (a pre-signed download URL carries its credential
        there)."""
        if not url.startswith(self.base_url):
            return url.split("?", 1)[0] + ("?..." if "?" in url or params else "")
        if self.private:
            path, _, query = url.partition("?")
            steps = path[len(self.base_url) :].split("/")
            kept = [s if i == 0 or s.startswith("$") else "[id]" for i, s in enumerate(steps)]
            names = [*(params or {}), *(q.split("=", 1)[0] for q in query.split("&") if q)]
            hidden = "&".join(f"{name}=[hidden]" for name in dict.fromkeys(names))
            return self.base_url + "/".join(kept) + (f"?{hidden}" if hidden else "")
        if params:
            url += ("&" if "?" in url else "?") + "&".join(f"{k}={v}" for k, v in params.items())
        return url

    def _cause(self, error: Exception) -> str:
        """Why a request got no answer, in words a user understands."""
        if isinstance(error, requests.exceptions.ConnectTimeout):
            return f"could not connect within {self.timeout:g} s"
        if isinstance(error, requests.exceptions.Timeout):
            return f"no answer within {self.timeout:g} s"
        # requests wraps urllib3's error, which wraps the operating system's
        pending: list[BaseException | None] = [error]
        seen: set[int] = set()
        while pending:
            cause = pending.pop()
            if cause is None or id(cause) in seen:
                continue
            seen.add(id(cause))
            for kind, words in _OS_CAUSES:
                if isinstance(cause, kind):
                    return words
            pending += [getattr(cause, "reason", None), cause.__cause__, cause.__context__]
            pending += [a for a in cause.args if isinstance(a, BaseException)]
        return "connection lost"

    def _checked(self, method: str, url: str, response: requests.Response) -> requests.Response:
        if response.status_code < 400:
            return response
        body = answer_json(method, url, response)
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
        shown = self.shown(self.url(path), kwargs.get("params"))
        body = answer_json(method, shown, response)
        if body is None:
            raise ServerError(
                f"{method} {shown}: the server answered "
                f"HTTP {response.status_code} with a body that is not JSON"
            )
        return body

    # -- FHIR interactions ------------------------------------------------------------------

    def capabilities(self) -> Capabilities:
        """The server's capabilities (GET /metadata, once); FHIR 4.0.x is required."""
        if self._capabilities is None:
            url = self.url("metadata")
            elsewhere = f"is {self.given_url} the FHIR base URL?"
            try:
                response = self.request("GET", url)
            except RejectedError as e:  # 404 and the like: no FHIR server answers there
                raise ServerError(f"{e}: {elsewhere}") from None
            statement = answer_json("GET", url, response)
            if (
                not isinstance(statement, dict)
                or statement.get("resourceType") != "CapabilityStatement"
            ):
                raise ServerError(
                    f"GET {url}: the answer is {_what(response, statement)}, "
                    f"not a CapabilityStatement: {elsewhere}"
                )
            try:
                caps = Capabilities.from_statement(statement)
            except (AttributeError, KeyError, TypeError):
                raise ServerError(
                    f"{self.url('metadata')}: the CapabilityStatement is not well formed"
                ) from None
            if not caps.fhir_version.startswith("4.0"):
                raise ServerError(
                    f"{self.base_url} speaks FHIR {caps.fhir_version or '?'}, not R4 (4.0.x)"
                )
            self._capabilities = caps
        return self._capabilities

    def read(self, resource_type: str, resource_id: str) -> dict[str, Any] | None:
        """The current version of a resource, or None when it does not exist (404/410)."""
        try:
            found = self.json("GET", f"{resource_type}/{resource_id}")
        except RejectedError as e:
            if e.status in (404, 410):
                return None
            raise
        if not _is_resource(found):
            raise ServerError(f"GET {self.url(f'{resource_type}/{resource_id}')}: no resource")
        return found

    def bundle(self, bundle: dict[str, Any], *, idempotent: bool = False) -> dict[str, Any]:
        """POST a transaction or batch Bundle and return the response Bundle."""
        body = self.json("POST", "", json=bundle, idempotent=idempotent)
        problem = _bundle_problem(body)
        if problem:
            raise ServerError(
                f"POST {self.base_url}: the answer to a {bundle.get('type')} {problem}"
            )
        return body

    def search(
        self,
        resource_type: str,
        params: dict[str, str] | None = None,
        *,
        page: Callable[[int], None] | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Every match of a search, page after page (``link[relation=next]``, followed exactly;
        a link seen before ends the search); ``page`` is told how many matches each page holds."""
        answer = self.json("GET", resource_type, params=params)
        seen: set[str] = set()
        while True:
            problem = _bundle_problem(answer)
            if problem:
                raise ServerError(f"search {resource_type}: the server's answer {problem}")
            matches = [
                entry["resource"]
                for entry in answer.get("entry", [])
                if entry.get("search", {}).get("mode", "match") == "match" and "resource" in entry
            ]
            if not all(_is_resource(match) for match in matches):
                raise ServerError(f"search {resource_type}: a match is not a resource")
            if page is not None:
                page(len(matches))
            yield from matches
            following = next(
                (
                    link.get("url")
                    for link in answer.get("link", [])
                    if link.get("relation") == "next"
                ),
                None,
            )
            if not following or following in seen:
                return
            seen.add(following)
            answer = self.json("GET", following)

    def lines(self, url: str, *, authenticated: bool, accept: str) -> Iterator[list[bytes]]:
        """The body of a GET, streamed: the lines each downloaded chunk completes (without the
        line ends, empty lines kept)."""
        response = self.request(
            "GET", url, headers={"Accept": accept}, authenticated=authenticated, stream=True
        )
        longest = limits.JSON_MB.value() * limits.MB
        with response:
            partial: list[bytes] = []  # the line under way, in pieces: joined once, when it ends
            size = 0
            try:
                for chunk in response.iter_content(chunk_size=1 << 16):
                    *ended, rest = chunk.split(b"\n")
                    if ended:
                        yield [b"".join([*partial, ended[0]]), *ended[1:]]
                        partial, size = [], 0
                    partial.append(rest)
                    size += len(rest)
                    if size > longest:  # a line without end would fill the memory
                        raise ServerError(
                            f"GET {self.shown(url)}: "
                            + limits.JSON_MB.exceeded("the answer has a line longer than")
                        )
            except requests.exceptions.RequestException as e:
                raise ServerError(
                    f"GET {self.shown(url)}: the download broke off ({type(e).__name__})"
                ) from None
            if size:
                yield [b"".join(partial)]

    def close(self) -> None:
        self.session.close()


def _is_resource(value: Any) -> bool:
    """Whether ``value`` is a resource with a type and an id, as every stored resource has."""
    return (
        isinstance(value, dict)
        and isinstance(value.get("resourceType"), str)
        and isinstance(value.get("id"), str)
    )


def _bundle_problem(body: Any) -> str | None:
    """What keeps ``body`` from being a Bundle whose parts can be read, or None: entries and links
    are objects, and so are an entry's resource, search and response, whose texts are strings."""
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        return "is not a Bundle"
    for name in ("entry", "link"):
        items = body.get(name, [])
        if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
            return f"is a Bundle whose {name} elements are not all objects"
    if not all(isinstance(link.get("url", ""), str) for link in body.get("link", [])):
        return "is a Bundle with a link that is no URL"
    for i, entry in enumerate(body.get("entry", [])):
        resource, search, response = (entry.get(n, {}) for n in ("resource", "search", "response"))
        if not all(isinstance(part, dict) for part in (resource, search, response)) or not all(
            isinstance(response.get(name, ""), str) for name in ("status", "location")
        ):
            return f"is a Bundle whose entry[{i}] is not well formed"
    return None


def answer_json(method: str, url: str, response: requests.Response) -> Any:
    """The JSON of an answer, or None when it is not JSON; an answer beyond the limits on what is
    read is a ServerError (the server's answer, not the study data, is at fault)."""
    try:
        return limits.loads(response.content, url)
    except ValueError:
        return None
    except InvalidDataError as e:
        raise ServerError(f"{method} {url}: the answer {e.problems[0].message}") from None


def _what(response: requests.Response, body: Any) -> str:
    """What an answer is, for a message that says it is not what was expected."""
    if isinstance(body, dict) and isinstance(body.get("resourceType"), str):
        return f"a FHIR {body['resourceType']}"
    if body is not None:
        return "JSON that is no FHIR resource"
    if not response.content:
        return "empty"
    kind = response.headers.get("Content-Type", "").split(";")[0].strip()
    return "an HTML page" if "html" in kind else f"not JSON ({kind or 'no content type'})"


def _describe(error: Exception) -> str:
    if isinstance(error, requests.exceptions.Timeout):
        return "timed out"
    if isinstance(error, requests.exceptions.ChunkedEncodingError):
        return "the answer broke off"
    return (
        "could not connect"
        if isinstance(error, requests.exceptions.ConnectionError)
        else str(error)
    )


def _anonymous(request: requests.PreparedRequest) -> requests.PreparedRequest:
    return request


class BearerToken(requests.auth.AuthBase):
    """A fixed bearer token."""

    def __init__(self, token: str) -> None:
        self._token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self._token}"
        return request

    def __repr__(self) -> str:  # never show the token
        return "BearerToken(***)"
