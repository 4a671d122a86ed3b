"""Push resources to a FHIR server as idempotent upserts: compare with what the server holds, send
only what is new or changed, in transactions or batches ordered so that references resolve.

The input is read a chunk at a time (``Source``): an NDJSON folder is streamed file by file, so a
push of any size holds one chunk in memory. The push report is a journal (``Journal``): each chunk's
lines are appended and synced once the server has answered, so a push stopped anywhere can resume.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any, Literal
from urllib.parse import quote

from fhir_admsc.client import RETRY_STATUSES, FhirClient, RejectedError, outcome_text
from fhir_admsc.errors import ConfigurationError, InvalidDataError, Problem, ServerError
from fhir_admsc.ids import has_identifier, identifiers
from fhir_admsc.inputs import Source
from fhir_admsc.journal import Journal, PushResult
from fhir_admsc.resources import key, label, reference_id, references_in
from fhir_admsc.terminology import CANONICAL_BASE

log = logging.getLogger(__name__)

Mode = Literal["transaction", "batch"]
Match = Literal["id", "identifier"]

# R4 defines no `identifier` search parameter for these types, so no conditional update either.
NO_IDENTIFIER_SEARCH = frozenset({"AdverseEvent", "BiologicallyDerivedProduct"})

# Elements a server manages itself; they never make a resource "changed".
SERVER_META = {
    "versionId",
    "lastUpdated",
    "source",
    "author",
    "project",
    "compartment",
    "account",
    "onBehalfOf",
}


def business_identifier(resource: dict[str, Any]) -> tuple[str, str]:
    """The project's business identifier of a resource: (system, value)."""
    for ident in identifiers(resource):
        if str(ident.get("system", "")).startswith(f"{CANONICAL_BASE}/sid/") and isinstance(
            ident.get("value"), str
        ):
            return ident["system"], ident["value"]
    where = label(resource) or "a resource"
    raise InvalidDataError(
        [
            Problem(
                where, "has no fhir-admsc business identifier: it cannot be matched on the server"
            )
        ]
    )


def _referring_to(resource: dict[str, Any], renamed: Mapping[str, str]) -> dict[str, Any]:
    """The resource with its references to the keys of ``renamed`` pointing to their values (the
    resource itself when it has none)."""
    if not any(ref["reference"] in renamed for ref in references_in(resource)):
        return resource
    copy = json.loads(json.dumps(resource))
    for ref in references_in(copy):
        ref["reference"] = renamed.get(ref["reference"], ref["reference"])
    return copy


def same_content(ours: dict[str, Any], theirs: dict[str, Any] | None) -> bool:
    """Whether the server's copy says what ours says (server-managed meta and narrative aside)."""
    if theirs is None:
        return False
    return _canonical(ours, ours) == _canonical(theirs, ours)


def _canonical(resource: dict[str, Any], ours: dict[str, Any]) -> Any:
    copy = {
        k: v for k, v in resource.items() if k != "id" and not (k == "text" and "text" not in ours)
    }
    meta = {k: v for k, v in copy.pop("meta", {}).items() if k not in SERVER_META}
    if meta:
        copy["meta"] = meta
    return json.loads(json.dumps(copy, sort_keys=True), parse_float=float, parse_int=float)


