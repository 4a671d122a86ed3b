"""Real FHIR R4 servers on loopback for integration tests: Medplum's engine and sekmet-fhir.

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

NODE = Path(__file__).parent / "node"
START_TIMEOUT = 60.0  # seconds; both start in about 1 s here


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
    name: str, command: list[str], folder: Path, base_url: Callable[[Path], str | None], **popen
) -> Iterator[FhirServer]:
    """Start `command` with stdout and stderr in files of `folder`; wait until `base_url(stdout file)`
    is known and answers GET /metadata; stop the process on exit."""
    out, err = folder / f"{name}.stdout", folder / f"{name}.stderr"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, **popen
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        base = None
        while not (base and _answers_metadata(base)):
            if process.poll() is not None or time.monotonic() > deadline:
                tail = err.read_text(errors="replace")[-3000:]
                what = (
                    f"exited with {process.returncode} before it answered GET /metadata"
                    if process.poll() is not None
                    else f"did not answer GET /metadata within {START_TIMEOUT:.0f} s"
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
    """The base URL of the one JSON line fhir-server.mjs prints when it listens."""
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


@pytest.fixture(params=["medplum", "sekmet"], ids=["medplum", "sekmet"])
def fhir_server(request: pytest.FixtureRequest) -> FhirServer:
    """Each real server in turn: a test using this fixture runs against both."""
    return request.getfixturevalue(f"{request.param}_server")
