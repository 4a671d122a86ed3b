"""Push resources to a FHIR server as idempotent upserts: compare with what the server holds, send
only what is new or changed, in transactions or batches ordered so that references resolve."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any, Literal
from urllib.parse import quote

from fhir_admsc.client import FhirClient, RejectedError, outcome_text
from fhir_admsc.errors import InvalidDataError, Problem, ServerError
from fhir_admsc.ids import has_identifier
from fhir_admsc.terminology import CANONICAL_BASE

Mode = Literal["transaction", "batch"]
Match = Literal["id", "identifier"]
Progress = Callable[[int], None]

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


@dataclass
class Outcome:
    """What happened to one resource (one line of the push report)."""

    resource: str  # Type/id as exported
    identifier: str  # system|value of the business identifier
    outcome: str  # create | update | unchanged (dry run), created | updated | unchanged | failed
    status: int | None = None
    server_id: str | None = None
    message: str = ""

    def json_line(self) -> str:
        return (
            json.dumps(
                {k: v for k, v in asdict(self).items() if v not in (None, "")}, ensure_ascii=False
            )
            + "\n"
        )


def business_identifier(resource: dict[str, Any]) -> tuple[str, str]:
    """The project's business identifier of a resource: (system, value)."""
    idents = resource.get("identifier", [])
    for ident in [idents] if isinstance(idents, dict) else idents:
        if str(ident.get("system", "")).startswith(f"{CANONICAL_BASE}/sid/"):
            return ident["system"], ident["value"]
    where = f"{resource.get('resourceType')}/{resource.get('id')}"
    raise InvalidDataError(
        [
            Problem(
                where, "has no fhir-admsc business identifier: it cannot be matched on the server"
            )
        ]
    )


