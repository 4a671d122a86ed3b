"""Study and subjects: ResearchStudy, sponsor Organization, site Locations, and per participant a Patient,
a ResearchSubject, the index Condition and one Encounter per visit."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from fhir_admsc import terminology as term
from fhir_admsc.mappings.context import (
    FhirIndex,
    StudyContext,
    add_extensions,
    coding,
    concept,
    date_part,
    extension,
    extension_value,
    find_extension,
    iso,
    key_for,
    own_code,
)
from fhir_admsc.study import Arm, Participant, Site, Study, StudyInfo, Visit

SPONSOR_KEY = "sponsor"


def to_fhir(study: Study, ctx: StudyContext) -> Iterator[dict[str, Any]]:
    """The study-level resources, then those of the participants and their visits."""
    yield from study_level(study.info, ctx)
    yield from participants_to_fhir(study, ctx)


def study_level(info: StudyInfo, ctx: StudyContext) -> Iterator[dict[str, Any]]:
    """The resources of study.json alone: ResearchStudy, sponsor Organization, site Locations."""
    yield research_study(info, ctx)
    if info.sponsor is not None:
        yield sponsor(info.sponsor, ctx)
    for site in info.sites or []:
        yield location(site, ctx)


def participants_to_fhir(study: Study, ctx: StudyContext) -> Iterator[dict[str, Any]]:
    """Each participant's Patient, ResearchSubject and Condition, then every visit's Encounter."""
    for participant in study.participants:
        yield patient(participant, ctx)
        yield research_subject(participant, study.info.arm, ctx)
        yield condition(participant, ctx)
    for visit in study.visits:
        yield encounter(visit, ctx)


def research_study(info: StudyInfo, ctx: StudyContext) -> dict[str, Any]:
    r = ctx.resource("ResearchStudy", info.study_id, "research-study", study_link=False)
    if info.registry_id is not None:
        r["identifier"].append(
            {
                "use": "secondary",
                "type": {"text": "Trial registration"},
                "system": term.identifier_system("trial-registration"),
                "value": info.registry_id,
            }
        )
    r["title"] = info.title
    r["status"] = info.status
    r["condition"] = [concept(term.LOW_BACK_PAIN)]
    if info.start or info.end:
        r["period"] = {k: iso(v) for k, v in (("start", info.start), ("end", info.end)) if v}
    if info.sponsor is not None:
        r["sponsor"] = ctx.ref("Organization", SPONSOR_KEY)
    if info.sites:
        r["site"] = [ctx.ref("Location", s.site_id) for s in info.sites]
    arm: dict[str, Any] = {"name": info.arm.name}
    if info.arm.description is not None:
        arm["description"] = info.arm.description
    r["arm"] = [arm]
    return r


def sponsor(name: str, ctx: StudyContext) -> dict[str, Any]:
    r = ctx.resource("Organization", SPONSOR_KEY, "sponsor", study_link=False)
    r["name"] = name
    return r


def location(site: Site, ctx: StudyContext) -> dict[str, Any]:
    r = ctx.resource("Location", site.site_id, "site", study_link=False)
    r["name"] = site.name
    return r


def patient(p: Participant, ctx: StudyContext) -> dict[str, Any]:
    # A Patient is not study data: it is tied to the study through its ResearchSubject.
    r = ctx.resource("Patient", p.participant_id, "patient", study_link=False)
    r["gender"] = p.sex
    if p.birth_year is not None:
        r["birthDate"] = f"{p.birth_year:04d}"
    return r


def research_subject(p: Participant, arm: Arm, ctx: StudyContext) -> dict[str, Any]:
    r = ctx.resource("ResearchSubject", p.participant_id, "research-subject", study_link=False)
    add_extensions(
        r,
        extension("study-site", p.site_id and ctx.ref("Location", p.site_id)),
        extension("withdrawal-reason", p.withdrawal_reason),
    )
    r["status"] = p.status
    r["period"] = {"start": iso(p.enrolled_on)}
    if p.withdrawn_on is not None:
        r["period"]["end"] = iso(p.withdrawn_on)
    r["study"] = ctx.study_ref()
    r["individual"] = ctx.ref("Patient", p.participant_id)
    r["assignedArm"] = arm.name
    return r


def condition(p: Participant, ctx: StudyContext) -> dict[str, Any]:
    r = ctx.resource("Condition", p.participant_id, "condition")
    add_extensions(r, extension("symptom-duration", p.symptom_months))
    r["clinicalStatus"] = {"coding": [coding(term.CONDITION_CLINICAL, "active", "Active")]}
    r["verificationStatus"] = {
        "coding": [coding(term.CONDITION_VERIFICATION, "confirmed", "Confirmed")]
    }
    r["code"] = concept(term.LOW_BACK_PAIN)
    r["bodySite"] = [concept(term.DISC_LEVELS[p.disc_level])]
    r["subject"] = ctx.ref("Patient", p.participant_id)
    r["recordedDate"] = iso(p.enrolled_on)
    return r


def visit_key(participant_id: str, visit: str) -> str:
    return f"{participant_id}/{visit}"


def encounter(v: Visit, ctx: StudyContext) -> dict[str, Any]:
    r = ctx.resource("Encounter", visit_key(v.participant_id, v.visit), "visit")
    r["status"] = "finished"
    r["class"] = coding(*term.AMBULATORY)
    r["type"] = [concept(term.VISITS[v.visit])]
    r["subject"] = ctx.ref("Patient", v.participant_id)
    r["period"] = {"start": iso(v.visit_date), "end": iso(v.visit_date)}
    return r


def visit_code(encounter_: dict[str, Any]) -> str:
    """The study visit code in an Encounter's type."""
    visit = key_for(term.VISITS, own_code((encounter_.get("type") or [{}])[0]))
    if visit is None:
        raise ValueError(f"Encounter/{encounter_.get('id')} has no study visit type")
    return visit


