"""What a command shows the person at the terminal, on stderr: a progress line for long steps
(drawn only when stderr is a terminal) and the library's log records at the chosen verbosity."""

from __future__ import annotations

import logging
import sys
import time
from types import TracebackType
from typing import TextIO

_CLEAR = "\r\033[K"
LOGGER = "fhir_admsc"


class Progress:
    """One line on stderr that says how far a step is, redrawn at most ten times a second.

    Called with the count done so far (``progress(n)``) or given a text (``status``); on
    anything but a terminal it draws nothing, so logs and pipes stay clean. Used as a context
    manager, the line is cleared at the end.
    """

    def __init__(
        self,
        label: str,
        total: int | None = None,
        unit: str = "resources",
        stream: TextIO | None = None,
    ) -> None:
        self.label, self.total, self.unit = label, total, unit
        self.stream = stream or sys.stderr
        self.active = _is_terminal(self.stream)
        self._drawn = 0.0
        self._text = ""

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __call__(self, done: int) -> None:
        if not self.active:
            return
        now = time.monotonic()
        if now - self._drawn < 0.1 and done != self.total:
            return
        self._drawn = now
        if self.total:
            shown = f"{done:,} of {self.total:,} {self.unit} ({100 * done // self.total}%)"
        else:
            shown = f"{done:,} {self.unit}"
        self._draw(f"{self.label}: {shown}")

    def status(self, text: str) -> None:
        """Show ``text`` after the label (a step without a count: reading, waiting)."""
        if self.active:
            self._draw(f"{self.label}: {text}")

    def close(self) -> None:
        if self.active and self._text:
            self.stream.write(_CLEAR)
            self.stream.flush()
            self._text = ""

    def _draw(self, text: str) -> None:
        self._text = text
        self.stream.write(_CLEAR + text)
        self.stream.flush()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class _LineFormatter(logging.Formatter):
    """``warning: message``; on a terminal, a progress line being drawn is cleared first."""

    def format(self, record: logging.LogRecord) -> str:
        text = f"{record.levelname.lower()}: {record.getMessage()}"
        return _CLEAR + text if _is_terminal(sys.stderr) else text


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record comes (tests and tools swap it)."""

    def __init__(self) -> None:
        super().__init__()

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def configure_logging(verbosity: int) -> None:
    """Show the library's log records on stderr: errors only (-1, --quiet), warnings such as
    retries (0, the default), every request and token fetch (1, --verbose), or all (2, -vv)."""
    level = {-1: logging.ERROR, 0: logging.WARNING, 1: logging.INFO}.get(verbosity, logging.DEBUG)
    logger = logging.getLogger(LOGGER)
    for handler in [h for h in logger.handlers if isinstance(h, _StderrHandler)]:
        logger.removeHandler(handler)
    handler = _StderrHandler()
    handler.setFormatter(_LineFormatter())
    logger.addHandler(handler)
    logger.setLevel(level)
