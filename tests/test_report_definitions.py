"""Every outcome definition of the data contract on small hand-built studies, with the answers worked
out here; and the report command in each format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from fhir_admsc.cli import cli
from fhir_admsc.report import analyse
from fhir_admsc.study import (
    AdverseEvent,
    ImagingFinding,
    ImagingReport,
    Medication,
    Outcome,
    Participant,
    Procedure,
    Study,
    StudyInfo,
    Visit,
)

VISITS = {"baseline": "2020-01-01", "month6": "2020-07-01", "month12": "2021-01-01"}


def study(values: dict[str, dict[tuple[str, str], float]], **tables: Any) -> Study:
    """Participants P1.. with the three visits and the given outcomes:
    ``{"P1": {("nprs_average", "baseline"): 6, ...}}``."""
    pids = sorted(values)
    return Study(
        info=StudyInfo(study_id="T", title="t", status="active", arm={"name": "a"}),
        participants=[
            Participant(
                participant_id=p,
                sex="female",
                enrolled_on="2020-01-01",
                disc_level="L4-L5",
                status="on-study",
            )
            for p in pids
        ],
        visits=[
            Visit(participant_id=p, visit=v, visit_date=d) for p in pids for v, d in VISITS.items()
        ],
        outcomes=[
            Outcome(participant_id=p, visit=visit, measure=measure, value=value)
            for p in pids
            for (measure, visit), value in values[p].items()
        ],
        **tables,
    )


def pain(before: float | None, after: float | None, measure: str = "nprs_average") -> dict:
    out = {}
    if before is not None:
        out[(measure, "baseline")] = before
    if after is not None:
        out[(measure, "month12")] = after
    return out


# (outcome, measure, [(baseline, follow-up), ...], expected n, expected evaluable)
CASES = [
    ("pain_reduced", "nprs_average", [(6, 5), (6, 6), (6, 7), (6, None)], 1, 3),
    ("worst_pain_reduced", "nprs_worst", [(9, 4), (8, 8), (None, 3)], 1, 2),
    # 50%: exactly half counts; a baseline of 0 is evaluable but never a responder
    ("pain_50pct_responder", "nprs_average", [(6, 3), (6, 4), (0, 0), (8, 3), (4, None)], 2, 4),
    # clinically important: a drop of 2 points, or of 30% (3 -> 2 is 33%: counts; 10 -> 9 is not)
    ("pain_clinically_important", "nprs_average", [(7, 5), (3, 2), (10, 9), (5, 6)], 2, 4),
    ("pain_worsened", "nprs_average", [(5, 6), (5, 5), (5, 4)], 1, 3),
    ("odi_improved", "odi", [(40, 38.5), (40, 40), (None, 10)], 1, 2),
    # ODI clinically important: a drop of 10 points or more
    ("odi_clinically_important", "odi", [(50, 40), (50, 40.5), (30, 10)], 2, 3),
    ("work_capacity_increased", "work_capacity_pct", [(50, 60), (50, 50), (50, None)], 1, 2),
]


@pytest.mark.parametrize(
    ("outcome", "measure", "pairs", "n", "evaluable"), CASES, ids=[c[0] for c in CASES]
)
def test_outcome_definition(
    outcome: str, measure: str, pairs: list, n: int, evaluable: int
) -> None:
    s = study({f"P{i}": pain(b, a, measure) for i, (b, a) in enumerate(pairs, start=1)})
    result = analyse(s)["outcomes"][outcome]
    assert (result["n"], result["evaluable"]) == (n, evaluable)


def medication(pid: str, visit: str, name: str, dose: float | None, status: str = "taking"):
    return Medication(
        participant_id=pid,
        visit=visit,
        medication=name,
        category="other",
        daily_dose=dose,
        dose_unit="mg" if dose is not None else None,
        status=status,
    )


def test_analgesic_use_reduced() -> None:
    meds = [
        # P1: fewer medications taken (one stopped) -> reduced
        medication("P1", "baseline", "a", 100),
        medication("P1", "baseline", "b", 50),
        medication("P1", "month12", "a", 100),
        medication("P1", "month12", "b", 50, "stopped"),
        # P2: same medication at a lower dose, nothing added -> reduced
        medication("P2", "baseline", "a", 200),
        medication("P2", "month12", "a", 100),
        # P3: lower dose of one, but another added -> not reduced
        medication("P3", "baseline", "a", 200),
        medication("P3", "month12", "a", 100),
        medication("P3", "month12", "c", 10),
        # P4: the same -> not reduced
        medication("P4", "baseline", "a", 200),
        medication("P4", "month12", "a", 200),
        # P5: one down, another up -> not reduced
        medication("P5", "baseline", "a", 200),
        medication("P5", "baseline", "b", 20),
        medication("P5", "month12", "a", 100),
        medication("P5", "month12", "b", 40),
    ]
    s = study({f"P{i}": {} for i in range(1, 6)}, medications=meds)
    result = analyse(s)["outcomes"]["analgesic_reduced"]
    assert (result["n"], result["evaluable"], result["participants"]) == (2, 5, ["P1", "P2"])


def test_analgesic_use_is_not_evaluable_without_both_visits() -> None:
    s = study({"P1": {}})
    s = s.model_copy(update={"visits": [v for v in s.visits if v.visit != "month12"]})
    assert analyse(s)["outcomes"]["analgesic_reduced"]["evaluable"] == 0


def test_second_injection_compares_month12_with_month6() -> None:
    values = {
        "P1": {("nprs_average", "month6"): 5, ("nprs_average", "month12"): 3},
        "P2": {("nprs_average", "month6"): 3, ("nprs_average", "month12"): 4},
        "P3": {("nprs_average", "month6"): 4, ("nprs_average", "month12"): 4},
        "P4": {("nprs_average", "month6"): 4},
        "P5": {("nprs_average", "month6"): 9, ("nprs_average", "month12"): 1},
    }
    procedures = []
    for pid in ("P1", "P2", "P3", "P4"):  # P5 had no second injection
        procedures += [
            Procedure(
                participant_id=pid,
                procedure_id=f"{pid}-H",
                type="harvest",
                performed_on="2020-01-02",
            ),
            Procedure(
                participant_id=pid,
                procedure_id=f"{pid}-I1",
                type="injection",
                performed_on="2020-01-20",
                disc_level="L4-L5",
                injection_number=1,
                cell_dose=10_000_000,
                product_lot=f"L{pid}",
                harvest_procedure_id=f"{pid}-H",
            ),
            Procedure(
                participant_id=pid,
                procedure_id=f"{pid}-I2",
                type="injection",
                performed_on="2020-07-02",
                disc_level="L4-L5",
                injection_number=2,
                cell_dose=10_000_000,
                product_lot=f"L{pid}",
                harvest_procedure_id=f"{pid}-H",
            ),
        ]
    second = analyse(study(values, procedures=procedures))["second_injection"]
    assert second == {
        "participants": 4,
        "improved": 1,
        "worsened": 1,
        "unchanged": 1,
        "not_evaluable": 1,
    }


def mri(pid: str, visit: str, **findings: Any) -> tuple[ImagingReport, list[ImagingFinding]]:
    report = ImagingReport(
        participant_id=pid,
        visit=visit,
        report_id=f"{pid}-{visit}",
        study_date=VISITS[visit],
        modality="MR",
    )
    return report, [
        ImagingFinding(report_id=report.report_id, disc_level=level, finding=name, value=value)
        for name, value in findings.items()
        for level in ["L4-L5"]
    ]


def imaging_study(specs: dict[str, tuple[dict, dict]]) -> Study:
    reports, findings = [], []
    for pid, (before, after) in specs.items():
        for visit, found in (("baseline", before), ("month12", after)):
            if found is not None:
                report, rows = mri(pid, visit, **found)
                reports.append(report)
                findings += rows
    return study({pid: {} for pid in specs}, imaging_reports=reports, imaging_findings=findings)


def test_mri_definitions() -> None:
    s = imaging_study(
        {
            # healed; protrusion present -> absent (reduced); height 10 -> 9.4 (loss > 0.5)
            "P1": (
                {"annular_fissure": "present", "protrusion": "present", "disc_height_mm": 10},
                {"annular_fissure": "absent", "protrusion": "absent", "disc_height_mm": 9.4},
            ),
            # fissure stays; protrusion 4 -> 3 mm (reduced); height 10 -> 9.5 (not > 0.5)
            "P2": (
                {"annular_fissure": "present", "protrusion_mm": 4, "disc_height_mm": 10},
                {"annular_fissure": "present", "protrusion_mm": 3, "disc_height_mm": 9.5},
            ),
            # no fissure, no protrusion at baseline: neither evaluable for healing or reduction
            "P3": (
                {"annular_fissure": "absent", "protrusion": "absent", "disc_height_mm": 9},
                {"annular_fissure": "absent", "protrusion": "absent", "disc_height_mm": 9},
            ),
            # no follow-up MRI: not evaluable anywhere
            "P4": (
                {"annular_fissure": "present", "protrusion": "present", "disc_height_mm": 9},
                None,
            ),
        }
    )
    table = analyse(s)["mri"]
    assert (table["fissure_healed"]["n"], table["fissure_healed"]["evaluable"]) == (1, 2)
    assert (table["protrusion_reduced"]["n"], table["protrusion_reduced"]["evaluable"]) == (2, 2)
    assert (table["disc_height_loss"]["n"], table["disc_height_loss"]["evaluable"]) == (1, 3)


def test_subgroups_by_baseline_mri_at_the_index_disc() -> None:
    s = imaging_study(
        {
            "P1": ({"modic_type": 2, "annular_fissure": "absent"}, None),
            "P2": ({"modic_type": 2, "annular_fissure": "present"}, None),
            "P3": ({"modic_type": 1, "annular_fissure": "absent"}, None),
            "P4": (None, None),
        }
    )
    values = {"P1": pain(8, 2), "P2": pain(8, 7), "P3": pain(8, 8), "P4": pain(8, None)}
    s = s.model_copy(update={"outcomes": study(values).outcomes})
    groups = analyse(s)["subgroups"]
    assert groups["modic2_no_fissure"]["participants"] == 1
    assert groups["modic2_no_fissure"]["pain_50pct_responder"]["n"] == 1
    assert groups["others"]["participants"] == 3
    assert (
        groups["others"]["pain_reduced"]["n"],
        groups["others"]["pain_reduced"]["evaluable"],
    ) == (1, 2)


def test_safety_counts() -> None:
    events = [
        AdverseEvent(
            participant_id=p,
            event_id=e,
            term="x",
            onset_on="2020-02-01",
            severity=sev,
            serious=serious,
            outcome="resolved",
            causality=cause,
        )
        for p, e, sev, serious, cause in [
            ("P1", "E1", "mild", False, "possible"),
            ("P1", "E2", "severe", True, "unrelated"),
            ("P2", "E3", "moderate", False, "unlikely"),
        ]
    ]
    safety = analyse(study({"P1": {}, "P2": {}, "P3": {}}, adverse_events=events))["safety"]
    assert safety == {
        "adverse_events": 3,
        "by_severity": {"mild": 1, "moderate": 1, "severe": 1},
        "serious": 1,
        "related": 1,
        "participants_with_ae": 2,
    }


def test_other_follow_up_visit() -> None:
    s = study(
        {
            "P1": {
                ("nprs_average", "baseline"): 6,
                ("nprs_average", "month6"): 2,
                ("nprs_average", "month12"): 7,
            }
        }
    )
    assert analyse(s, followup="month6")["outcomes"]["pain_50pct_responder"]["n"] == 1
    assert analyse(s)["outcomes"]["pain_worsened"]["n"] == 1


# -- the command ------------------------------------------------------------------------------

PAPER = [
    ("Average pain reduced (NPRS)", "7/9"),
    ("Most severe pain reduced (NPRS)", "6/9"),
    ("Average pain reduced by 50% or more", "5/9"),
    ("Work capacity increased", "5/9"),
    ("Analgesic use reduced", "3/9"),
    ("Average pain worse", "0/9"),
    ("Serious adverse events", "0"),
    ("Disc protrusion reduced (of those with one at baseline)", "2/"),
]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report") / "bundle.json"
    assert CliRunner().invoke(cli, ["export", "--demo", "-o", str(out)]).exit_code == 0
    return out


@pytest.mark.parametrize(("label", "figure"), PAPER, ids=[p[0] for p in PAPER])
def test_report_on_the_demo_export_prints_the_papers_figures(
    exported: Path, label: str, figure: str
) -> None:
    result = CliRunner().invoke(cli, ["report", str(exported)])
    assert result.exit_code == 0, result.output
    line = next(line for line in result.stdout.splitlines() if line.strip().startswith(label))
    assert line.split(label, 1)[1].strip().startswith(figure)


def test_json_report_has_the_contract_shape(exported: Path) -> None:
    table = json.loads(
        CliRunner().invoke(cli, ["report", str(exported), "--format", "json"]).stdout
    )
    assert table["participants"] == 9 and table["followup"] == "month12"
    assert set(table["outcomes"]) == {
        "pain_reduced",
        "worst_pain_reduced",
        "pain_50pct_responder",
        "pain_clinically_important",
        "pain_worsened",
        "odi_improved",
        "odi_clinically_important",
        "work_capacity_increased",
        "analgesic_reduced",
    }
    assert set(table["mri"]) == {"fissure_healed", "protrusion_reduced", "disc_height_loss"}
    assert set(table["second_injection"]) == {
        "participants",
        "improved",
        "worsened",
        "unchanged",
        "not_evaluable",
    }
    assert set(table["subgroups"]["others"]) == {
        "participants",
        "pain_reduced",
        "pain_50pct_responder",
    }
    assert table["safety"]["serious"] == 0
    assert all(
        isinstance(v["n"], int) and isinstance(v["evaluable"], int)
        for v in table["outcomes"].values()
    )


def test_report_reads_study_folders_and_ndjson_the_same(
    exported: Path, study_dir: Path, tmp_path: Path
) -> None:
    runner = CliRunner()
    expected = runner.invoke(cli, ["report", str(exported), "--format", "json"]).stdout
    assert runner.invoke(cli, ["report", str(study_dir), "--format", "json"]).stdout == expected
    runner.invoke(cli, ["export", "--demo", "--format", "ndjson", "-o", str(tmp_path / "nd")])
    assert (
        runner.invoke(cli, ["report", str(tmp_path / "nd"), "--format", "json"]).stdout == expected
    )


def test_markdown_and_html(exported: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    markdown = runner.invoke(cli, ["report", str(exported), "--format", "markdown"]).stdout
    assert "| Average pain reduced (NPRS) | 7/9 (78%) |" in markdown
    out = tmp_path / "report.html"
    result = runner.invoke(cli, ["report", str(exported), "--format", "html", "-o", str(out)])
    assert result.exit_code == 0, result.output
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and page.count("<svg") == 7
    assert "Average pain fell in 7 of 9 participants" in page
    # self-contained: nothing to load from anywhere
    assert not any(marker in page for marker in ("<script", "<link", "<img", 'src="', "url(http"))


def test_report_usage_errors(exported: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(cli, ["report"]).exit_code == 2
    assert (
        runner.invoke(
            cli, ["report", str(exported), "--server", "http://127.0.0.1:9/fhir"]
        ).exit_code
        == 2
    )
    assert runner.invoke(cli, ["report", "--server", "http://127.0.0.1:9/fhir"]).exit_code == 2


def test_report_from_a_server(sekmet_server, exported: Path) -> None:
    runner = CliRunner()
    assert (
        runner.invoke(cli, ["push", str(exported), "--server", sekmet_server.base_url]).exit_code
        == 0
    )
    result = runner.invoke(
        cli,
        [
            "report",
            "--server",
            sekmet_server.base_url,
            "--study",
            "ADMSC-FSO794",
            "--format",
            "json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["outcomes"]["pain_reduced"]["n"] == 7
