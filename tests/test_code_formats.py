"""The format checks of external codes: what LOINC, SNOMED CT and RxNorm codes look like."""

from __future__ import annotations

import pytest

from fhir_admsc import terminology as term
from fhir_admsc.terminology import external_code_problem


@pytest.mark.parametrize(
    "code",
    [
        "72514-3",  # NPRS, an observation code with its mod-10 check digit
        "97909-6",  # ODI
        "LA6568-5",  # an answer: "Not at all" (PHQ-9)
        "LP14082-9",  # a part
        "LL358-3",  # an answer list
        "LG41762-2",  # a group
    ],
)
def test_loinc_codes_of_every_kind_pass(code: str) -> None:
    assert external_code_problem(term.LOINC, code) is None


@pytest.mark.parametrize(
    "code",
    ["97909-5", "LX123-4", "LA6568", "la6568-5", "72514", "7251-43", ""],
    ids=[
        "check-digit",
        "unknown-prefix",
        "no-check-digit",
        "lower-case",
        "no-dash",
        "late-dash",
        "empty",
    ],
)
def test_what_is_no_loinc_code_is_refused(code: str) -> None:
    assert external_code_problem(term.LOINC, code) is not None


def test_snomed_and_rxnorm_formats() -> None:
    assert external_code_problem(term.SNOMED, "279039007") is None
    assert external_code_problem(term.SNOMED, "279039008") is not None  # Verhoeff
    assert external_code_problem(term.RXNORM, "161") is None
    assert external_code_problem(term.RXNORM, "R161") is not None
