"""NDJSON is validated line by line in two passes: the same issues as the whole set held in memory,
while only the resources that rules look up in others are kept."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fhir_admsc.bundle import ndjson_files
from fhir_admsc.validation import run
from fhir_admsc.validation.run import validate_paths, validate_resources
from tests.validation.corpus import CASES, demo_resources

# cases across resources (bundle-* cases are about a Bundle's own rules: NDJSON has none)
BUNDLE_CASES = [c for c in CASES if c.kind in ("study-rule", "study-invariant")]


def write_ndjson(folder: Path, resources: list[dict[str, Any]]) -> Path:
    folder.mkdir()
    for name, text in ndjson_files(resources).items():
        (folder / name).write_text(text)
    return folder


def summary(issues) -> list[tuple[str, str, str, str]]:
    """What an issue says, without where the resource was read from (file and line differ)."""
    return sorted(
        (i.severity, i.rule, i.message, i.location.rsplit("*/", 1)[-1].lstrip(".")) for i in issues
    )


@pytest.mark.parametrize("case", BUNDLE_CASES, ids=[c.id for c in BUNDLE_CASES])
def test_streamed_ndjson_gives_the_issues_of_the_whole_set(case, tmp_path: Path) -> None:
    document = case.document()
    resources = [e["resource"] for e in document["entry"]]
    folder = write_ndjson(tmp_path / "nd", resources)
    streamed, checked = validate_paths([folder])
    whole = validate_resources(resources)
    assert checked == len(resources)
    assert summary(streamed) == summary(whole)
    assert any(i.severity == "error" for i in whole)


def test_streaming_keeps_only_what_rules_look_up(tmp_path: Path, monkeypatch) -> None:
    folder = write_ndjson(tmp_path / "nd", list(demo_resources()))
    kept: list[dict[str, Any]] = []
    original = run.Resolver

    def spy(resources=None):
        kept.extend((resources or {}).values())
        return original(resources)

    monkeypatch.setattr(run, "Resolver", spy)
    monkeypatch.setattr(run, "validate_documents", None)  # the whole-set path must not run
    issues, checked = validate_paths([folder])
    assert checked == len(demo_resources()) == 675
    assert [i for i in issues if i.severity == "error"] == []
    assert {r["resourceType"] for r in kept} == {"Procedure"}
    assert len(kept) == sum(r["resourceType"] == "Procedure" for r in demo_resources())


def test_streamed_issues_name_file_and_line(tmp_path: Path) -> None:
    resources = list(demo_resources())
    observation = next(i for i, r in enumerate(resources) if r["resourceType"] == "Observation")
    resources[observation] = {**resources[observation], "status": "draft"}
    folder = write_ndjson(tmp_path / "nd", resources)
    issues, _ = validate_paths([folder])
    errors = [i for i in issues if i.severity == "error"]
    assert errors and all(i.source == str(folder / "Observation.ndjson") for i in errors)
    lines = (folder / "Observation.ndjson").read_text().splitlines()
    assert {json.loads(lines[i.line - 1])["status"] for i in errors} == {"draft"}
