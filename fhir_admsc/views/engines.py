"""The study tables of FHIR data read through the study's views, on the engine asked for."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from . import duck
from . import spark as on_spark
from .study import StudyRows, study_rows


def read_study(engine: str, data: Path | list[dict[str, Any]]) -> StudyRows:
    """The study tables of FHIR files (read by the engine) or of resources in memory, through the
    study's views on ``engine`` (``duckdb`` or ``spark``)."""
    if engine == "spark":
        spark = on_spark.session()
        if isinstance(data, Path):
            on_spark.load_files(spark, [data])
        else:
            on_spark.load_resources(spark, data)
        return study_rows(on_spark.study_tables(spark))
    connection = duck.connect()
    relations: duck.Relations = {}
    if isinstance(data, Path):
        relations = duck.load_files(connection, [data])
    else:
        duck.load_resources(connection, data)
    return study_rows(duck.study_tables(connection, relations))
