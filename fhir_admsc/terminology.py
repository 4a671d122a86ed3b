"""The one table of code systems, codes, units, extensions and profiles used across fhir-admsc.

Mappings, profiles and the report all read this module; a code string written anywhere else is a bug.
Standard codes appear only where the study dictionary marks them verified or corroborated; every other
concept lives in the project's own CodeSystem (``ADMSC``).
"""

from __future__ import annotations

import re
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
AE_SERIOUSNESS_SYSTEM = "http://terminology.hl7.org/CodeSystem/adverse-event-seriousness"
AE_OUTCOME = "http://terminology.hl7.org/CodeSystem/adverse-event-outcome"
AE_CAUSALITY = "http://terminology.hl7.org/CodeSystem/adverse-event-causality-assess"

WORKFLOW_RESEARCH_STUDY = "http://hl7.org/fhir/StructureDefinition/workflow-researchStudy"
# The resource types FHIR R4 allows workflow-researchStudy on (its StructureDefinition's context).
CORE_EXTENSION_CONTEXTS: dict[str, frozenset[str]] = {
    WORKFLOW_RESEARCH_STUDY: frozenset(
        {
            "Composition",
            "Consent",
            "DeviceUseStatement",
            "DiagnosticReport",
            "Encounter",
            "FamilyMemberHistory",
            "Immunization",
            "Media",
            "MedicationAdministration",
            "MedicationDispense",
            "MedicationStatement",
            "Observation",
            "Procedure",
            "QuestionnaireResponse",
            "RiskAssessment",
            "SupplyDelivery",
            "Task",
        }
    ),
}

FHIR_VERSION = "4.0.1"


def study_link_url(resource_type: str) -> str:
    """The extension that ties a resource of this type to its ResearchStudy: the R4 core
    workflow-researchStudy where R4 allows it, the project's research-study elsewhere."""
    if resource_type in CORE_EXTENSION_CONTEXTS[WORKFLOW_RESEARCH_STUDY]:
        return WORKFLOW_RESEARCH_STUDY
    return extension_url("research-study")


def extension_url(name: str) -> str:
    """The canonical URL of one of the project's extensions."""
    return f"{CANONICAL_BASE}/StructureDefinition/{name}"


def value_set_url(name: str) -> str:
    """The canonical URL of one of the project's ValueSets."""
    return f"{CANONICAL_BASE}/ValueSet/{name}"


def profile_url(name: str) -> str:
    """The canonical URL of one of the project's profiles (StructureDefinition ``admsc-<name>``)."""
    return f"{CANONICAL_BASE}/StructureDefinition/admsc-{name}"


def identifier_system(kind: str) -> str:
    """The business-identifier system for one kind of record; values are ``<study_id>/<key>``."""
    return f"{CANONICAL_BASE}/sid/{kind}"


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
    minimum: float | None = None
    maximum: float | None = None
    minimum_exclusive: bool = False
    unit: tuple[str, str] | None = None  # (UCUM code, human unit) for decimal values

    @property
    def profile(self) -> str:
        """The name of the Observation profile of this measure (see ``profile_url``)."""
        return self.concept.code

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
CELLS = ("{cells}", "cells")
MILLILITRES = ("mL", "mL")
MONTHS = ("mo", "months")
DAY = ("d", "day")

_ODI = (LOINC, "97909-6", "Oswestry disability index score ODI")
_MOBILITY = (SNOMED, "301438001", "Ability to mobilize")
_SELFCARE = (SNOMED, "284773001", "Ability to perform personal care activity")
_EQ_VAS = (SNOMED, "736535009", "EuroQol visual analogue score")


def _measures(rows: list[tuple]) -> dict[str, Measure]:
    """Measures from table rows: key, code, display, kind, minimum, maximum, unit, standard codes."""
    table = {}
    for key, code, display, kind, low, high, unit, *standard in rows:
        exclusive = kind == "decimal>"
        table[key] = Measure(
            key,
            Concept(code, display, tuple(standard)),
            "decimal" if exclusive else kind,
            low,
            high,
            exclusive,
            unit,
        )
    return table


