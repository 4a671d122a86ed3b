"""The outcome analysis, checked on the demo study: the paper's reported figures hold at month 12."""

from __future__ import annotations

import pytest

from fhir_admsc.mappings import study_from_fhir, study_to_fhir
from fhir_admsc.report import analyse
from fhir_admsc.study import Study

# Bates et al. 2022 abstract and review tables: 7/9 pain reduced, 6/9 most severe pain reduced,
# 5/9 >=50% responders, 5/9 increased work capacity, 3/9 reduced analgesics, nobody worse.
PAPER = {
    "pain_reduced": 7,
    "worst_pain_reduced": 6,
    "pain_50pct_responder": 5,
    "work_capacity_increased": 5,
    "analgesic_reduced": 3,
    "pain_worsened": 0,
}


@pytest.fixture(scope="module")
def table(demo_study: Study) -> dict:
    # Through FHIR and back, as `report` will read it.
    return analyse(study_from_fhir(study_to_fhir(demo_study)))


@pytest.mark.parametrize(("outcome", "count"), list(PAPER.items()), ids=list(PAPER))
def test_paper_figures_hold_on_the_demo(table: dict, outcome: str, count: int) -> None:
    assert table["outcomes"][outcome]["n"] == count
    assert table["outcomes"][outcome]["evaluable"] == 9


def test_second_injection_some_better_some_worse(table: dict) -> None:
    second = table["second_injection"]
    assert second["participants"] == 5
    assert second["improved"] >= 1 and second["worsened"] >= 1
    assert sum(second[k] for k in ("improved", "worsened", "unchanged", "not_evaluable")) == 5


def test_mri_and_safety_on_the_demo(table: dict) -> None:
    assert table["mri"]["protrusion_reduced"]["n"] == 2
    assert table["mri"]["fissure_healed"]["n"] >= 1
    assert table["mri"]["disc_height_loss"]["n"] == 0
    assert table["safety"]["serious"] == 0
    assert table["safety"]["adverse_events"] == 2


def test_modic2_without_fissure_are_the_better_responders(table: dict) -> None:
    modic2, others = table["subgroups"]["modic2_no_fissure"], table["subgroups"]["others"]
    assert modic2["participants"] >= 1
    rate = modic2["pain_50pct_responder"]["n"] / modic2["pain_50pct_responder"]["evaluable"]
    other = others["pain_50pct_responder"]["n"] / others["pain_50pct_responder"]["evaluable"]
    assert rate > other


def test_missing_value_is_not_evaluable_never_a_non_responder(demo_study: Study) -> None:
    outcomes = [
        o for o in demo_study.outcomes if not (o.participant_id == "P09" and o.visit == "month12")
    ]
    table = analyse(demo_study.model_copy(update={"outcomes": outcomes}))
    assert table["outcomes"]["pain_reduced"]["evaluable"] == 8
    assert table["outcomes"]["pain_reduced"]["n"] == 7
