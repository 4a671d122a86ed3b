"""`validate --jobs N`: worker processes check the resources, and the report is the one a single
process gives, issue for issue and in the same order, rules across resources included."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from fhir_admsc.bundle import bundle
from fhir_admsc.cli import cli
from fhir_admsc.mappings import study_to_fhir
from fhir_admsc.parallel import SMALLEST_BYTES
from fhir_admsc.synth import synthesize
from fhir_admsc.validation.run import validate_paths


@pytest.fixture(scope="module")
def defective() -> list[dict[str, Any]]:
    """A synthetic study's resources with defects early and late, of one resource and across
    resources: an adverse event that starts before its participant's first procedure, whose
    procedure sits in the other half of the input."""
    resources = list(study_to_fhir(synthesize(40, seed=11)))
    assert len(resources) > 2_000  # enough for the workers to be used
    resources[3]["status"] = "not-a-status"
    resources[-2]["id"] = "bad id"
    for resource in resources[::97]:  # defects all through, in both workers' shares
        resource["implicitRules"] = 5
    event = next(r for r in reversed(resources) if r["resourceType"] == "AdverseEvent")
    subject = event["subject"]["reference"]
    procedures = [
        r
        for r in resources
        if r["resourceType"] == "Procedure" and r["subject"]["reference"] == subject
    ]
    event["date"] = "1990-01-01"
    moved = [r for r in resources if r not in procedures and r is not event]
    # the procedures first, the adverse event last: never in one worker's share alone
    return [*procedures, *moved, event]


def _ndjson(folder: Path, resources: list[dict[str, Any]]) -> Path:
    folder.mkdir()
    (folder / "all.ndjson").write_text("".join(json.dumps(r) + "\n" for r in resources))
    assert (folder / "all.ndjson").stat().st_size >= SMALLEST_BYTES  # the workers are used
    return folder


def _bundle(path: Path, resources: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps(bundle(resources, "collection", "S")))
    return path


@pytest.mark.parametrize("layout", [_ndjson, _bundle], ids=["ndjson", "bundle"])
def test_two_workers_report_what_one_process_reports(tmp_path: Path, defective, layout) -> None:
    source = layout(tmp_path / "input", defective)
    alone, checked = validate_paths([source], jobs=1)
    shared, checked_shared = validate_paths([source], jobs=2)
    assert checked == checked_shared == len(defective)
    assert [str(i) for i in shared] == [str(i) for i in alone]
    rules = {i.rule.rsplit("#", 1)[-1] for i in alone if i.severity == "error"}
    assert "ae-after-first-procedure" in rules  # the rule across the halves was kept
    assert len([i for i in alone if i.severity == "error"]) >= 30


def test_the_command_takes_jobs_and_exits_as_one_process(tmp_path: Path, defective) -> None:
    source = _ndjson(tmp_path / "input", defective)
    runner = CliRunner()
    one = runner.invoke(cli, ["validate", "--jobs", "1", "--format", "json", str(source)])
    two = runner.invoke(cli, ["validate", "-j", "2", "--format", "json", str(source)])
    assert one.exit_code == two.exit_code == 1
    assert one.stdout == two.stdout


def test_a_worker_that_dies_is_an_error_not_a_wait(tmp_path: Path, defective, monkeypatch) -> None:
    import os

    from fhir_admsc.errors import InternalError
    from fhir_admsc.validation import run

    parent, check = os.getpid(), run._check

    def killed_in_workers(*args, **kwargs):
        if os.getpid() != parent:
            os._exit(9)  # as the kernel's out-of-memory killer would end it
        return check(*args, **kwargs)

    monkeypatch.setattr(run, "_check", killed_in_workers)
    source = _ndjson(tmp_path / "input", defective)
    with pytest.raises(InternalError, match="ended abruptly"):
        validate_paths([source], jobs=2)
