"""The one table of code systems, codes, units, extensions and profiles used across fhir-admsc.

Mappings, profiles and the report all read this module; a code string written anywhere else is a bug.
Standard codes appear only where the study dictionary marks them verified or corroborated; every other
concept lives in the project's own CodeSystem (``ADMSC``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# The canonical base of every artefact the project publishes (profiles, CodeSystem, identifiers).
CANONICAL_BASE = "https://fhir-admsc.org/fhir"

ADMSC = f"{CANONICAL_BASE}/CodeSystem/admsc"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
DICOM_DCM = "http://dicom.nema.org/resources/ontology/DCM"
DICOM_UID = "urn:dicom:uid"
V3_ROUTE = "http://terminology.hl7.org/CodeSystem/v3-RouteOfAdministration"
V3_ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
V2_0074 = "http://terminology.hl7.org/CodeSystem/v2-0074"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
CONDITION_CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
CONDITION_VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
AE_SEVERITY = "http://terminology.hl7.org/CodeSystem/adverse-event-severity"
AE_SERIOUSNESS = "http://terminology.hl7.org/CodeSystem/adverse-event-seriousness"
AE_OUTCOME = "http://terminology.hl7.org/CodeSystem/adverse-event-outcome"
AE_CAUSALITY = "http://terminology.hl7.org/CodeSystem/adverse-event-causality-assess"

WORKFLOW_RESEARCH_STUDY = "http://hl7.org/fhir/StructureDefinition/workflow-researchStudy"

FHIR_VERSION = "4.0.1"


def extension_url(name: str) -> str:
    """The canonical URL of one of the project's extensions."""
    return f"{CANONICAL_BASE}/StructureDefinition/{name}"


def profile_url(name: str) -> str:
    """The canonical URL of one of the project's profiles (StructureDefinition ``admsc-<name>``)."""
    return f"{CANONICAL_BASE}/StructureDefinition/admsc-{name}"


def identifier_system(kind: str) -> str:
    """The business-identifier system for one kind of record; values are ``<study_id>/<key>``."""
    return f"{CANONICAL_BASE}/sid/{kind}"


# Extensions the project defines: name -> (value type, what it carries).
EXTENSIONS: dict[str, tuple[str, str]] = {
    "study-site": ("valueReference", "The study site (Location) a participant is enrolled at"),
    "withdrawal-reason": ("valueString", "Why a participant withdrew from the study"),
    "symptom-duration": ("valueDuration", "Duration of back pain at enrolment"),
    "injection-number": ("valuePositiveInt", "1 for the first injection, 2 for the repeat"),
    "cell-dose": ("valueQuantity", "Number of cells injected"),
    "procedure-volume": (
        "valueQuantity",
        "Injected volume, or the lipoaspirate volume of a harvest",
    ),
    "imaging-guidance": ("valueCodeableConcept", "Imaging used to guide the procedure"),
    "cell-viability": ("valueQuantity", "Cell viability of the product lot, percent"),
    "cell-product": ("valueReference", "The cell product lot an injection administered"),
    "harvest-procedure": ("valueReference", "The harvest the cell product was expanded from"),
    "analgesic-category": ("valueCodeableConcept", "Drug class of an analgesic"),
    "ae-causality": (
        "valueCodeableConcept",
        "Causality of an adverse event as recorded by the study",
    ),
    "ae-resolved-date": ("valueDate", "Date an adverse event resolved"),
    "ae-expected": ("valueBoolean", "Whether the protocol anticipated the adverse event"),
    "ae-action-taken": ("valueString", "Action taken in response to an adverse event"),
}


@dataclass(frozen=True)
class Concept:
    """A concept of the project's CodeSystem, with the standard codings that mean the same."""

    code: str
    display: str
    standard: tuple[tuple[str, str, str], ...] = ()  # (system, code, display)

    def codings(self) -> list[dict[str, str]]:
        """The Coding list: the project's code first, then verified standard codes."""
        own = [{"system": ADMSC, "code": self.code, "display": self.display}]
        return own + [{"system": s, "code": c, "display": d} for s, c, d in self.standard]


