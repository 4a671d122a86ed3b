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
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError
from ..output import written_elsewhere
from ..resources import check_resources, fhir_files
from .compiler import Compiled, compile_view
from .definition import ViewError
from .dialects import quote
from .study import check_references, dangling_query, study_views, table_queries

SOURCE = "resources"
LARGEST_DOCUMENT = 2**30  # bytes of one Bundle read whole (NDJSON is read a line at a time)


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
    """An in-memory DuckDB connection."""
    return _duckdb().connect(":memory:")


def fhir_inputs(sources: Sequence[str | Path]) -> tuple[list[Path], list[Path]]:
    """The NDJSON files and the JSON files (Bundles or single resources) of ``sources``, read
    and checked first as every command reads FHIR files (the same size, depth and number limits,
    the same messages naming file and line), without keeping what is read."""
    ndjson: list[Path] = []
    documents: list[Path] = []
    for source in sources:
        check_resources(Path(source))
        for path in fhir_files(Path(source)):
            (ndjson if path.suffix == ".ndjson" else documents).append(path)
    return ndjson, documents


def load_files(connection: Any, sources: Sequence[str | Path]) -> None:
    """Make ``resources`` (one JSON column, ``resource``) read the files ``sources`` name; a
    Bundle gives its entries' resources."""
    ndjson, documents = fhir_inputs(sources)
    parts = []
    if ndjson:
        names = ", ".join(quote(str(p)) for p in ndjson)
        parts.append(
            f"SELECT json AS resource FROM read_ndjson_objects([{names}], "
            "format = 'newline_delimited')"
        )
    if documents:
        names = ", ".join(quote(str(p)) for p in documents)
        parts.append(
            "SELECT unnest(CASE WHEN json->>'resourceType' = 'Bundle' THEN "
            "list_transform(coalesce(CAST(json->'entry' AS JSON[]), []::JSON[]), "
            "lambda e: e->'resource') ELSE [json] END) AS resource "
            f"FROM read_json_objects([{names}], format = 'auto', "
            f"maximum_object_size = {LARGEST_DOCUMENT})"
        )
    connection.execute(f"CREATE OR REPLACE TEMP VIEW {SOURCE} AS " + " UNION ALL ".join(parts))


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


def study_tables(connection: Any) -> dict[str, Table]:
    """The study tables (columns and rows) of the loaded resources, through the study's views:
    each view is made a table of its name, then each study table is queried from them."""
    for name, definition in study_views().items():
        connection.execute(
            f"CREATE OR REPLACE TEMP TABLE {name} AS {compile_view(definition, SOURCE).sql}"
        )
    check_references(connection.execute(dangling_query()).fetchall())
    tables = {}
    for table, sql in table_queries().items():
        cursor = connection.execute(sql)
        tables[table] = ([d[0] for d in cursor.description], cursor.fetchall())
    return tables
