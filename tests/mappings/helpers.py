"""A small study to map, and a path helper to read into resources."""

from __future__ import annotations

import re
from typing import Any

from fhir_admsc.mappings.context import StudyContext
from fhir_admsc.study import Participant, Study, StudyInfo, Visit

CTX = StudyContext("S1")


def small_study(**tables: Any) -> Study:
    """One participant P1 with baseline and month12 visits, plus the given table rows."""
    base = {
        "info": StudyInfo(
            study_id="S1", title="Test study", status="active", arm={"name": "arm-a"}
        ),
        "participants": [
            Participant(
                participant_id="P1",
                sex="female",
                enrolled_on="2020-01-01",
                disc_level="L4-L5",
                status="on-study",
            )
        ],
        "visits": [
            Visit(participant_id="P1", visit="baseline", visit_date="2020-01-01"),
            Visit(participant_id="P1", visit="month12", visit_date="2021-01-05"),
        ],
    }
    base.update(tables)
    return Study(**base)


def get(resource: Any, path: str) -> Any:
    """Follow a dotted path with [i] indexes and [url=...] extension picks, e.g.
    ``extension[url=cell-dose].valueQuantity.value`` or ``code.coding[1].code``."""
    value = resource
    for part in path.split("."):
        match = re.fullmatch(r"(\w+)(?:\[(\d+|url=[^\]]+)\])?", part)
        assert match, part
        name, pick = match.groups()
        value = value[name]
        if pick and pick.startswith("url="):
            suffix = pick[4:]
            value = next(e for e in value if e["url"].endswith("/" + suffix))
        elif pick:
            value = value[int(pick)]
    return value


def by_type(resources: list[dict[str, Any]], resource_type: str) -> list[dict[str, Any]]:
    return [r for r in resources if r["resourceType"] == resource_type]


def ref(resource_type: str, key: str) -> str:
    return CTX.ref(resource_type, key)["reference"]