# outcomes.csv `measure` and imaging_findings.csv `finding`
NPRS_AVERAGE, NPRS_WORST, ODI, EQ5D_VAS = "nprs_average", "nprs_worst", "odi", "eq5d_vas"
EQ5D_MOBILITY, EQ5D_SELFCARE, EQ5D_ACTIVITIES = "eq5d_mobility", "eq5d_selfcare", "eq5d_activities"
EQ5D_PAIN, EQ5D_ANXIETY = "eq5d_pain", "eq5d_anxiety"
EQ5D_DIMENSIONS = [EQ5D_MOBILITY, EQ5D_SELFCARE, EQ5D_ACTIVITIES, EQ5D_PAIN, EQ5D_ANXIETY]
STANDING_MIN, SITTING_MIN, WALKING_MIN = "standing_min", "sitting_min", "walking_min"
WORK_CAPACITY_PCT = "work_capacity_pct"
DISC_HEIGHT_MM, PFIRRMANN_GRADE, MODIC_TYPE = "disc_height_mm", "pfirrmann_grade", "modic_type"
ANNULAR_FISSURE, PROTRUSION, PROTRUSION_MM = "annular_fissure", "protrusion", "protrusion_mm"

# fmt: off
OUTCOME_MEASURES: dict[str, Measure] = _measures([
    (NPRS_AVERAGE, "nprs-average", "Average pain, 0-10 numeric rating", "integer", 0, 10, None, _NPRS),
    (NPRS_WORST, "nprs-worst", "Most severe pain, 0-10 numeric rating", "integer", 0, 10, None, _NPRS),
    (ODI, "odi", "Oswestry Disability Index total, percent", "decimal", 0, 100, _PERCENT, _ODI),
    (EQ5D_MOBILITY, "eq5d-mobility", "EQ-5D-3L mobility level", "integer", 1, 3, None, _MOBILITY),
    (EQ5D_SELFCARE, "eq5d-selfcare", "EQ-5D-3L self-care level", "integer", 1, 3, None, _SELFCARE),
    (EQ5D_ACTIVITIES, "eq5d-activities", "EQ-5D-3L usual activities level", "integer", 1, 3, None),
    (EQ5D_PAIN, "eq5d-pain", "EQ-5D-3L pain/discomfort level", "integer", 1, 3, None),
    (EQ5D_ANXIETY, "eq5d-anxiety", "EQ-5D-3L anxiety/depression level", "integer", 1, 3, None),
    (EQ5D_VAS, "eq5d-vas", "EQ visual analogue scale", "integer", 0, 100, None, _EQ_VAS),
    (STANDING_MIN, "standing-tolerance", "Standing tolerance", "decimal", 0, None, _MINUTES),
    (SITTING_MIN, "sitting-tolerance", "Sitting tolerance", "decimal", 0, None, _MINUTES),
    (WALKING_MIN, "walking-tolerance", "Walking tolerance", "decimal", 0, None, _MINUTES),
    (WORK_CAPACITY_PCT, "work-capacity", "Work capacity, percent of full", "decimal", 0, 100, _PERCENT),
])

IMAGING_FINDINGS: dict[str, Measure] = _measures([
    (DISC_HEIGHT_MM, "disc-height", "Intervertebral disc height", "decimal>", 0, None, _MM),
    (PFIRRMANN_GRADE, "pfirrmann-grade", "Pfirrmann disc degeneration grade", "integer", 1, 5, None),
    (MODIC_TYPE, "modic-type", "Modic endplate change type (0 = none)", "integer", 0, 3, None),
    (ANNULAR_FISSURE, "annular-fissure", "Annular fissure", "presence", None, None, None),
    (PROTRUSION, "disc-protrusion", "Disc protrusion", "presence", None, None, None),
    (PROTRUSION_MM, "protrusion-size", "Disc protrusion size", "decimal", 0, None, _MM),
])
# fmt: on

ABSENT, PRESENT = "absent", "present"
PRESENCE: dict[str, Concept] = {
    ABSENT: Concept(ABSENT, "Absent"),
    PRESENT: Concept(PRESENT, "Present"),
}

BASELINE, WEEK1, MONTH1, MONTH3 = "baseline", "week1", "month1", "month3"
MONTH6, MONTH9, MONTH12, MONTH24 = "month6", "month9", "month12", "month24"
VISITS: dict[str, Concept] = {
    v.code: v
    for v in [
        Concept(BASELINE, "Baseline visit"),
        Concept(WEEK1, "Week 1 visit"),
        Concept(MONTH1, "Month 1 visit"),
        Concept(MONTH3, "Month 3 visit"),
        Concept(MONTH6, "Month 6 visit"),
        Concept(MONTH9, "Month 9 visit"),
        Concept(MONTH12, "Month 12 visit"),
        Concept(MONTH24, "Month 24 visit"),
    ]
}
VISIT_ORDER = list(VISITS)

