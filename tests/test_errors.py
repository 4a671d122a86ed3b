"""The exception tree: library messages name settings as parameters, the CLI as its options; file
errors name the file and what was being done."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

import fhir_admsc
from fhir_admsc.cli import cli, option_names
from fhir_admsc.errors import (
    ConfigurationError,
    ExitCode,
    FileAccessError,
    InvalidDataError,
    Problem,
    file_access,
)

PACKAGE = Path(fhir_admsc.__file__).parent
SETTING = re.compile(r"`([a-z][a-z0-9_]*)`")


def _raised_texts() -> list[tuple[str, int, str]]:
    """(file, line, text) of every string written in a ``raise`` statement of the library."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "cli.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Raise) and node.exc is not None:
                for part in ast.walk(node.exc):
                    if isinstance(part, ast.Constant) and isinstance(part.value, str):
                        found.append((path.name, node.lineno, part.value))
    return found


def test_library_messages_name_no_command_line_option() -> None:
    flags = [f"{f}:{n}: {t!r}" for f, n, t in _raised_texts() if re.search(r"--[a-z]", t)]
    assert not flags


def test_every_setting_a_message_names_is_an_option_of_the_command_line() -> None:
    names = option_names(cli)
    named = {m for _, _, text in _raised_texts() for m in SETTING.findall(text)}
    assert named, "no message names a setting: the scan found nothing"
    assert named <= names.keys(), named - names.keys()


def test_describe_writes_settings_as_the_caller_names_them() -> None:
    error = ConfigurationError("`base_url` is not an http(s) URL; or give `allow_http`")
    assert str(error) == "`base_url` is not an http(s) URL; or give `allow_http`"
    assert (
        error.describe(option_names(cli)) == "--server is not an http(s) URL; or give --allow-http"
    )
    assert error.describe({}) == str(error)


def test_invalid_data_names_what_was_read() -> None:
    problems = [Problem("bundle.json", "holds no FHIR resource with an id")]
    assert str(InvalidDataError(problems)).startswith("1 problem in the study data\n")
    assert str(InvalidDataError(problems, "the FHIR input")).startswith(
        "1 problem in the FHIR input\n"
    )


@pytest.mark.parametrize(
    "error, doing, where, expected",
    [
        pytest.param(
            FileNotFoundError(2, "No such file or directory", "out/visits.csv"),
            "read",
            "out/visits.csv",  # reading a folder: the file that failed in it
            "No such file or directory",
            id="missing",
        ),
        pytest.param(
            FileNotFoundError(2, "No such file or directory", "out/.study.json.x1.tmp"),
            "write",
            "out/study.json",  # writing: the target, not the staging file
            "No such file or directory",
            id="staging",
        ),
        pytest.param(
            OSError(28, "No space left on device"),
            "write",
            "out/study.json",
            "No space left on device",
            id="disk-full",
        ),
        pytest.param(
            IsADirectoryError(21, "Is a directory"),
            "write",
            "out/study.json",
            "Is a directory",
            id="folder",
        ),
    ],
)
def test_file_access_names_the_file_and_the_reason(
    error: OSError, doing: str, where: str, expected: str
) -> None:
    with pytest.raises(FileAccessError) as caught, file_access("out/study.json", doing):
        raise error
    assert str(caught.value) == f"cannot {doing} {where}: {expected}"
    assert caught.value.exit_code == ExitCode.USAGE
    assert caught.value.__cause__ is error


def test_an_unreadable_input_file_is_named_with_exit_2(monkeypatch, study_dir: Path) -> None:
    """A table the system refuses to read (root reads everything, so the refusal is staged)."""
    refused = study_dir / "visits.csv"
    real_open = Path.open

    def guarded(self: Path, *args, **kwargs):
        if self == refused:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", guarded)
    monkeypatch.setattr(Path, "read_bytes", lambda self: guarded(self, "rb").read())
    for command in (["export", str(study_dir)], ["export", str(study_dir), "--format", "ndjson"]):
        result = CliRunner().invoke(cli, [*command, "-o", str(study_dir.parent / "out")])
        assert result.exit_code == ExitCode.USAGE, (command, result.output)
        assert f"cannot read {refused}: Permission denied" in result.output, result.output


def test_an_os_error_nobody_named_is_an_internal_error(monkeypatch, study_dir: Path) -> None:
    """Only file errors the library names are the user's to fix (exit 2); any other OSError is a
    bug to report, not a usage mistake."""

    def broken(*args, **kwargs):
        raise OSError("something unforeseen")

    monkeypatch.setattr(
        "fhir_admsc.export.export_bundle", broken
    )  # the command imports it when run
    result = CliRunner().invoke(cli, ["export", str(study_dir)])
    assert result.exit_code == ExitCode.INTERNAL, result.output
    assert "internal error (OSError: something unforeseen)" in result.output


def test_file_access_lets_other_errors_through() -> None:
    with pytest.raises(ValueError), file_access("x", "read"):
        raise ValueError("not a file problem")
