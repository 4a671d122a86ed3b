"""A study folder to FHIR: in memory as a list or a Bundle's text, or streamed participant by
participant into NDJSON files, so that memory does not grow with the study."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any, Literal

from fhir_admsc.bundle import (
    BundleType,
    bundle,
    bundle_json,
    bundle_text,
    ndjson_files,
    ndjson_line,
)
from fhir_admsc.mappings import rows_to_fhir, study_from_fhir, study_level_to_fhir, study_to_fhir
from fhir_admsc.output import StagedFiles, write_atomic, write_files
from fhir_admsc.study import Study, StudyInfo
from fhir_admsc.tables import TableNotGrouped, read_participant_groups, read_study, write_study

Notify = Callable[[str], None]
Form = Literal["study", "ndjson", "transaction", "collection"]
Counter = Callable[[int], None]


@dataclass(frozen=True)
class Exported:
    """What an export wrote: the study, how many resources, and the Bundle's text or how many
    NDJSON files."""

    study_id: str
    count: int
    text: str = ""
    files: int = 0


def study_resources(folder: Path, notify: Notify | None = None) -> list[dict[str, Any]]:
    """The FHIR resources of a study folder (``notify`` is told of files it does not read)."""
    return list(study_to_fhir(read_study(folder, notify)))


def export_bundle(
    folder: Path,
    kind: BundleType,
    *,
    notify: Notify | None = None,
    progress: Counter | None = None,
) -> Exported:
    """A study folder as the text of one transaction or collection Bundle; ``progress`` is told
    how many resources have been mapped so far."""
    study = read_study(folder, notify)
    counted = _Counted(study_to_fhir(study), progress)
    gc.freeze()  # the study lives to the end: spare the collector from scanning it again
    try:
        text = bundle_text(counted, kind, study.info.study_id)
    finally:
        gc.unfreeze()
    return Exported(study.info.study_id, counted.count, text=text)


def export_ndjson(
    folder: Path,
    output: Path,
    *,
    notify: Notify | None = None,
    progress: Counter | None = None,
) -> Exported:
    """Write a study folder as one NDJSON file per resource type into ``output``, atomically,
    participant by participant so that memory does not grow with the study; a folder whose
    tables are not grouped by participant is read whole (``notify`` is told)."""
    try:
        groups = read_participant_groups(folder, notify=notify)
        return _write_ndjson(output, groups.info, groups, progress)
    except TableNotGrouped as e:
        if notify:
            notify(f"{e}: reading the whole study into memory")
        study = read_study(folder)  # its warnings were given by read_participant_groups
        return _write_ndjson(output, study.info, [study], progress)


class _Counted:
    """An iterable that counts the items taken from it, telling ``progress`` the count."""

    def __init__(self, items: Iterable[Any], progress: Counter | None) -> None:
        self.items, self.count, self.progress = items, 0, progress

    def __iter__(self) -> Iterator[Any]:
        for item in self.items:
            self.count += 1
            if self.progress:
                self.progress(self.count)
            yield item


def _write_ndjson(
    output: Path, info: StudyInfo, studies: Iterable[Study], progress: Counter | None
) -> Exported:
    """Write the study-level resources, then those of each study's rows, one NDJSON file per
    resource type; a resource goes to the part of its file of the mapping that made it, so the
    file lists them mapping by mapping, as for the whole study at once. NDJSON files of an
    earlier export that this one does not write are removed with the commit."""
    stale = [p.name for p in output.glob("*.ndjson")] if output.is_dir() else []
    count = 0
    with StagedFiles(output, stale) as staged:
        rows = (pair for study in studies for pair in rows_to_fhir(study))
        for part, resource in chain(((0, r) for r in study_level_to_fhir(info)), rows):
            line = ndjson_line(resource) + "\n"
            staged.write(f"{resource['resourceType']}.ndjson", line.encode(), part)
            count += 1
            if progress:
                progress(count)
    return Exported(info.study_id, count, files=len(staged.names))


def write_resources(
    resources: list[dict[str, Any]], output: Path, form: Form, study_id: str
) -> None:
    """Write FHIR resources (a pulled study) atomically as a study folder (mapped back to the
    tables), one NDJSON file per resource type, or a Bundle file. NDJSON files of an earlier
    write into the folder that this one does not write are removed with the commit."""
    if form == "study":
        write_study(study_from_fhir(resources), output)
    elif form == "ndjson":
        files = {name: text.encode() for name, text in ndjson_files(resources).items()}
        stale = [p.name for p in output.glob("*.ndjson")] if output.is_dir() else []
        write_files(output, files, stale=stale)
    else:
        write_atomic(output, bundle_json(bundle(resources, form, study_id)).encode())
