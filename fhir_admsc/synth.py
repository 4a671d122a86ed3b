"""Synthetic study folders of any size, loosely modelled on the ADMSC feasibility trial.

Every value comes from one ``random.Random(seed)`` and nothing else (no clock): the same size and seed
give the same folder, byte for byte. Rows are produced participant by participant and turned into CSV
text at once, so a study of tens of thousands of participants never holds one row model per row.
Rows of every table are grouped by participant in the order of participants.csv, as ``write_study``
writes a Study whose rows were appended participant by participant.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from fhir_admsc import terminology as term
from fhir_admsc.errors import ConfigurationError
from fhir_admsc.output import refuse_non_empty_folder, write_files
from fhir_admsc.study import STUDY_FILE, TABLES, Arm, Site, Study, StudyInfo, cell_text
from fhir_admsc.tables import CsvText, study_info_json

START = date(2017, 6, 1)
ACCRUAL_DAYS = 730
MAX_SITES = 30
PARTICIPANTS_PER_SITE = 100
TITLE = (
    "SYNTHETIC data, not real participants: {n} invented participants (seed {seed}) modelled "
    "loosely on a 1-year feasibility study of low-dose autologous adipose-derived mesenchymal "
    "stem cells for discogenic low back pain (Bates et al. 2022, Future Sci OA 8(5):FSO794)"
)
ARM = Arm(
    name="admsc-10m",
    description="Autologous adipose-derived MSC, 10 million cells intradiscal, "
    "optional repeat at 6 months",
)
CELL_DOSE = 10_000_000

# Follow-up visits: nominal day after the first injection and the scheduling window (days either side).
FOLLOW_UP = {
    term.WEEK1: (7, 2),
    term.MONTH1: (30, 7),
    term.MONTH3: (91, 7),
    term.MONTH6: (182, 7),
    term.MONTH9: (273, 7),
    term.MONTH12: (365, 7),
}
VISITS = [term.BASELINE, *FOLLOW_UP]
MISSED_VISIT = 0.07
WITHDRAWAL = 0.06
WITHDRAWAL_REASONS = ["moved away", "sought other treatment", "personal reasons", None]
MISSED_MEASURE = 0.02
# Repeat injection at month 6: more often offered when pain has not eased much by then (about 30%).
REPEAT_IF_POOR, REPEAT_IF_GOOD, POOR_MONTH6 = 0.55, 0.15, 0.3

PAIN = [term.NPRS_AVERAGE, term.NPRS_WORST]
EQ5D = term.EQ5D_DIMENSIONS
TOLERANCE = [term.STANDING_MIN, term.SITTING_MIN, term.WALKING_MIN]
FULL = [*PAIN, term.ODI, *EQ5D, term.EQ5D_VAS, *TOLERANCE, term.WORK_CAPACITY_PCT]
# Which measures each visit records, as in the trial's schedule of assessments.
MEASURES_AT = {
    term.BASELINE: FULL,
    term.MONTH1: PAIN,
    term.MONTH3: PAIN,
    term.MONTH6: [*PAIN, term.ODI, *EQ5D, term.EQ5D_VAS],
    term.MONTH9: PAIN,
    term.MONTH12: FULL,
}
# How strongly pain weighs on each EQ-5D-3L dimension.
EQ5D_WEIGHT = {
    term.EQ5D_MOBILITY: 0.8,
    term.EQ5D_SELFCARE: 0.4,
    term.EQ5D_ACTIVITIES: 0.9,
    term.EQ5D_PAIN: 1.1,
    term.EQ5D_ANXIETY: 0.6,
}

DISC_LEVELS = term.LUMBAR_DISCS
DISC_WEIGHTS = [1, 4, 10, 45, 40]
SEXES, SEX_WEIGHTS = ["female", "male", "unknown"], [52, 47, 1]

# name, category, usual daily doses (mg); no RxNorm codes: none is verified for this project.
ANALGESICS: list[tuple[str, str, tuple[int, ...]]] = [
    ("paracetamol", term.PARACETAMOL, (2000, 3000, 4000)),
    ("ibuprofen", term.NSAID, (800, 1200, 1600)),
    ("naproxen", term.NSAID, (500, 1000)),
    ("celecoxib", term.NSAID, (200, 400)),
    ("tramadol", term.OPIOID, (100, 200, 300)),
    ("tapentadol", term.OPIOID, (100, 200)),
    ("oxycodone", term.OPIOID, (10, 20, 40)),
    ("pregabalin", term.NEUROPATHIC, (150, 300)),
    ("amitriptyline", term.NEUROPATHIC, (10, 25, 50)),
    ("baclofen", term.MUSCLE_RELAXANT, (30, 60)),
    ("heat rub", term.OTHER_ANALGESIC, ()),
]
UNRELATED_EVENTS = ["upper respiratory tract infection", "headache", "gastroenteritis", "fall"]

Rows = dict[str, list[dict[str, Any]]]


def synthesize(participants: int, seed: int, study_id: str | None = None) -> Study:
    """A synthetic study in memory, every row checked by its model (for small studies)."""
    synthesis = _Synthesis(participants, seed, study_id)
    tables: dict[str, list[Any]] = {table.attribute: [] for table in TABLES}
    for rows in synthesis.participants():
        for table in TABLES:
            tables[table.attribute] += map(table.model.model_validate, rows[table.attribute])
    return Study(info=synthesis.info(), **tables)


def write_synthetic_study(
    folder: str | Path,
    participants: int,
    seed: int,
    study_id: str | None = None,
    force: bool = False,
    progress: Callable[[int], None] | None = None,
) -> StudyInfo:
    """Write a synthetic study folder atomically, row by row; refuse a non-empty folder unless
    ``force`` (then only its study files are replaced). ``progress`` is told how many
    participants are done."""
    folder = Path(folder)
    refuse_non_empty_folder(folder, force)
    synthesis = _Synthesis(participants, seed, study_id)
    texts = {table.attribute: CsvText(table.columns) for table in TABLES}
    for done, rows in enumerate(synthesis.participants(), start=1):
        for attribute, table_rows in rows.items():
            text = texts[attribute]
            for row in table_rows:
                text.add([cell_text(row.get(column)) for column in text.columns])
        if progress:
            progress(done)
    info = synthesis.info()
    contents = {STUDY_FILE: study_info_json(info).encode()}
    for table in TABLES:
        text = texts.pop(table.attribute)
        if text.rows:
            contents[table.file] = text.value().encode()
    write_files(folder, contents, stale=[table.file for table in TABLES])
    return info


def _days(n: int) -> timedelta:
    return timedelta(days=n)


def _clamp(value: float, low: float, high: float) -> float:
    return min(high, max(low, value))


class _Synthesis:
    """The random draws of one synthetic study; ``info`` is complete once every participant is drawn."""

    def __init__(self, participants: int, seed: int, study_id: str | None) -> None:
        if participants < 1:
            raise ConfigurationError(
                f"the number of participants must be 1 or more, not {participants}"
            )
        self.count = participants
        self.rng = random.Random(seed)
        sites = min(MAX_SITES, 1 + participants // PARTICIPANTS_PER_SITE)
        try:
            self.base = StudyInfo(
                study_id=study_id or f"ADMSC-SYN-{seed}",
                title=TITLE.format(n=participants, seed=seed),
                status="completed",
                start=START,
                arm=ARM,
                sites=[
                    Site(site_id=f"S{k}", name=f"Site {k} (synthetic)") for k in range(1, sites + 1)
                ],
            )
        except ValidationError:
            raise ConfigurationError(
                f"study id {study_id!r} is not an identifier "
                "(letters, digits, '.', '_' or '-', at most 64)"
            ) from None
        self.last = START

    def info(self) -> StudyInfo:
        """study.json: ends on the last date of any participant's data."""
        return self.base.model_copy(update={"end": self.last})

    def participants(self) -> Iterator[Rows]:
        """Each participant's rows by Study attribute, in enrolment order."""
        rng = self.rng
        width = max(3, len(str(self.count)))
        enrolment = sorted(rng.randrange(ACCRUAL_DAYS) for _ in range(self.count))
        site_ids = [site.site_id for site in self.base.sites or []]
        for number, day in enumerate(enrolment, start=1):
            rows, last = _participant(rng, f"P{number:0{width}d}", START + _days(day), site_ids)
            self.last = max(self.last, last)
            yield rows