LUMBAR_DISCS = ["L1-L2", "L2-L3", "L3-L4", "L4-L5", "L5-S1"]  # top to bottom
DISC_LEVELS: dict[str, Concept] = {
    level: Concept(level, f"Intervertebral disc {level.replace('-', '/')}")
    for level in LUMBAR_DISCS
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
# procedures.csv `type`
HARVEST_TYPE = "harvest"
INJECTION_TYPE = "injection"
PROCEDURES: dict[str, Concept] = {HARVEST_TYPE: HARVEST, INJECTION_TYPE: INJECTION}
INTRADISCAL_ROUTE = (V3_ROUTE, "IDISCINJ", "Injection, intradiscal")
LIPOASPIRATE = Concept("lipoaspirate", "Lipoaspirate (abdominal subcutaneous adipose tissue)")
ADMSC_PRODUCT = Concept("admsc-product", "Culture-expanded autologous adipose-derived MSC")
LUMBAR_MRI = Concept(
    "lumbar-mri", "MRI of the lumbar spine", ((SNOMED, "113091000", "Magnetic resonance imaging"),)
)
RADIOLOGY = (V2_0074, "RAD", "Radiology")
MODALITIES = {"MR": "Magnetic Resonance"}  # DICOM modality codes (imaging_reports.csv `modality`)
AMBULATORY = (V3_ACT_CODE, "AMB", "ambulatory")

FLUOROSCOPY, CT_GUIDANCE, NO_GUIDANCE = "fluoroscopy", "ct", "none"
GUIDANCE: dict[str, Concept] = {
    FLUOROSCOPY: Concept(
        FLUOROSCOPY, "Fluoroscopic guidance", ((SNOMED, "44491008", "Fluoroscopy"),)
    ),
    CT_GUIDANCE: Concept(CT_GUIDANCE, "CT guidance"),
    NO_GUIDANCE: Concept(NO_GUIDANCE, "No imaging guidance"),
}

OPIOID, NSAID, PARACETAMOL, NEUROPATHIC = "opioid", "nsaid", "paracetamol", "neuropathic"
MUSCLE_RELAXANT, OTHER_ANALGESIC = "muscle-relaxant", "other"
ANALGESIC_CATEGORIES: dict[str, Concept] = {
    c.code: c
    for c in [
        Concept(OPIOID, "Opioid analgesic"),
        Concept(NSAID, "Non-steroidal anti-inflammatory drug"),
        Concept(PARACETAMOL, "Paracetamol"),
        Concept(NEUROPATHIC, "Neuropathic pain agent"),
        Concept(MUSCLE_RELAXANT, "Muscle relaxant"),
        Concept(OTHER_ANALGESIC, "Other analgesic"),
    ]
}

# The analgesics a hospital's record may name, by RxNorm ingredient (RXCUI): the name a site types
# (the international non-proprietary name) and the category. ehr-pull maps a medication record by
# this table alone. Codes checked against published ingredient lists: OHDSI concept sets (class
# Ingredient) and the CDC opioid conversion tables; ibuprofen, celecoxib and naproxen corroborated
# by the HL7 PDDI-CDS value sets.
ANALGESICS: dict[str, tuple[str, str]] = {
    "161": ("paracetamol", PARACETAMOL),
    "5640": ("ibuprofen", NSAID),
    "140587": ("celecoxib", NSAID),
    "7258": ("naproxen", NSAID),
    "3355": ("diclofenac", NSAID),
    "10689": ("tramadol", OPIOID),
    "787390": ("tapentadol", OPIOID),
    "7804": ("oxycodone", OPIOID),
    "7052": ("morphine", OPIOID),
    "2670": ("codeine", OPIOID),
    "187832": ("pregabalin", NEUROPATHIC),
    "25480": ("gabapentin", NEUROPATHIC),
    "704": ("amitriptyline", NEUROPATHIC),
    "72625": ("duloxetine", NEUROPATHIC),
}

# Study causality categories, paired with WHO-UMC terms where one has the same meaning.
CERTAIN, PROBABLE, POSSIBLE = "certain", "probable", "possible"
UNLIKELY, UNRELATED = "unlikely", "unrelated"
CAUSALITY: dict[str, Concept] = {
    c.code: c
    for c in [
        Concept(CERTAIN, "Certain", ((AE_CAUSALITY, "Certain", "Certain"),)),
        Concept(PROBABLE, "Probable", ((AE_CAUSALITY, "Probably-Likely", "Probably/Likely"),)),
        Concept(POSSIBLE, "Possible", ((AE_CAUSALITY, "Possible", "Possible"),)),
        Concept(UNLIKELY, "Unlikely", ((AE_CAUSALITY, "Unlikely", "Unlikely"),)),
        Concept(UNRELATED, "Not related"),
        Concept(
            "unassessable",
            "Unassessable",
            ((AE_CAUSALITY, "Unassessable-Unclassifiable", "Unassessable/Unclassifiable"),),
        ),
    ]
}

MILD, MODERATE, SEVERE = "mild", "moderate", "severe"
AE_SEVERITY_DISPLAY = {MILD: "Mild", MODERATE: "Moderate", SEVERE: "Severe"}
AE_SERIOUSNESS = {True: "Serious", False: "Non-serious"}  # R4 codes are capitalised
RESOLVED, RECOVERING, ONGOING = "resolved", "recovering", "ongoing"
AE_OUTCOME_DISPLAY = {
    RESOLVED: "Resolved",
    RECOVERING: "Recovering",
    ONGOING: "Ongoing",
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
WITHDRAWN = "withdrawn"  # the research-subject-status of a participant who left the study
OFF_STUDY = "off-study"  # of one who completed it
RESEARCH_SUBJECT_STATUS = [
    "candidate",
    "eligible",
    "follow-up",
    "ineligible",
    "not-registered",
    OFF_STUDY,
    "on-study",
    "on-study-intervention",
    "on-study-observation",
    "pending-on-study",
    "potential-candidate",
    "screening",
    WITHDRAWN,
]

TAKING, STOPPED = "taking", "stopped"  # medications.csv `status`
MEDICATION_STATUS = {TAKING: "active", STOPPED: "stopped"}


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


# The project's ValueSets: name -> (title, concepts of the project's CodeSystem).
VALUE_SETS: dict[str, tuple[str, dict[str, Concept]]] = {
    "disc-levels": ("Lumbar intervertebral disc levels", DISC_LEVELS),
    "visits": ("Study visits", VISITS),
    "imaging-guidance": ("Imaging guidance of a procedure", GUIDANCE),
    "analgesic-categories": ("Analgesic drug classes", ANALGESIC_CATEGORIES),
    "causality": ("Adverse event causality categories", CAUSALITY),
    "presence": ("Absent or present", PRESENCE),
}


@dataclass(frozen=True)
class ExtensionDef:
    """One of the project's extensions: its value type, where it may be used, and its unit or codes."""

    name: str
    value_type: str  # FHIR type code of value[x]
    description: str
    contexts: tuple[str, ...]  # resource types the extension may be used on
    target: str | None = None  # resource type a Reference value points to
    unit: tuple[str, str] | None = None  # (UCUM code, human unit) of a Quantity or Duration
    value_set: str | None = None  # name of the ValueSet a CodeableConcept value is bound to

    @property
    def url(self) -> str:
        return extension_url(self.name)

    @property
    def value_key(self) -> str:
        """The JSON key of the value: ``valueQuantity``, ``valuePositiveInt``, ..."""
        return "value" + self.value_type[0].upper() + self.value_type[1:]


_RS, _PROC, _BDP, _AE = (
    ("ResearchSubject",),
    ("Procedure",),
    ("BiologicallyDerivedProduct",),
    ("AdverseEvent",),
)

# fmt: off
EXTENSIONS: dict[str, ExtensionDef] = {e.name: e for e in [
    ExtensionDef("research-study", "Reference", "The research study this record belongs to (where "
                 "R4 does not allow workflow-researchStudy)",
                 ("Condition", "Specimen", "BiologicallyDerivedProduct", "ImagingStudy"),
                 target="ResearchStudy"),
    ExtensionDef("study-site", "Reference", "The study site a participant is enrolled at", _RS,
                 target="Location"),
    ExtensionDef("withdrawal-reason", "string", "Why a participant withdrew from the study", _RS),
    ExtensionDef("symptom-duration", "Duration", "Duration of back pain at enrolment",
                 ("Condition",), unit=MONTHS),
    ExtensionDef("injection-number", "positiveInt",
                 "1 for the first intradiscal injection, 2 for the repeat", _PROC),
    ExtensionDef("repeat-of", "Reference", "The first injection that a repeat injection repeats",
                 _PROC, target="Procedure"),
    ExtensionDef("cell-dose", "Quantity", "Number of cells injected", _PROC, unit=CELLS),
    ExtensionDef("procedure-volume", "Quantity",
                 "Injected volume, or the lipoaspirate volume of a harvest", _PROC,
                 unit=MILLILITRES),
    ExtensionDef("imaging-guidance", "CodeableConcept", "Imaging used to guide the procedure",
                 _PROC, value_set="imaging-guidance"),
    ExtensionDef("cell-product", "Reference", "The cell product lot an injection administered",
                 _PROC, target="BiologicallyDerivedProduct"),
    ExtensionDef("cell-viability", "Quantity", "Cell viability of the product lot, percent", _BDP,
                 unit=_PERCENT),
    ExtensionDef("harvest-procedure", "Reference", "The harvest the cell product was expanded from",
                 _BDP, target="Procedure"),
    ExtensionDef("analgesic-category", "CodeableConcept", "Drug class of an analgesic",
                 ("MedicationStatement",), value_set="analgesic-categories"),
    ExtensionDef("ae-causality", "CodeableConcept",
                 "Causality of an adverse event, as the study categorises it", _AE,
                 value_set="causality"),
    ExtensionDef("ae-resolved-date", "date", "Date an adverse event resolved", _AE),
    ExtensionDef("ae-expected", "boolean", "Whether the protocol anticipated the event", _AE),
    ExtensionDef("ae-action-taken", "string", "Action taken in response to an adverse event", _AE),
]}
# fmt: on


# Format rules for external code systems that cannot be enumerated offline.
_LOINC = re.compile(r"\d{1,7}-\d")
# LOINC's other kinds of code: answers (LA6568-5), parts (LP14082-9), answer lists (LL358-3) and
# groups (LG41762-2). Their check digit is not the observation codes' mod-10 one: format only.
_LOINC_OTHER = re.compile(r"L[APLG]\d{1,8}-\d")
_SNOMED = re.compile(r"[1-9]\d{5,17}")
_RXNORM = re.compile(r"\d{1,10}")


def _verhoeff_ok(number: str) -> bool:
    d = [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        [1, 2, 3, 4, 0, 6, 7, 8, 9, 5],
        [2, 3, 4, 0, 1, 7, 8, 9, 5, 6],
        [3, 4, 0, 1, 2, 8, 9, 5, 6, 7],
        [4, 0, 1, 2, 3, 9, 5, 6, 7, 8],
        [5, 9, 8, 7, 6, 0, 4, 3, 2, 1],
        [6, 5, 9, 8, 7, 1, 0, 4, 3, 2],
        [7, 6, 5, 9, 8, 2, 1, 0, 4, 3],
        [8, 7, 6, 5, 9, 3, 2, 1, 0, 4],
        [9, 8, 7, 6, 5, 4, 3, 2, 1, 0],
    ]
    p = [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        [1, 5, 7, 6, 2, 8, 3, 0, 9, 4],
        [5, 8, 0, 3, 7, 9, 6, 1, 4, 2],
        [8, 9, 1, 6, 0, 4, 3, 5, 2, 7],
        [9, 4, 5, 3, 1, 2, 6, 8, 7, 0],
        [4, 2, 8, 6, 5, 7, 3, 9, 0, 1],
        [2, 7, 9, 3, 8, 0, 6, 4, 1, 5],
        [7, 0, 4, 6, 9, 1, 3, 2, 5, 8],
    ]
    check = 0
    for i, digit in enumerate(reversed(number)):
        check = d[check][p[i % 8][int(digit)]]
    return check == 0


def _loinc_ok(code: str) -> bool:
    body, check = code.split("-")
    total = 0
    for i, digit in enumerate(reversed(body)):
        value = int(digit) * (2 if i % 2 == 0 else 1)
        total += value // 10 + value % 10
    return (10 - total % 10) % 10 == int(check)


def external_code_problem(system: str, code: str) -> str | None:
    """Why ``code`` cannot be a code of an external system checked by format, or None."""
    if system == LOINC and not (
        (_LOINC.fullmatch(code) and _loinc_ok(code)) or _LOINC_OTHER.fullmatch(code)
    ):
        return "is not a LOINC code (digits, '-', check digit; or an LA, LP, LL or LG code)"
    if system == SNOMED and not (_SNOMED.fullmatch(code) and _verhoeff_ok(code)):
        return "is not a SNOMED CT identifier (6-18 digits with a Verhoeff check digit)"
    if system == RXNORM and not _RXNORM.fullmatch(code):
        return "is not an RxNorm concept id (digits)"
    return None
