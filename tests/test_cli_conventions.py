"""What every command does alike, as a user meets it: exit codes for missing inputs and outputs,
-h, --quiet, an explicit SOURCE over the environment, a closed pipe, and progress on a terminal only."""

from __future__ import annotations

import os
import pty
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from fhir_admsc.cli import cli, demo_folder
from tests.helpers import set_cell

COMMAND = [sys.executable, "-c", "from fhir_admsc.cli import main; main()"]


def run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, list(args), env=env)


@pytest.fixture(scope="module")
def demo_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("demo") / "demo.json"
    assert run("export", "--demo", "-o", str(path)).exit_code == 0
    return path


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["export", "{missing}"], id="export"),
        pytest.param(["validate", "{missing}"], id="validate"),
        pytest.param(["validate", "--ig", "{missing}", "{demo}"], id="validate-ig"),
        pytest.param(["report", "{missing}"], id="report"),
        pytest.param(["push", "{missing}", "--server", "http://127.0.0.1:9/fhir"], id="push"),
    ],
)
def test_a_missing_input_path_is_a_usage_error_everywhere(
    args: list[str], tmp_path: Path, demo_bundle: Path
) -> None:
    missing = tmp_path / "no-such-input"
    result = run(*(a.format(missing=missing, demo=demo_bundle) for a in args))
    assert result.exit_code == 2, result.output
    assert f"'{missing}' does not exist" in result.stderr
    assert "Traceback" not in result.output


def test_output_to_an_existing_folder_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    result = run("export", "--demo", "-o", f"{out}/")
    assert result.exit_code == 2
    assert f"{out}: is a folder: give the name of a file to write" in result.stderr
    assert list(out.iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["export", "--demo", "-o", "{typo}/bundle.json"], id="bundle"),
        pytest.param(["export", "--demo", "--format", "ndjson", "-o", "{typo}/out"], id="ndjson"),
        pytest.param(["profiles", "package", "-o", "{typo}/package.tgz"], id="package"),
        pytest.param(["report", "{demo}", "-o", "{typo}/report.txt"], id="report"),
    ],
)
def test_output_into_a_missing_folder_is_a_typo_not_a_wish(
    args: list[str], tmp_path: Path, demo_bundle: Path
) -> None:
    typo = tmp_path / "ouptut"
    result = run(*(a.format(typo=typo, demo=demo_bundle) for a in args))
    assert result.exit_code == 2, result.output
    assert f"the folder {typo} does not exist (create it first, or check the path)" in (
        result.stderr
    )
    assert not typo.exists()