ValueKind = Literal["integer", "decimal", "presence"]


@dataclass(frozen=True)
class Measure:
    """One kind of observation: an outcome measure or an imaging finding."""

    key: str  # the value of outcomes.csv `measure` or imaging_findings.csv `finding`
    concept: Concept
    kind: ValueKind
    profile: str  # profile name, see profile_url()
    minimum: float | None = None
    maximum: float | None = None
    minimum_exclusive: bool = False
    unit: tuple[str, str] | None = None  # (UCUM code, human unit) for decimal values

    def expected(self) -> str:
        """A human description of the allowed values, for error messages."""
        if self.kind == "presence":
            return "absent or present"
        what = "an integer" if self.kind == "integer" else "a number"
        if self.minimum is not None and self.maximum is not None:
            return f"{what} from {self.minimum:g} to {self.maximum:g}"
        if self.minimum is not None:
            return f"{what} {'>' if self.minimum_exclusive else '>='} {self.minimum:g}"
        return what


_NPRS = (LOINC, "72514-3", "Pain severity - 0-10 verbal numeric rating [Score] - Reported")
_MINUTES = ("min", "minutes")
_PERCENT = ("%", "percent")
_MM = ("mm", "millimetres")

OUTCOME_MEASURES: dict[str, Measure] = {
    m.key: m
    for m in [
        Measure(
            "nprs_average",
            Concept("nprs-average", "Average pain, 0-10 numeric rating", (_NPRS,)),
            "integer",
            "pain-score",
            0,
            10,
        ),
        Measure(
            "nprs_worst",
            Concept("nprs-worst", "Most severe pain, 0-10 numeric rating", (_NPRS,)),
            "integer",
            "pain-score",
            0,
            10,
        ),
        Measure(
            "odi",
            Concept(
                "odi",
                "Oswestry Disability Index total, percent",
                ((LOINC, "97909-6", "Oswestry disability index score ODI"),),
            ),
            "decimal",
            "odi",
            0,
            100,
            unit=_PERCENT,
        ),
        Measure(
            "eq5d_mobility",
            Concept(
                "eq5d-mobility",
                "EQ-5D-3L mobility level",
                ((SNOMED, "301438001", "Ability to mobilize"),),
            ),
            "integer",
            "eq5d-level",
            1,
            3,
        ),
        Measure(
            "eq5d_selfcare",
            Concept(
                "eq5d-selfcare",
                "EQ-5D-3L self-care level",
                ((SNOMED, "284773001", "Ability to perform personal care activity"),),
            ),
            "integer",
            "eq5d-level",
            1,
            3,
        ),
        Measure(
            "eq5d_activities",
            Concept("eq5d-activities", "EQ-5D-3L usual activities level"),
            "integer",
            "eq5d-level",
            1,
            3,
        ),
        Measure(
            "eq5d_pain",
            Concept("eq5d-pain", "EQ-5D-3L pain/discomfort level"),
            "integer",
            "eq5d-level",
            1,
            3,
        ),
        Measure(
            "eq5d_anxiety",
            Concept("eq5d-anxiety", "EQ-5D-3L anxiety/depression level"),
            "integer",
            "eq5d-level",
            1,
            3,
        ),
        Measure(
            "eq5d_vas",
            Concept(
                "eq5d-vas",
                "EQ visual analogue scale",
                ((SNOMED, "736535009", "EuroQol visual analogue score"),),
            ),
            "integer",
            "eq5d-vas",
            0,
            100,
        ),
        Measure(
            "standing_min",
            Concept("standing-tolerance", "Standing tolerance"),
            "decimal",
            "tolerance",
            0,
            unit=_MINUTES,
        ),
        Measure(
            "sitting_min",
            Concept("sitting-tolerance", "Sitting tolerance"),
            "decimal",
            "tolerance",
            0,
            unit=_MINUTES,
        ),
        Measure(
            "walking_min",
            Concept("walking-tolerance", "Walking tolerance"),
            "decimal",
            "tolerance",
            0,
            unit=_MINUTES,
        ),
        Measure(
            "work_capacity_pct",
            Concept("work-capacity", "Work capacity, percent of full"),
            "decimal",
            "work-capacity",
            0,
            100,
            unit=_PERCENT,
        ),
    ]
}

