"""Resource ids are RFC 4122 version-5 UUIDs in the project's namespace."""

from __future__ import annotations

import uuid

import pytest

from fhir_admsc import ids


@pytest.mark.parametrize(
    "study_id, resource_type, key",
    [
        pytest.param("ADMSC-01", "Patient", "P01", id="plain"),
        pytest.param("ADMSC-01", "Observation", "P01/month-6/vas-average", id="key-with-slashes"),
        pytest.param("Étude-Ü", "Encounter", "P01/bäseline", id="non-ascii"),
        pytest.param("", "Patient", "", id="empty-parts"),
    ],
)
def test_resource_id_is_uuid5_of_the_namespace(study_id: str, resource_type: str, key: str) -> None:
    made = ids.resource_id(study_id, resource_type, key)
    expected = uuid.uuid5(ids._NAMESPACE, f"{study_id}|{resource_type}|{key}")
    assert made == str(expected)
    assert uuid.UUID(made).version == 5


def test_resource_ids_differ_by_every_part() -> None:
    made = {
        ids.resource_id("S1", "Patient", "P01"),
        ids.resource_id("S2", "Patient", "P01"),
        ids.resource_id("S1", "Encounter", "P01"),
        ids.resource_id("S1", "Patient", "P02"),
    }
    assert len(made) == 4