class Pusher:
    """Plans and sends one push, a chunk at a time."""

    def __init__(self, client: FhirClient, match: Match = "id") -> None:
        self.client = client
        self.match = match
        # Identifier mode only (the server picks the ids): a resource may refer to one of an
        # earlier chunk, so each resource met leaves its conditional URL, and its server id where
        # that differs from ours, for the references of those that follow.
        self._conditional: dict[str, str] = {}
        self._server_refs: dict[str, str] = {}
        # whether the server answers a batch of reads (None: not tried yet)
        self._batches: bool | None = None

    def by_identifier(self, resource: dict[str, Any]) -> bool:
        """Whether this resource is matched on its business identifier (R4 gives a few types no
        identifier search parameter: those are always matched by id)."""
        return self.match == "identifier" and resource["resourceType"] not in NO_IDENTIFIER_SEARCH

    def request_url(self, resource: dict[str, Any]) -> str:
        if not self.by_identifier(resource):
            return key(resource)
        system, value = business_identifier(resource)
        return f"{resource['resourceType']}?identifier={quote(f'{system}|{value}', safe=':/|')}"

    def met(self, resources: Iterable[dict[str, Any]]) -> None:
        """Note resources that later ones may refer to: those planned, and those a resumed push
        skips because an earlier run stored them."""
        if self.match == "identifier":
            self._conditional.update((key(r), self.request_url(r)) for r in resources)

    def _remember(self, server_ids: Iterable[tuple[str, str | None]]) -> None:
        """Note the server's ids of resources (Type/id as exported, server id)."""
        for name, server_id in server_ids:
            kind, our_id = name.split("/", 1)
            if self.match == "identifier" and server_id and server_id != our_id:
                self._server_refs[name] = f"{kind}/{server_id}"

    def current(
        self, resources: list[dict[str, Any]], chunk: int = 100
    ) -> list[dict[str, Any] | None]:
        """What the server holds for each resource (None where it holds nothing)."""
        found: list[dict[str, Any] | None] = []
        for start in range(0, len(resources), chunk):
            part = resources[start : start + chunk]
            batch = self._batch_reads(part)
            found.extend(batch if batch is not None else [self._current_one(r) for r in part])
        return found

    def _batch_reads(self, part: list[dict[str, Any]]) -> list[dict[str, Any] | None] | None:
        """The reads of ``part`` in one batch, or None where the server takes no batch. A server
        may take batches its CapabilityStatement does not list (HAPI 8.8): one is tried, and the
        answer remembered for the rest of the push."""
        declared = self.client.capabilities().batch
        if self._batches is False:
            return None
        try:
            answers = self._current_batch(part)
        except (RejectedError, ServerError) as e:
            if declared or self._batches:
                raise  # a server that takes batches failed this one: a failure to report
            log.info("the server takes no batch of reads (%s): reading one resource at a time", e)
            self._batches = False
            return None
        self._batches = True
        return answers

    def _current_one(self, resource: dict[str, Any]) -> dict[str, Any] | None:
        if not self.by_identifier(resource):
            return self.client.read(resource["resourceType"], resource["id"])
        system, value = business_identifier(resource)
        matches = list(
            self.client.search(resource["resourceType"], {"identifier": f"{system}|{value}"})
        )
        return self._single(resource, matches)

    def _single(
        self, resource: dict[str, Any], matches: list[dict[str, Any]]
    ) -> dict[str, Any] | None:
        # Some servers ignore the query of a search inside a batch: keep true matches only.
        system, value = business_identifier(resource)
        matches = [m for m in matches if has_identifier(m, system, value)]
        if len(matches) > 1:
            system, value = business_identifier(resource)
            raise ServerError(
                f"{len(matches)} {resource['resourceType']} resources on the "
                f"server have identifier {system}|{value}: resolve the duplicates "
                "before pushing"
            )
        return matches[0] if matches else None

    def _current_batch(self, part: list[dict[str, Any]]) -> list[dict[str, Any] | None]:
        entries = [{"request": {"method": "GET", "url": self.request_url(r)}} for r in part]
        reply = self.client.bundle(
            {"resourceType": "Bundle", "type": "batch", "entry": entries}, idempotent=True
        )
        answers = reply.get("entry", [])
        if len(answers) != len(part):
            raise ServerError(
                f"the batch of {len(part)} reads came back with {len(answers)} entries"
            )
        out = []
        for resource, answer in zip(part, answers, strict=True):
            status = _status(answer)
            body = answer.get("resource")
            if status in (404, 410) or body is None:
                out.append(None)
            elif status >= 400:
                raise ServerError(f"reading {self.request_url(resource)}: HTTP {status}")
            elif body.get("resourceType") == "Bundle":
                out.append(
                    self._single(
                        resource, [e["resource"] for e in body.get("entry", []) if "resource" in e]
                    )
                )
            else:
                out.append(body)
        return out

    def plan(self, resources: list[dict[str, Any]]) -> list[PushResult]:
        """create / update / unchanged for each resource, from the server's current state."""
        current = self.current(resources)
        self.met(resources)
        # In identifier mode the server picked the ids, and the copies it holds refer to each other
        # by them: ours are compared with their references turned to the server's ids. (Those of
        # resources a resumed push skipped are not known: a resource referring to one of them
        # then looks changed, and is sent again, unchanged.)
        self._remember(
            (key(r), theirs.get("id"))
            for r, theirs in zip(resources, current, strict=True)
            if theirs
        )
        outcomes = []
        for resource, theirs in zip(resources, current, strict=True):
            system, value = business_identifier(resource)
            action = (
                "create"
                if theirs is None
                else "unchanged"
                if same_content(_referring_to(resource, self._server_refs), theirs)
                else "update"
            )
            outcomes.append(
                PushResult(
                    key(resource),
                    f"{system}|{value}",
                    action,
                    server_id=None if theirs is None else theirs.get("id"),
                )
            )
        actions = Counter(o.outcome for o in outcomes)
        log.info(
            "compared %d resources with the server: %d to create, %d to update, %d unchanged",
            len(outcomes),
            actions["create"],
            actions["update"],
            actions["unchanged"],
        )
        return outcomes

    def payload(
        self,
        resource: dict[str, Any],
        targets: Mapping[str, str],
        sent_together: frozenset[str] = frozenset(),
    ) -> dict[str, Any]:
        """The resource as sent. In identifier mode the server picks the ids, so a reference
        becomes the ``urn:uuid`` of an entry of the same Bundle, or a conditional reference (its
        URL in ``targets``, by Type/id) on the business identifier of a resource sent before."""
        if self.match == "id":
            return resource
        copy = json.loads(json.dumps(resource))
        if self.by_identifier(resource):
            copy.pop("id")
        for ref in references_in(copy):
            target = targets.get(ref["reference"])
            if target is None:
                continue
            ref["reference"] = (
                f"urn:uuid:{ref['reference'].split('/', 1)[1]}"
                if ref["reference"] in sent_together
                else target
            )
        return copy

    def send(
        self, resources: list[dict[str, Any]], plan: list[PushResult], mode: Mode, chunk: int
    ) -> list[PushResult]:
        """Send what the plan says is new or changed; return the final outcome of every resource."""
        final = {
            o.resource: PushResult(o.resource, o.identifier, "unchanged", 200, o.server_id)
            for o in plan
            if o.outcome == "unchanged"
        }
        todo = [(r, o) for r, o in zip(resources, plan, strict=True) if o.outcome != "unchanged"]
        if todo:
            count = -(-len(todo) // chunk)
            log.info(
                "sending %d new or changed resources in %d %s%s of at most %d entries, "
                "matched by %s",
                len(todo),
                count,
                mode,
                "" if count == 1 else "es" if mode == "batch" else "s",
                chunk,
                self.match,
            )
        for start in range(0, len(todo), chunk):
            results = self._send_chunk(todo[start : start + chunk], mode)
            self._remember((o.resource, o.server_id) for o in results)
            for outcome in results:
                final[outcome.resource] = outcome
        return [final[o.resource] for o in plan]

    def _send_chunk(
        self, part: list[tuple[dict[str, Any], PushResult]], mode: Mode
    ) -> list[PushResult]:
        together = frozenset(key(r) for r, _ in part) if mode == "transaction" else frozenset()
        entries = [
            {
                "fullUrl": f"urn:uuid:{r['id']}",
                "resource": self.payload(r, self._conditional, together),
                "request": {"method": "PUT", "url": self.request_url(r)},
            }
            for r, _ in part
        ]
        try:
            if mode == "batch":
                return self._batch(part, entries)
            reply = self.client.bundle(
                {"resourceType": "Bundle", "type": "transaction", "entry": entries}, idempotent=True
            )
        except RejectedError as e:
            if len(part) == 1:
                return [_failed(part[0][1], e.status, str(e))]
            # The server refused the whole Bundle: for one bad entry (of a batch too: HAPI parses
            # the whole Bundle before it runs an entry, so one that does not parse fails them
            # all), or because it was too large for it (some servers cap a transaction at a few
            # dozen updates). Halve it until the entries the server refuses are alone; the others
            # are stored.
            half = len(part) // 2
            log.info(
                "the server refused a %s of %d entries (HTTP %d): sending it again as two of "
                "%d and %d, to find the entries it refuses",
                mode,
                len(part),
                e.status,
                half,
                len(part) - half,
            )
            return self._send_chunk(part[:half], mode) + self._send_chunk(part[half:], mode)
        answers = reply.get("entry", [])
        if len(answers) != len(part):
            raise ServerError(f"a transaction of {len(part)} came back with {len(answers)} entries")
        return [_result(o, a) for (_, o), a in zip(part, answers, strict=True)]

    def _batch(
        self, part: list[tuple[dict[str, Any], PushResult]], entries: list[dict[str, Any]]
    ) -> list[PushResult]:
        """Send a batch; re-send the entries that failed for reasons that can pass (429, 5xx)."""
        pending = list(range(len(part)))
        results: dict[int, PushResult] = {}
        for attempt in range(1, self.client.retry.attempts + 1):
            reply = self.client.bundle(
                {"resourceType": "Bundle", "type": "batch", "entry": [entries[i] for i in pending]},
                idempotent=True,
            )
            answers = reply.get("entry", [])
            if len(answers) != len(pending):
                raise ServerError(
                    f"a batch of {len(pending)} came back with {len(answers)} entries"
                )
            retry = []
            for i, answer in zip(pending, answers, strict=True):
                results[i] = _result(part[i][1], answer)
                if results[i].outcome == "failed" and results[i].status in RETRY_STATUSES:
                    retry.append(i)
            if not retry or attempt == self.client.retry.attempts:
                break
            wait = self.client.retry.delay(attempt, None)
            log.warning(
                "batch: %d of %d entries failed for a reason that can pass (HTTP %s), "
                "retry %d of %d in %s s",
                len(retry),
                len(pending),
                ", ".join(sorted({str(results[i].status) for i in retry})),
                attempt,
                self.client.retry.attempts - 1,
                f"{round(wait, 1):g}",
            )
            pending = retry
            self.client.sleep(wait)
        return [results[i] for i in range(len(part))]


def _status(entry: dict[str, Any]) -> int:
    text = str(entry.get("response", {}).get("status", "0")).split(" ", 1)[0]
    return int(text) if text.isdigit() else 0


def _result(planned: PushResult, answer: dict[str, Any]) -> PushResult:
    status = _status(answer)
    response = answer.get("response", {})
    if status >= 400 or status == 0:
        return _failed(planned, status, outcome_text(response.get("outcome")) or f"HTTP {status}")
    location = response.get("location", "")
    server_id = (
        reference_id(location)
        if location
        else answer.get("resource", {}).get("id", planned.server_id)
    )
    outcome = "created" if status == 201 or planned.outcome == "create" else "updated"
    return PushResult(planned.resource, planned.identifier, outcome, status, server_id)


def _failed(planned: PushResult, status: int | None, message: str) -> PushResult:
    return PushResult(
        planned.resource, planned.identifier, "failed", status, planned.server_id, message
    )


def push_all(
    source: Source,
    client: FhirClient,
    *,
    mode: Mode = "transaction",
    match: Match = "id",
    chunk: int = 100,
    dry_run: bool = False,
    journal: Journal | None = None,
    progress: Callable[[int], None] | None = None,
    results: Callable[[PushResult], None] | None = None,
    concurrency: int = 1,
) -> Counter[str]:
    """Push every resource of ``source`` a chunk at a time and return how many had each outcome
    ("done before" for those a resumed ``journal`` skips). A dry run plans and sends nothing.

    ``concurrency`` chunks are compared and sent at a time (see ``_InFlight``): a chunk goes once
    the chunks holding what it refers to are done. ``results`` is told of every resource's result
    as its chunk is done, ``progress`` of the number of resources gone through. The ``journal``,
    when given, records every chunk's results and is finished once the whole input went through;
    on a server failure the chunks under way are waited for and recorded, the journal is closed
    and the ServerError says that the push can resume from it.
    """
    capabilities = client.capabilities()
    if mode == "transaction" and not capabilities.transaction:
        log.warning("the server does not offer transactions: sending batches")
        mode = "batch"
    if match == "identifier":
        unable = capabilities.cannot_match_by_identifier(source.types - NO_IDENTIFIER_SEARCH)
        if unable:
            raise ConfigurationError(
                f"the server cannot update {', '.join(unable)} conditionally on identifier "
                "(its CapabilityStatement says so): set `match` to id"
            )
    pusher = Pusher(client, match)

    def work(todo: list[dict[str, Any]]) -> list[PushResult]:
        outcomes = pusher.plan(todo)
        return outcomes if dry_run else pusher.send(todo, outcomes, mode, chunk)

    counts: Counter[str] = Counter()
    done = 0

    def take(outcomes: list[PushResult], size: int) -> None:
        nonlocal done
        if journal:
            journal.record(outcomes)
        counts.update(o.outcome for o in outcomes)
        for outcome in outcomes if results else ():
            results(outcome)
        done += size
        if progress:
            progress(done)

    flight = _InFlight(work, concurrency)
    try:
        for part in source.chunks(chunk):
            todo = journal.pending(part) if journal else part
            counts["done before"] += len(part) - len(todo)
            pusher.met(part)  # the skipped ones too: later resources may refer to them
            for finished in flight.send(todo, len(part)):
                take(*finished)
        for finished in flight.drain():
            take(*finished)
    except ServerError as e:
        if journal is None:
            raise
        raise ServerError(
            f"{e}\n{journal.path} holds every result confirmed until then: "
            "run the same push again with `resume` to push the rest"
        ) from None
    finally:
        flight.close()
        if journal:
            journal.close()
    if journal:
        journal.finish()
    return counts


class _InFlight:
    """Chunks compared and sent by ``concurrency`` threads at once.

    A chunk is started once every chunk under way that holds a resource it refers to is done (the
    server then has those), and while fewer than ``concurrency`` are under way; chunks of one
    reference level therefore go side by side, and a chunk never waits on one it does not need.
    Finished chunks are handed back as (results, resources gone through). After a failure no
    chunk is started; those under way are waited for and handed back (what the server stored is
    recorded), then the first failure is raised.
    """

    def __init__(self, work: Callable[[list[dict[str, Any]]], list[PushResult]], concurrency: int):
        self.work = work
        self.concurrency = max(1, concurrency)
        self.pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="push")
        self.out: dict[Future[list[PushResult]], tuple[int, list[str]]] = {}  # size, Type/ids
        self.holder: dict[str, Future[list[PushResult]]] = {}  # Type/id -> its chunk under way

    def send(self, todo: list[dict[str, Any]], size: int) -> Iterator[tuple[list[PushResult], int]]:
        """Start a chunk (``size`` resources gone through, ``todo`` of them to push), handing back
        the chunks that finish while it waits for its turn."""
        if not todo:
            yield [], size
            return
        needs = {
            self.holder[ref["reference"]]
            for resource in todo
            for ref in references_in(resource)
            if ref["reference"] in self.holder
        }
        while self.out and (len(self.out) >= self.concurrency or needs & self.out.keys()):
            yield from self._finished(wait(self.out, return_when=FIRST_COMPLETED).done)
        future = self.pool.submit(self.work, todo)
        names = [key(r) for r in todo]
        self.out[future] = (size, names)
        self.holder.update(dict.fromkeys(names, future))

    def drain(self) -> Iterator[tuple[list[PushResult], int]]:
        """Hand back every chunk under way as it finishes."""
        while self.out:
            yield from self._finished(wait(self.out, return_when=FIRST_COMPLETED).done)

    def _finished(
        self, done: Iterable[Future[list[PushResult]]]
    ) -> Iterator[tuple[list[PushResult], int]]:
        for future in sorted(done, key=list(self.out).index):  # in the order they were started
            size, names = self.out.pop(future)
            for name in names:
                if self.holder.get(name) is future:
                    del self.holder[name]
            try:
                outcomes = future.result()
            except BaseException:
                yield from self._rest()
                raise
            yield outcomes, size

    def _rest(self) -> Iterator[tuple[list[PushResult], int]]:
        """After a failure: the chunks still under way, as they finish (their own failures are
        dropped: the first one is reported)."""
        while self.out:
            future = next(iter(self.out))
            size, _ = self.out.pop(future)
            try:
                outcomes = future.result()
            except BaseException:  # noqa: BLE001, S112 - the first failure is the one raised
                continue
            yield outcomes, size

    def close(self) -> None:
        """Stop: chunks not started are dropped, those under way are waited for."""
        self.pool.shutdown(wait=True, cancel_futures=True)