def _participant(
    rng: random.Random, pid: str, enrolled_on: date, site_ids: list[str]
) -> tuple[Rows, date]:
    """One participant's rows in every table, and the last date among them."""
    sex = rng.choices(SEXES, SEX_WEIGHTS)[0]
    age = round(_clamp(rng.gauss(45, 11), 18, 75))
    level = rng.choices(DISC_LEVELS, DISC_WEIGHTS)[0]
    symptom_months = round(_clamp(rng.lognormvariate(math.log(48), 0.7), 6, 480))
    harvested_on = enrolled_on + _days(rng.randint(2, 9))
    # Culture expansion of the harvested cells takes about four weeks.
    injected_on = harvested_on + _days(rng.randint(24, 35))
    dates = {term.BASELINE: enrolled_on}
    for visit, (day, window) in FOLLOW_UP.items():
        dates[visit] = injected_on + _days(day + rng.randint(-window, window))

    withdrawn = rng.random() < WITHDRAWAL
    # A withdrawal comes after the injection, so after week 1 and before month 12 at the latest.
    stop = rng.randrange(2, len(VISITS)) if withdrawn else len(VISITS)
    withdrawn_on = dates[VISITS[stop - 1]] + _days(rng.randint(1, 20)) if withdrawn else None
    attended = [term.BASELINE] + [v for v in VISITS[1:stop] if rng.random() >= MISSED_VISIT]

    response = _Response(rng)
    # Only those still in the study after month 9 can have had the repeat at month 6.
    repeat = stop >= VISITS.index(term.MONTH12) and rng.random() < (
        REPEAT_IF_POOR if response.at(182) < POOR_MONTH6 else REPEAT_IF_GOOD
    )
    repeat_on = dates[term.MONTH6] + _days(rng.randint(1, 14)) if repeat else None
    if repeat:
        response.boost(rng, 182)

    participant = {
        "participant_id": pid,
        "sex": sex,
        "birth_year": None if rng.random() < 0.02 else enrolled_on.year - age,
        "site_id": rng.choice(site_ids),
        "enrolled_on": enrolled_on,
        "disc_level": level,
        "symptom_months": None if rng.random() < 0.03 else symptom_months,
        "status": term.WITHDRAWN if withdrawn else term.OFF_STUDY,
        "withdrawn_on": withdrawn_on,
        "withdrawal_reason": rng.choice(WITHDRAWAL_REASONS) if withdrawn else None,
    }
    procedures = _procedures(rng, pid, level, harvested_on, injected_on, repeat_on)
    outcomes = _outcomes(rng, pid, attended, dates, injected_on, response)
    events = _adverse_events(rng, pid, procedures, dates[attended[-1]])
    reports, findings = _imaging(rng, pid, level, attended, dates)
    rows: Rows = {
        "participants": [participant],
        "visits": [{"participant_id": pid, "visit": v, "visit_date": dates[v]} for v in attended],
        "procedures": procedures,
        "outcomes": outcomes,
        "medications": _medications(rng, pid, attended, response),
        "adverse_events": events,
        "imaging_reports": reports,
        "imaging_findings": findings,
    }
    last = max(
        dates[attended[-1]],
        withdrawn_on or enrolled_on,
        *(p["performed_on"] for p in procedures),
        *(e["resolved_on"] or e["onset_on"] for e in events),
        *(r["study_date"] for r in reports),
    )
    return rows, last


