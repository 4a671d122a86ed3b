"""Property tests: random valid studies survive every round trip; random corruptions of the input
files and of a server's answers end in a clear message and a documented exit code, never in an
internal error or a traceback."""

from __future__ import annotations

import csv
import functools
import io
import json
import re
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import date, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import responses
from click.testing import CliRunner, Result
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from fhir_admsc import auth as auth_module
from fhir_admsc import terminology as term
from fhir_admsc.bundle import bundle, bundle_json, ndjson_files
from fhir_admsc.cli import cli, demo_folder
from fhir_admsc.client import FhirClient
from fhir_admsc.fhir import FHIR_JSON
from fhir_admsc.inputs import read_fhir
from fhir_admsc.mappings import study_from_fhir, study_to_fhir
from fhir_admsc.output import write_atomic, write_files
from fhir_admsc.study import (
    TABLES,
    AdverseEvent,
    Arm,
    ImagingFinding,
    ImagingReport,
    Medication,
    Outcome,
    Participant,
    Procedure,
    Site,
    Study,
    StudyInfo,
    Visit,
)
from fhir_admsc.tables import read_study, write_study
from fhir_admsc.terminology import external_code_problem
from fhir_admsc.validation.issues import at_least
from fhir_admsc.validation.run import validate_resources
from tests.helpers import table_differences

BASE = "https://fhir.example.test/r4"


def small_demo() -> Study:
    """The demo study cut to two participants (P03 and P06) who between them fill every table:
    harvests, first and repeat injections, adverse events (one with a suspected procedure),
    medications, and MRI reports with findings."""
    study = read_study(demo_folder())
    keep = {"P03", "P06"}
    reports = {r.report_id for r in study.imaging_reports if r.participant_id in keep}
    tables: dict[str, list[Any]] = {}
    for table in TABLES:
        rows = getattr(study, table.attribute)
        tables[table.attribute] = [
            row
            for row in rows
            if getattr(row, "participant_id", None) in keep
            or getattr(row, "report_id", None) in reports
        ]
    return Study(info=study.info, **tables)


SMALL = small_demo()
SMALL_RESOURCES = list(study_to_fhir(SMALL))


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


def assert_clear_outcome(result: Result, allowed: set[int]) -> None:
    """An exit code among ``allowed`` (never 5, an internal error), a message on stderr for a
    failure, and no traceback."""
    event(f"exit {result.exit_code}")
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert result.exit_code in allowed, result.output
    assert "Traceback" not in result.output
    assert "internal error" not in result.stderr
    if result.exit_code not in (0, 3):
        assert result.stderr.strip(), "a failure without a message"


# -- random valid studies ------------------------------------------------------------------------

IDENTIFIERS = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,11}", fullmatch=True)
# Any text the contract allows: every character but surrogates and control characters other than
# tab, CR and LF (which FHIR strings cannot carry).
TEXTS = st.text(
    st.characters(
        codec="utf-8", exclude_characters="".join(map(chr, [*range(9), 11, 12, *range(14, 32)]))
    ),
    min_size=1,
    max_size=12,
).filter(str.strip)
DAYS = st.dates(date(1990, 1, 1), date(2040, 12, 31))
LEVELS = st.sampled_from(list(term.DISC_LEVELS))
# SNOMED CT identifiers: 6 to 18 digits, the last a Verhoeff check digit (one of ten fits).
SNOMED_CODES = st.from_regex(r"[1-9][0-9]{4,16}", fullmatch=True).map(
    lambda body: next(
        body + digit
        for digit in "0123456789"
        if external_code_problem(term.SNOMED, body + digit) is None
    )
)
DICOM_UIDS = st.from_regex(r"(0|[1-9][0-9]{0,6})(\.(0|[1-9][0-9]{0,6})){0,6}", fullmatch=True)


def optional(strategy: st.SearchStrategy) -> st.SearchStrategy:
    return st.none() | strategy


def days_after(day: date, low: int = 0, high: int = 400) -> st.SearchStrategy[date]:
    return st.integers(low, high).map(lambda n: day + timedelta(days=n))


