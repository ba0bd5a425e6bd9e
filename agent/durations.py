"""Durations written as Consul (Go) writes them: ``500ms``, ``10s``, ``1h30m``, ``72h``."""

from __future__ import annotations

import re

from google.protobuf.duration_pb2 import Duration

from agent.errors import InvalidArgument

__all__ = ["duration_seconds", "format_duration", "parse_duration", "seconds_duration"]

_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(text: str | float | int) -> float:
    """Seconds in a Go duration string; a bare number is taken as seconds.

    >>> parse_duration("1m30s")
    90.0
    """
    if isinstance(text, bool):
        raise InvalidArgument(f"invalid duration {text!r}")
    if isinstance(text, int | float):
        if text < 0:
            raise InvalidArgument(f"invalid duration {text!r}: negative")
        return float(text)
    s = text.strip()
    if not s:
        raise InvalidArgument('invalid duration ""')
    if s == "0":
        return 0.0
    try:
        value = float(s)
    except ValueError:
        pass
    else:
        if value < 0:
            raise InvalidArgument(f"invalid duration {text!r}: negative")
        return value
    if s.startswith("-"):
        raise InvalidArgument(f"invalid duration {text!r}: negative")
    s = s.removeprefix("+")
    total = 0.0
    pos = 0
    for match in _PART.finditer(s):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(s) or pos == 0:
        raise InvalidArgument(f"invalid duration {text!r}")
    return total


def format_duration(seconds: float) -> str:
    """A Go-style duration string for ``seconds`` (``1m30s``, ``500ms``, ``0s``)."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        ms = seconds * 1000
        return f"{ms:g}ms" if ms >= 1 else f"{seconds * 1e6:g}µs"
    out = ""
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        out += f"{int(hours)}h"
    if hours or minutes:
        out += f"{int(minutes)}m"
    out += f"{round(secs, 9):g}s"
    return out


def duration_seconds(d: Duration, what: str = "duration") -> float:
    """Seconds in ``d``; a negative duration is INVALID_ARGUMENT."""
    if d.seconds < 0 or d.nanos < 0:
        raise InvalidArgument(f"{what} must not be negative")
    return d.seconds + d.nanos / 1e9


def seconds_duration(seconds: float) -> Duration:
    d = Duration()
    d.FromNanoseconds(int(seconds * 1e9))
    return d