def visit_of(index: FhirIndex, reference: dict[str, Any], where: str) -> str:
    """The visit code of the Encounter a reference points to."""
    return visit_code(index.resolve(reference, where))


def from_fhir(index: FhirIndex) -> dict[str, Any]:
    """Study info, participants and visits read back from their resources."""
    conditions = {
        index.ref_key(c["subject"], "Condition.subject"): c for c in index.of_type("Condition")
    }
    return {
        "info": index.convert(index.study, _study_info),
        "participants": [
            index.convert(s, lambda r, ix: _participant(r, ix, conditions))
            for s in index.of_type("ResearchSubject")
        ],
        "visits": [index.convert(e, _visit) for e in index.of_type("Encounter")],
    }


def _study_info(r: dict[str, Any], index: FhirIndex) -> StudyInfo:
    registry = next(
        (
            i["value"]
            for i in r.get("identifier", [])
            if i.get("system") == term.identifier_system("trial-registration")
        ),
        None,
    )
    sponsor_name = (
        index.resolve(r["sponsor"], "ResearchStudy.sponsor")["name"] if "sponsor" in r else None
    )
    sites = [
        Site(site_id=index.key(loc), name=loc["name"])
        for loc in (index.resolve(ref, "ResearchStudy.site") for ref in r.get("site", []))
    ]
    arm = r["arm"][0]
    period = r.get("period", {})
    return StudyInfo(
        study_id=index.study_id,
        title=r["title"],
        registry_id=registry,
        status=r["status"],
        sponsor=sponsor_name,
        start=period.get("start"),
        end=period.get("end"),
        arm=Arm(name=arm["name"], description=arm.get("description")),
        sites=sites or None,
    )


def _participant(
    subject: dict[str, Any], index: FhirIndex, conditions: dict[str, dict[str, Any]]
) -> Participant:
    patient_ = index.resolve(subject["individual"], "ResearchSubject.individual")
    pid = index.key(patient_)
    cond = conditions.get(pid, {})
    site = find_extension(subject, "study-site")
    birth = patient_.get("birthDate")
    return Participant(
        participant_id=pid,
        sex=patient_["gender"],
        birth_year=None if birth is None else int(birth[:4]),
        site_id=None
        if site is None
        else index.ref_key(site["valueReference"], "ResearchSubject.extension"),
        enrolled_on=subject["period"]["start"],
        disc_level=key_for(term.DISC_LEVELS, own_code((cond.get("bodySite") or [{}])[0])),
        symptom_months=extension_value(cond, "symptom-duration"),
        status=subject["status"],
        withdrawn_on=subject["period"].get("end"),
        withdrawal_reason=extension_value(subject, "withdrawal-reason"),
    )


def _visit(r: dict[str, Any], index: FhirIndex) -> Visit:
    return Visit(
        participant_id=index.ref_key(r["subject"], "Encounter.subject"),
        visit=visit_code(r),
        visit_date=date_part(r["period"]["start"]),
    )
