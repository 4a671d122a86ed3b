"""The exception tree: library messages name settings as parameters, the CLI as its options; file
errors name the file and what was being done."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

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
    "error, expected",
    [
        pytest.param(
            FileNotFoundError(2, "No such file or directory", "x"),
            "No such file or directory",
            id="missing",
        ),
        pytest.param(
            OSError(28, "No space left on device"), "No space left on device", id="disk-full"
        ),
        pytest.param(IsADirectoryError(21, "Is a directory"), "Is a directory", id="folder"),
    ],
)
def test_file_access_names_the_file_and_the_reason(error: OSError, expected: str) -> None:
    with pytest.raises(FileAccessError) as caught, file_access("out/study.json", "write"):
        raise error
    assert str(caught.value) == f"cannot write out/study.json: {expected}"
    assert caught.value.exit_code == ExitCode.USAGE
    assert caught.value.__cause__ is error


def test_file_access_lets_other_errors_through() -> None:
    with pytest.raises(ValueError), file_access("x", "read"):
        raise ValueError("not a file problem")