IMAGING_FINDINGS: dict[str, Measure] = {
    m.key: m
    for m in [
        Measure(
            "disc_height_mm",
            Concept("disc-height", "Intervertebral disc height"),
            "decimal",
            "disc-height",
            0,
            minimum_exclusive=True,
            unit=_MM,
        ),
        Measure(
            "pfirrmann_grade",
            Concept("pfirrmann-grade", "Pfirrmann disc degeneration grade"),
            "integer",
            "pfirrmann-grade",
            1,
            5,
        ),
        Measure(
            "modic_type",
            Concept("modic-type", "Modic endplate change type (0 = none)"),
            "integer",
            "modic-type",
            0,
            3,
        ),
        Measure(
            "annular_fissure",
            Concept("annular-fissure", "Annular fissure"),
            "presence",
            "disc-finding",
        ),
        Measure(
            "protrusion", Concept("disc-protrusion", "Disc protrusion"), "presence", "disc-finding"
        ),
        Measure(
            "protrusion_mm",
            Concept("protrusion-size", "Disc protrusion size"),
            "decimal",
            "protrusion-size",
            0,
            unit=_MM,
        ),
    ]
}

PRESENCE: dict[str, Concept] = {
    "absent": Concept("absent", "Absent"),
    "present": Concept("present", "Present"),
}

VISITS: dict[str, Concept] = {
    v.code: v
    for v in [
        Concept("baseline", "Baseline visit"),
        Concept("week1", "Week 1 visit"),
        Concept("month1", "Month 1 visit"),
        Concept("month3", "Month 3 visit"),
        Concept("month6", "Month 6 visit"),
        Concept("month9", "Month 9 visit"),
        Concept("month12", "Month 12 visit"),
        Concept("month24", "Month 24 visit"),
    ]
}
VISIT_ORDER = list(VISITS)

DISC_LEVELS: dict[str, Concept] = {
    level: Concept(level, f"Intervertebral disc {level.replace('-', '/')}")
    for level in ["L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1"]
}

LOW_BACK_PAIN = Concept(
    "discogenic-low-back-pain",
    "Discogenic low back pain",
    ((SNOMED, "279039007", "Low back pain"),),
)
HARVEST = Concept(
    "adipose-harvest",
    "Abdominal lipoaspiration for adipose-derived cells",
    ((SNOMED, "302441008", "Liposuction of subcutaneous tissue"),),
)
INJECTION = Concept(
    "intradiscal-admsc-injection",
    "Intradiscal injection of autologous adipose-derived mesenchymal stem cells",
)
PROCEDURES: dict[str, Concept] = {"harvest": HARVEST, "injection": INJECTION}
INTRADISCAL_ROUTE = (V3_ROUTE, "IDISCINJ", "Injection, intradiscal")
LIPOASPIRATE = Concept("lipoaspirate", "Lipoaspirate (abdominal subcutaneous adipose tissue)")
ADMSC_PRODUCT = Concept("admsc-product", "Culture-expanded autologous adipose-derived MSC")
LUMBAR_MRI = Concept(
    "lumbar-mri", "MRI of the lumbar spine", ((SNOMED, "113091000", "Magnetic resonance imaging"),)
)
RADIOLOGY = (V2_0074, "RAD", "Radiology")
MODALITIES = {"MR": "Magnetic Resonance"}  # DICOM modality codes (imaging_reports.csv `modality`)
AMBULATORY = (V3_ACT_CODE, "AMB", "ambulatory")

