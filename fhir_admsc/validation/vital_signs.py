"""Observations R4 requires to conform to a vital signs profile, by their code.

R4 (observation-vitalsigns.html): "If a resource has one of these codes, it SHALL conform to the
profile". The codes below are the specification's own table widened, as the HL7 validator
widens it, to the LOINC and SNOMED CT codes of the same measurement (an oral temperature is a
body temperature). The first kind whose codes the Observation carries wins: LOINC before SNOMED.
"""

from __future__ import annotations

from typing import Any

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
PROFILE_BASE = "http://hl7.org/fhir/StructureDefinition/"

# (profile id, name, system, codes): checked in this order.
KINDS: tuple[tuple[str, str, str, frozenset[str]], ...] = tuple(
    (profile, name, system, frozenset(codes.split()))
    for profile, name, system, codes in (
        ("vitalspanel", "Vital Signs Panel", LOINC, "85353-1"),
        (
            "resprate",
            "Respiratory Rate",
            LOINC,
            "9279-1 76170-0 76172-6 76171-8 19840-8 33438-3 76270-8 11291-2",
        ),
        (
            "heartrate",
            "Heart rate",
            LOINC,
            "8867-4 60978-4 73795-7 73799-9 76476-1 76477-9 8889-8 8890-6 8891-4 8892-2 8893-0 "
            "40443-4 55425-3 68999-2 11328-2 69000-8 8886-4",
        ),
        (
            "oxygensat",
            "Oxygen saturation",
            LOINC,
            "2708-6 59408-5 19224-5 20564-1 2709-4 2710-2 2713-6 51733-4 59417-6 89276-0 97549-0",
        ),
        (
            "bodytemp",
            "Body temperature",
            LOINC,
            "8310-5 60834-9 60835-6 60836-4 60838-0 60955-2 61009-7 75539-7 75987-8 76010-8 "
            "76011-6 76278-1 8309-7 8328-7 8329-5 8330-3 8331-1 8332-9 8333-7 8334-5 91371-5 "
            "98657-0 98663-8",
        ),
        ("bodyheight", "Body height", LOINC, "8302-2 3137-7 3138-5 8306-3 8308-9"),
        ("headcircum", "Head circumference", LOINC, "9843-4 8287-5"),
        (
            "bodyweight",
            "Body weight",
            LOINC,
            "29463-7 3141-9 3142-7 75292-3 79348-9 8350-1 8351-9",
        ),
        ("bmi", "Body mass index", LOINC, "39156-5 89270-3"),
        (
            "bp",
            "Blood pressure systolic and diastolic",
            LOINC,
            "85354-9 35094-2 8459-0 76534-7 55284-4 8480-6",
        ),
        ("vitalspanel", "Vital Signs Panel", SNOMED, "46680005"),
        ("resprate", "Respiratory Rate", SNOMED, "86290005 271625008 271306003"),
        (
            "heartrate",
            "Heart rate",
            SNOMED,
            "271306003 249043002 444981005 399017001 251670001 429525003 429614003",
        ),
        ("oxygensat", "Oxygen saturation", SNOMED, "442476006 431314004"),
        (
            "bodytemp",
            "Body temperature",
            SNOMED,
            "386725007 276885007 300076005 1222808002 364246006 307047009 708499008 431598003 "
            "698831002 698832009 415882003 415974002 415929009 415945006",
        ),
        (
            "bodyheight",
            "Body height",
            SNOMED,
            "1153637007 1162419008 50373000 1162418000 1230278008 1162392001 1162417005",
        ),
        ("headcircum", "Head circumference", SNOMED, "363812007 169876006 1269262007 363811000"),
        (
            "bodyweight",
            "Body weight",
            SNOMED,
            "735395000 425024002 424927000 784399000 1162416001 1162415002",
        ),
        ("bmi", "Body mass index", SNOMED, "60621009"),
        (
            "bp",
            "Blood pressure systolic and diastolic",
            SNOMED,
            "251076008 163033001 163035008 386534000 386536003 271649006 271650006 407556006 "
            "407554009 716579001 399304008",
        ),
    )
)


# (system, code) -> the rank of its kind in KINDS: the lowest rank among an Observation's codes wins
_RANK = {
    (system, code): rank
    for rank, (_, _, system, codes) in reversed(list(enumerate(KINDS)))
    for code in codes
}


def required_profile(observation: dict[str, Any]) -> tuple[str, str] | None:
    """(profile URL, why) for an Observation whose code makes it a vital sign, else None."""
    code = observation.get("code")
    codings = code.get("coding") if isinstance(code, dict) else None
    if not isinstance(codings, list):
        return None
    found = [
        (rank, c["code"])
        for c in codings
        if isinstance(c, dict)
        and isinstance(c.get("code"), str)
        and (rank := _RANK.get((c.get("system"), c["code"]))) is not None
    ]
    if not found:
        return None
    rank, value = min(found)
    profile, name, system, _ = KINDS[rank]
    label = "LOINC" if system == LOINC else "SNOMED CT"
    return (
        PROFILE_BASE + profile,
        f"the {label} code {value} makes it a {name} observation, which R4 requires to conform "
        f"to {PROFILE_BASE + profile}",
    )
