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
- whole commands: ``fhir-admsc export`` and ``validate`` (CPU of the process), beside the same
  work through fhir.resources (benchmarks/through_models.py); start-up of ``--version`` and
  ``export --demo``;
- every core: ``validate --jobs 2`` and ``export --format ndjson --jobs 2`` against ``--jobs 1``
  on a ``--cores``-participant study (wall time; reports and files compared);
- push into HAPI FHIR (tests/hapi, built by the test suite): ``--concurrency 2`` against
  ``--concurrency 1`` and one PUT per resource, with the server's CPU a resource beside the
  client's (a push bounded by the server shows as such);
- memory: ``fhir-admsc export --format ndjson`` of a ``--big``-participant synthetic study, and
  ``report`` of it through the study's views on DuckDB;
- report: ``report`` of a ``--report``-participant NDJSON export through the views on DuckDB,
  beside the same through the reverse mappings in Python (wall time, peak memory, the same JSON).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
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
from fhir_admsc.inputs import ordered  # noqa: E402
from fhir_admsc.mappings import study_to_fhir  # noqa: E402
from fhir_admsc.study import Study  # noqa: E402
from fhir_admsc.synth import synthesize  # noqa: E402
from fhir_admsc.tables import write_study  # noqa: E402
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
    """Wall seconds and peak resident MiB of one command (which must succeed)."""
    wall, mib, _ = timed(command)
    return wall, mib


