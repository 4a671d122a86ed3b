"""The HL7 FHIR validator engine (through HAPI FHIR, Java) as a test-time reference: build the
Maven project beside this file once, then run its jar over many inputs in one JVM start.

The product stays pure Python; Java 17+ and Maven are needed by the tests only. Nothing is fetched
when the jar runs: the R4 definitions come from HAPI's jars and ours from the package.tgz that
``fhir-admsc profiles package`` writes.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fhir_admsc.conformance import load_resources, npm_package
from fhir_admsc.views.study import view_files
from tests.builds import one_at_a_time

PROJECT = Path(__file__).parent
JAR = PROJECT / "target" / "reference-validator.jar"
INSTALL = "apt-get install -y --no-install-recommends default-jdk-headless maven"
BUILD_TIMEOUT = 1800  # the first build downloads about 190 MB of jars and plugins into ~/.m2
RUN_TIMEOUT = 900
# A test run is short and CI has 2 cores: the client compiler alone starts faster and leaves the
# cores to validation; the serial collector keeps the peak memory near 1 GB (3-4 GB with G1).
JVM_OPTIONS = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")


class ToolMissing(Exception):
    """Java 17+ or Maven is not on this machine."""


def missing_tools(what: str = "the reference validator tests") -> str | None:
    """What is missing to build and run a Java test part (Java 17+, Maven), or None."""
    missing = [tool for tool in ("java", "mvn") if shutil.which(tool) is None]
    if missing:
        return (
            f"{' and '.join(missing)} not found: {what} need Java 17+ and "
            f"Maven (on Debian: {INSTALL})"
        )
    version = subprocess.run(["java", "-version"], capture_output=True, text=True, check=False)
    found = re.search(r'version "(\d+)', version.stderr)
    if found is None or int(found[1]) < 17:
        return (
            f"{what} need Java 17 or newer; `java -version` says: "
            f"{version.stderr.strip()} (on Debian: {INSTALL})"
        )
    return None


def is_built() -> bool:
    """The jar exists and is newer than pom.xml and every source file."""
    if not JAR.exists() or not (JAR.parent / "lib").is_dir():
        return False
    sources = [PROJECT / "pom.xml", *(p for p in (PROJECT / "src").rglob("*") if p.is_file())]
    built = JAR.stat().st_mtime
    return all(p.stat().st_mtime <= built for p in sources)


def build() -> Path:
    """Build the jar with ``mvn -q -B package`` unless it is up to date; returns its path."""
    missing = missing_tools()
    if missing:
        raise ToolMissing(missing)
    with one_at_a_time(PROJECT):
        if not is_built():
            _build()
    return JAR


def _build() -> None:
    done = subprocess.run(
        ["mvn", "-q", "-B", "package"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        check=False,
        timeout=BUILD_TIMEOUT,
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"mvn -q -B package failed in {PROJECT} (exit {done.returncode}):\n"
            f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
        )


def write_package(folder: Path) -> Path:
    """Our conformance package, as ``fhir-admsc profiles package`` writes it, in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "package.tgz"
    path.write_bytes(npm_package(load_resources(), view_files()))
    return path


@dataclass(frozen=True)
class Run:
    """One run of the reference validator: a record per resource validated, in input order
    (``resource``, ``file``, ``entry`` for a Bundle entry, ``issues``), its summary line
    (``resources``, ``startup_ms``, ``validate_ms``, ``threads``, ``package``, ``skipped``,
    ``network_attempts``, ``code_systems_not_validated``, ``files``: resources and ms of each
    file), and its stderr."""

    records: list[dict[str, Any]]
    summary: dict[str, Any]
    stderr: str

    def issues_by_resource(self) -> dict[str, list[dict[str, Any]]]:
        """Issues by resource ("Type/id"); a resource found in several inputs collects them all."""
        issues: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for record in self.records:
            issues[record["resource"]].extend(record["issues"])
        return dict(issues)


def run(
    jar: Path,
    package: Path,
    paths: Iterable[Path],
    threads: int = 1,
    dependencies: Iterable[Path] = (),
) -> Run:
    """Validate every resource in ``paths`` (JSON resources, Bundles, .ndjson, folders of them)
    in one JVM start, ``threads`` files at a time, with ``package`` and the packages it depends
    on loaded."""
    command = [
        "java",
        *JVM_OPTIONS,
        "-jar",
        str(jar),
        "--package",
        str(package),
        *(part for dependency in dependencies for part in ("--package", str(dependency))),
        "--threads",
        str(threads),
        *map(str, paths),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=RUN_TIMEOUT)
    if done.returncode != 0:
        raise RuntimeError(
            f"reference validator failed (exit {done.returncode}): {' '.join(command)}\n"
            f"{done.stderr[-4000:]}"
        )
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.strip()]
    if not lines or "summary" not in lines[-1]:
        raise RuntimeError(f"reference validator wrote no summary line:\n{done.stderr[-4000:]}")
    return Run(lines[:-1], lines[-1]["summary"], done.stderr)


@dataclass(frozen=True)
class Reference:
    """The built reference validator and the package it loads."""

    jar: Path
    package: Path

    def run(self, paths: Iterable[Path], threads: int = 1) -> Run:
        return run(self.jar, self.package, paths, threads)

    def validate(self, paths: Iterable[Path]) -> dict[str, list[dict[str, Any]]]:
        """Issues by resource ("Type/id") for everything in ``paths``, in one JVM start."""
        return self.run(paths).issues_by_resource()


def errors(issues: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The issues of severity error or fatal."""
    return [i for i in issues if i["severity"] in ("error", "fatal")]
