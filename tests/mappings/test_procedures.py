"""Procedures mapping: Procedure, lipoaspirate Specimen, BiologicallyDerivedProduct per lot."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_admsc.mappings import procedures as family
from fhir_admsc.study import Procedure
from tests.mappings.helpers import CTX, by_type, get, ref, small_study

HARVEST = Procedure(
    participant_id="P1",
    procedure_id="H1",
    type="harvest",
    performed_on="2020-01-03",
    volume_ml=80,
    guidance="none",
    notes="lower abdomen",
)
INJECTION = Procedure(
    participant_id="P1",
    procedure_id="I1",
    type="injection",
    performed_on="2020-02-01",
    disc_level="L4-L5",
    injection_number=1,
    cell_dose=10_000_000,
    volume_ml=1.5,
    product_lot="LOT1",
    viability_pct=92.5,
    harvest_procedure_id="H1",
    guidance="fluoroscopy",
)
REPEAT = Procedure.model_validate(
    {
        **INJECTION.model_dump(),
        "procedure_id": "I2",
        "injection_number": 2,
        "performed_on": "2020-08-01",
        "guidance": None,
    },
)


def mapped() -> list[dict[str, Any]]:
    return list(family.to_fhir(small_study(procedures=[HARVEST, INJECTION, REPEAT]), CTX))


def test_resource_counts() -> None:
    resources = mapped()
    assert [r["resourceType"] for r in resources] == [
        "Procedure",
        "Specimen",
        "Procedure",
        "Procedure",
        "BiologicallyDerivedProduct",
    ]


@pytest.mark.parametrize(
    ("index", "path", "expected"),
    [
        pytest.param(0, "code.coding[1].code", "302441008", id="harvest-snomed"),
        pytest.param(
            0, "extension[url=procedure-volume].valueQuantity.value", 80, id="harvest-volume"
        ),
        pytest.param(0, "note[0].text", "lower abdomen", id="notes"),
        pytest.param(
            0,
            "extension[url=imaging-guidance].valueCodeableConcept.coding[0].code",
            "none",
            id="no-guidance",
        ),
        pytest.param(1, "type.coding[0].code", "lipoaspirate", id="specimen-type"),
        pytest.param(1, "collection.quantity.value", 80, id="specimen-volume"),
        pytest.param(1, "collection.collectedDateTime", "2020-01-03", id="specimen-date"),
        pytest.param(2, "code.coding[0].code", "intradiscal-admsc-injection", id="injection-code"),
        pytest.param(2, "performedDateTime", "2020-02-01", id="performed"),
        pytest.param(2, "bodySite[0].coding[0].code", "L4-L5", id="disc-level"),
        pytest.param(
            2,
            "extension[url=cell-dose].valueQuantity",
            {
                "value": 10_000_000,
                "unit": "cells",
                "system": "http://unitsofmeasure.org",
                "code": "{cells}",
            },
            id="cell-dose-in-cells",
        ),
        pytest.param(2, "extension[url=injection-number].valuePositiveInt", 1, id="number"),
        pytest.param(2, "extension[url=procedure-volume].valueQuantity.value", 1.5, id="volume"),
        pytest.param(
            2,
            "extension[url=imaging-guidance].valueCodeableConcept.coding[1].code",
            "44491008",
            id="fluoroscopy-snomed",
        ),
        pytest.param(
            2,
            "extension[url=cell-product].valueReference.reference",
            ref("BiologicallyDerivedProduct", "LOT1"),
            id="product-link",
        ),
        pytest.param(
            2,
            "extension[url=workflow-researchStudy].valueReference.reference",
            ref("ResearchStudy", "S1"),
            id="study-link",
        ),
        pytest.param(3, "extension[url=injection-number].valuePositiveInt", 2, id="repeat"),
        pytest.param(
            3,
            "extension[url=repeat-of].valueReference.reference",
            ref("Procedure", "I1"),
            id="repeat-of-first",
        ),
        pytest.param(4, "productCategory", "cells", id="product-category"),
        pytest.param(4, "identifier[0].value", "S1/LOT1", id="lot-identifier"),
        pytest.param(4, "extension[url=cell-viability].valueQuantity.value", 92.5, id="viability"),
        pytest.param(
            4,
            "extension[url=harvest-procedure].valueReference.reference",
            ref("Procedure", "H1"),
            id="harvest-link",
        ),
        pytest.param(4, "collection.source.reference", ref("Patient", "P1"), id="autologous"),
    ],
)
def test_procedure_mapping(index: int, path: str, expected: Any) -> None:
    assert get(mapped()[index], path) == expected


def test_harvest_carries_no_injection_details() -> None:
    harvest = mapped()[0]
    urls = {e["url"].rsplit("/", 1)[1] for e in harvest["extension"]}
    assert urls == {"workflow-researchStudy", "procedure-volume", "imaging-guidance"}
    assert "bodySite" not in harvest


def test_one_product_per_lot_even_when_shared() -> None:
    products = by_type(mapped(), "BiologicallyDerivedProduct")
    assert len(products) == 1
