"""Keep careless or hostile clients from flooding the agent's log.

aiohttp logs a full traceback at ERROR for input it could not take (a body
that is not the gzip it claims, a malformed request line, a header too long):
8,000 bad requests once wrote 8 MB of client log. :class:`BadInputLogFilter`,
installed once on the ``aiohttp.server`` and ``aiohttp.access`` loggers, turns
each such record into one short line without the traceback, at most one per
kind of error per :data:`WINDOW` seconds (with the count dropped meanwhile);
records that are not about bad input pass untouched.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

__all__ = ["WINDOW", "BadInputLogFilter", "install_bad_input_log_filter"]

WINDOW = 60.0

# Errors that say the client sent something unusable, by class name so that
# aiohttp's private module layout does not matter.
_BAD_INPUT = frozenset(
    {
        "BadHttpMessage",
        "BadHttpMethod",
        "BadStatusLine",
        "ContentEncodingError",
        "ContentLengthError",
        "InvalidHeader",
        "InvalidURLError",
        "LineTooLong",
        "PayloadEncodingError",
        "RequestPayloadError",
        "TransferEncodingError",
        "UnicodeDecodeError",
        "UnicodeEncodeError",
    }
)


def _is_bad_input(exc: BaseException | None) -> str | None:
    seen = 0
    while exc is not None and seen < 8:
        if type(exc).__name__ in _BAD_INPUT:
            return type(exc).__name__
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None


class BadInputLogFilter(logging.Filter):
    """One short line per kind of bad input per window; tracebacks dropped."""

    def __init__(self, window: float = WINDOW, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.window = window
        self.clock = clock
        self._last: dict[str, float] = {}
        self._dropped: dict[str, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        kind = _is_bad_input(exc)
        if kind is None:
            return True
        now = self.clock()
        last = self._last.get(kind)
        if last is not None and now - last < self.window:
            self._dropped[kind] = self._dropped.get(kind, 0) + 1
            return False
        self._last[kind] = now
        dropped = self._dropped.pop(kind, 0)
        record.msg = "bad http input refused kind=%s error=%s dropped_since_last=%d"
        record.args = (kind, str(exc)[:200].encode("ascii", "backslashreplace").decode(), dropped)
        record.exc_info = None
        record.exc_text = None
        record.levelno, record.levelname = logging.INFO, "INFO"
        return True


_INSTALLED: BadInputLogFilter | None = None


def install_bad_input_log_filter() -> BadInputLogFilter:
    """Install the filter once per process on aiohttp's server loggers."""
    global _INSTALLED
    if _INSTALLED is None:
        _INSTALLED = BadInputLogFilter()
        for name in ("aiohttp.server", "aiohttp.web", "aiohttp.access"):
            logging.getLogger(name).addFilter(_INSTALLED)
    return _INSTALLED