class _Response:
    """How a participant's pain changes: a relative improvement that builds up after the injection."""

    def __init__(self, rng: random.Random) -> None:
        # Most improve, some do not, a few get worse.
        self.target = _clamp(rng.gauss(0.4, 0.35), -0.5, 1.0)
        self.extra = 0.0
        self.extra_from: int | None = None

    def boost(self, rng: random.Random, day: int) -> None:
        """A repeat injection on ``day`` helps some further."""
        self.extra, self.extra_from = rng.uniform(0.0, 0.25), day

    def at(self, day: int) -> float:
        """The relative improvement ``day`` days after the first injection (negative: worse)."""
        value = self.target * (1 - math.exp(-max(day, 0) / 75))
        if self.extra_from is not None and day > self.extra_from:
            value += self.extra * (1 - math.exp(-(day - self.extra_from) / 75))
        return min(value, 1.0)


def _procedures(
    rng: random.Random,
    pid: str,
    level: str,
    harvested_on: date,
    injected_on: date,
    repeat_on: date | None,
) -> list[dict[str, Any]]:
    harvest_id = f"{pid}-H"
    harvest = {
        "participant_id": pid,
        "procedure_id": harvest_id,
        "type": term.HARVEST_TYPE,
        "performed_on": harvested_on,
        "volume_ml": 5 * rng.randint(10, 30),
        "guidance": term.NO_GUIDANCE,
    }
    lot = {"product_lot": f"LOT-{pid}", "viability_pct": round(rng.uniform(85, 98), 1)}
    guidance = term.FLUOROSCOPY if rng.random() < 0.95 else term.CT_GUIDANCE
    injections = [(1, injected_on, lot)]
    if repeat_on is not None:
        # Most repeats use cells kept from the first lot; some need a second expansion.
        if rng.random() < 0.3:
            lot = {"product_lot": f"LOT-{pid}-B", "viability_pct": round(rng.uniform(85, 98), 1)}
        injections.append((2, repeat_on, lot))
    rows = [harvest]
    for number, performed_on, used in injections:
        rows.append(
            {
                "participant_id": pid,
                "procedure_id": f"{pid}-I{number}",
                "type": term.INJECTION_TYPE,
                "performed_on": performed_on,
                "disc_level": level,
                "injection_number": number,
                "cell_dose": CELL_DOSE if rng.random() < 0.9 else 100_000 * rng.randint(90, 110),
                "volume_ml": rng.choice([1, 1, 1, 1.5, 2]),
                **used,
                "harvest_procedure_id": harvest_id,
                "guidance": guidance,
                "notes": "repeat injection at 6 months" if number == 2 else None,
            }
        )
    return rows


