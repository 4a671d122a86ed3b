"""What is to be validated, read as every command reads its input (``fhir_admsc.inputs``): each
document with the file and line it starts on, what cannot be read as a fatal Issue in its place,
and a study folder as the resources it maps to."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from fhir_admsc.export import study_resources
from fhir_admsc.inputs import is_study_folder
from fhir_admsc.resources import Document, Unreadable, fhir_files
from fhir_admsc.resources import read_documents as read_files
from fhir_admsc.validation.issues import Issue

__all__ = ["Document", "ndjson_only", "read_documents"]


def read_documents(path: Path, share: tuple[int, int] | None = None) -> Iterator[Document | Issue]:
    """The documents of ``path``: a study folder's resources (line 0: they come from its tables),
    else those of its JSON and NDJSON files; unreadable ones as Issues. ``share``: see
    ``fhir_admsc.resources.read_documents``."""
    if is_study_folder(path):
        for resource in study_resources(path):
            yield Document(str(path), 0, resource)
        return
    for item in read_files(path, share):
        yield _issue(item) if isinstance(item, Unreadable) else item


def ndjson_only(path: Path) -> bool:
    """Whether ``path`` is an NDJSON file or a folder of NDJSON files only (streamed)."""
    if is_study_folder(path) or not path.exists():
        return False
    files = fhir_files(path)
    return bool(files) and all(p.suffix == ".ndjson" for p in files)


def _issue(unreadable: Unreadable) -> Issue:
    code = "not-found" if unreadable.message == "no such file or folder" else "structure"
    source = unreadable.source
    return Issue("fatal", code, unreadable.message, "$this", source=source, line=unreadable.line)
