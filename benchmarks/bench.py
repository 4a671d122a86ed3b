"""Throughput and memory of fhir-admsc, each beside a baseline measured in the same run.

Run by hand from the repository root (not in CI), after the test install of the README:

    .venv/bin/python benchmarks/bench.py [--participants 300] [--big 20000] [--push 40]

Figures are CPU seconds of this process (``time.process_time``) on one core, so that other load on
the machine disturbs them less; whole commands are timed by the wall clock and their peak memory is
the child's maximum resident set size.

- export: mapping a synthetic study and serialising it (transaction Bundle; NDJSON lines), beside
  building and serialising the same resources with fhir.resources models;
- validate: every layer of ``fhir-admsc validate`` on that Bundle, beside fhir.resources'
  ``model_validate`` alone on the same resources;
- push: ``fhir-admsc push`` of a synthetic study into a fresh sekmet-fhir server on loopback,
  beside one PUT request per resource of a same-sized study into the same server;
- memory: ``fhir-admsc export --format ndjson`` of a ``--big``-participant synthetic study.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fhir_admsc.bundle import bundle_text, ndjson_line  # noqa: E402
from fhir_admsc.fhir import model_class  # noqa: E402
from fhir_admsc.mappings import study_to_fhir  # noqa: E402
from fhir_admsc.synth import synthesize  # noqa: E402
from fhir_admsc.validation.run import validate_resources  # noqa: E402

CLI = [sys.executable, "-m", "fhir_admsc"]


def cpu(function: Callable[[], Any]) -> tuple[Any, float]:
    start = time.process_time()
    result = function()
    return result, time.process_time() - start


def line(label: str, count: int, seconds: float, extra: str = "") -> None:
    print(f"  {label:<44} {count / seconds:>10,.0f} resources/s  ({seconds:6.2f} s){extra}")


def ratio(label: str, value: float) -> None:
    print(f"  {label:<44} {value:>10.1f}x")


def run(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak resident MiB of one command (which must succeed).

    GNU time measures the peak: a child forked from this (large) process would count the pages it
    shared with it before exec.
    """
    start = time.perf_counter()
    done = subprocess.run(
        ["/usr/bin/time", "-f", "%M", *command], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"failed: {' '.join(command)}\n{done.stderr.decode()[-2000:]}")
    return seconds, int(done.stderr.decode().split()[-1]) / 1024


def export_and_validate(participants: int, with_reference: bool) -> None:
    study = synthesize(participants, seed=1)
    resources = list(study_to_fhir(study))
    count = len(resources)
    print(f"study: {participants} synthetic participants, {count:,} resources")

    print("export")
    _, bundle_s = cpu(lambda: bundle_text(study_to_fhir(study), "transaction", study.info.study_id))
    _, ndjson_s = cpu(lambda: [ndjson_line(r) for r in study_to_fhir(study)])

    def models() -> None:
        for r in resources:
            model_class(r["resourceType"]).model_validate(r).model_dump_json()

    _, models_s = cpu(models)
    line("fhir-admsc map + transaction Bundle JSON", count, bundle_s)
    line("fhir-admsc map + NDJSON lines", count, ndjson_s)
    line("baseline: fhir.resources build + serialise", count, models_s)
    ratio("speed-up (Bundle)", models_s / bundle_s)

    print("validate")
    payload = json.loads(bundle_text(resources, "transaction", study.info.study_id))
    issues, validate_s = cpu(lambda: validate_resources([payload]))
    errors = sum(i.severity in ("error", "fatal") for i in issues)

    def parse() -> None:
        for r in resources:
            model_class(r["resourceType"]).model_validate(r)

    _, parse_s = cpu(parse)
    line("fhir-admsc validate (every layer)", count, validate_s, f"  {errors} errors")
    line("baseline: fhir.resources model_validate", count, parse_s)
    ratio("speed-up", parse_s / validate_s)
    if with_reference:
        reference(payload, count)


def reference(payload: dict[str, Any], count: int) -> None:
    """The HL7 validator engine (Java, tests/reference) on the same Bundle; JVM start apart."""
    from tests.reference import harness

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bundle.json"
        path.write_text(json.dumps(payload))
        summary = harness.run(harness.build(), harness.write_package(Path(folder)), [path]).summary
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    line(
        "HL7 validator engine (wall, JVM start apart)",
        count,
        summary["validate_ms"] / 1000,
        f"  start {summary['startup_ms'] / 1000:.1f} s, {children:,.0f} MiB peak",
    )