def measure_values(measure: term.Measure) -> st.SearchStrategy:
    """Values the contract allows for one outcome measure or imaging finding."""
    if measure.kind == "presence":
        return st.sampled_from(list(term.PRESENCE))
    low = measure.minimum if measure.minimum is not None else 0
    if measure.kind == "integer":
        return st.integers(int(low), int(measure.maximum if measure.maximum is not None else 1e6))
    return st.floats(
        low,
        measure.maximum if measure.maximum is not None else 1e9,
        exclude_min=measure.minimum_exclusive,
    )


@st.composite
def participants(draw, pid: str, site_ids: list[str], tables: dict[str, list[Any]]) -> None:
    """One participant and every row of theirs, appended to ``tables``: visits on the schedule,
    a harvest with up to two injections (the repeat at least 5 months after the first, as the
    injection profile requires), adverse events after their procedures, outcomes, medications
    and MRI reports at their visits."""
    enrolled = draw(DAYS)
    status = draw(st.sampled_from(term.RESEARCH_SUBJECT_STATUS))
    withdrawn = days_after(enrolled)
    tables["participants"].append(
        Participant(
            participant_id=pid,
            sex=draw(st.sampled_from(["female", "male", "other", "unknown"])),
            birth_year=draw(optional(st.integers(1900, 2100))),
            site_id=draw(optional(st.sampled_from(site_ids))) if site_ids else None,
            enrolled_on=enrolled,
            disc_level=draw(LEVELS),
            symptom_months=draw(optional(st.integers(0, 10**6))),
            status=status,
            withdrawn_on=draw(withdrawn if status == "withdrawn" else optional(withdrawn)),
            withdrawal_reason=draw(optional(TEXTS)),
        )
    )
    visits = sorted(
        draw(st.lists(st.sampled_from(term.VISIT_ORDER), unique=True, max_size=4)),
        key=term.VISIT_ORDER.index,
    )
    day = enrolled
    for number, visit in enumerate(visits):
        day = draw(days_after(day, 1 if number else 0, 200))
        tables["visits"].append(Visit(participant_id=pid, visit=visit, visit_date=day))

    last_procedure = enrolled
    if draw(st.booleans()):
        harvest = Procedure(
            participant_id=pid,
            procedure_id=f"{pid}-H",
            type="harvest",
            performed_on=draw(days_after(enrolled, 0, 60)),
            volume_ml=draw(optional(st.floats(0, 1e6, exclude_min=True))),
            guidance=draw(optional(st.sampled_from(list(term.GUIDANCE)))),
            notes=draw(optional(TEXTS)),
        )
        tables["procedures"].append(harvest)
        last_procedure = harvest.performed_on
        lot, viability = f"LOT-{pid}", draw(optional(st.floats(0, 100)))
        for number in range(1, draw(st.integers(0, 2)) + 1):
            if number == 2 and draw(st.booleans()):  # a repeat from a second lot
                lot, viability = f"LOT-{pid}-B", draw(optional(st.floats(0, 100)))
            last_procedure = draw(days_after(last_procedure, 0 if number == 1 else 153, 400))
            tables["procedures"].append(
                Procedure(
                    participant_id=pid,
                    procedure_id=f"{pid}-I{number}",
                    type="injection",
                    performed_on=last_procedure,
                    disc_level=draw(LEVELS),
                    injection_number=number,
                    cell_dose=draw(st.integers(1, 10**12)),
                    volume_ml=draw(optional(st.floats(0, 1e6, exclude_min=True))),
                    product_lot=lot,
                    viability_pct=viability,
                    harvest_procedure_id=harvest.procedure_id,
                    guidance=draw(optional(st.sampled_from(list(term.GUIDANCE)))),
                    notes=draw(optional(TEXTS)),
                )
            )
    procedure_ids = [p.procedure_id for p in tables["procedures"] if p.participant_id == pid]
    for number in range(draw(st.integers(0, 2))):
        onset = draw(days_after(last_procedure, 0, 100))
        tables["adverse_events"].append(
            AdverseEvent(
                participant_id=pid,
                event_id=f"{pid}-AE{number}",
                term=draw(TEXTS),
                snomed=draw(optional(SNOMED_CODES)),
                onset_on=onset,
                resolved_on=draw(optional(days_after(onset, 0, 100))),
                severity=draw(st.sampled_from(["mild", "moderate", "severe"])),
                serious=draw(st.booleans()),
                outcome=draw(st.sampled_from(list(term.AE_OUTCOME_DISPLAY))),
                causality=draw(st.sampled_from(list(term.CAUSALITY))),
                suspected_procedure_id=draw(optional(st.sampled_from(procedure_ids)))
                if procedure_ids
                else None,
                expected=draw(optional(st.booleans())),
                action_taken=draw(optional(TEXTS)),
            )
        )
    for visit in visits:
        for key in draw(st.lists(st.sampled_from(list(term.OUTCOME_MEASURES)), unique=True)):
            value = draw(measure_values(term.OUTCOME_MEASURES[key]))
            tables["outcomes"].append(
                Outcome(participant_id=pid, visit=visit, measure=key, value=value)
            )
        for name in draw(st.lists(TEXTS, unique=True, max_size=2)):
            tables["medications"].append(
                Medication(
                    participant_id=pid,
                    visit=visit,
                    medication=name,
                    rxnorm=draw(optional(st.from_regex(r"[0-9]{1,10}", fullmatch=True))),
                    category=draw(st.sampled_from(list(term.ANALGESIC_CATEGORIES))),
                    daily_dose=draw(optional(st.floats(0, 1e6))),
                    dose_unit=draw(optional(st.from_regex(r"[!-~]{1,8}", fullmatch=True))),
                    status=draw(st.sampled_from(["taking", "stopped"])),
                )
            )
        if draw(st.booleans()):
            report_id = f"{pid}-{visit}-MRI"
            tables["imaging_reports"].append(
                ImagingReport(
                    participant_id=pid,
                    visit=visit,
                    report_id=report_id,
                    study_date=draw(DAYS),
                    modality="MR",
                    study_uid=draw(optional(DICOM_UIDS)),
                    conclusion=draw(optional(TEXTS)),
                )
            )
            findings = st.tuples(LEVELS, st.sampled_from(list(term.IMAGING_FINDINGS)))
            for level, finding in draw(st.lists(findings, unique=True, max_size=3)):
                tables["imaging_findings"].append(
                    ImagingFinding(
                        report_id=report_id,
                        disc_level=level,
                        finding=finding,
                        value=draw(measure_values(term.IMAGING_FINDINGS[finding])),
                    )
                )