def _outcomes(
    rng: random.Random,
    pid: str,
    attended: list[str],
    dates: dict[str, date],
    injected_on: date,
    response: _Response,
) -> list[dict[str, Any]]:
    pain = rng.choices(range(4, 11), [1, 3, 5, 6, 5, 3, 1])[0]
    spread = rng.randint(1, 3)
    odi = _clamp(rng.gauss(38, 12), 12, 80)
    vas_offset = rng.gauss(0, 6)
    burden = {m: w * rng.uniform(0.7, 1.2) for m, w in EQ5D_WEIGHT.items()}
    tolerance = {m: rng.choice([5, 10, 15, 20, 30, 45, 60]) for m in TOLERANCE}
    work = rng.choices([0, 25, 50, 75, 100], [2, 2, 3, 2, 1])[0]
    rows = []
    for visit in attended:
        measures = MEASURES_AT.get(visit, [])
        gain = response.at((dates[visit] - injected_on).days) if visit != term.BASELINE else 0.0
        noise = rng.gauss(0, 0.6) if visit != term.BASELINE else 0.0
        average = round(_clamp(pain * (1 - gain) + noise, 0, 10))
        values: dict[str, float] = {
            term.NPRS_AVERAGE: average,
            term.NPRS_WORST: min(10, average + spread + (rng.random() < 0.3)),
            term.ODI: 2 * round(_clamp(odi * (1 - 0.9 * gain + rng.gauss(0, 0.06)), 0, 100) / 2),
            term.EQ5D_VAS: round(_clamp(95 - 6.5 * average + vas_offset + rng.gauss(0, 5), 0, 100)),
            term.WORK_CAPACITY_PCT: 25
            * round(_clamp(work + 100 * gain * rng.uniform(0.3, 1), 0, 100) / 25),
        }
        for measure, weight in burden.items():
            level = weight * average / 10 + rng.gauss(0, 0.12)
            values[measure] = 1 if level < 0.35 else 2 if level < 0.8 else 3
        for measure, minutes in tolerance.items():
            values[measure] = 5 * round(minutes * max(0.2, 1 + 2 * gain) / 5)
        rows += [
            {"participant_id": pid, "visit": visit, "measure": m, "value": values[m]}
            for m in measures
            if rng.random() >= MISSED_MEASURE
        ]
    return rows