GUIDANCE: dict[str, Concept] = {
    "fluoroscopy": Concept(
        "fluoroscopy", "Fluoroscopic guidance", ((SNOMED, "44491008", "Fluoroscopy"),)
    ),
    "ct": Concept("ct", "CT guidance"),
    "none": Concept("none", "No imaging guidance"),
}

ANALGESIC_CATEGORIES: dict[str, Concept] = {
    c.code: c
    for c in [
        Concept("opioid", "Opioid analgesic"),
        Concept("nsaid", "Non-steroidal anti-inflammatory drug"),
        Concept("paracetamol", "Paracetamol"),
        Concept("neuropathic", "Neuropathic pain agent"),
        Concept("muscle-relaxant", "Muscle relaxant"),
        Concept("other", "Other analgesic"),
    ]
}

# Study causality categories, paired with WHO-UMC terms where one has the same meaning.
CAUSALITY: dict[str, Concept] = {
    c.code: c
    for c in [
        Concept("certain", "Certain", ((AE_CAUSALITY, "Certain", "Certain"),)),
        Concept("probable", "Probable", ((AE_CAUSALITY, "Probably-Likely", "Probably/Likely"),)),
        Concept("possible", "Possible", ((AE_CAUSALITY, "Possible", "Possible"),)),
        Concept("unlikely", "Unlikely", ((AE_CAUSALITY, "Unlikely", "Unlikely"),)),
        Concept("unrelated", "Not related"),
        Concept(
            "unassessable",
            "Unassessable",
            ((AE_CAUSALITY, "Unassessable-Unclassifiable", "Unassessable/Unclassifiable"),),
        ),
    ]
}

AE_SEVERITY_DISPLAY = {"mild": "Mild", "moderate": "Moderate", "severe": "Severe"}
AE_SERIOUSNESS_DISPLAY = {"serious": "Serious", "non-serious": "Non-serious"}
AE_OUTCOME_DISPLAY = {
    "resolved": "Resolved",
    "recovering": "Recovering",
    "ongoing": "Ongoing",
    "resolvedWithSequelae": "Resolved with Sequelae",
    "fatal": "Fatal",
    "unknown": "Unknown",
}

# FHIR R4 research-study-status and research-subject-status codes (required bindings).
RESEARCH_STUDY_STATUS = [
    "active",
    "administratively-completed",
    "approved",
    "closed-to-accrual",
    "closed-to-accrual-and-intervention",
    "completed",
    "disapproved",
    "in-review",
    "temporarily-closed-to-accrual",
    "temporarily-closed-to-accrual-and-intervention",
    "withdrawn",
]
RESEARCH_SUBJECT_STATUS = [
    "candidate",
    "eligible",
    "follow-up",
    "ineligible",
    "not-registered",
    "off-study",
    "on-study",
    "on-study-intervention",
    "on-study-observation",
    "pending-on-study",
    "potential-candidate",
    "screening",
    "withdrawn",
]

MEDICATION_STATUS = {"taking": "active", "stopped": "stopped"}


def all_concepts() -> list[Concept]:
    """Every concept of the project's CodeSystem, each once, in a stable order."""
    seen: dict[str, Concept] = {}
    groups: list[list[Concept]] = [
        [m.concept for m in OUTCOME_MEASURES.values()],
        [m.concept for m in IMAGING_FINDINGS.values()],
        list(PRESENCE.values()),
        list(VISITS.values()),
        list(DISC_LEVELS.values()),
        [LOW_BACK_PAIN, HARVEST, INJECTION, LIPOASPIRATE, ADMSC_PRODUCT, LUMBAR_MRI],
        list(GUIDANCE.values()),
        list(ANALGESIC_CATEGORIES.values()),
        list(CAUSALITY.values()),
    ]
    for group in groups:
        for concept in group:
            seen.setdefault(concept.code, concept)
    return list(seen.values())