@st.composite
def studies(draw) -> Study:
    """A study that keeps every rule of the data contract and of the project's profiles."""
    site_ids = draw(st.lists(IDENTIFIERS, max_size=2, unique=True))
    start = draw(optional(DAYS))
    info = StudyInfo(
        study_id=draw(IDENTIFIERS),
        title=draw(TEXTS),
        registry_id=draw(optional(TEXTS)),
        status=draw(st.sampled_from(term.RESEARCH_STUDY_STATUS)),
        sponsor=draw(optional(TEXTS)),
        start=start,
        end=draw(optional(DAYS if start is None else days_after(start, 0, 4000))),
        arm=Arm(name=draw(TEXTS), description=draw(optional(TEXTS))),
        sites=[Site(site_id=s, name=draw(TEXTS)) for s in site_ids] or None,
    )
    tables: dict[str, list[Any]] = defaultdict(list)
    for pid in draw(st.lists(IDENTIFIERS, min_size=1, max_size=3, unique=True)):
        draw(participants(pid, site_ids, tables))
    return Study(info=info, **tables)


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(studies())
def test_valid_studies_export_validate_and_come_back_unchanged(study: Study) -> None:
    resources = list(study_to_fhir(study))
    assert at_least(validate_resources(resources), "error") == []
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        files = ndjson_files(resources)
        write_files(folder / "ndjson", {name: text.encode() for name, text in files.items()})
        transaction = bundle(resources, "transaction", study.info.study_id)
        write_atomic(folder / "bundle.json", bundle_json(transaction).encode())
        for exported in (folder / "ndjson", folder / "bundle.json"):
            assert table_differences(study, study_from_fhir(read_fhir(exported))) == {}
        write_study(study, folder / "study")
        assert table_differences(study, read_study(folder / "study")) == {}


# -- a FHIR server in memory ---------------------------------------------------------------------