def push(participants: int, folder: Path) -> None:
    import requests

    from tests.servers import running_sekmet

    print(f"push (sekmet-fhir on loopback, two studies of {participants} participants)")
    ours_dir, theirs_dir = folder / "push-ours", folder / "push-baseline"
    for seed, target in ((11, ours_dir), (12, theirs_dir)):
        subprocess.run(
            [*CLI, "synth", "--participants", str(participants), "--seed", str(seed)]
            + ["-o", str(target / "study")],
            check=True,
            capture_output=True,
        )
        subprocess.run(
            [*CLI, "export", str(target / "study"), "--format", "ndjson", "-o", str(target)],
            check=True,
            capture_output=True,
        )
    (folder / "sekmet").mkdir()
    with running_sekmet(folder / "sekmet") as server:
        theirs = [
            json.loads(text)
            for file in sorted(theirs_dir.glob("*.ndjson"))
            for text in file.read_text().splitlines()
        ]
        session = requests.Session()
        headers = {"Content-Type": "application/fhir+json"}
        start = time.perf_counter()
        for r in theirs:
            url = f"{server.base_url}/{r['resourceType']}/{r['id']}"
            session.put(url, data=json.dumps(r), headers=headers, timeout=60).raise_for_status()
        baseline_s = time.perf_counter() - start
        ours_s, ours_mib = run([*CLI, "push", str(ours_dir), "--server", server.base_url])
        ours = sum(len(f.read_text().splitlines()) for f in ours_dir.glob("*.ndjson"))
    line("fhir-admsc push (whole command, wall)", ours, ours_s, f"  {ours_mib:,.0f} MiB peak")
    line("baseline: one PUT per resource (wall)", len(theirs), baseline_s)
    ratio("speed-up", (ours / ours_s) / (len(theirs) / baseline_s))


def memory(participants: int, folder: Path) -> None:
    print(f"memory: a {participants:,}-participant study")
    study = folder / "big"
    synth_s, synth_mib = run(
        [*CLI, "synth", "--participants", str(participants), "--seed", "7", "-o", str(study)]
    )
    print(f"  {'fhir-admsc synth':<44} {synth_s:>10.1f} s wall  {synth_mib:>8,.0f} MiB peak")
    out = folder / "big-ndjson"
    export_s, export_mib = run([*CLI, "export", str(study), "--format", "ndjson", "-o", str(out)])
    count = sum(1 for f in out.glob("*.ndjson") for _ in f.open("rb"))
    print(
        f"  {'fhir-admsc export --format ndjson':<44} {count / export_s:>10,.0f} resources/s  "
        f"({export_s:.1f} s wall, {count:,} resources)  {export_mib:>8,.0f} MiB peak"
    )


def cores(participants: int, folder: Path) -> None:
    """validate --jobs 2 against --jobs 1 on an NDJSON export: wall time, the same report."""
    print(f"every core: validate an NDJSON export of {participants:,} participants")
    study, out = folder / "cores", folder / "cores-ndjson"
    run([*CLI, "synth", "--participants", str(participants), "--seed", "5", "-o", str(study)])
    run([*CLI, "export", str(study), "--format", "ndjson", "-o", str(out)])
    count = sum(1 for f in out.glob("*.ndjson") for _ in f.open("rb"))
    walls = {}
    for jobs in (2, 1):
        report = folder / f"report-{jobs}.json"
        command = [*CLI, "validate", "-q", "-j", str(jobs), "--format", "json", "-o", str(report)]
        walls[jobs], mib = run([*command, str(out)])
        label = f"fhir-admsc validate --jobs {jobs} (wall)"
        line(label, count, walls[jobs], f"  {mib:>8,.0f} MiB peak (largest process)")
    same = (folder / "report-1.json").read_bytes() == (folder / "report-2.json").read_bytes()
    ratio("speed-up of --jobs 2" + ("" if same else " (REPORTS DIFFER)"), walls[1] / walls[2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=300, help="export and validate")
    parser.add_argument("--push", type=int, default=40, help="participants per pushed study")
    parser.add_argument("--big", type=int, default=20000, help="participants of the memory run")
    parser.add_argument(
        "--cores", type=int, default=2000, help="participants of the --jobs run (validate NDJSON)"
    )
    parser.add_argument(
        "--reference", action="store_true", help="also time the HL7 validator engine (Java)"
    )
    args = parser.parse_args()
    export_and_validate(args.participants, args.reference)
    with tempfile.TemporaryDirectory() as folder:
        if args.push:
            push(args.push, Path(folder))
        if args.cores:
            cores(args.cores, Path(folder))
        if args.big:
            memory(args.big, Path(folder))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory of this process: {peak:,.0f} MiB")


if __name__ == "__main__":
    main()
