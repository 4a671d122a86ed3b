"""The SARIF report is valid SARIF 2.1.0 (checked against the OASIS schema)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from fhir_admsc.validation.issues import Issue
from fhir_admsc.validation.reports import sarif
from tests.conftest import DATA


def schema(node_modules: Path) -> dict:
    path = node_modules / "@microsoft" / "jest-sarif" / "lib" / "schemas" / "sarif-2.1.0-rtm.5.json"
    return json.loads(path.read_text())


def test_golden_sarif_report_is_valid(node_modules: Path) -> None:
    report = json.loads((DATA / "validation" / "report.sarif").read_text())
    jsonschema.validate(report, schema(node_modules))
    assert len(report["runs"][0]["results"]) == 2


def test_sarif_without_issues_or_files_is_valid(node_modules: Path) -> None:
    jsonschema.validate(json.loads(sarif([], 0)), schema(node_modules))
    issue = Issue("warning", "invariant", "m", "Patient.gender", "r", "Patient/1")
    jsonschema.validate(json.loads(sarif([issue], 1)), schema(node_modules))


def test_schema_rejects_a_broken_report(node_modules: Path) -> None:
    report = json.loads((DATA / "validation" / "report.sarif").read_text())
    report["runs"][0]["results"][0]["level"] = "fatal"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(report, schema(node_modules))