METADATA = {
    "resourceType": "CapabilityStatement",
    "status": "active",
    "kind": "instance",
    "fhirVersion": "4.0.1",
    "format": ["json"],
    "rest": [{"mode": "server", "interaction": [{"code": "transaction"}, {"code": "batch"}]}],
}
NOT_FOUND = {
    "resourceType": "OperationOutcome",
    "issue": [{"severity": "error", "code": "not-found", "diagnostics": "not found"}],
}
# Answers a server sends: (status, headers, body)
Answer = tuple[int, dict[str, str], bytes | str]


class FakeServer:
    """A FHIR R4 server in memory behind ``responses``: metadata, reads, searches (which ignore
    their parameters, as some servers do, and page every PAGE matches), and batch or transaction
    Bundles of GETs and PUTs. ``tamper(number, status, body)`` may replace the answer to request
    ``number`` (from 0)."""

    PAGE = 20

    def __init__(
        self,
        resources: Iterable[dict[str, Any]] = (),
        tamper: Callable[[int, int, Any], Answer | None] | None = None,
    ) -> None:
        self.store = {f"{r['resourceType']}/{r['id']}": r for r in resources}
        self.tamper = tamper
        self.requests = 0

    def install(self, mock: responses.RequestsMock) -> None:
        everything = re.compile(re.escape(BASE) + r"(/.*)?")
        mock.add_callback(responses.GET, everything, callback=self._on_get)
        mock.add_callback(responses.POST, everything, callback=self._on_post)

    def _answer(self, status: int, body: Any) -> Answer:
        number, self.requests = self.requests, self.requests + 1
        tampered = self.tamper(number, status, body) if self.tamper else None
        return tampered or (status, {"Content-Type": FHIR_JSON}, json.dumps(body))

    def _on_get(self, request) -> Answer:
        return self._answer(*self.get(request.url))

    def _on_post(self, request) -> Answer:
        bundle_in = json.loads(request.body)
        entries = []
        for entry in bundle_in.get("entry", []):
            method, url = entry["request"]["method"], entry["request"]["url"]
            if method == "GET":
                status, body = self.get(f"{BASE}/{url}")
                answer = {"response": {"status": str(status)}}
                entries.append({**answer, "resource": body} if status == 200 else answer)
            else:
                created = url not in self.store
                self.store[url] = entry["resource"]
                status_line = "201 Created" if created else "200 OK"
                entries.append(
                    {"response": {"status": status_line, "location": f"{url}/_history/1"}}
                )
        kind = f"{bundle_in['type']}-response"
        return self._answer(200, {"resourceType": "Bundle", "type": kind, "entry": entries})

    def get(self, url: str) -> tuple[int, Any]:
        """The honest answer to a GET of ``url``: (status, body)."""
        parts = urlsplit(url)
        path = parts.path.removeprefix(urlsplit(BASE).path).strip("/")
        if path == "metadata":
            return 200, METADATA
        if "/" in path:
            found = self.store.get(path)
            return (200, found) if found is not None else (404, NOT_FOUND)
        matches = [r for key, r in self.store.items() if key.split("/")[0] == path]
        number = int(parse_qs(parts.query).get("_page", ["1"])[0])
        shown = matches[(number - 1) * self.PAGE : number * self.PAGE]
        page: dict[str, Any] = {
            "resourceType": "Bundle",
            "type": "searchset",
            "total": len(matches),
            "link": [{"relation": "self", "url": url}],
            "entry": [{"resource": r, "search": {"mode": "match"}} for r in shown],
        }
        if number * self.PAGE < len(matches):
            page["link"].append({"relation": "next", "url": f"{BASE}/{path}?_page={number + 1}"})
        return 200, page


# -- corruptions of JSON documents ----------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=6,
)
PLACEHOLDER = "\x00placeholder"


