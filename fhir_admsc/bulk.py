"""Pull one study through the Bulk Data Access (v2) ``$export`` operation: kick-off, status polling,
NDJSON downloads and cleanup over a ``FhirClient``; the study's resources kept from the export.

The export's ``error`` files are read before any output: an issue of severity error or fatal means
the export is incomplete, so the pull fails (``ServerError``, exit 4); other issues are warnings.
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from fhir_admsc import limits
from fhir_admsc.client import (
    FhirClient,
    RejectedError,
    answer_json,
    outcome_text,
    retry_after_seconds,
)
from fhir_admsc.errors import InvalidDataError, ServerError
from fhir_admsc.fhir import FHIR_JSON
from fhir_admsc.pull import (
    PARTICIPANT_TYPES,
    STUDY_TYPES,
    Progress,
    Received,
    collect_study,
    find_study,
    in_study,
    read_reference,
    search_candidates,
    the_study,
)
from fhir_admsc.resources import key, reference_key

log = logging.getLogger(__name__)

NDJSON = "application/fhir+ndjson"
# R4's Patient compartment holds every participant type but BiologicallyDerivedProduct, and a
# Group-level export is limited to it (HAPI refuses any other _type with HTTP 400): the study, its
# sponsor, sites and products are then read from the server.
GROUP_TYPES = [t for t in PARTICIPANT_TYPES if t != "BiologicallyDerivedProduct"]
FAILING = frozenset({"error", "fatal"})
FIRST_POLL_WAIT = 1.0  # seconds, doubled at each poll the server answers without Retry-After


@dataclass(frozen=True)
class ExportFile:
    """One file a finished export offers: its resource type and where to download it."""

    type: str
    url: str


@dataclass(frozen=True)
class Manifest:
    """The answer to a finished export: output and error files, and whether downloads need the
    access token."""

    output: list[ExportFile]
    error: list[ExportFile]
    requires_access_token: bool

    @classmethod
    def from_json(cls, body: Any, url: str) -> Manifest:
        """The manifest in a status answer; anything else is a server fault."""
        if not isinstance(body, dict) or not isinstance(body.get("output"), list):
            raise ServerError(f"GET {url}: the finished export answered no manifest (no output)")

        def files(key: str) -> list[ExportFile]:
            listed = body.get(key) or []
            if not all(isinstance(f, dict) and isinstance(f.get("url"), str) for f in listed):
                raise ServerError(f"GET {url}: the manifest's {key} names a file without url")
            return [ExportFile(str(f.get("type", "")), f["url"]) for f in listed]

        return cls(files("output"), files("error"), body.get("requiresAccessToken") is True)


class BulkExport:
    """One ``$export`` job: kicked off on entering, its status URL deleted on leaving (even on a
    failure or an interrupt) so the server can drop the job and its files."""

    def __init__(
        self,
        client: FhirClient,
        types: list[str],
        *,
        group: str | None = None,
        poll_interval_max: float = 10.0,
        timeout: float = 3600.0,
        notify: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.types = types
        self.group = group
        self.poll_interval_max = poll_interval_max
        self.timeout = timeout
        self.notify = notify or (lambda _: None)
        self.clock = clock
        self.status_url = ""

    def __enter__(self) -> BulkExport:
        path = f"Group/{quote(self.group, safe='')}/$export" if self.group else "$export"
        response = self.client.request(
            "GET",
            path,
            params={"_type": ",".join(self.types)},
            headers={"Accept": FHIR_JSON, "Prefer": "respond-async"},
            # each kick-off starts a job: one sent again after a lost answer would leave an orphan
            idempotent=False,
        )
        location = response.headers.get("Content-Location")
        if response.status_code != 202 or not location:
            raise ServerError(
                f"GET {response.url}: HTTP {response.status_code} is no Bulk Data kick-off "
                "answer (202 Accepted with a Content-Location)"
            )
        self.status_url = self.client.url(location)
        log.info(
            "export of %s kicked off; its status is at %s",
            ", ".join(self.types),
            self.client.shown(self.status_url),
        )
        return self

    def __exit__(self, *_: object) -> None:
        try:
            self.client.request("DELETE", self.status_url)
        except RejectedError as e:
            if e.status != 404:  # HAPI answers 404 to the DELETE of a finished job: nothing to do
                log.warning("could not delete the export job: %s", e)
        except ServerError as e:
            log.warning("could not delete the export job: %s", e)

    def manifest(self) -> Manifest:
        """Poll the status URL until the export is done (Retry-After honoured up to the cap)."""
        deadline = self.clock() + self.timeout
        backoff = FIRST_POLL_WAIT
        while True:
            response = self.client.request(
                "GET", self.status_url, headers={"Accept": "application/json"}
            )
            if response.status_code != 202:
                break
            progress = response.headers.get("X-Progress") or "in progress"
            self.notify(f"export: {progress}")
            header = response.headers.get("Retry-After")
            wait = retry_after_seconds(header, backoff) if header else backoff
            backoff = min(backoff * 2, self.poll_interval_max)
            wait = min(max(wait, 0.0), self.poll_interval_max)
            log.info("export: %s; next status check in %s s", progress, f"{round(wait, 1):g}")
            if self.clock() + wait > deadline:
                raise ServerError(
                    f"{self.status_url}: the export was not done within {self.timeout:g} s "
                    f"(last progress: {progress}); try a larger `bulk_timeout`"
                )
            self.client.sleep(wait)
        if response.status_code != 200:
            raise ServerError(
                f"GET {self.status_url}: HTTP {response.status_code} is no export status answer"
            )
        shown = self.client.shown(self.status_url)
        manifest = Manifest.from_json(answer_json("GET", shown, response), shown)
        log.info(
            "export done: %d output files, %d error files",
            len(manifest.output),
            len(manifest.error),
        )
        return manifest

    def resources(self, file: ExportFile, manifest: Manifest) -> Iterator[list[dict[str, Any]]]:
        """The resources of one output or error file, a downloaded chunk at a time, parsed as
        they arrive; a line that is no resource is a ServerError (the export is at fault)."""
        shown = self.client.shown(file.url)
        read = 0  # lines before this chunk's
        for lines in self.client.lines(
            file.url, authenticated=manifest.requires_access_token, accept=NDJSON
        ):
            yield [
                _resource(line, shown, number)
                for number, line in enumerate(lines, read + 1)
                if line.strip()
            ]
            read += len(lines)

    def check_errors(self, manifest: Manifest) -> None:
        """Read the error files: warnings are logged, errors fail the export."""
        failures = []
        for file in manifest.error:
            for outcome in itertools.chain.from_iterable(self.resources(file, manifest)):
                text = outcome_text(outcome) or json.dumps(outcome)
                if FAILING & {i.get("severity") for i in outcome.get("issue", [])}:
                    failures.append(text)
                else:
                    log.warning("the export reports: %s", text)
        if failures:
            raise ServerError(
                f"the export at {self.status_url} is incomplete, it reports "
                f"{len(failures)} error{'s' if len(failures) > 1 else ''}: " + "; ".join(failures)
            )


def _resource(line: bytes, url: str, number: int) -> dict[str, Any]:
    """The resource on line ``number`` of an export file."""
    try:
        resource = limits.loads(line, url, number)
    except json.JSONDecodeError as e:
        raise ServerError(f"GET {url}: line {number} is not valid NDJSON: {e.msg}") from None
    except InvalidDataError as e:
        raise ServerError(f"GET {url}: line {number} {e.problems[0].message}") from None
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        raise ServerError(f"GET {url}: line {number} holds no FHIR resource")
    return resource


def bulk_pull_study(
    client: FhirClient,
    study_id: str,
    *,
    group: str | None = None,
    poll_interval_max: float = 10.0,
    timeout: float = 3600.0,
    notify: Callable[[str], None] | None = None,
    progress: Progress | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> list[dict[str, Any]]:
    """Every resource of the study, as ``pull_study`` finds them, out of a system-level export
    (or one of ``group``), which holds every study's resources; ``notify`` is told the export's
    status at each poll, ``progress`` the number of resources received so far after each
    downloaded chunk."""
    received = Received(progress)
    kept: dict[str, list[dict[str, Any]]] = defaultdict(list)
    with BulkExport(
        client,
        GROUP_TYPES if group else STUDY_TYPES,
        group=group,
        poll_interval_max=poll_interval_max,
        timeout=timeout,
        notify=notify,
        clock=clock,
    ) as export:
        manifest = export.manifest()
        export.check_errors(manifest)
        delivered = {file.type for file in manifest.output}
        for file in manifest.output:
            before = received.count
            for part in export.resources(file, manifest):
                for resource in part:
                    # other studies' participant data is dropped as it arrives; studies,
                    # sponsors and sites are few, and which are ours is known once the study is
                    if resource["resourceType"] not in PARTICIPANT_TYPES or in_study(
                        resource, study_id
                    ):
                        kept[resource["resourceType"]].append(resource)
                received(len(part))
            log.info(
                "downloaded %d resources of %s from %s",
                received.count - before,
                file.type or "no stated type",
                client.shown(file.url),
            )
    exported = {key(r): r for rs in kept.values() for r in rs}

    def read(reference: str) -> dict[str, Any]:
        found = exported.get(reference_key(reference))
        return found if found is not None else read_reference(client, received, reference)

    def candidates(
        resource_type: str, collected: dict[str, dict[str, Any]]
    ) -> Iterable[dict[str, Any]]:
        if resource_type in delivered:
            return kept[resource_type]
        # sekmet leaves ResearchSubject and AdverseEvent out of a Group's export: a type the
        # export has no file of is searched for, as a pull without --bulk does
        return search_candidates(client, received, resource_type, collected)

    study = (
        find_study(client, study_id, received)
        if group
        else the_study(kept["ResearchStudy"], study_id, client.given_url)
    )
    return collect_study(study, study_id, read, candidates)
