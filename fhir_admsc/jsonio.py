"""Compact JSON text of FHIR resources, written by the fastest encoder that is exact for them.

orjson (the optional ``fast`` extra) encodes resources about 12 times faster than the standard
library; it writes the same text for everything a resource holds (strings with their non-ASCII
characters, integers, the shortest digits of every float) except the form of floats below 1e-4,
which it writes without an exponent (``0.00001`` for ``1e-05``: the same number). What it cannot
encode exactly (integers beyond 64 bits) goes to the standard library, as does everything when
orjson is not installed. Parsing stays with the standard library: orjson reads integers of more
than 19 digits as floats, and is not faster here once the cycle collector is paused (limits.py).
"""

from __future__ import annotations

import json
from typing import Any

try:
    import orjson
except ImportError:  # the extra is not installed
    orjson = None


def compact(value: Any) -> str:
    """``value`` as JSON text without spaces, non-ASCII characters kept."""
    if orjson is not None:
        try:
            return orjson.dumps(value).decode()
        except TypeError:  # an integer beyond 64 bits, a key that is not a string
            pass
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