def _nodes(value: Any, path: tuple = ()) -> list[tuple]:
    """The path of every value inside ``value`` (keys and indexes), ``value`` itself first."""
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _nodes(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _nodes(item, (*path, index))
    return found


def _get(value: Any, path: tuple) -> Any:
    for part in path:
        value = value[part]
    return value


def _set(value: Any, path: tuple, new: Any) -> Any:
    """``value`` with the value at ``path`` replaced by ``new`` (``new`` itself for the root)."""
    if not path:
        return new
    _get(value, path[:-1])[path[-1]] = new
    return value


def truncated(fraction: float, text: str) -> bytes:
    """The document cut short."""
    data = text.encode()
    return data[: int(len(data) * fraction)]


def flipped(pick: int, mask: int, text: str) -> bytes:
    """One byte of the document changed: broken syntax, or bytes that are not UTF-8."""
    data = bytearray(text.encode())
    data[pick % len(data)] ^= mask
    return bytes(data)


def retyped(pick: int, new: Any, text: str) -> bytes:
    """Any one value of the document (the document itself too) replaced by any JSON value."""
    value = json.loads(text)
    paths = _nodes(value)
    return json.dumps(_set(value, paths[pick % len(paths)], new)).encode()


def member_retyped(pick: int, new: Any, text: str) -> bytes:
    """One member of one object (each object as likely as any other) given a value of any type:
    where a reader expects a list, an object or a string, it meets something else."""
    value = json.loads(text)
    members = [
        (*p, key) for p in _nodes(value) if isinstance(obj := _get(value, p), dict) for key in obj
    ]
    path = members[pick % len(members)] if members else ()
    return json.dumps(_set(value, path, new)).encode()


def deleted(pick: int, text: str) -> bytes:
    """One member of an object removed: a required element goes missing."""
    value = json.loads(text)
    members = [p for p in _nodes(value) if p and isinstance(p[-1], str)]
    if members:
        path = members[pick % len(members)]
        del _get(value, path[:-1])[path[-1]]
    return json.dumps(value).encode()


def spliced(pick: int, literal: str, text: str) -> bytes:
    """One value replaced by raw JSON text (deep nesting, a number no parser expects)."""
    value = json.loads(text)
    paths = _nodes(value)
    document = json.dumps(_set(value, paths[pick % len(paths)], PLACEHOLDER))
    return document.replace(json.dumps(PLACEHOLDER), LITERALS[literal]).encode()


def resource_typed(pick: int, new: Any, text: str) -> bytes:
    """The resourceType of one resource (or of the Bundle) changed to another or to any value."""
    value = json.loads(text)
    typed = [
        p
        for p in _nodes(value)
        if isinstance(obj := _get(value, p), dict) and "resourceType" in obj
    ]
    if typed:
        _get(value, typed[pick % len(typed)])["resourceType"] = new
    return json.dumps(value).encode()


PICKS = st.integers(0, 2**32)
# Raw JSON that no well-behaved writer produces, by name (the names keep failing examples short).
LITERALS = {
    "arrays 100 deep": "[" * 100 + "]" * 100,
    "objects 5,000 deep": '{"a":' * 5000 + "1" + "}" * 5000,
    "arrays 200,000 deep": "[" * 200_000 + "]" * 200_000,
    "5,000 digits": "9" * 5000,
    "1e999": "1e999",
    "-1e999": "-1e999",
    "1e-999": "1e-999",
    "39 digits": "123456789012345678901234567890.123456789",
    "NaN": "NaN",
    "-Infinity": "-Infinity",
}
# A corruption is a function of a JSON document's text that returns the spoilt bytes.
JSON_CORRUPTIONS = st.one_of(
    st.builds(functools.partial, st.just(truncated), st.floats(0, 1, exclude_max=True)),
    st.builds(functools.partial, st.just(flipped), PICKS, st.integers(1, 255)),
    st.builds(functools.partial, st.just(retyped), PICKS, JSON_VALUES),
    st.builds(functools.partial, st.just(member_retyped), PICKS, JSON_VALUES),
    st.builds(functools.partial, st.just(deleted), PICKS),
    st.builds(functools.partial, st.just(spliced), PICKS, st.sampled_from(sorted(LITERALS))),
    st.builds(
        functools.partial,
        st.just(resource_typed),
        PICKS,
        st.sampled_from(["Patient", "Bundle", "Basic", "", "patient"]) | JSON_VALUES,
    ),
)


# -- corrupt study folders and FHIR files through the command line --------------------------------

SMALL_FILES = {
    "transaction": bundle_json(bundle(SMALL_RESOURCES, "transaction", SMALL.info.study_id)),
    **ndjson_files(SMALL_RESOURCES),
}


def run_with_server(server: FakeServer, *args: str | Path) -> Result:
    """Run a command with ``server`` answering on BASE and no real waits between retries."""
    with (
        responses.RequestsMock(assert_all_requests_are_fired=False) as mock,
        pytest.MonkeyPatch.context() as patch,
    ):
        server.install(mock)
        patch.setattr(
            auth_module, "FhirClient", functools.partial(FhirClient, sleep=lambda _: None)
        )
        return run(*args)


def command_on(command: str, source: Path, scratch: Path) -> Result:
    """One command on ``source``; a push meets an empty server."""
    if command == "export":
        return run("export", source, "-o", scratch / "out.json")
    if command == "validate":
        return run("validate", source, "-o", scratch / "out.txt")
    if command == "report":
        return run("report", source, "-o", scratch / "out.txt")
    return run_with_server(FakeServer(), "push", source, "--server", BASE, *command.split()[1:])


CELL_TEXTS = st.one_of(
    st.text(max_size=20),
    st.just(""),
    st.sampled_from(["x" * 200_000, "1" * 5000]),  # beyond the CSV field limit; too many digits
    st.integers(-(10**20), 10**20).map(str),
    st.floats().map(repr),
    DAYS.map(str),
    st.sampled_from(["2017-02-30", "TRUE", "P99", "L9-S9", "NaN", "inf", "1e400", "0x10", "１２"]),
)
RAW_CELLS = st.sampled_from(
    [b"\xff\xfe", b"caf\xe9", b"\xc3\x28", b'"unclosed', b'a"b', b'"a"b"', b"\x00", b'"', b"a\rb"]
)


@st.composite
def corrupt_study_folders(draw) -> tuple[str, Callable[[bytes], bytes]]:
    """A file of the small demo folder and a corruption of it: one CSV cell replaced by random or
    malformed text or by bytes that are not UTF-8 or break the quoting; or study.json spoilt."""
    file = draw(st.sampled_from(["study.json", *(t.file for t in TABLES)]))
    if file == "study.json":
        corruption = draw(JSON_CORRUPTIONS)
        return file, lambda data: corruption(data.decode())
    header, *rows = list(csv.reader(io.StringIO(_small_table(file))))
    index, column = draw(st.integers(0, len(rows) - 1)), draw(st.sampled_from(header))
    raw = draw(st.none() | RAW_CELLS)
    rows[index][header.index(column)] = "MARKER" if raw is not None else draw(CELL_TEXTS)
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows([header, *rows])
    text = out.getvalue().encode()
    return file, lambda _: text if raw is None else text.replace(b"MARKER", raw)


@functools.cache
def _small_table(file: str) -> str:
    with tempfile.TemporaryDirectory() as scratch:
        write_study(SMALL, scratch)
        return (Path(scratch) / file).read_text()


@settings(max_examples=250)
@given(
    corrupt_study_folders(),
    st.sampled_from(["export", "push", "push --dry-run", "report"]),
)
def test_corrupt_study_folders_end_in_clear_messages(
    corruption: tuple[str, Callable[[bytes], bytes]], command: str
) -> None:
    file, spoil = corruption
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "study"
        write_study(SMALL, folder)
        (folder / file).write_bytes(spoil((folder / file).read_bytes()))
        result = command_on(command, folder, Path(scratch))
        assert_clear_outcome(result, {0, 1, 3})
        if result.exit_code == 1:
            assert not (Path(scratch) / "out.json").exists()
            assert not (Path(scratch) / "out.txt").exists()


@settings(max_examples=250)
@given(
    st.sampled_from(sorted(SMALL_FILES)),
    PICKS,
    JSON_CORRUPTIONS,
    st.sampled_from(["validate", "push", "push --dry-run", "report"]),
)
def test_corrupt_fhir_files_end_in_clear_messages(
    target: str, line: int, corruption: Callable[[str], bytes], command: str
) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "fhir"
        folder.mkdir()
        if target == "transaction":
            source = folder / "bundle.json"
            source.write_bytes(corruption(SMALL_FILES[target]))
        else:
            source = folder
            for name, text in SMALL_FILES.items():
                if name != "transaction":
                    (folder / name).write_text(text)
            lines = SMALL_FILES[target].splitlines()
            spoilt = corruption(lines[line % len(lines)])
            lines[line % len(lines)] = "\x00"  # stands for the spoilt bytes
            (folder / target).write_bytes("\n".join(lines).encode().replace(b"\x00", spoilt))
        result = command_on(command, source, Path(scratch))
        assert_clear_outcome(result, {0, 1, 3})
        if result.exit_code == 1 and command != "validate":
            assert not (Path(scratch) / "out.txt").exists()


# -- corrupt answers from a server ---------------------------------------------------------------


def spoilt_answer(spoil: Callable[[str], bytes], status: int, body: Any) -> Answer:
    """The honest answer with its JSON spoilt."""
    return status, {"Content-Type": FHIR_JSON}, spoil(json.dumps(body))


def raw_answer(
    code: int, content_type: str | None, data: bytes | str, status: int, body: Any
) -> Answer:
    """Another answer altogether: a status, a content type (or none) and a body."""
    return code, {"Content-Type": content_type} if content_type else {}, data


def foreign_entries(entries: list[Any], status: int, body: Any) -> Answer:
    """The answer with its entries replaced by values that are not entries (or not objects)."""
    spoilt = {**body, "entry": entries} if isinstance(body, dict) else entries
    return status, {"Content-Type": FHIR_JSON}, json.dumps(spoilt)


def huge_page(status: int, body: Any) -> Answer:
    """A search page of 40,000 entries, over the 1 MB a JSON document may have in these tests."""
    entries = [{"resource": {"resourceType": "Patient", "id": str(n)}} for n in range(40_000)]
    page = {"resourceType": "Bundle", "type": "searchset", "entry": entries}
    return 200, {"Content-Type": FHIR_JSON}, json.dumps(page)


SERVER_CORRUPTIONS = st.one_of(
    st.builds(functools.partial, st.just(spoilt_answer), JSON_CORRUPTIONS),
    st.builds(
        functools.partial,
        st.just(raw_answer),
        st.sampled_from([200, 201]),
        st.sampled_from([FHIR_JSON, "application/json", "text/html", None]),
        st.binary(max_size=40) | st.just("<html><body>Service unavailable</body></html>"),
    ),
    st.builds(
        functools.partial,
        st.just(raw_answer),
        st.sampled_from([400, 401, 403, 404, 409, 410, 412, 422, 429, 500, 502, 503, 504]),
        st.just(FHIR_JSON),
        st.sampled_from([b"", json.dumps(NOT_FOUND)]) | JSON_VALUES.map(json.dumps),
    ),
    st.builds(
        functools.partial, st.just(foreign_entries), st.lists(JSON_VALUES, min_size=1, max_size=3)
    ),
    st.just(huge_page),
)
SERVER_COMMANDS = ["pull", "report", "push", "push --dry-run"]


def server_command(command: str, scratch: Path) -> list[str | Path]:
    """The arguments of a command against BASE; its output (if any) goes to ``scratch/out``."""
    if command.startswith("push"):
        source = scratch / "bundle.json"
        source.write_text(SMALL_FILES["transaction"])
        return ["push", source, "--server", BASE, *command.split()[1:]]
    return [command, "--server", BASE, "--study", SMALL.info.study_id, "-o", scratch / "out"]


def server_holding(command: str) -> list[dict[str, Any]]:
    """What the server holds before ``command``: the small study, or nothing for a push."""
    return [] if command.startswith("push") else SMALL_RESOURCES


@functools.cache
def honest_requests(command: str) -> int:
    """How many requests ``command`` sends to a server that answers them all honestly."""
    server = FakeServer(server_holding(command))
    with tempfile.TemporaryDirectory() as scratch:
        result = run_with_server(server, *server_command(command, Path(scratch)))
    assert result.exit_code in (0, 3), result.output
    return server.requests


@settings(max_examples=250)
@given(st.sampled_from(SERVER_COMMANDS), PICKS, SERVER_CORRUPTIONS)
def test_corrupt_server_answers_end_in_clear_messages(
    command: str, pick: int, corruption: Callable[[int, Any], Answer]
) -> None:
    victim = pick % honest_requests(command)
    server = FakeServer(
        server_holding(command),
        lambda n, status, body: corruption(status, body) if n == victim else None,
    )
    with tempfile.TemporaryDirectory() as scratch, pytest.MonkeyPatch.context() as patch:
        patch.setenv("FHIR_ADMSC_MAX_JSON_MB", "1")
        result = run_with_server(server, *server_command(command, Path(scratch)))
        assert_clear_outcome(result, {0, 1, 3, 4})
        if result.exit_code in (1, 4) and not command.startswith("push"):
            assert not (Path(scratch) / "out").exists()
