"""Outcome analysis of a study: responders, clinically important change, MRI subgroups and safety,
under the outcome definitions of the study data contract."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any

from fhir_admsc import terminology as term
from fhir_admsc.study import Study

RELATED = {term.CERTAIN, term.PROBABLE, term.POSSIBLE}

Comparison = Callable[[float, float], bool]  # (baseline, follow-up) -> counted


def _pain_responder(before: float, after: float) -> bool:
    return before > 0 and (before - after) / before >= 0.5


def _pain_clinically_important(before: float, after: float) -> bool:
    drop = before - after
    return drop >= 2 or (before > 0 and drop / before >= 0.3)


OUTCOMES: dict[str, tuple[str, Comparison]] = {
    "pain_reduced": (term.NPRS_AVERAGE, lambda b, a: a < b),
    "worst_pain_reduced": (term.NPRS_WORST, lambda b, a: a < b),
    "pain_50pct_responder": (term.NPRS_AVERAGE, _pain_responder),
    "pain_clinically_important": (term.NPRS_AVERAGE, _pain_clinically_important),
    "pain_worsened": (term.NPRS_AVERAGE, lambda b, a: a > b),
    "odi_improved": (term.ODI, lambda b, a: a < b),
    "odi_clinically_important": (term.ODI, lambda b, a: b - a >= 10),
    "work_capacity_increased": (term.WORK_CAPACITY_PCT, lambda b, a: a > b),
}


class _Tally:
    """Counts of one outcome: how many met it, of how many evaluable, and who."""

    def __init__(self) -> None:
        self.n = 0
        self.evaluable = 0
        self.participants: list[str] = []

    def add(self, participant_id: str, met: bool | None) -> None:
        if met is None:
            return
        self.evaluable += 1
        if met:
            self.n += 1
            self.participants.append(participant_id)

    def as_dict(self) -> dict[str, Any]:
        return {"n": self.n, "evaluable": self.evaluable, "participants": self.participants}


def analyse(
    study: Study, baseline: str = term.BASELINE, followup: str = term.MONTH12
) -> dict[str, Any]:
    """The outcome table of ``study``, comparing ``followup`` against ``baseline``."""
    values = {(o.participant_id, o.visit, o.measure): o.value for o in study.outcomes}
    pids = [p.participant_id for p in study.participants]

    def compare(pid: str, measure: str, test: Comparison, before: str, after: str) -> bool | None:
        b, a = values.get((pid, before, measure)), values.get((pid, after, measure))
        return None if b is None or a is None else test(float(b), float(a))

    visits: dict[str, set[str]] = defaultdict(set)
    for v in study.visits:
        visits[v.participant_id].add(v.visit)
    medications: dict[str, list[Any]] = defaultdict(list)
    for m in study.medications:
        medications[m.participant_id].append(m)
    outcomes = {name: _Tally() for name in [*OUTCOMES, "analgesic_reduced"]}
    for pid in pids:
        for name, (measure, test) in OUTCOMES.items():
            outcomes[name].add(pid, compare(pid, measure, test, baseline, followup))
        reduced = _analgesic_reduced(visits[pid], medications[pid], baseline, followup)
        outcomes["analgesic_reduced"].add(pid, reduced)

    second = Counter()
    for pid in sorted({p.participant_id for p in study.procedures if p.injection_number == 2}):
        b, a = (
            values.get((pid, term.MONTH6, term.NPRS_AVERAGE)),
            values.get((pid, term.MONTH12, term.NPRS_AVERAGE)),
        )
        second["participants"] += 1
        second[
            "not_evaluable"
            if b is None or a is None
            else "improved"
            if a < b
            else "worsened"
            if a > b
            else "unchanged"
        ] += 1

    mri = _mri(study, baseline, followup)
    subgroups: dict[str, dict[str, Any]] = {}
    for name, members in mri_subgroups(study, baseline).items():
        group = {"participants": len(members)}
        for outcome in ("pain_reduced", "pain_50pct_responder"):
            tally = _Tally()
            measure, test = OUTCOMES[outcome]
            for pid in members:
                tally.add(pid, compare(pid, measure, test, baseline, followup))
            group[outcome] = tally.as_dict()
        subgroups[name] = group

    events = study.adverse_events
    return {
        "participants": len(pids),
        "baseline": baseline,
        "followup": followup,
        "outcomes": {name: tally.as_dict() for name, tally in outcomes.items()},
        "second_injection": {
            k: second[k]
            for k in ("participants", "improved", "worsened", "unchanged", "not_evaluable")
        },
        "mri": {name: tally.as_dict() for name, tally in mri.items()},
        "subgroups": subgroups,
        "safety": {
            "adverse_events": len(events),
            "by_severity": {
                s: sum(e.severity == s for e in events)
                for s in (term.MILD, term.MODERATE, term.SEVERE)
            },
            "serious": sum(e.serious for e in events),
            "related": sum(e.causality in RELATED for e in events),
            "participants_with_ae": len({e.participant_id for e in events}),
        },
    }


def _analgesic_reduced(
    visits: set[str], medications: list[Any], baseline: str, followup: str
) -> bool | None:
    """Fewer analgesics taken at follow-up, or the same ones at a lower daily dose, nothing
    added (``visits`` and ``medications``: one participant's)."""
    if baseline not in visits or followup not in visits:
        return None
    taking: dict[str, dict[str, Any]] = {baseline: {}, followup: {}}
    for m in medications:
        if m.status == term.TAKING and m.visit in taking:
            taking[m.visit][m.medication] = m.daily_dose
    before, after = taking[baseline], taking[followup]
    if len(after) < len(before):
        return True
    if len(after) > len(before) or set(after) - set(before):
        return False
    doses = [
        (before[name], after[name])
        for name in after
        if before[name] is not None and after[name] is not None
    ]
    return any(a < b for b, a in doses) and not any(a > b for b, a in doses)


def index_findings(study: Study, visit: str) -> dict[str, dict[str, Any]]:
    """participant -> {finding: value} at the index disc on the MRI of ``visit``."""
    disc = {p.participant_id: p.disc_level for p in study.participants}
    reports = {r.report_id: r.participant_id for r in study.imaging_reports if r.visit == visit}
    found: dict[str, dict[str, Any]] = {}
    for f in study.imaging_findings:
        pid = reports.get(f.report_id)
        if pid is not None and f.disc_level == disc.get(pid):
            found.setdefault(pid, {})[f.finding] = f.value
    return found


def _mri(study: Study, baseline: str, followup: str) -> dict[str, _Tally]:
    before, after = index_findings(study, baseline), index_findings(study, followup)
    tallies = {
        "fissure_healed": _Tally(),
        "protrusion_reduced": _Tally(),
        "disc_height_loss": _Tally(),
    }
    for p in study.participants:
        pid = p.participant_id
        b, a = before.get(pid, {}), after.get(pid, {})
        if b.get(term.ANNULAR_FISSURE) == term.PRESENT and term.ANNULAR_FISSURE in a:
            tallies["fissure_healed"].add(pid, a[term.ANNULAR_FISSURE] == term.ABSENT)
        if b.get(term.PROTRUSION) == term.PRESENT or b.get(term.PROTRUSION_MM, 0) > 0:
            tallies["protrusion_reduced"].add(pid, _protrusion_reduced(b, a))
        if term.DISC_HEIGHT_MM in b and term.DISC_HEIGHT_MM in a:
            tallies["disc_height_loss"].add(
                pid, b[term.DISC_HEIGHT_MM] - a[term.DISC_HEIGHT_MM] > 0.5
            )
    return tallies


def _protrusion_reduced(before: dict[str, Any], after: dict[str, Any]) -> bool | None:
    if before.get(term.PROTRUSION) == term.PRESENT and after.get(term.PROTRUSION) == term.ABSENT:
        return True
    if term.PROTRUSION_MM in before and term.PROTRUSION_MM in after:
        return after[term.PROTRUSION_MM] < before[term.PROTRUSION_MM]
    return None if term.PROTRUSION not in after else False


def mri_subgroups(study: Study, baseline: str) -> dict[str, list[str]]:
    """Modic type 2 without annular fissure at the index disc at baseline, against all others."""
    found = index_findings(study, baseline)
    groups: dict[str, list[str]] = {"modic2_no_fissure": [], "others": []}
    for p in study.participants:
        f = found.get(p.participant_id, {})
        name = (
            "modic2_no_fissure"
            if f.get(term.MODIC_TYPE) == 2 and f.get(term.ANNULAR_FISSURE) == term.ABSENT
            else "others"
        )
        groups[name].append(p.participant_id)
    return groups


# -- rendering ---------------------------------------------------------------------------------

LABELS = {
    "pain_reduced": "Average pain reduced (NPRS)",
    "worst_pain_reduced": "Most severe pain reduced (NPRS)",
    "pain_50pct_responder": "Average pain reduced by 50% or more",
    "pain_clinically_important": "Clinically important pain change (>= 2 points or >= 30%)",
    "pain_worsened": "Average pain worse",
    "odi_improved": "Disability (ODI) improved",
    "odi_clinically_important": "ODI improved by 10 points or more",
    "work_capacity_increased": "Work capacity increased",
    "analgesic_reduced": "Analgesic use reduced",
    "fissure_healed": "Annular fissure healed (of those with one at baseline)",
    "protrusion_reduced": "Disc protrusion reduced (of those with one at baseline)",
    "disc_height_loss": "Disc height lost (> 0.5 mm)",
}
SUBGROUPS = {"modic2_no_fissure": "Modic type 2, no annular fissure", "others": "All others"}


def fraction(tally: dict[str, Any]) -> str:
    """``n/N (p%)`` over the evaluable participants."""
    if not tally["evaluable"]:
        return "not evaluable"
    return f"{tally['n']}/{tally['evaluable']} ({100 * tally['n'] / tally['evaluable']:.0f}%)"


def rows(table: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(section, label, value) rows of the outcome table, in reading order."""
    out = [("Outcomes", LABELS[k], fraction(v)) for k, v in table["outcomes"].items()]
    second = table["second_injection"]
    out.append(
        ("Second injection", "Participants with a second injection", str(second["participants"]))
    )
    for key in ("improved", "worsened", "unchanged", "not_evaluable"):
        out.append(
            (
                "Second injection",
                f"{key.replace('_', ' ').capitalize()} at month 12 against month 6",
                str(second[key]),
            )
        )
    out += [("MRI at the index disc", LABELS[k], fraction(v)) for k, v in table["mri"].items()]
    for name, group in table["subgroups"].items():
        section = f"Subgroup: {SUBGROUPS[name]} at baseline (n={group['participants']})"
        out.append((section, LABELS["pain_reduced"], fraction(group["pain_reduced"])))
        out.append(
            (section, LABELS["pain_50pct_responder"], fraction(group["pain_50pct_responder"]))
        )
    safety = table["safety"]
    severity = ", ".join(f"{k} {v}" for k, v in safety["by_severity"].items())
    out += [
        ("Safety", "Adverse events", f"{safety['adverse_events']} ({severity})"),
        ("Safety", "Serious adverse events", str(safety["serious"])),
        ("Safety", "Related (certain, probable or possible)", str(safety["related"])),
        ("Safety", "Participants with an adverse event", str(safety["participants_with_ae"])),
    ]
    return out


def title(table: dict[str, Any]) -> str:
    return (
        f"{table['followup']} against {table['baseline']}, {table['participants']} "
        "participants (n/N: N counts the participants with both values)"
    )


def render_text(table: dict[str, Any]) -> str:
    lines = [title(table)]
    width = max(len(label) for _, label, _ in rows(table))
    section = None
    for current, label, value in rows(table):
        if current != section:
            lines += ["", current]
            section = current
        lines.append(f"  {label:<{width}}  {value}")
    return "\n".join(lines) + "\n"


def render_markdown(table: dict[str, Any]) -> str:
    lines = [f"# Study outcomes: {title(table)}"]
    section = None
    for current, label, value in rows(table):
        if current != section:
            lines += ["", f"## {current}", "", "| measure | result |", "|---|---|"]
            section = current
        lines.append(f"| {label} | {value} |")
    return "\n".join(lines) + "\n"


def render_json(table: dict[str, Any]) -> str:
    return json.dumps(table, indent=2) + "\n"