def _medications(
    rng: random.Random, pid: str, attended: list[str], response: _Response
) -> list[dict[str, Any]]:
    taken: dict[str, tuple[str, str, int | None]] = {}
    for name, category, doses in rng.sample(ANALGESICS, rng.choices([0, 1, 2, 3], [1, 4, 4, 2])[0]):
        if category not in {c for _, c, _ in taken.values()}:
            taken[name] = (name, category, rng.choice(doses) if doses else None)
    # the contract's order, as a pull writes it: by visit, then by name (none has digits)
    rows = [_medication(pid, term.BASELINE, *taken[name], term.TAKING) for name in sorted(taken)]
    if term.MONTH12 not in attended:
        return rows
    gain = response.at(365)
    for name, category, dose in taken.values():
        if gain >= 0.5 and rng.random() < 0.5:
            rows.append(_medication(pid, term.MONTH12, name, category, dose, term.STOPPED))
        elif gain >= 0.3 and dose is not None and rng.random() < 0.4:
            rows.append(_medication(pid, term.MONTH12, name, category, dose // 2, term.TAKING))
        else:
            rows.append(_medication(pid, term.MONTH12, name, category, dose, term.TAKING))
    if gain < 0 and rng.random() < 0.5:
        name, category, doses = rng.choice(ANALGESICS)
        if name not in taken:
            dose = rng.choice(doses) if doses else None
            rows.append(_medication(pid, term.MONTH12, name, category, dose, term.TAKING))
    return sorted(rows, key=lambda row: (VISITS.index(row["visit"]), row["medication"]))


def _medication(
    pid: str, visit: str, name: str, category: str, dose: int | None, status: str
) -> dict[str, Any]:
    return {
        "participant_id": pid,
        "visit": visit,
        "medication": name,
        "category": category,
        "daily_dose": dose,
        "dose_unit": None if dose is None else "mg",
        "status": status,
    }


def _adverse_events(
    rng: random.Random, pid: str, procedures: list[dict[str, Any]], last_visit: date
) -> list[dict[str, Any]]:
    """Mostly mild, procedure-related, expected events; a rare serious one."""
    harvest, first, *repeat = procedures
    events = []

    def event(name: str, onset: date, severity: str, causality: str, **more: Any) -> None:
        outcome = (
            term.RESOLVED if rng.random() < 0.92 else rng.choice([term.RECOVERING, term.ONGOING])
        )
        resolved = onset + _days(rng.randint(2, 21)) if outcome == term.RESOLVED else None
        events.append(
            {
                "participant_id": pid,
                "term": name,
                "onset_on": onset,
                "resolved_on": resolved,
                "severity": severity,
                "serious": False,
                "outcome": outcome,
                "causality": causality,
                **more,
            }
        )

    if rng.random() < 0.12:
        event(
            "bruising at lipoaspiration site",
            harvest["performed_on"] + _days(rng.randint(0, 1)),
            term.MILD,
            term.CERTAIN,
            suspected_procedure_id=harvest["procedure_id"],
            expected=True,
        )
    for injection in [first, *repeat]:
        if rng.random() < 0.18:
            severity = rng.choices([term.MILD, term.MODERATE, term.SEVERE], [70, 28, 2])[0]
            event(
                "pain flare after injection",
                injection["performed_on"] + _days(rng.randint(0, 2)),
                severity,
                rng.choices([term.CERTAIN, term.PROBABLE, term.POSSIBLE], [1, 6, 3])[0],
                suspected_procedure_id=injection["procedure_id"],
                expected=True,
                action_taken="analgesia increased" if severity != term.MILD else None,
            )
    if rng.random() < 0.08:
        span = max((last_visit - harvest["performed_on"]).days, 0)
        event(
            rng.choice(UNRELATED_EVENTS),
            harvest["performed_on"] + _days(rng.randint(0, span)),
            rng.choices([term.MILD, term.MODERATE], [4, 1])[0],
            rng.choice([term.UNRELATED, term.UNLIKELY]),
            expected=False,
        )
    if rng.random() < 0.01:
        event(
            "hospital admission for back pain",
            first["performed_on"] + _days(rng.randint(2, 60)),
            term.SEVERE,
            term.POSSIBLE,
            suspected_procedure_id=first["procedure_id"],
            expected=False,
            action_taken="admitted for analgesia",
        )
        events[-1]["serious"] = True
    events.sort(key=lambda e: e["onset_on"])
    for k, e in enumerate(events, start=1):
        e["event_id"] = f"{pid}-AE{k}"
    return events


def _imaging(
    rng: random.Random, pid: str, level: str, attended: list[str], dates: dict[str, date]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """MRI at baseline and, when attended, at month 12: the index disc and the disc above it."""
    index = DISC_LEVELS.index(level)
    neighbour = DISC_LEVELS[index - 1 if index > 0 else 1]
    grade = rng.choices([2, 3, 4, 5], [1, 5, 5, 1])[0]
    index_disc: dict[str, Any] = {
        term.DISC_HEIGHT_MM: round(_clamp(rng.gauss(11.5 - 0.9 * grade, 0.8), 3, 16), 1),
        term.PFIRRMANN_GRADE: grade,
        term.MODIC_TYPE: rng.choices([0, 1, 2, 3], [8, 4, 7, 1])[0],
        term.ANNULAR_FISSURE: term.PRESENT if rng.random() < 0.5 else term.ABSENT,
        term.PROTRUSION: term.PRESENT if rng.random() < 0.35 else term.ABSENT,
    }
    if index_disc[term.PROTRUSION] == term.PRESENT:
        index_disc[term.PROTRUSION_MM] = round(rng.uniform(2, 6), 1)
    other_grade = rng.choice([1, 2, 2, 3])
    other_disc = {
        term.DISC_HEIGHT_MM: round(_clamp(rng.gauss(11.5 - 0.9 * other_grade, 0.8), 3, 16), 1),
        term.PFIRRMANN_GRADE: other_grade,
    }
    reports = [
        _report(pid, term.BASELINE, "0", dates[term.BASELINE] + _days(rng.randint(0, 1)), rng)
    ]
    scans = [(index_disc, other_disc)]
    reports[0]["conclusion"] = _baseline_conclusion(level, index_disc)
    if term.MONTH12 in attended:
        later = _month12_disc(rng, index_disc)
        other_later = {
            **other_disc,
            term.DISC_HEIGHT_MM: round(
                _clamp(other_disc[term.DISC_HEIGHT_MM] + rng.gauss(-0.05, 0.2), 3, 16), 1
            ),
        }
        reports.append(
            _report(pid, term.MONTH12, "12", dates[term.MONTH12] - _days(rng.randint(0, 3)), rng)
        )
        reports[-1]["conclusion"] = _month12_conclusion(level, index_disc, later)
        scans.append((later, other_later))
    findings = [
        {"report_id": report["report_id"], "disc_level": disc, "finding": finding, "value": value}
        for report, (at_index, at_neighbour) in zip(reports, scans, strict=True)
        for disc, values in ((level, at_index), (neighbour, at_neighbour))
        for finding, value in values.items()
    ]
    return reports, findings


def _report(pid: str, visit: str, suffix: str, on: date, rng: random.Random) -> dict[str, Any]:
    return {
        "participant_id": pid,
        "visit": visit,
        "report_id": f"{pid}-MRI-{suffix}",
        "study_date": on,
        "modality": "MR",
        # A UUID-derived DICOM UID (2.25 root), drawn from the seed so that it is reproducible.
        "study_uid": f"2.25.{rng.getrandbits(128)}",
    }


def _month12_disc(rng: random.Random, before: dict[str, Any]) -> dict[str, Any]:
    """The index disc a year on: mostly stable, some fissures healed, protrusions often smaller."""
    after = {
        term.DISC_HEIGHT_MM: round(
            _clamp(before[term.DISC_HEIGHT_MM] + rng.gauss(-0.15, 0.35), 3, 16), 1
        ),
        term.PFIRRMANN_GRADE: min(5, before[term.PFIRRMANN_GRADE] + (rng.random() < 0.1)),
        term.MODIC_TYPE: 2
        if before[term.MODIC_TYPE] == 1 and rng.random() < 0.3
        else before[term.MODIC_TYPE],
        term.ANNULAR_FISSURE: term.PRESENT
        if before[term.ANNULAR_FISSURE] == term.PRESENT and rng.random() >= 0.35
        else term.ABSENT,
        term.PROTRUSION: before[term.PROTRUSION],
    }
    if before[term.PROTRUSION] == term.PRESENT:
        size = round(before[term.PROTRUSION_MM] * rng.uniform(0.2, 1.1), 1)
        if size < 1.5 and rng.random() < 0.5:
            after[term.PROTRUSION] = term.ABSENT
        else:
            after[term.PROTRUSION_MM] = size
    return after


def _baseline_conclusion(level: str, disc: dict[str, Any]) -> str:
    parts = [f"Pfirrmann grade {disc[term.PFIRRMANN_GRADE]} degeneration at {level}"]
    modic = disc[term.MODIC_TYPE]
    parts.append(f"Modic type {modic} endplate change" if modic else "no Modic change")
    if disc[term.ANNULAR_FISSURE] == term.PRESENT:
        parts.append("annular fissure")
    if disc[term.PROTRUSION] == term.PRESENT:
        parts.append(f"{cell_text(disc[term.PROTRUSION_MM])} mm protrusion")
    return ", ".join(parts) + "."


def _month12_conclusion(level: str, before: dict[str, Any], after: dict[str, Any]) -> str:
    worse = (
        after[term.PFIRRMANN_GRADE] > before[term.PFIRRMANN_GRADE]
        or before[term.DISC_HEIGHT_MM] - after[term.DISC_HEIGHT_MM] > 0.5
    )
    parts = [f"{'Progressive' if worse else 'No further'} degeneration at {level}"]
    if before[term.ANNULAR_FISSURE] == term.PRESENT and after[term.ANNULAR_FISSURE] == term.ABSENT:
        parts.append("annular fissure no longer seen")
    if before[term.PROTRUSION] == term.PRESENT and after[term.PROTRUSION] == term.ABSENT:
        parts.append("protrusion resolved")
    elif (
        before[term.PROTRUSION] == term.PRESENT
        and after[term.PROTRUSION_MM] < before[term.PROTRUSION_MM]
    ):
        parts.append("protrusion reduced")
    return "; ".join(parts) + "."
