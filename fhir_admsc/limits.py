"""Limits on what fhir-admsc reads: input file size, JSON document size and nesting depth, CSV rows.

The defaults sit far above any real study (the demo exports about 92 KB of Bundle JSON per
participant; a study of 20,000 participants is a 1.8 GB Bundle, or NDJSON files of at most 1.1 GB)
and only stop pathological input before it exhausts memory or the stack. Each limit can be raised
with an environment variable.
"""

from __future__ import annotations

import gc
import json
import math
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fhir_admsc.errors import ConfigurationError, InvalidDataError, Problem, file_access

MB = 1024 * 1024


@dataclass(frozen=True)
class Limit:
    """One limit: its environment variable, its default and what it counts."""

    env: str
    default: int
    unit: str

    def value(self) -> int:
        """The limit in force: the environment variable when set, else the default."""
        text = os.environ.get(self.env, "").strip()
        if not text:
            return self.default
        if not text.isdigit() or int(text) < 1:
            raise ConfigurationError(f"{self.env}={text!r} is not a whole number of {self.unit}")
        return int(text)

    def exceeded(self, what: str) -> str:
        """The message for input beyond this limit."""
        return f"{what} the limit of {self.value()} {self.unit} (set {self.env} to raise it)"


FILE_MB = Limit("FHIR_ADMSC_MAX_FILE_MB", 4096, "MB for one input file")
JSON_MB = Limit("FHIR_ADMSC_MAX_JSON_MB", 2048, "MB for one JSON document")
# The resources this project writes nest 11 levels deep (a Bundle included).
JSON_DEPTH = Limit("FHIR_ADMSC_MAX_JSON_DEPTH", 64, "levels of JSON nesting")
CSV_ROWS = Limit("FHIR_ADMSC_MAX_CSV_ROWS", 10_000_000, "rows for one table")

# The tokens that change the nesting depth; strings are matched whole so brackets inside them
# do not count.
_DEPTH_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[{]|[\]}]')


def read_text(path: Path) -> str:
    """The text of an input file (UTF-8, a BOM dropped, line ends as they are: a CR inside a quoted
    CSV cell is data); a file over the size limit is not read."""
    check_size(path)
    with file_access(path, "read"):
        data = path.read_bytes()
    return data.decode("utf-8-sig")


def check_size(path: Path) -> None:
    """Refuse an input file over the size limit (before reading it)."""
    with file_access(path, "read"):
        size = path.stat().st_size
    if size > FILE_MB.value() * MB:
        raise InvalidDataError([Problem(str(path), FILE_MB.exceeded("is larger than"))])


def check_rows(text: str, source: str) -> None:
    """Refuse CSV text with more rows than the limit (counted as lines, before any parsing)."""
    if text.count("\n") - 1 > CSV_ROWS.value():
        raise InvalidDataError([Problem(source, CSV_ROWS.exceeded("has more rows than"))])


def loads(text: str | bytes, source: str, line: int = 1) -> Any:
    """``json.loads`` of one document that starts on ``line`` of ``source``, refused when it is
    larger or nests deeper than the limits (syntax errors raise ``json.JSONDecodeError`` as usual)."""
    if len(text) > JSON_MB.value() * MB:
        raise InvalidDataError([Problem(source, JSON_MB.exceeded("is larger than"), line)])
    if isinstance(text, bytes):
        try:
            text = text.decode(json.detect_encoding(text), "surrogatepass")
        except UnicodeDecodeError as e:  # no JSON text either: reported where JSON errors are
            before = text[: e.start].decode("utf-8", "replace")
            raise json.JSONDecodeError(f"not UTF-8 (byte {e.start})", before, len(before)) from None
    limit = JSON_DEPTH.value()
    try:
        value = _parse(text)
    except _NotFinite:
        problem = "holds NaN or an infinite number, which JSON cannot carry"
        raise InvalidDataError([Problem(source, problem, line)]) from None
    except RecursionError:
        value = None  # deeper than the parser's own stack allows: located below
    except json.JSONDecodeError:
        raise
    except ValueError:  # an integer of more digits than Python converts
        digits = sys.get_int_max_str_digits()
        problem = f"holds a number too long to read (more than {digits} digits)"
        raise InvalidDataError([Problem(source, problem, line)]) from None
    else:
        # A document with fewer brackets than the limit cannot nest deeper: most need no walk.
        if text.count("{") + text.count("[") <= limit or _depth(value) <= limit:
            return value
    where = line + text.count("\n", 0, _too_deep_at(text, limit))
    raise InvalidDataError([Problem(source, JSON_DEPTH.exceeded("nests deeper than"), where)])


def _parse(text: str) -> Any:
    """``json.loads`` with non-finite numbers refused, the cycle collector paused: parsing makes
    no cycles, and the collector would walk the new objects again and again (most of the time of
    a large Bundle)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        return json.loads(text, parse_float=_finite_number, parse_constant=_not_finite)
    finally:
        if collecting:
            gc.enable()


class _NotFinite(ValueError):
    """A number JSON cannot carry: NaN, Infinity, or one too large for a float (1e999)."""


def _finite_number(text: str) -> float:
    """A JSON number with a fraction or exponent, as json reads it; refused when not finite (the
    parser's own hook: no second walk over the document)."""
    value = float(text)
    if math.isinf(value):
        raise _NotFinite(text)
    return value


def _not_finite(text: str) -> float:
    raise _NotFinite(text)


def _depth(value: Any) -> int:
    """How deep ``value`` nests, walked level by level (no recursion, whatever the depth); a
    parsed document holds only dicts and lists as containers, so their exact types are tested."""
    depth, level = 0, [value] if isinstance(value, dict | list) else []
    while level:
        depth += 1
        deeper: list[Any] = []
        keep = deeper.append
        for item in level:
            for child in item.values() if type(item) is dict else item:
                if type(child) is dict or type(child) is list:
                    keep(child)
        level = deeper
    return depth


def _too_deep_at(text: str, limit: int) -> int:
    """The offset in ``text`` of the first bracket beyond ``limit`` levels."""
    depth = 0
    for token in _DEPTH_TOKENS.finditer(text):
        bracket = token.group()
        if bracket in ("[", "{"):
            depth += 1
            if depth > limit:
                return token.start()
        elif bracket in ("]", "}"):
            depth -= 1
    return 0
