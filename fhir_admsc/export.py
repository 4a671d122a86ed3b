"""A study folder to FHIR: in memory as a list or a Bundle's text, or streamed participant by
participant into NDJSON files, so that memory does not grow with the study."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import chain
from multiprocessing.sharedctypes import Synchronized
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
from fhir_admsc.output import Part, StagedFiles, scratch_folder, write_atomic, write_files
from fhir_admsc.parallel import WorkerLost, can_fork, counter, run_forked
from fhir_admsc.study import Study, StudyInfo
from fhir_admsc.tables import (
    ParticipantGroups,
    TableNotGrouped,
    read_participant_groups,
    read_study,
    write_study,
)

Notify = Callable[[str], None]
Form = Literal["study", "ndjson", "transaction", "collection"]
Counter = Callable[[int], None]

SMALLEST_STUDY = 100  # participants: below, forking workers costs more than it saves


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
    jobs: int = 1,
) -> Exported:
    """Write a study folder as one NDJSON file per resource type into ``output``, atomically,
    participant by participant so that memory does not grow with the study; a folder whose
    tables are not grouped by participant is read whole (``notify`` is told).

    With ``jobs`` > 1, a study of ``SMALLEST_STUDY`` participants or more is read, mapped and
    written in that many worker processes, a share of the participants each; the files are
    byte for byte those of one process. A defect in the folder (or any failure of a worker)
    sends the export back to one process, which reports it as it always does.
    """
    try:
        groups = read_participant_groups(folder, notify=notify)
        if jobs > 1 and len(groups.participants) >= SMALLEST_STUDY and can_fork():
            try:
                return _write_ndjson_shared(output, groups, jobs, progress)
            except (_ShareFailed, WorkerLost):
                pass  # one process says what went wrong
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
            _write_line(staged, resource, part)
            count += 1
            if progress:
                progress(count)
    return Exported(info.study_id, count, files=len(staged.names))


def _write_line(staged: StagedFiles, resource: dict[str, Any], part: Part) -> None:
    """Append ``resource`` as a line of its type's NDJSON file, to part ``part``."""
    line = ndjson_line(resource) + "\n"
    staged.write(f"{resource['resourceType']}.ndjson", line.encode(), part)


class _ShareFailed(Exception):
    """A worker of a shared export found a defect or failed: its files are gone."""


def _write_ndjson_shared(
    output: Path, groups: ParticipantGroups, jobs: int, progress: Counter | None
) -> Exported:
    """``_write_ndjson`` of ``groups`` by ``jobs`` forked workers, each mapping a share of the
    participants into its own pieces of the files (part by part, as one process does), which are
    joined share by share; raises _ShareFailed, leaving nothing, when a worker did not finish.

    The workers write into a scratch folder of the output that goes, whatever remains in it,
    before the output folder is committed or left as it was."""
    groups.prepare()  # once here, rather than once in each worker
    stale = [p.name for p in output.glob("*.ndjson")] if output.is_dir() else []
    done = counter()
    steps = _shares(groups.steps, jobs)
    with StagedFiles(output, stale) as staged, scratch_folder(output) as scratch:
        count = 0
        for resource in study_level_to_fhir(groups.info):
            _write_line(staged, resource, (0, -1))
            count += 1

        def poll() -> None:
            if progress:
                progress(count + done.value)  # count: the study-level resources, until joined

        shares = run_forked(lambda share: _write_share(scratch, groups, share, done), steps, poll)
        if any(share is None for share in shares):
            raise _ShareFailed
        for rank, (pieces, written) in enumerate(s for s in shares if s is not None):
            for name, parts in pieces.items():
                for part, temporary in parts.items():
                    staged.adopt(name, (part, rank), temporary)  # type: ignore[index]
            count += written
        if progress:
            progress(count)
    return Exported(groups.info.study_id, count, files=len(staged.names))


# What reading a row as cells only costs (the rows before a share), against reading, mapping and
# writing it: measured on synthetic studies, about a tenth.
SKIP = 0.09


def _shares(steps: int, jobs: int) -> list[range]:
    """``jobs`` consecutive ranges of ``steps`` of about equal cost: share k also reads the rows
    before it, at SKIP of a step each, so the later shares are smaller (k starts at
    steps * (1 - (1 - SKIP) ** k) / (1 - (1 - SKIP) ** jobs))."""
    whole = 1 - (1 - SKIP) ** jobs
    bounds = [round(steps * (1 - (1 - SKIP) ** k) / whole) for k in range(jobs + 1)]
    return [range(start, stop) for start, stop in zip(bounds, bounds[1:], strict=False)]


_Share = tuple[dict[str, dict[Part, str]], int]


def _write_share(
    scratch: Path, groups: ParticipantGroups, share: range, done: Synchronized[int]
) -> _Share | None:
    """In a worker: the participants of ``share`` written into temporary pieces of the files
    in ``scratch``, handed over with how many resources they hold; None on any failure (one
    process then says what it was), Ctrl-C included."""
    staged = StagedFiles(scratch)
    count = 0
    try:
        for study in groups.share(share):
            for part, resource in rows_to_fhir(study):
                _write_line(staged, resource, part)
                count += 1
                if count % 1000 == 0:
                    with done.get_lock():
                        done.value += 1000
        return staged.hand_over(), count
    except BaseException:  # noqa: BLE001 - the worker's result says it failed; the parent acts
        staged.discard()
        return None


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
