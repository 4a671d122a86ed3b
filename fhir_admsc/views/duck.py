"""Views run on DuckDB, embedded: resources read from NDJSON files, Bundles or memory.

DuckDB is an optional dependency (``pip install 'fhir-admsc[duckdb]'``); nothing here imports it
until a view runs.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError
from ..output import written_elsewhere
from ..parallel import cpus
from ..resources import check_resources, fhir_files
from .compiler import Compiled, compile_view
from .definition import ViewError
from .dialects import quote
from .study import check_references, dangling_query, study_views, table_queries

SOURCE = "resources"
MEMORY_LIMIT = "768MB"


def _duckdb() -> Any:
    """The duckdb module, or a clear error when the extra that brings it is not installed."""
    try:
        import duckdb
    except ImportError as e:
        raise ConfigurationError(
            "views run on DuckDB, which is not installed: pip install 'fhir-admsc[duckdb]'"
        ) from e
    return duckdb


def available() -> bool:
    """Whether DuckDB is installed (the duckdb extra)."""
    return importlib.util.find_spec("duckdb") is not None


def connect() -> Any:
    """An in-memory DuckDB connection that draws nothing on the terminal and keeps within
    ``MEMORY_LIMIT`` (spilling to its temporary folder beyond)."""
    connection = _duckdb().connect(":memory:", config={"memory_limit": MEMORY_LIMIT})
    connection.execute("SET enable_progress_bar = false")
    return connection


@dataclass
class Inputs:
    """The FHIR files of a command's sources, checked: NDJSON files, JSON documents (Bundles or
    single resources), and the resource types each file holds."""

    ndjson: list[Path] = field(default_factory=list)
    documents: list[Path] = field(default_factory=list)
    types: dict[str, set[Any]] = field(default_factory=dict)

    def by_type(self) -> dict[str, list[Path]] | None:
        """The NDJSON files of each resource type when every file holds one type (as Bulk Data
        and ``export --format ndjson`` write them), else None."""
        if self.documents or any(len(self.types.get(str(p), ())) != 1 for p in self.ndjson):
            return None
        found: dict[str, list[Path]] = {}
        for path in self.ndjson:
            (kind,) = self.types[str(path)]
            found.setdefault(kind, []).append(path)
        return found


def fhir_inputs(sources: Sequence[str | Path]) -> Inputs:
    """The FHIR files of ``sources``, read and checked first as every command reads FHIR files
    (the same size, depth and number limits, the same messages naming file and line), without
    keeping what is read."""
    inputs = Inputs()
    for source in sources:
        check_resources(Path(source), inputs.types, jobs=cpus())
        for path in fhir_files(Path(source)):
            (inputs.ndjson if path.suffix == ".ndjson" else inputs.documents).append(path)
    return inputs


Relations = dict[str, str]  # resource type -> the relation that holds its resources


def _ndjson(files: list[Path]) -> str:
    names = ", ".join(quote(str(p)) for p in files)
    return (
        f"SELECT json AS resource FROM read_ndjson_objects([{names}], format = 'newline_delimited')"
    )


def load_files(connection: Any, sources: Sequence[str | Path]) -> Relations:
    """Make ``resources`` (one JSON column, ``resource``) read the files ``sources`` name; a
    Bundle gives its entries' resources. Where each NDJSON file holds one resource type, a
    relation per type reads only its files: returned by type (a view of a type reads those)."""
    inputs = fhir_inputs(sources)
    parts = []
    if inputs.ndjson:
        parts.append(_ndjson(inputs.ndjson))
    if inputs.documents:
        # DuckDB reserves a buffer of this size: the largest document read, not more
        largest = max(p.stat().st_size for p in inputs.documents) + 1024
        names = ", ".join(quote(str(p)) for p in inputs.documents)
        parts.append(
            "SELECT unnest(CASE WHEN json->>'resourceType' = 'Bundle' THEN "
            "list_transform(coalesce(CAST(json->'entry' AS JSON[]), []::JSON[]), "
            "lambda e: e->'resource') ELSE [json] END) AS resource "
            f"FROM read_json_objects([{names}], format = 'auto', "
            f"maximum_object_size = {largest})"
        )
    connection.execute(f"CREATE OR REPLACE TEMP VIEW {SOURCE} AS " + " UNION ALL ".join(parts))
    relations: Relations = {}
    for kind, files in (inputs.by_type() or {}).items():
        relations[kind] = f"{SOURCE}_{kind}"
        connection.execute(f"CREATE OR REPLACE TEMP VIEW {relations[kind]} AS {_ndjson(files)}")
    return relations


def source_of(kind: str, relations: Relations) -> str:
    """The relation a view of ``kind`` reads: its own files' where they are known (a type no
    file holds: none), else every resource."""
    if not relations:
        return SOURCE
    return relations.get(kind, f"(SELECT resource FROM {SOURCE} WHERE false)")


def load_resources(connection: Any, resources: Iterable[dict[str, Any]]) -> None:
    """Make ``resources`` hold resources given in memory."""
    connection.execute(f"CREATE OR REPLACE TEMP TABLE {SOURCE} (resource JSON)")
    rows = [(json.dumps(r),) for r in resources]
    if rows:
        connection.executemany(f"INSERT INTO {SOURCE} VALUES (?)", rows)


def run(connection: Any, view: dict[str, Any]) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The column names and rows of a view over the loaded resources."""
    compiled = compile_view(view, SOURCE)
    return [c.name for c in compiled.columns], execute(connection, compiled)