def timed(command: list[str], exit_codes: tuple[int, ...] = (0,)) -> tuple[float, float, float]:
    """Wall seconds, peak resident MiB (of its largest process) and CPU seconds (user + system,
    its children included) of one command, which must end with one of ``exit_codes``.

    GNU time measures: a child forked from this (large) process would count the pages it shared
    with it before exec.
    """
    start = time.perf_counter()
    done = subprocess.run(
        ["/usr/bin/time", "-f", "%M %U %S", *command],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    seconds = time.perf_counter() - start
    if done.returncode not in exit_codes:
        sys.exit(f"failed: {' '.join(command)}\n{done.stderr.decode()[-2000:]}")
    peak, user, system = done.stderr.decode().split()[-3:]
    return seconds, int(peak) / 1024, float(user) + float(system)


def median_of(runs: int, command: list[str], exit_codes: tuple[int, ...] = (0,)) -> float:
    """The median CPU seconds of ``runs`` runs of a whole command."""
    return statistics.median(timed(command, exit_codes)[2] for _ in range(runs))


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
    whole_commands(study, count)


def whole_commands(study: Study, count: int) -> None:
    """Export and validate as whole commands (start-up, reading and writing included), each
    beside the same work through fhir.resources in one process; CPU seconds, median of 3."""
    print("whole commands (CPU of the process, median of 3 runs)")
    models = [sys.executable, str(ROOT / "benchmarks" / "through_models.py")]
    with tempfile.TemporaryDirectory() as folder:
        study_dir, bundle_path = Path(folder) / "study", Path(folder) / "bundle.json"
        write_study(study, study_dir)
        ours = median_of(3, [*CLI, "export", str(study_dir), "-o", str(bundle_path), "-q"])
        theirs = median_of(3, [*models, str(study_dir), str(Path(folder) / "models.json")])
        line("fhir-admsc export DIR -o bundle.json", count, ours)
        line("baseline: the same through fhir.resources", count, theirs)
        ratio("speed-up (whole export)", theirs / ours)
        command = [*CLI, "validate", "-q", "--jobs", "1", str(bundle_path)]
        ours = median_of(3, command, exit_codes=(0, 1))
        theirs = median_of(3, [*models, "--parse", str(bundle_path)])
        line("fhir-admsc validate bundle.json (one core)", count, ours)
        line("baseline: json.load + model_validate", count, theirs)
        ratio("speed-up (whole validate)", theirs / ours)
        ours = median_of(3, [*CLI, "--version"])
        demo = median_of(3, [*CLI, "export", "--demo", "-o", str(Path(folder) / "demo.json")])
        print(f"  {'start: fhir-admsc --version':<44} {ours:>10.2f} s CPU")
        print(f"  {'start: fhir-admsc export --demo':<44} {demo:>10.2f} s CPU")


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


def synthetic_ndjson(folder: Path, name: str, participants: int, seed: int) -> tuple[Path, Path]:
    """A synthetic study folder and its NDJSON export, side by side in ``folder`` (a push reads
    everything in the folder it is given); their paths."""
    study, out = folder / f"{name}-study", folder / name
    run(
        [*CLI, "synth", "--participants", str(participants), "--seed", str(seed)]
        + ["-o", str(study)]
    )
    run([*CLI, "export", str(study), "--format", "ndjson", "-o", str(out)])
    return study, out


def push(participants: int, folder: Path) -> None:
    from tests.servers import running_sekmet

    print(f"push (sekmet-fhir on loopback, two studies of {participants} participants)")
    _, ours_dir = synthetic_ndjson(folder, "push-ours", participants, 11)
    _, theirs_dir = synthetic_ndjson(folder, "push-baseline", participants, 12)
    (folder / "sekmet").mkdir()
    with running_sekmet(folder / "sekmet") as server:
        theirs, baseline_s, _ = _put_each(theirs_dir, server.base_url)
        ours_s, ours_mib = run([*CLI, "push", str(ours_dir), "--server", server.base_url])
        ours = sum(len(f.read_text().splitlines()) for f in ours_dir.glob("*.ndjson"))
    line("fhir-admsc push (whole command, wall)", ours, ours_s, f"  {ours_mib:,.0f} MiB peak")
    line("baseline: one PUT per resource (wall)", theirs, baseline_s)
    ratio("speed-up", (ours / ours_s) / (theirs / baseline_s))


def push_hapi(participants: int, folder: Path) -> None:
    """push --concurrency 2 against --concurrency 1 and one PUT per resource, into HAPI FHIR as
    the test suite runs it (tests/hapi); the server's CPU per resource beside the client's.

    Every push is of a new study of the same size (a re-push would change nothing). Two pushes
    warm the JVM first; then concurrency 1 and 2 take turns, twice each, and the baseline goes
    last, when the server's store is largest.
    """
    from tests.servers import HAPI_JVM, _announced_base, _hapi_jar, _running

    print(f"push into HAPI FHIR (loopback; new studies of {participants} participants each)")
    names = ["warm-1", "warm-2", "c1-a", "c2-a", "c1-b", "c2-b", "baseline"]
    exports = {}
    for seed, name in enumerate(names, start=21):
        exports[name] = synthetic_ndjson(folder, f"hapi-{name}", participants, seed)[1]
    command = [*HAPI_JVM, "-jar", str(_hapi_jar()), "0"]
    (folder / "hapi").mkdir()
    rows: dict[str, tuple[int, float, float, float]] = {}
    with _running("hapi", command, folder / "hapi", _announced_base, timeout=300) as server:

        def server_cpu() -> float:
            fields = Path(f"/proc/{server.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

        for name in names:
            before = server_cpu()
            if name == "baseline":
                count, wall, cpu = _put_each(exports[name], server.base_url)
            else:
                concurrency = "1" if name in ("warm-2", "c1-a", "c1-b") else "2"
                push = [*CLI, "push", str(exports[name]), "--server", server.base_url, "-q"]
                count = sum(1 for f in exports[name].glob("*.ndjson") for _ in f.open("rb"))
                wall, _, cpu = timed([*push, "--concurrency", concurrency])
            rows[name] = (count, wall, cpu, server_cpu() - before)
    labels = {
        "c1-a": "fhir-admsc push --concurrency 1 (wall)",
        "c2-a": "fhir-admsc push --concurrency 2 (wall)",
        "c1-b": "fhir-admsc push --concurrency 1, again",
        "c2-b": "fhir-admsc push --concurrency 2, again",
        "baseline": "baseline: one PUT per resource (wall)",
    }
    for name, label in labels.items():
        count, wall, cpu, server = rows[name]
        per = f"CPU a resource: client {cpu / count * 1000:.2f} ms, server {server / count * 1000:.2f} ms"
        line(label, count, wall, f"  {per}")

    def rate(*runs: str) -> float:
        return sum(rows[r][0] for r in runs) / sum(rows[r][1] for r in runs)

    ratio("speed-up of --concurrency 2", rate("c2-a", "c2-b") / rate("c1-a", "c1-b"))
    ratio("--concurrency 1 against one PUT each", rate("c1-a", "c1-b") / rate("baseline"))


def _put_each(folder: Path, base_url: str) -> tuple[int, float, float]:
    """One PUT per resource of an NDJSON folder, referenced ones first (HAPI refuses a reference
    to what it does not hold yet): how many, wall and CPU seconds of this process. The baseline
    of both push figures."""
    import requests

    resources = ordered(
        [
            json.loads(text)
            for f in sorted(folder.glob("*.ndjson"))
            for text in f.read_text().splitlines()
        ]
    )
    session = requests.Session()
    headers = {"Content-Type": "application/fhir+json"}
    start, cpu = time.perf_counter(), time.process_time()
    for r in resources:
        url = f"{base_url}/{r['resourceType']}/{r['id']}"
        session.put(url, data=json.dumps(r), headers=headers, timeout=60).raise_for_status()
    return len(resources), time.perf_counter() - start, time.process_time() - cpu


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
    command = [*CLI, "report", str(out), "--engine", "duckdb", "--format", "json", "-q"]
    report_s, report_mib = run(command)
    label = "fhir-admsc report --engine duckdb"
    print(f"  {label:<44} {report_s:>10.1f} s wall  {report_mib:>8,.0f} MiB peak")


def reports(participants: int, folder: Path) -> None:
    """report through the views (DuckDB) against through the reverse mappings (Python)."""
    print(f"report: an NDJSON export of {participants:,} participants")
    _, out = synthetic_ndjson(folder, "report", participants, 9)
    outputs = {}
    for engine in ("duckdb", "python"):
        target = folder / f"report-{engine}.json"
        command = [*CLI, "report", str(out), "--engine", engine, "--format", "json", "-o"]
        wall, mib = run([*command, str(target)])
        outputs[engine] = target.read_bytes()
        label = f"fhir-admsc report --engine {engine} (wall)"
        print(f"  {label:<44} {wall:>10.1f} s wall  {mib:>8,.0f} MiB peak")
    same = "the same report" if outputs["duckdb"] == outputs["python"] else "REPORTS DIFFER"
    print(f"  {same}")


def cores(participants: int, folder: Path) -> None:
    """validate --jobs 2 against --jobs 1 on an NDJSON export: wall time, the same report."""
    print(f"every core: validate an NDJSON export of {participants:,} participants")
    study, out = synthetic_ndjson(folder, "cores", participants, 5)
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
    print(f"every core: export the {participants:,}-participant study as NDJSON")
    for jobs in (2, 1):
        command = [*CLI, "export", str(study), "--format", "ndjson", "-j", str(jobs), "-q"]
        walls[jobs] = statistics.median(
            run([*command, "-o", str(folder / f"export-{jobs}")])[0] for _ in range(3)
        )
        mib = run([*command, "-o", str(folder / f"export-{jobs}")])[1]
        label = f"fhir-admsc export --jobs {jobs} (wall, median of 3)"
        line(label, count, walls[jobs], f"  {mib:>8,.0f} MiB peak (largest process)")
    same = all(
        (folder / "export-1" / p.name).read_bytes() == p.read_bytes()
        for p in (folder / "export-2").iterdir()
    ) and len(list((folder / "export-1").iterdir())) == len(list((folder / "export-2").iterdir()))
    ratio("speed-up of --jobs 2" + ("" if same else " (FILES DIFFER)"), walls[1] / walls[2])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=300, help="export and validate")
    parser.add_argument("--push", type=int, default=40, help="participants per pushed study")
    parser.add_argument(
        "--hapi", type=int, default=40, help="participants per study pushed into HAPI FHIR"
    )
    parser.add_argument("--big", type=int, default=20000, help="participants of the memory run")
    parser.add_argument(
        "--cores", type=int, default=2000, help="participants of the --jobs run (validate NDJSON)"
    )
    parser.add_argument(
        "--report", type=int, default=2000, help="participants of the report run (views, Python)"
    )
    parser.add_argument(
        "--reference", action="store_true", help="also time the HL7 validator engine (Java)"
    )
    args = parser.parse_args()
    export_and_validate(args.participants, args.reference)
    with tempfile.TemporaryDirectory() as folder:
        if args.push:
            push(args.push, Path(folder))
        if args.hapi:
            push_hapi(args.hapi, Path(folder))
        if args.cores:
            cores(args.cores, Path(folder))
        if args.report:
            reports(args.report, Path(folder))
        if args.big:
            memory(args.big, Path(folder))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory of this process: {peak:,.0f} MiB")


if __name__ == "__main__":
    main()
