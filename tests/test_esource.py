"""eSource: the demo participants' routine records on a real hospital FHIR server (sekmet-fhir,
started here and filled as the hospital would hold them), pulled with `ehr-pull` into a draft and
compared with the demo study by `diff`."""

from __future__ import annotations

import copy
import csv
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from click.testing import CliRunner

from fhir_admsc import terminology as term
from fhir_admsc.cli import cli, demo_folder
from fhir_admsc.esource.diff import DIFFERS, ONLY_EHR, ONLY_STUDY, SAME
from fhir_admsc.study import Study
from tests.fault_proxy import Exchange, FaultProxy
from tests.hospital import MRN, hospital_records, mrn, transaction
from tests.servers import FhirServer, running_sekmet


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def seeded(server: FhirServer, resources: list[dict[str, Any]]) -> None:
    answer = requests.post(server.base_url, json=transaction(resources), timeout=60)
    assert answer.status_code == 200, answer.text[:500]


@pytest.fixture(scope="module")
def hospital(tmp_path_factory: pytest.TempPathFactory, demo_study: Study) -> Iterator[FhirServer]:
    """sekmet-fhir as the hospital: it declares Patient/$everything, which leaves AdverseEvents
    out, and it answers a search by a parameter it does not support with every record."""
    folder = tmp_path_factory.mktemp("hospital")
    with running_sekmet(folder) as server:
        # the hospital's own patients and admissions first, as sekmet's seed makes them
        made = subprocess.run(
            [sys.executable, "-m", "sekmet.cli", "seed", "--count", "3", "--config", "settings.yaml"],
            cwd=folder, capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert made.returncode == 0, made.stderr
        records = hospital_records(demo_study)
        seeded(server, [*records, cohort(records, demo_study)])
        yield server


@pytest.fixture(scope="module")
def hapi_hospital(hapi_server: FhirServer, demo_study: Study) -> FhirServer:
    """HAPI FHIR as the hospital (the suite's server, shared: the records have ids of their own)."""
    seeded(hapi_server, hospital_records(demo_study))
    return hapi_server


@pytest.fixture
def link(tmp_path: Path, demo_study: Study) -> Path:
    path = tmp_path / "LINK.csv"
    lines = ["participant_id,patient_identifier"]
    lines += [f"{p.participant_id},{MRN}|{mrn(i)}" for i, p in enumerate(demo_study.participants)]
    path.write_text("\n".join(lines) + "\n")
    return path


def pulled(server: FhirServer, link: Path, draft: Path) -> None:
    result = run("ehr-pull", str(demo_folder()), "--server", server.base_url, "--link", str(link),
                 "-o", str(draft))  # fmt: skip
    assert result.exit_code == 0, result.output


def compared(draft: Path) -> tuple[int, dict[str, Any]]:
    result = run("diff", str(demo_folder()), str(draft), "--format", "json")
    assert result.exit_code in (0, 3), result.output
    return result.exit_code, json.loads(result.stdout)


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("server", ["sekmet", "hapi"])
def test_every_cell_the_hospital_holds_is_the_same(
    request: pytest.FixtureRequest, server: str, link: Path, tmp_path: Path
) -> None:
    draft = tmp_path / "draft"
    pulled(
        request.getfixturevalue("hospital" if server == "sekmet" else "hapi_hospital"), link, draft
    )
    code, report = compared(draft)
    cells = report["cells"]
    statuses = {c["status"] for c in cells}
    assert statuses <= {SAME, ONLY_STUDY, ONLY_EHR}
    # the site typed no RxNorm codes; the hospital's statements carry them
    assert {(c["file"], c["column"]) for c in cells if c["status"] == ONLY_EHR} == {
        ("medications.csv", "rxnorm")
    }
    assert code == 3
    same = {c["file"] for c in cells if c["status"] == SAME}
    assert same == {
        "participants.csv", "procedures.csv", "outcomes.csv", "medications.csv",
        "adverse_events.csv", "imaging_reports.csv", "imaging_findings.csv",
    }  # fmt: skip
    outcomes = [c for c in cells if c["file"] == "outcomes.csv"]
    assert outcomes and all(c["status"] == SAME for c in outcomes)
    review = rows(draft / "review.csv")
    not_held = {(r["file"], r["column"]) for r in review if r["participant_id"] == ""}
    assert ("procedures.csv", "cell_dose") in not_held and ("visits.csv", "visit_date") in not_held
    uncovered = {(c["file"], c["column"]) for c in cells if c["status"] == ONLY_STUDY}
    named = {(r["file"], r["column"]) for r in review}
    # every value the hospital does not give is accounted for: its column, or its whole record
    assert {(f, c) for f, c in uncovered if (f, c) not in named and (f, "") not in named} == set()


def test_provenance_names_the_record_of_each_value(
    hospital: FhirServer, link: Path, tmp_path: Path
) -> None:
    draft = tmp_path / "draft"
    pulled(hospital, link, draft)
    provenance = rows(draft / "provenance.csv")
    outcomes = rows(draft / "outcomes.csv")
    values = [p for p in provenance if p["file"] == "outcomes.csv" and p["column"] == "value"]
    assert len(values) == len(outcomes) > 0
    first = values[0]
    assert first["server"] == hospital.base_url and first["resource"].startswith("Observation/H")
    assert first["version_id"] and first["last_updated"]
    record = requests.get(f"{hospital.base_url}/{first['resource']}", timeout=30).json()
    row = outcomes[int(first["row"]) - 1]
    assert float(row["value"]) == float(
        record.get("valueInteger", record.get("valueQuantity", {}).get("value"))
    )


def _perturbed(records: list[dict[str, Any]], study: Study) -> list[dict[str, Any]]:
    """The records with one changed dose, P02's month6 pain scores and questionnaires gone, an
    extra tramadol prescription for P01 at month12, a pain score of P01 outside every visit
    window and a record of a code no rule knows."""
    records = copy.deepcopy(records)
    patients = {
        r["identifier"][0]["value"]: {"reference": f"Patient/{r['id']}"}
        for r in records
        if r["resourceType"] == "Patient"
    }
    subject = {p.participant_id: patients[mrn(i)] for i, p in enumerate(study.participants)}
    day = {(v.participant_id, v.visit): v.visit_date for v in study.visits}
    dosed = next(r for r in records if r["resourceType"] == "MedicationStatement" and "dosage" in r)
    dosed["dosage"][0]["doseAndRate"][0]["doseQuantity"]["value"] *= 2
    records = [
        r
        for r in records
        if not (
            r["resourceType"] == "Observation"
            and r["subject"] == subject["P02"]
            and r.get("effectiveDateTime") == day[("P02", "month6")].isoformat()
        )
    ]
    pain = next(
        r
        for r in records
        if r["resourceType"] == "Observation"
        and r["subject"] == subject["P01"]
        and "nprs-average" in {c["code"] for c in r["code"]["coding"]}
    )
    between = day[("P01", "week1")] + timedelta(days=12)
    return [
        *records,
        {
            "resourceType": "MedicationRequest",
            "id": "H9001",
            "status": "active",
            "intent": "order",
            "medicationCodeableConcept": {"coding": [{"system": term.RXNORM, "code": "10689"}]},
            "subject": subject["P01"],
            "authoredOn": day[("P01", "month12")].isoformat(),
        },
        copy.deepcopy(pain) | {"id": "H9002", "effectiveDateTime": between.isoformat()},
        copy.deepcopy(pain)
        | {
            "id": "H9003",
            "code": {"coding": [{"system": "http://hospital.example/codes", "code": "PAIN-X"}]},
        },
    ]


def _cells(report: dict[str, Any]) -> set[tuple[str, ...]]:
    return {tuple(c.values()) for c in report["cells"]}


def test_each_change_at_the_hospital_shows_in_the_diff_or_the_review_alone(
    hospital: FhirServer, link: Path, tmp_path: Path, demo_study: Study
) -> None:
    pulled(hospital, link, tmp_path / "before")
    _, before = compared(tmp_path / "before")
    (tmp_path / "changed-hospital").mkdir()
    with running_sekmet(tmp_path / "changed-hospital") as changed:
        seeded(changed, _perturbed(hospital_records(demo_study), demo_study))
        pulled(changed, link, tmp_path / "after")
    _, after = compared(tmp_path / "after")
    gained, lost = _cells(after) - _cells(before), _cells(before) - _cells(after)
    # file, row, column, study, ehr, status
    assert {(c[0], c[2], c[5]) for c in gained if c[5] == DIFFERS} == {
        ("medications.csv", "daily_dose", DIFFERS)
    }
    changed_dose = next(c for c in gained if c[5] == DIFFERS)
    assert float(changed_dose[4]) == 2 * float(changed_dose[3])
    assert {c[1] for c in gained if c[5] == ONLY_EHR} == {"P01 month12 tramadol"}
    missing = {c for c in gained if c[5] == ONLY_STUDY}
    assert missing and {(c[0], c[1].rsplit(" ", 1)[0]) for c in missing} == {
        ("outcomes.csv", "P02 month6")
    }
    assert all(c[5] == SAME for c in lost)
    assert {(c[0], c[1].rsplit(" ", 1)[0]) for c in lost} == {
        ("outcomes.csv", "P02 month6"),
        (changed_dose[0], changed_dose[1].rsplit(" ", 1)[0]),
    }
    review_before = rows(tmp_path / "before" / "review.csv")
    review_after = rows(tmp_path / "after" / "review.csv")
    added = [r for r in review_after if r not in review_before]
    assert [r for r in review_before if r not in review_after] == []
    assert sorted((r["participant_id"], r["file"], r["column"]) for r in added) == [
        ("P01", "", ""),  # the unknown code
        ("P01", "medications.csv", "daily_dose"),  # the prescription states no dose
        ("P01", "outcomes.csv", "value"),  # the pain score between visits
    ]
    assert any("PAIN-X" in r["record"] for r in added)
    assert any("outside every visit window" in r["reason"] for r in added)


def test_no_hospital_identifier_leaves_the_provenance_table(
    hospital: FhirServer, link: Path, tmp_path: Path, demo_study: Study
) -> None:
    """The MRNs, the hospital's resource ids, the patients' names and full birth dates appear in
    no output, message or log (requests logged with -vv) but the draft's provenance table."""
    records = hospital_records(demo_study)
    secrets = {mrn(i) for i in range(len(demo_study.participants))}
    secrets |= {r["id"] for r in records}
    secrets |= {r["name"][0]["family"] for r in records if r["resourceType"] == "Patient"}
    secrets |= {r["birthDate"] for r in records if r["resourceType"] == "Patient"}
    draft = tmp_path / "draft"
    said = run("ehr-pull", str(demo_folder()), "--server", hospital.base_url, "--link", str(link),
               "-vv", "-o", str(draft))  # fmt: skip
    assert said.exit_code == 0, said.output
    assert "GET " in said.stderr  # the requests were logged
    texts = {"ehr-pull stdout": said.stdout, "ehr-pull stderr": said.stderr}
    for fmt in ("text", "json"):
        shown = run("diff", str(demo_folder()), str(draft), "--format", fmt, "-vv")
        texts[f"diff {fmt}"] = shown.stdout + shown.stderr
    for path in sorted(draft.iterdir()):
        if path.name != "provenance.csv":
            texts[path.name] = path.read_text(encoding="utf-8")
    provenance = (draft / "provenance.csv").read_text(encoding="utf-8")
    assert "Observation/H0" in provenance  # the one place they are kept
    leaks = {(name, s) for name, text in texts.items() for s in secrets if s in text}
    assert leaks == set()


def _everything(exchange: Exchange) -> bool:
    return exchange.method == "GET" and "$everything" in exchange.path


@pytest.mark.parametrize(
    ("fault", "options", "exit_code"),
    [
        pytest.param("reset", {"times": 2}, 0, id="resets-then-answers"),
        pytest.param(
            "status",
            {"times": 2, "status": (429,), "headers": {"Retry-After": "0"}},
            0,
            id="429-then-answers",
        ),  # fmt: skip
        pytest.param("status", {"times": 3, "status": (502, 503, 500)}, 0, id="5xx-then-answers"),
        pytest.param("status", {"times": 9, "status": (503,) * 9}, 4, id="5xx-past-the-retries"),
    ],
)
def test_faults_end_in_the_same_draft_or_in_none(
    hospital: FhirServer, link: Path, tmp_path: Path, fault: str, options: dict, exit_code: int
) -> None:
    pulled(hospital, link, tmp_path / "clean")
    with FaultProxy(hospital.base_url) as proxy:
        proxy.arm(fault, _everything, **options)
        result = run("ehr-pull", str(demo_folder()), "--server", proxy.base_url, "--link",
                     str(link), "--retries", "3", "--retry-wait", "0.05", "-o",
                     str(tmp_path / "draft"))  # fmt: skip
        assert proxy.faults[0].used == options["times"] if exit_code == 0 else 4
    assert result.exit_code == exit_code, result.output
    if exit_code:
        assert "$everything" in result.stderr and not (tmp_path / "draft").exists()
        return
    for path in sorted((tmp_path / "clean").iterdir()):
        expected = path.read_text(encoding="utf-8")
        if path.name == "provenance.csv":
            expected = expected.replace(hospital.base_url, proxy.base_url)
        assert (tmp_path / "draft" / path.name).read_text(encoding="utf-8") == expected, path.name


def cohort(records: list[dict[str, Any]], study: Study) -> dict[str, Any]:
    """The hospital's Group of the study's patients (found by their MRNs)."""
    mrns = {mrn(i) for i in range(len(study.participants))}
    return {
        "resourceType": "Group",
        "id": "HG1",
        "type": "person",
        "actual": True,
        "member": [
            {"entity": {"reference": f"Patient/{r['id']}"}}
            for r in records
            if r["resourceType"] == "Patient" and r["identifier"][0]["value"] in mrns
        ],
    }


def test_a_group_export_gives_the_draft_the_searches_give(
    hospital: FhirServer, link: Path, tmp_path: Path
) -> None:
    pulled(hospital, link, tmp_path / "searched")
    result = run("ehr-pull", str(demo_folder()), "--server", hospital.base_url, "--link",
                 str(link), "--group", "HG1", "-o", str(tmp_path / "exported"))  # fmt: skip
    assert result.exit_code == 0, result.output
    searched = sorted(p.name for p in (tmp_path / "searched").iterdir())
    assert searched == sorted(p.name for p in (tmp_path / "exported").iterdir())
    for name in searched:
        assert (tmp_path / "exported" / name).read_bytes() == (
            tmp_path / "searched" / name
        ).read_bytes(), name
