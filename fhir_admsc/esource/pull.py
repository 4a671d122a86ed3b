"""``ehr-pull``: the records of every linked participant, read from the hospital's server and
written as a draft study folder with its provenance and review tables, all at once or not at all."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..auth import connect
from ..client import RetryPolicy
from ..errors import ConfigurationError
from ..output import refuse_non_empty_folder, write_files
from ..study import STUDY_FILE, TABLES
from ..tables import CsvText, read_study, study_info_json
from .draft import COLUMNS, PROVENANCE, REVIEW, Draft, draft_study
from .hospital import fetch_group, fetch_records
from .link import read_links

PROVENANCE_FILE, REVIEW_FILE = "provenance.csv", "review.csv"


def _csv(columns: list[str], rows: list[dict[str, str]]) -> bytes:
    text = CsvText(columns)
    for row in rows:
        text.add([row[column] for column in columns])
    return text.value().encode()


def pull_draft(
    study_dir: Path,
    link_file: Path,
    output: Path,
    window_days: int,
    *,
    retry: RetryPolicy | None = None,
    group: str | None = None,
    force: bool = False,
    told: Callable[[str], None] | None = None,
    **server: object,
) -> Draft:
    """Read the study and its links, pull each linked participant's records (one by one, or out
    of a Bulk Data export of the hospital's ``group`` of them) and write the draft folder
    ``output`` (study.json, the tables, provenance.csv, review.csv)."""
    refuse_non_empty_folder(output, force)
    study = read_study(study_dir)
    links = read_links(link_file, {p.participant_id for p in study.participants})
    client = connect(**server)  # type: ignore[arg-type]
    client.private = True
    if retry is not None:
        client.retry = retry
    capabilities = client.capabilities()
    records = []
    if group is not None:
        if not capabilities.group_export:
            raise ConfigurationError(
                "the server's CapabilityStatement declares no Group/[id]/$export: "
                "leave out `group` to read each participant's records"
            )
        if told is not None:
            told(f"exporting the records of group {group}")
        records = fetch_group(client, capabilities, links, group, notify=told)
    for link in links if group is None else []:
        if told is not None:
            told(f"reading the records of {link.participant_id}")
        records.append(fetch_records(client, capabilities, link))
    draft = draft_study(study, records, client.base_url.rstrip("/"), window_days)
    contents = {STUDY_FILE: study_info_json(study.info).encode()}
    for table in TABLES:
        contents[table.file] = _csv(COLUMNS[table.file], draft.tables[table.file])
    contents[PROVENANCE_FILE] = _csv(PROVENANCE, draft.provenance)
    contents[REVIEW_FILE] = _csv(REVIEW, draft.review)
    write_files(output, contents)
    return draft
