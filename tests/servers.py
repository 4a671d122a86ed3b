"""Real FHIR R4 servers on loopback for integration tests: Medplum's engine, sekmet-fhir and a HAPI
FHIR JPA server.

Each runs as a subprocess on a free 127.0.0.1 port, once per test session, and is stopped at the end.
A server that does not start makes its fixture fail (never skip), with the tail of its stderr.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.builds import one_at_a_time
from tests.reference.harness import missing_tools

NODE = Path(__file__).parent / "node"
HAPI = Path(__file__).parent / "hapi"
START_TIMEOUT = 60.0  # seconds; Medplum and sekmet start in about 1 s here
HAPI_START_TIMEOUT = 240.0  # HAPI starts in about 11 s here, more on a busy machine
HAPI_BUILD_TIMEOUT = 1800  # a first build into an empty ~/.m2 downloads about 340 MB


@dataclass(frozen=True)
class FhirServer:
    """A running test server: its name and its FHIR base URL (no trailing slash)."""

    name: str
    base_url: str
    process: subprocess.Popen


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers_metadata(base_url: str) -> bool:
    try:
        return requests.get(f"{base_url}/metadata", timeout=2).status_code == 200
    except requests.RequestException:
        return False


@contextmanager
def _running(
    name: str,
    command: list[str],
    folder: Path,
    base_url: Callable[[Path], str | None],
    timeout: float = START_TIMEOUT,
    **popen,
) -> Iterator[FhirServer]:
    """Start `command` with stdout and stderr in files of `folder`; wait (at most `timeout` s) until
    `base_url(stdout file)` is known and answers GET /metadata; stop the process on exit."""
    out, err = folder / f"{name}.stdout", folder / f"{name}.stderr"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, **popen
        )
    try:
        deadline = time.monotonic() + timeout
        base = None
        while not (base and _answers_metadata(base)):
            if process.poll() is not None or time.monotonic() > deadline:
                tail = err.read_text(errors="replace")[-3000:]
                what = (
                    f"exited with {process.returncode} before it answered GET /metadata"
                    if process.poll() is not None
                    else f"did not answer GET /metadata within {timeout:.0f} s"
                )
                pytest.fail(
                    f"FHIR server {name} {what}\ncommand: {' '.join(command)}\nstderr tail:\n{tail}",
                    pytrace=False,
                )
            time.sleep(0.1)
            base = base or base_url(out)
        yield FhirServer(name, base, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _node_command(script: Path) -> list[str]:
    """Medplum 5.x targets Node 22; Node 20 has the global WebSocket that @medplum/core reads on import
    only behind --experimental-websocket."""
    version = subprocess.run(["node", "--version"], capture_output=True, text=True, check=True)
    major = int(version.stdout.strip().lstrip("v").split(".")[0])
    return ["node", *(["--experimental-websocket"] if major < 22 else []), str(script)]


def _announced_base(stdout: Path) -> str | None:
    """The base URL of the one JSON line that fhir-server.mjs and the HAPI server print when they
    listen."""
    line = stdout.read_text().partition("\n")[0]
    return json.loads(line)["base"] if line.endswith("}") else None


@pytest.fixture(scope="session")
def medplum_server(
    node_modules: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FhirServer]:
    """Medplum's FHIR engine, in memory, behind tests/node/fhir-server.mjs."""
    command = [*_node_command(NODE / "fhir-server.mjs"), "0"]
    folder = tmp_path_factory.mktemp("medplum")
    with _running("medplum", command, folder, _announced_base, cwd=NODE) as server:
        yield server


@contextmanager
def running_sekmet(folder: Path, **settings: object) -> Iterator[FhirServer]:
    """sekmet-fhir's server on a free loopback port, with an in-memory database and everything it
    writes under `folder`. `settings` are added to its settings.yaml (a JSON document is valid YAML),
    e.g. ``server_auth={"types": ["smart"], "smart_clients": [...]}`` for SMART Backend Services."""
    port = _free_port()
    base = f"http://127.0.0.1:{port}/fhir"
    config = {
        "base_url": base,
        "host": "127.0.0.1",
        "port": port,
        "db_path": ":memory:",
        "data_dir": str(folder / "data"),  # bulk export files
        "own_private_key_path": str(folder / "keys" / "sekmet_private.pem"),  # absent: no own JWKS
        "log_inbound": False,  # its traffic log would keep every request body in the database
        "simulator": {"enabled": False},  # no simulated lab/pharmacy/payer reactions to writes
        **settings,
    }
    (folder / "settings.yaml").write_text(json.dumps(config, indent=2))
    command = [sys.executable, "-m", "sekmet.cli", "serve", "--config", "settings.yaml"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    # SEKMET_* variables would override the settings file
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEKMET_")}
    with _running("sekmet", command, folder, lambda _: base, cwd=folder, env=env) as server:
        yield server


@pytest.fixture(scope="session")
def sekmet_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FhirServer]:
    """sekmet-fhir (PyPI), open access, in memory."""
    with running_sekmet(tmp_path_factory.mktemp("sekmet")) as server:
        yield server


def _hapi_jar() -> Path:
    """tests/hapi/target/hapi-server.jar, built with `mvn -q -B package` (Maven's local repository
    in ~/.m2, reused) unless it is newer than pom.xml and every source file."""
    missing = missing_tools("the HAPI FHIR test server tests")
    if missing:
        pytest.fail(missing, pytrace=False)
    with one_at_a_time(HAPI):
        return _built_hapi_jar()


def _built_hapi_jar() -> Path:
    jar = HAPI / "target" / "hapi-server.jar"
    sources = [HAPI / "pom.xml", *(p for p in (HAPI / "src").rglob("*") if p.is_file())]
    if jar.exists() and all(p.stat().st_mtime <= jar.stat().st_mtime for p in sources):
        return jar
    build = subprocess.run(
        ["mvn", "-q", "-B", "package"],
        cwd=HAPI,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
        timeout=HAPI_BUILD_TIMEOUT,
    )
    if build.returncode != 0:
        pytest.fail(
            f"mvn -q -B package failed in {HAPI} (exit {build.returncode}):\n"
            f"{build.stdout[-3000:]}\n{build.stderr[-3000:]}",
            pytrace=False,
        )
    return jar


# The client compiler alone starts the JVM in about half the time (11 s, not 24 s) and a test
# session is short; the serial collector keeps its memory near 600 MB at start and 1 GB after the
# whole suite (the in-memory database lives in the heap), and works on the requests' threads.
HAPI_JVM = ["java", "-Xmx768m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"]


@pytest.fixture(scope="session")
def hapi_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FhirServer]:
    """HAPI FHIR's JPA server (tests/hapi), in memory: its defaults, plus Bulk Data $export and
    $import (which fetches files from loopback URLs only)."""
    command = [*HAPI_JVM, "-jar", str(_hapi_jar()), "0"]
    folder = tmp_path_factory.mktemp("hapi")
    with _running(
        "hapi", command, folder, _announced_base, timeout=HAPI_START_TIMEOUT, cwd=folder
    ) as server:
        yield server


SERVERS = ["medplum", "sekmet", "hapi"]


@pytest.fixture(params=SERVERS, ids=SERVERS)
def fhir_server(request: pytest.FixtureRequest) -> FhirServer:
    """Each real server in turn: a test using this fixture runs against all of them."""
    return request.getfixturevalue(f"{request.param}_server")
