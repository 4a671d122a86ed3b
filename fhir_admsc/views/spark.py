"""Views run on Spark: the same ViewDefinitions compiled to Spark SQL (VARIANT for JSON), for data
that outgrow one machine.

pyspark is an optional dependency (``pip install 'fhir-admsc[spark]'``, with Java 17 or later);
nothing here imports it until a view runs. ``session()`` joins the session a cluster job already
has (spark-submit, a notebook) or starts a local one.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError, FileAccessError
from .compiler import Compiled, compile_view
from .definition import ViewError
from .duck import Table, fhir_inputs
from .study import check_references, dangling_query, study_views, table_queries

SOURCE = "resources"
ENGINE = "spark"
ANALYZER_PASSES = 1000
JOBS = 4  # Spark jobs submitted at once by study_tables


def _pyspark() -> tuple[Any, type[BaseException]]:
    """The pyspark.sql module and the base of its errors, or a clear error when the extra that
    brings them is missing."""
    try:
        from pyspark import sql
        from pyspark.errors import PySparkException
    except ImportError as e:
        raise ConfigurationError(
            "views on Spark need pyspark (and Java 17): pip install 'fhir-admsc[spark]'"
        ) from e
    return sql, PySparkException


def session(master: str = "local[*]") -> Any:
    """The active Spark session, or a new one on ``master`` (local cores by default)."""
    sql = _pyspark()[0]
    spark = sql.SparkSession.getActiveSession() or (
        sql.SparkSession.builder.master(master)
        .appName("fhir-admsc")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.log.level", "ERROR")
        .getOrCreate()
    )
    # a repeat of several paths nests deep lambdas, more than the analyzer's default passes
    spark.conf.set("spark.sql.analyzer.maxIterations", str(ANALYZER_PASSES))
    return spark


def load_files(spark: Any, sources: Sequence[str | Path]) -> None:
    """Make the view ``resources`` (one VARIANT column, ``resource``) read NDJSON files and
    Bundles (or single resources) that ``sources`` name."""
    inputs = fhir_inputs(sources)
    ndjson, documents = inputs.ndjson, inputs.documents
    parts = []
    if ndjson:
        spark.read.text([str(p) for p in ndjson]).createOrReplaceTempView("fhir_admsc_lines")
        parts.append(
            "SELECT parse_json(value) AS resource FROM fhir_admsc_lines WHERE trim(value) <> ''"
        )
    if documents:
        spark.read.text([str(p) for p in documents], wholetext=True).createOrReplaceTempView(
            "fhir_admsc_documents"
        )
        parts.append(
            "SELECT explode(CASE WHEN variant_get(d, '$.resourceType', 'STRING') = 'Bundle' "
            "THEN transform(coalesce(try_variant_get(d, '$.entry', 'ARRAY<VARIANT>'), "
            "CAST(array() AS ARRAY<VARIANT>)), e -> variant_get(e, '$.resource')) "
            "ELSE array(d) END) AS resource "
            "FROM (SELECT parse_json(value) AS d FROM fhir_admsc_documents)"
        )
    spark.sql(" UNION ALL ".join(parts)).createOrReplaceTempView(SOURCE)


def load_resources(spark: Any, resources: Iterable[dict[str, Any]], name: str = SOURCE) -> None:
    """Make the view ``name`` hold resources given in memory."""
    lines = [(json.dumps(r),) for r in resources]
    frame = spark.createDataFrame(lines, "value STRING")
    frame.selectExpr("parse_json(value) AS resource").createOrReplaceTempView(name)


def execute(spark: Any, compiled: Compiled) -> list[tuple[Any, ...]]:
    """The rows of a compiled view; a value that breaks the view is a ViewError."""
    return [tuple(row) for row in _collect(spark, compiled.sql)]


def run(
    spark: Any, view: dict[str, Any], source: str = SOURCE
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """The column names and rows of a view over the loaded resources (the view ``source``)."""
    compiled = compile_view(view, source, ENGINE)
    return [c.name for c in compiled.columns], execute(spark, compiled)


def _collect(spark: Any, sql: str) -> list[Any]:
    try:
        return list(spark.sql(sql).collect())
    except _pyspark()[1] as e:
        raise ViewError("", _reason(str(e))) from e


def _reason(text: str) -> str:
    """What a ``raise_error()`` in the query said, without Spark's wrapping."""
    found = re.search(r"\[USER_RAISED_EXCEPTION\] (.*?)(?: SQLSTATE: \w+)?$", text, re.M)
    return found[1].strip() if found else text.strip().splitlines()[0]


def write(spark: Any, compiled: Compiled, output: Path, fmt: str) -> int:
    """Write a view's rows to the folder ``output`` as Spark writes (part files), through a
    temporary folder beside it; returns how many rows were written."""
    if output.exists():
        raise FileAccessError(f"{output} exists: Spark writes a new folder")
    if not output.absolute().parent.is_dir():
        raise FileAccessError(f"cannot write {output}: {output.absolute().parent} does not exist")
    staging = output.with_name(f".{output.name}.writing")
    shutil.rmtree(staging, ignore_errors=True)
    frame = spark.sql(compiled.sql)
    writer = frame.write.mode("errorifexists")
    try:
        if fmt == "csv":
            writer.option("header", "true").csv(str(staging))
        elif fmt == "parquet":
            writer.parquet(str(staging))
        else:
            writer.json(str(staging))
    except _pyspark()[1] as e:
        shutil.rmtree(staging, ignore_errors=True)
        raise ViewError("", _reason(str(e))) from e
    count = (
        spark.read.format("json" if fmt == "ndjson" else fmt)
        .option("header", "true")
        .load(str(staging))
        .count()
    )
    staging.rename(output)
    return int(count)


def study_tables(spark: Any) -> dict[str, Table]:
    """The study tables of the loaded resources through the study's views, on Spark."""

    def view(item: tuple[str, dict[str, Any]]) -> None:
        # each view is read by several table queries: computed once and kept
        frame = spark.sql(compile_view(item[1], SOURCE, ENGINE).sql).cache()
        frame.createOrReplaceTempView(item[0])
        frame.count()

    def table(sql: str) -> Table:
        frame = spark.sql(sql)
        return list(frame.columns), [tuple(row) for row in frame.collect()]

    # Spark plans and runs several small jobs at once: the views, then the tables, side by side
    with ThreadPoolExecutor(JOBS) as pool:
        list(pool.map(view, study_views().items()))
        check_references([tuple(row) for row in spark.sql(dangling_query()).collect()])
        queries = table_queries(ENGINE)
        return dict(zip(queries, pool.map(table, queries.values()), strict=True))
