"""How often `fhir-admsc validate` agrees with the HL7 Java validator on the validator's own test
suite (repository FHIR/fhir-test-cases, folder validator/): a measurement, not a test.

    .venv/bin/python tools/fhir_test_cases.py PATH/TO/fhir-test-cases [--show]

Takes the R4 JSON cases of modules general, profile, bundle, references, extensions and
invariants that load no package, validates each with its supporting files loaded as conformance
resources, and compares the verdict (any error or fatal issue) with the outcome the Java validator
recorded (outcomes/java/...). Cases whose recorded outcome rests on a terminology server (an issue
with the operationoutcome-issue-server extension) are counted apart.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fhir_admsc.resources import Document  # noqa: E402
from fhir_admsc.validation.catalog import Catalog, project_catalog  # noqa: E402
from fhir_admsc.validation.run import validate_documents  # noqa: E402

MODULES = {"general", "profile", "bundle", "references", "extensions", "invariants"}
SERVER = "http://hl7.org/fhir/StructureDefinition/operationoutcome-issue-server"


def cases(manifest: dict) -> list[dict]:
    return [
        c
        for c in manifest["test-cases"]
        if c.get("version") == "4.0"
        and c["file"].endswith(".json")
        and c.get("module") in MODULES
        and not c.get("packages")
        and c.get("use-test", True) is not False
        and c.get("java")
    ]


def java_verdict(outcome: dict) -> tuple[bool, bool]:
    """(whether the Java validator found an error, whether its outcome used a server)."""
    issues = outcome.get("issue", [])
    errors = any(i.get("severity") in ("error", "fatal") for i in issues)
    server = any(e.get("url") == SERVER for i in issues for e in i.get("extension", []))
    return errors, server


def our_verdict(folder: Path, case: dict) -> tuple[bool, list[str]]:
    base = project_catalog()
    extra = []
    for name in [*case.get("supporting", []), *case.get("profiles", [])]:
        path = folder / name
        if path.suffix == ".json" and path.exists():
            extra.append(json.loads(path.read_text(encoding="utf-8")))
    catalog = Catalog(
        [*base.structures.values(), *base.value_sets.values(), *base.code_systems.values(), *extra]
    )
    value = json.loads((folder / case["file"]).read_text(encoding="utf-8"))
    issues, _ = validate_documents([Document(case["file"], 1, value)], catalog)
    errors = [str(i) for i in issues if i.severity in ("error", "fatal")]
    return bool(errors), errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suite", type=Path, help="a checkout of FHIR/fhir-test-cases")
    parser.add_argument("--show", action="store_true", help="list every disagreement")
    args = parser.parse_args()
    folder = args.suite / "validator"
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    tally: Counter[str] = Counter()
    for case in cases(manifest):
        recorded = case["java"]
        needed = [folder / case["file"]]
        if not isinstance(recorded, dict):
            needed.append(folder / "outcomes" / recorded)
        if not all(path.exists() for path in needed):  # not in this copy of the suite
            tally["unavailable"] += 1
            continue
        if isinstance(recorded, dict):  # older cases record the outcome in the manifest
            theirs, server = recorded.get("errorCount", 0) > 0, False
        else:
            outcome = json.loads((folder / "outcomes" / recorded).read_text(encoding="utf-8"))
            theirs, server = java_verdict(outcome)
        try:
            ours, said = our_verdict(folder, case)
        except Exception as e:  # noqa: BLE001 - a crash is a figure of its own
            tally["crash"] += 1
            print(f"crash {case['name']}: {type(e).__name__}: {e}")
            continue
        kind = "server" if server else "offline"
        verdict = "agree" if ours == theirs else ("false-error" if ours else "missed")
        tally[f"{kind} {verdict}"] += 1
        if args.show and ours != theirs:
            print(f"{verdict:11} {case['name']}: {said[:1] or 'no error'}")
    offline = sum(n for k, n in tally.items() if k.startswith("offline"))
    print(f"cases: {sum(tally.values())}; offline-judgeable: {offline}")
    for key in sorted(tally):
        print(f"  {key:22} {tally[key]}")
    if offline:
        print(f"offline agreement: {tally['offline agree'] / offline:.0%}")


if __name__ == "__main__":
    main()
