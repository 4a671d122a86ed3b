"""Speed and agreement of `validate` against the HL7 validator engine on real IGs' examples (the
packages tests/validation/ig_examples.py names, fetched from the npm registry): a benchmark, not
a test. Each tool's start and package loading are reported apart from validation.

    .venv/bin/python tools/ig_examples.py            # builds tests/reference if needed (Maven)
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fhir_admsc.resources import Document  # noqa: E402
from fhir_admsc.validation.run import catalog_for, validate_documents  # noqa: E402
from tests.reference import harness  # noqa: E402
from tests.validation.ig_examples import IGS, extract_examples, fetch, tgz  # noqa: E402


def main() -> None:
    packages = fetch()
    jar = harness.build()
    with tempfile.TemporaryDirectory() as scratch:
        folders, files = [], []
        for spec in IGS:
            folder = Path(scratch) / spec.split("@")[0]
            files += extract_examples(tgz(spec), folder)
            folders.append(folder)
        started = time.perf_counter()
        run = harness.run(jar, packages[0], folders, threads=1, dependencies=packages[1:])
        java_wall = time.perf_counter() - started
        started = time.perf_counter()
        catalog = catalog_for(packages)
        loaded = time.perf_counter() - started
        documents = [Document(str(f), 1, json.loads(f.read_text(encoding="utf-8"))) for f in files]
        started = time.perf_counter()  # as `fhir-admsc validate FOLDER --ig ...` runs them
        checked = validate_documents(documents, catalog)[1]
        ours = time.perf_counter() - started
    summary = run.summary
    java_rate = summary["resources"] / (summary["validate_ms"] / 1000)
    print(f"{len(files)} example files of {', '.join(IGS)}")
    print(
        f"HL7 engine (1 thread): start and packages {summary['startup_ms'] / 1000:.1f} s, "
        f"validation {summary['validate_ms'] / 1000:.1f} s for {summary['resources']} resources "
        f"({java_rate:.0f}/s), whole run {java_wall:.1f} s"
    )
    print(
        f"fhir-admsc: packages {loaded:.1f} s, validation {ours:.1f} s for {checked} resources "
        f"({checked / ours:.0f}/s): {checked / ours / java_rate:.1f}x the engine's rate"
    )


if __name__ == "__main__":
    main()
