"""How often `fhir-admsc validate` agrees with the HL7 Java validator on the validator's own test
suite (repository FHIR/fhir-test-cases, folder validator/): a measurement, not a test.

    .venv/bin/python tools/fhir_test_cases.py PATH/TO/fhir-test-cases [--show]
    .venv/bin/python tools/fhir_test_cases.py PATH/TO/fhir-test-cases --copy tests/data/fhir-test-cases

Takes the R4 JSON cases of modules general, profile, bundle, references, extensions and
invariants that load no package, validates each with its supporting files loaded as conformance
resources, and compares the verdict (any error or fatal issue) and the elements the errors name
with the outcome the Java validator recorded (outcomes/java/...). Cases whose every recorded
error rests on a terminology server (the operationoutcome-issue-server extension) are counted
apart. `--copy` copies the cases, their files and the suite's license into a folder (the copy the
test suite runs on).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.validation.hl7_cases import (  # noqa: E402
    needed_files,
    ours,
    recorded,
    same_elements,
    selected,
)


def copy(suite: Path, target: Path, commit: str | None) -> None:
    folder = suite / "validator"
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    kept = [c for c in selected(manifest) if all((folder / f).exists() for f in needed_files(c))]
    if target.exists():
        shutil.rmtree(target)
    for case in kept:
        for name in needed_files(case):
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(folder / name, target / name)
    (target / "manifest.json").write_text(
        json.dumps({"test-cases": kept}, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    shutil.copyfile(suite / "LICENSE.txt", target / "LICENSE.txt")
    commit = (
        commit
        or subprocess.run(
            ["git", "-C", str(suite), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    )
    (target / "SOURCE.md").write_text(
        "# Cases from the HL7 validator's test suite\n\n"
        "Copied unchanged from https://github.com/FHIR/fhir-test-cases, folder `validator/`, "
        f"commit {commit or 'unknown'}, under the Apache License 2.0 (LICENSE.txt here).\n"
        f"`manifest.json` keeps the {len(kept)} entries of the suite's manifest that the test "
        "suite uses; `tools/fhir_test_cases.py --copy` made this folder.\n",
        encoding="utf-8",
    )
    print(f"copied {len(kept)} cases to {target}")


def measure(folder: Path, show: bool) -> None:
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    tally: Counter[str] = Counter()
    for case in selected(manifest):
        if not all((folder / f).exists() for f in needed_files(case)):
            tally["unavailable"] += 1
            continue
        theirs = recorded(folder, case)
        try:
            said = ours(folder, case)
        except Exception as e:  # noqa: BLE001 - a crash is a figure of its own
            tally["crash"] += 1
            print(f"crash {case['name']}: {type(e).__name__}: {e}")
            continue
        kind = "server" if theirs.server_only else "offline"
        verdict = (
            "agree"
            if said.errors == theirs.errors
            else ("false-error" if said.errors else "missed")
        )
        tally[f"{kind} {verdict}"] += 1
        agreed = kind == "offline" and verdict == "agree"
        if agreed and same_elements(said.elements, theirs.elements):
            tally["offline same elements"] += 1
        if show and (
            verdict != "agree" or (agreed and not same_elements(said.elements, theirs.elements))
        ):
            print(f"{kind} {verdict:11} {case['name']}")
            print(f"    ours: {said.messages[:2] or 'no error'}")
            print(f"    java: {sorted(theirs.elements)[:3]}")
    offline = sum(n for k, n in tally.items() if k.startswith("offline") and "elements" not in k)
    print(f"cases: {sum(n for k, n in tally.items() if 'elements' not in k)}; offline: {offline}")
    for key in sorted(tally):
        print(f"  {key:24} {tally[key]}")
    if offline:
        print(
            f"offline agreement: verdict {tally['offline agree'] / offline:.0%}, "
            f"elements {tally['offline same elements'] / offline:.0%}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suite", type=Path, help="a checkout of FHIR/fhir-test-cases")
    parser.add_argument("--show", action="store_true", help="list every disagreement")
    parser.add_argument("--copy", type=Path, help="copy the cases used into this folder")
    parser.add_argument("--commit", help="the suite's commit, when SUITE is no git checkout")
    args = parser.parse_args()
    if args.copy:
        copy(args.suite, args.copy, args.commit)
    else:
        folder = args.suite / "validator"
        measure(folder if folder.is_dir() else args.suite, args.show)


if __name__ == "__main__":
    main()
