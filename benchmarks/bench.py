"""Throughput of fhir-admsc on one core, beside baselines measured in the same run.

Run by hand from the repository root (not in CI):

    python benchmarks/bench.py [--copies 20]

The study is the demo study copied ``--copies`` times under new participant ids.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fhir_admsc.bundle import bundle, bundle_json  # noqa: E402
from fhir_admsc.cli import demo_folder  # noqa: E402
from fhir_admsc.fhir import model_class  # noqa: E402
from fhir_admsc.mappings import study_to_fhir  # noqa: E402
from fhir_admsc.tables import read_study  # noqa: E402
from fhir_admsc.validation.run import validate_resources  # noqa: E402
from tests.helpers import scaled_study  # noqa: E402


def timed(function):
    start = time.perf_counter()
    result = function()
    return result, time.perf_counter() - start


def rate(count: int, seconds: float) -> str:
    return f"{count / seconds:>10,.0f} resources/s  ({seconds:.2f} s)"


def reference(payload: dict, count: int) -> None:
    """The HL7 validator engine on the same Bundle, in one JVM; startup timed apart."""
    import tempfile

    from tests.reference import harness

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bundle.json"
        path.write_text(json.dumps(payload))
        summary = harness.run(harness.build(), harness.write_package(Path(folder)), [path]).summary
    seconds = summary["validate_ms"] / 1000
    print(
        f"         HL7 validator engine (reference)  {rate(count, seconds)}  "
        f"JVM-side startup {summary['startup_ms'] / 1000:.1f} s apart"
    )
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"peak memory (reference JVM)                {children:>10,.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=20)
    parser.add_argument(
        "--reference",
        action="store_true",
        help="also time the HL7 validator engine (Java; tests/reference) on the "
        "same export, JVM start reported apart",
    )
    args = parser.parse_args()

    study = scaled_study(read_study(demo_folder()), args.copies)
    resources, _ = timed(lambda: list(study_to_fhir(study)))
    count = len(resources)
    print(f"study: {len(study.participants)} participants, {count} resources")

    _, export_s = timed(
        lambda: bundle_json(bundle(list(study_to_fhir(study)), "transaction", study.info.study_id))
    )

    def models_baseline() -> None:
        for r in resources:
            model_class(r["resourceType"]).model_validate(r).model_dump_json()

    _, baseline_s = timed(models_baseline)
    print(f"export   fhir-admsc (map + JSON)           {rate(count, export_s)}")
    print(f"         fhir.resources build + serialise  {rate(count, baseline_s)}")
    print(f"         ratio                             {baseline_s / export_s:>10.1f}x")

    payload = json.loads(json.dumps(bundle(resources, "transaction", study.info.study_id)))
    issues, validate_s = timed(lambda: validate_resources([payload]))

    def parse_baseline() -> None:
        for r in resources:
            model_class(r["resourceType"]).model_validate(r)

    _, parse_s = timed(parse_baseline)
    errors = sum(i.severity in ("error", "fatal") for i in issues)
    print(f"validate fhir-admsc (all layers)           {rate(count, validate_s)}  {errors} errors")
    print(f"         fhir.resources model_validate     {rate(count, parse_s)}")
    print(f"         ratio                             {parse_s / validate_s:>10.2f}x")
    if args.reference:
        reference(payload, count)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory (this process)                 {peak:>10,.0f} MiB")


if __name__ == "__main__":
    main()
