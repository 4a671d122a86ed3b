"""Bundle text: written entry by entry, the same text as the Bundle built whole, and valid JSON."""

from __future__ import annotations

import json

import pytest

from fhir_admsc.bundle import bundle, bundle_json, bundle_text
from tests.validation.corpus import demo_resources


@pytest.mark.parametrize("kind", ["transaction", "collection"])
@pytest.mark.parametrize("count", [0, 1, 675], ids=["empty", "one", "demo"])
def test_bundle_text_equals_the_bundle_built_whole(kind: str, count: int) -> None:
    resources = list(demo_resources())[:count]
    text = bundle_text(iter(resources), kind, "ADMSC-FSO794")  # type: ignore[arg-type]
    assert text == bundle_json(bundle(resources, kind, "ADMSC-FSO794"))  # type: ignore[arg-type]
    parsed = json.loads(text)
    assert [e["resource"] for e in parsed.get("entry", [])] == resources
    assert len(text.splitlines()) == (len(resources) + 7 if resources else 6)
