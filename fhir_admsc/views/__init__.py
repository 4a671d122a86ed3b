"""SQL on FHIR v2: ViewDefinitions that turn FHIR resources into tables, run as SQL.

``compiler`` turns a ViewDefinition into one SQL query; ``duck`` runs it on DuckDB (embedded).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import file_access
from .definition import ViewError, check_view


def read_view(path: str | Path) -> dict[str, Any]:
    """A ViewDefinition from a JSON file, its shape checked; errors name the file."""
    with file_access(path, "read"):
        text = Path(path).read_text(encoding="utf-8-sig")
    try:
        view = json.loads(text)
    except json.JSONDecodeError as e:
        where = f"line {e.lineno}, column {e.colno}: {e.msg}"
        raise ViewError(str(path), f"is not JSON ({where})") from None
    try:
        check_view(view)
    except ViewError as e:
        raise located(path, e) from None
    return view


def located(path: str | Path, error: ViewError) -> ViewError:
    """``error`` with the view's file named before where in the view it is."""
    return ViewError(f"{path}: {error.where}" if error.where else str(path), error.reason)