def test_ndjson_export_makes_its_own_folder_in_an_existing_one(tmp_path: Path) -> None:
    result = run("export", "--demo", "--format", "ndjson", "-o", str(tmp_path / "new"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "new" / "Patient.ndjson").is_file()


@pytest.mark.parametrize(
    "command", ["export", "validate", "push", "pull", "report", "synth", "template"]
)
def test_dash_h_is_help(command: str) -> None:
    short, long = run(command, "-h"), run(command, "--help")
    assert short.exit_code == long.exit_code == 0
    assert short.stdout == long.stdout and short.stdout.startswith("Usage: ")
    assert "-q, --quiet" in short.stdout and "-v, --verbose" in short.stdout


def test_quiet_drops_the_summary(tmp_path: Path) -> None:
    loud = run("export", "--demo", "-o", str(tmp_path / "a.json"))
    quiet = run("export", "--demo", "-q", "-o", str(tmp_path / "b.json"))
    assert loud.exit_code == quiet.exit_code == 0
    assert "exported 675 resources" in loud.stderr and quiet.stderr == ""
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()


def test_quiet_keeps_the_errors(tmp_path: Path) -> None:
    result = run("validate", "-q", str(tmp_path))
    assert result.exit_code == 1 and "no resources found" in result.stdout


def test_an_explicit_source_wins_over_the_base_url_of_the_environment(demo_bundle: Path) -> None:
    # FHIR_ADMSC_BASE_URL is set as the README's push section says; nothing listens on port 9
    env = {"FHIR_ADMSC_BASE_URL": "http://127.0.0.1:9/fhir"}
    result = run("report", str(demo_bundle), env=env)
    assert result.exit_code == 0, result.output
    assert "7/9" in result.stdout
    both = run("report", str(demo_bundle), "--server", "http://127.0.0.1:9/fhir")
    assert both.exit_code == 2
    assert "give either SOURCE or --server with --study, not both" in both.stderr
    neither = run("report")
    assert neither.exit_code == 2 and "give SOURCE, or --server with --study" in neither.stderr


def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    """`fhir-admsc export STUDY | head -c 100`: no traceback, no message, exit 0 (the study is
    large enough to outgrow any pipe buffer)."""
    assert run("synth", "--participants", "100", "-o", str(tmp_path / "study")).exit_code == 0
    process = subprocess.Popen(
        [*COMMAND, "export", str(tmp_path / "study")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.read(100).startswith(b"{")
    process.stdout.close()
    stderr = process.stderr.read()
    assert process.wait(timeout=60) == 0
    assert stderr == b""


def _on_a_terminal(args: list[str], cwd: Path) -> tuple[int, str]:
    """Run a command with stderr on a pseudo-terminal; its exit code and what the terminal got."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [*COMMAND, *args], cwd=cwd, stdout=subprocess.DEVNULL, stderr=follower
    )
    os.close(follower)
    seen = b""
    while True:
        try:
            piece = os.read(leader, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not piece:
            break
        seen += piece
    os.close(leader)
    return process.wait(timeout=120), seen.decode()


@pytest.mark.parametrize(
    "args, label",
    [
        pytest.param(["export", "--demo", "-o", "demo.json"], "exporting: ", id="export"),
        pytest.param(
            ["export", "--demo", "--format", "ndjson", "-o", "nd"], "exporting: ", id="nd"
        ),
        pytest.param(["validate", "demo.json"], "validating: ", id="validate"),
        pytest.param(["report", "demo.json"], "report: ", id="report"),
        pytest.param(["synth", "--participants", "30", "-o", "syn"], "synth: ", id="synth"),
    ],
)
def test_progress_is_drawn_on_a_terminal_only(args: list[str], label: str, tmp_path: Path) -> None:
    subprocess.run([*COMMAND, "export", "--demo", "-o", "demo.json"], cwd=tmp_path, check=True)
    code, terminal = _on_a_terminal(args, tmp_path)
    assert code in (0, 1), terminal
    assert label in terminal
    assert "\r\x1b[K" in terminal[terminal.rfind(label) :]  # the line is cleared at the end
    for path in ("nd", "syn"):
        subprocess.run(["rm", "-rf", str(tmp_path / path)], check=True)
    piped = subprocess.run([*COMMAND, *args], cwd=tmp_path, capture_output=True, text=True)
    assert label not in piped.stderr and "\x1b" not in piped.stderr


def test_a_failed_ndjson_export_leaves_no_new_folder(study_dir: Path, tmp_path: Path) -> None:
    set_cell(study_dir, "outcomes.csv", 40, "value", "eleven")
    result = run("export", str(study_dir), "--format", "ndjson", "-o", str(tmp_path / "new"))
    assert result.exit_code == 1 and "outcomes.csv:42: column 'value'" in result.stderr
    assert not (tmp_path / "new").exists()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize(
    "flags, retry_shown, info_shown",
    [
        pytest.param([], True, False, id="default"),
        pytest.param(["-v"], True, True, id="verbose"),
        pytest.param(["-q"], False, False, id="quiet"),
    ],
)
def test_retries_say_so_while_waiting(
    flags: list[str], retry_shown: bool, info_shown: bool
) -> None:
    base = f"http://127.0.0.1:{_closed_port()}/fhir"
    args = ["push", str(demo_folder()), "--server", base, "--retries", "2", "--retry-wait", "0.1"]
    result = run(*args, *flags)
    assert result.exit_code == 4
    retry = f"warning: GET {base}/metadata: server not answering (connection refused), retry 1 of 2"
    assert (retry in result.stderr) == retry_shown, result.stderr
    assert ("info: " in result.stderr) == info_shown
    assert "could not connect after 3 attempts (connection refused)" in result.stderr


def test_push_and_pull_show_progress_on_a_terminal(sekmet_server, tmp_path: Path) -> None:
    base = sekmet_server.base_url
    code, terminal = _on_a_terminal(["push", str(demo_folder()), "--server", base], tmp_path)
    assert code == 0, terminal
    assert "pushing: " in terminal and "of 675 resources" in terminal
    pull = ["pull", "--server", base, "--study", "ADMSC-FSO794", "-o", "back"]
    code, terminal = _on_a_terminal(pull, tmp_path)
    assert code == 0, terminal
    assert "pulling: " in terminal and "\r\x1b[K" in terminal[terminal.rfind("pulling: ") :]
    assert "pulled 675 resources of ADMSC-FSO794" in terminal
