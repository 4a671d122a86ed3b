"""FHIR -> study tables: the reverse mappings give back exactly the tables that were exported."""

from __future__ import annotations

import pytest

from fhir_admsc.errors import InvalidDataError
from fhir_admsc.fhir import parse
from fhir_admsc.mappings import study_from_fhir, study_to_fhir
from fhir_admsc.study import Study


def test_demo_round_trip_is_lossless(demo_study: Study) -> None:
    assert study_from_fhir(study_to_fhir(demo_study)) == demo_study


def test_round_trip_survives_json_and_any_resource_order(demo_study: Study) -> None:
    import json

    resources = [json.loads(json.dumps(r)) for r in study_to_fhir(demo_study)]
    back = study_from_fhir(reversed(resources))
    for attribute in ("participants", "visits", "outcomes", "imaging_findings"):
        assert sorted(map(repr, getattr(back, attribute))) == sorted(
            map(repr, getattr(demo_study, attribute))
        )


def test_every_resource_parses_with_the_fhir_models(demo_study: Study) -> None:
    resources = list(study_to_fhir(demo_study))
    for resource in resources:
        model = parse(resource)
        assert model.id == resource["id"]


def test_ids_and_identifiers_are_unique(demo_study: Study) -> None:
    resources = list(study_to_fhir(demo_study))
    refs = [f"{r['resourceType']}/{r['id']}" for r in resources]
    assert len(set(refs)) == len(refs)
    idents = []
    for r in resources:
        ident = r["identifier"]
        first = ident if isinstance(ident, dict) else ident[0]
        idents.append((first["system"], first["value"]))
    assert len(set(idents)) == len(idents)


def test_every_reference_resolves_inside_the_export(demo_study: Study) -> None:
    resources = list(study_to_fhir(demo_study))
    known = {f"{r['resourceType']}/{r['id']}" for r in resources}

    def references(value):
        if isinstance(value, dict):
            if isinstance(value.get("reference"), str):
                yield value["reference"]
            for v in value.values():
                yield from references(v)
        elif isinstance(value, list):
            for v in value:
                yield from references(v)

    dangling = {ref for r in resources for ref in references(r) if ref not in known}
    assert dangling == set()


def test_reverse_mapping_names_the_resource_that_does_not_fit(demo_study: Study) -> None:
    resources = list(study_to_fhir(demo_study))
    encounter = next(r for r in resources if r["resourceType"] == "Encounter")
    del encounter["type"]
    with pytest.raises(InvalidDataError) as caught:
        study_from_fhir(resources)
    assert f"Encounter/{encounter['id']}" in str(caught.value)


def test_reverse_mapping_needs_exactly_one_study(demo_study: Study) -> None:
    resources = [r for r in study_to_fhir(demo_study) if r["resourceType"] != "ResearchStudy"]
    with pytest.raises(InvalidDataError, match="0 ResearchStudy"):
        study_from_fhir(resources)
