"""The validator against its corpus: every broken case is caught at the right place by the right
rule, and every clean case passes."""

from __future__ import annotations

import pytest

from fhir_admsc.validation.issues import Issue, at_least
from fhir_admsc.validation.run import validate_resources
from tests.validation.corpus import CASES, Case

CLEAN = [c for c in CASES if c.kind == "clean"]
BROKEN = [c for c in CASES if c.kind != "clean"]


def errors_of(case: Case) -> list[Issue]:
    """The issues of the case at its severity or above (errors, or warnings for the few cases
    whose rule only warns)."""
    return at_least(validate_resources([case.document()]), case.severity)


@pytest.mark.parametrize("case", CLEAN, ids=[c.id for c in CLEAN])
def test_clean_cases_pass(case: Case) -> None:
    assert errors_of(case) == []


@pytest.mark.parametrize("case", BROKEN, ids=[c.id for c in BROKEN])
def test_each_broken_case_is_caught_where_and_by_what_it_should(case: Case) -> None:
    errors = errors_of(case)
    assert errors, "no error reported"
    matching = [
        e for e in errors if e.location.endswith(case.location) and e.rule.endswith(case.rule)
    ]
    assert matching, "\n".join(str(e) for e in errors)


def test_corpus_covers_every_rule_kind() -> None:
    kinds = {c.kind for c in BROKEN}
    assert kinds >= {
        "structure",
        "cardinality",
        "pattern",
        "fixed",
        "binding",
        "type",
        "reference",
        "extension-slice",
        "extension-definition",
        "invariant",
        "profile",
        "code-system",
        "code-format",
        "base-binding",
        "base-invariant",
        "bundle",
        "study-invariant",
        "study-rule",
    }


def test_export_of_a_larger_study_validates_clean(demo_study) -> None:
    from fhir_admsc.bundle import bundle
    from fhir_admsc.mappings import study_to_fhir
    from tests.helpers import scaled_study

    study = scaled_study(demo_study, 3)
    resources = list(study_to_fhir(study))
    assert len(resources) > 2000
    issues = validate_resources([bundle(resources, "transaction", study.info.study_id)])
    assert at_least(issues, "warning") == []