def _references(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        if isinstance(value.get("reference"), str):
            yield value
        for item in value.values():
            yield from _references(item)
    elif isinstance(value, list):
        for item in value:
            yield from _references(item)


def ordered(resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The resources with every referenced one before those that refer to it (stable otherwise;
    a reference cycle keeps input order for its members)."""
    key = {f"{r['resourceType']}/{r['id']}": i for i, r in enumerate(resources)}
    needs = [
        [
            key[ref["reference"]]
            for ref in _references(r)
            if ref["reference"] in key and key[ref["reference"]] != i
        ]
        for i, r in enumerate(resources)
    ]
    placed: list[int] = []
    state = [0] * len(resources)  # 0 new, 1 in progress, 2 placed
    for start in range(len(resources)):
        stack = [(start, iter(needs[start]))]
        if state[start]:
            continue
        state[start] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                state[node] = 2
                placed.append(node)
            elif state[child] == 0:
                state[child] = 1
                stack.append((child, iter(needs[child])))
    return [resources[i] for i in placed]


def _referring_to(resource: dict[str, Any], renamed: dict[str, str]) -> dict[str, Any]:
    """The resource with its references to the keys of ``renamed`` pointing to their values (the
    resource itself when it has none)."""
    if not any(ref["reference"] in renamed for ref in _references(resource)):
        return resource
    copy = json.loads(json.dumps(resource))
    for ref in _references(copy):
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
    """Plans and sends one push."""

    def __init__(self, client: FhirClient, match: Match = "id") -> None:
        self.client = client
        self.match = match

    def by_identifier(self, resource: dict[str, Any]) -> bool:
        """Whether this resource is matched on its business identifier (R4 gives a few types no
        identifier search parameter: those are always matched by id)."""
        return self.match == "identifier" and resource["resourceType"] not in NO_IDENTIFIER_SEARCH

    def request_url(self, resource: dict[str, Any]) -> str:
        if not self.by_identifier(resource):
            return f"{resource['resourceType']}/{resource['id']}"
        system, value = business_identifier(resource)
        return f"{resource['resourceType']}?identifier={quote(f'{system}|{value}', safe=':/|')}"

    def current(
        self, resources: list[dict[str, Any]], chunk: int = 100
    ) -> list[dict[str, Any] | None]:
        """What the server holds for each resource (None where it holds nothing)."""
        found: list[dict[str, Any] | None] = []
        use_batch = self.client.capabilities().batch
        for start in range(0, len(resources), chunk):
            part = resources[start : start + chunk]
            if use_batch:
                found.extend(self._current_batch(part))
            else:
                found.extend(self._current_one(r) for r in part)
        return found

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

    def plan(self, resources: list[dict[str, Any]]) -> list[Outcome]:
        """create / update / unchanged for each resource, from the server's current state."""
        current = self.current(resources)
        # In identifier mode the server picked the ids, and the copies it holds refer to each other
        # by them: ours are compared with their references turned to the server's ids.
        server_refs = {
            f"{r['resourceType']}/{r['id']}": f"{r['resourceType']}/{theirs['id']}"
            for r, theirs in zip(resources, current, strict=True)
            if theirs is not None and theirs.get("id") and theirs["id"] != r["id"]
        }
        outcomes = []
        for resource, theirs in zip(resources, current, strict=True):
            system, value = business_identifier(resource)
            action = (
                "create"
                if theirs is None
                else "unchanged"
                if same_content(_referring_to(resource, server_refs), theirs)
                else "update"
            )
            outcomes.append(
                Outcome(
                    f"{resource['resourceType']}/{resource['id']}",
                    f"{system}|{value}",
                    action,
                    server_id=None if theirs is None else theirs.get("id"),
                )
            )
        return outcomes

    def payload(
        self,
        resource: dict[str, Any],
        targets: dict[str, dict[str, Any]],
        sent_together: frozenset[str] = frozenset(),
    ) -> dict[str, Any]:
        """The resource as sent. In identifier mode the server picks the ids, so a reference
        becomes the ``urn:uuid`` of an entry of the same Bundle, or a conditional reference on
        the business identifier of a resource sent before."""
        if self.match == "id":
            return resource
        copy = json.loads(json.dumps(resource))
        if self.by_identifier(resource):
            copy.pop("id")
        for ref in _references(copy):
            target = targets.get(ref["reference"])
            if target is None:
                continue
            ref["reference"] = (
                f"urn:uuid:{target['id']}"
                if ref["reference"] in sent_together
                else self.request_url(target)
            )
        return copy

    def send(
        self,
        resources: list[dict[str, Any]],
        plan: list[Outcome],
        mode: Mode,
        chunk: int,
        progress: Progress | None = None,
    ) -> list[Outcome]:
        """Send what the plan says is new or changed; return the final outcome of every resource."""
        targets = {f"{r['resourceType']}/{r['id']}": r for r in resources}
        final = {
            o.resource: Outcome(o.resource, o.identifier, "unchanged", 200, o.server_id)
            for o in plan
            if o.outcome == "unchanged"
        }
        todo = [(r, o) for r, o in zip(resources, plan, strict=True) if o.outcome != "unchanged"]
        if progress:
            progress(len(final))
        for start in range(0, len(todo), chunk):
            part = todo[start : start + chunk]
            results = self._send_chunk(part, targets, mode)
            for outcome in results:
                final[outcome.resource] = outcome
            if progress:
                progress(len(part))
        return [final[o.resource] for o in plan]

    def _send_chunk(
        self,
        part: list[tuple[dict[str, Any], Outcome]],
        targets: dict[str, dict[str, Any]],
        mode: Mode,
    ) -> list[Outcome]:
        together = (
            frozenset(f"{r['resourceType']}/{r['id']}" for r, _ in part)
            if mode == "transaction"
            else frozenset()
        )
        entries = [
            {
                "fullUrl": f"urn:uuid:{r['id']}",
                "resource": self.payload(r, targets, together),
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
            return self._send_chunk(part[:half], targets, mode) + self._send_chunk(
                part[half:], targets, mode
            )
        answers = reply.get("entry", [])
        if len(answers) != len(part):
            raise ServerError(f"a transaction of {len(part)} came back with {len(answers)} entries")
        return [_result(o, a) for (_, o), a in zip(part, answers, strict=True)]

    def _batch(
        self, part: list[tuple[dict[str, Any], Outcome]], entries: list[dict[str, Any]]
    ) -> list[Outcome]:
        """Send a batch; re-send the entries that failed for reasons that can pass (429, 5xx)."""
        pending = list(range(len(part)))
        results: dict[int, Outcome] = {}
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
                if results[i].outcome == "failed" and (results[i].status or 0) in (
                    408,
                    429,
                    500,
                    502,
                    503,
                    504,
                ):
                    retry.append(i)
            if not retry:
                break
            pending = retry
            self.client.sleep(self.client.retry.delay(attempt, None))
        return [results[i] for i in range(len(part))]


def _status(entry: dict[str, Any]) -> int:
    text = str(entry.get("response", {}).get("status", "0")).split(" ", 1)[0]
    return int(text) if text.isdigit() else 0


def _result(planned: Outcome, answer: dict[str, Any]) -> Outcome:
    status = _status(answer)
    response = answer.get("response", {})
    if status >= 400 or status == 0:
        return _failed(planned, status, outcome_text(response.get("outcome")) or f"HTTP {status}")
    location = response.get("location", "")
    server_id = (
        location.split("/_history")[0].rstrip("/").split("/")[-1]
        if location
        else answer.get("resource", {}).get("id", planned.server_id)
    )
    outcome = "created" if status == 201 or planned.outcome == "create" else "updated"
    return Outcome(planned.resource, planned.identifier, outcome, status, server_id)


def _failed(planned: Outcome, status: int | None, message: str) -> Outcome:
    return Outcome(
        planned.resource, planned.identifier, "failed", status, planned.server_id, message
    )