def execute(connection: Any, compiled: Compiled) -> list[tuple[Any, ...]]:
    """The rows of a compiled view; a value that breaks the view is a ViewError."""
    try:
        rows: list[tuple[Any, ...]] = connection.execute(compiled.sql).fetchall()
    except _duckdb().InvalidInputException as e:
        raise ViewError("", _reason(str(e))) from e
    return rows


def _reason(text: str) -> str:
    """What an ``error()`` in the query said, without DuckDB's prefix."""
    return text.split("Invalid Input Error: ", 1)[-1].strip()


_COPY_FORMATS = {
    "csv": "FORMAT csv, HEADER true",
    "parquet": "FORMAT parquet",
    "ndjson": "FORMAT json",
}


def write(connection: Any, compiled: Compiled, output: Path | None, fmt: str) -> int:
    """Write a view's rows to ``output`` (atomically) or, as CSV, to standard output; returns
    how many rows were written."""
    if output is None:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "rows.csv"
            count = _copy(connection, compiled, str(path), fmt)
            sys.stdout.flush()
            with path.open("rb") as rows:
                shutil.copyfileobj(rows, sys.stdout.buffer)
            sys.stdout.buffer.flush()
        return count
    with written_elsewhere(output) as temporary:
        return _copy(connection, compiled, temporary, fmt)


def _copy(connection: Any, compiled: Compiled, path: str, fmt: str) -> int:
    try:
        found = connection.execute(
            f"COPY ({compiled.sql}) TO {quote(path)} ({_COPY_FORMATS[fmt]})"
        ).fetchone()
    except _duckdb().InvalidInputException as e:
        raise ViewError("", _reason(str(e))) from e
    return int(found[0]) if found else 0


Table = tuple[list[str], list[tuple[Any, ...]]]


def study_tables(connection: Any, relations: Relations | None = None) -> dict[str, Table]:
    """The study tables (columns and rows) of the loaded resources, through the study's views:
    each view is made a table of its name, then each study table is queried from them."""
    for name, definition in study_views().items():
        source = source_of(definition["resource"], relations or {})
        connection.execute(
            f"CREATE OR REPLACE TEMP TABLE {name} AS {compile_view(definition, source).sql}"
        )
    check_references(connection.execute(dangling_query()).fetchall())
    tables = {}
    for table, sql in table_queries().items():
        cursor = connection.execute(sql)
        tables[table] = ([d[0] for d in cursor.description], cursor.fetchall())
    for name in study_views():  # what the views held is in the tables now
        connection.execute(f"DROP TABLE {name}")
    return tables
