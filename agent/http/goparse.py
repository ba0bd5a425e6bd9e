"""Go's parsing rules for query-string numbers and durations, as Consul's HTTP API applies them.

Python's ``int()`` and ``float()`` accept more than Go: ``1_000``, ``+5``,
``" 7 "``, Arabic-Indic digits (``"١٢"``), ``inf``. Consul parses ``?index=``
with ``strconv.ParseUint(s, 10, 64)`` and ``?wait=`` with
``time.ParseDuration``, refusing everything else with a 400. These functions
accept exactly what Go accepts:

- :func:`parse_uint`: one or more ASCII digits, value below 2^64.
- :func:`parse_duration_ns`: ``[-+]?(<number><unit>)+`` or ``0``, where a
  number is ASCII digits with an optional fraction (``1.5``, ``.5``, ``1.``),
  a unit one of ``ns us µs μs ms s m h``, and the total within Go's
  ``time.Duration`` (|d| <= 2^63-1 ns). The answer is integer nanoseconds,
  possibly negative, as Go's.
"""

from __future__ import annotations

from fractions import Fraction

__all__ = ["MAX_DURATION_NS", "MAX_UINT64", "GoSyntaxError", "parse_duration_ns", "parse_uint"]

MAX_UINT64 = (1 << 64) - 1
MAX_DURATION_NS = (1 << 63) - 1

_DIGITS = frozenset("0123456789")
# Longest first, so "ms" is not read as "m" followed by "s".
_UNITS: tuple[tuple[str, int], ...] = (
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),  # U+00B5 micro sign
    ("μs", 1_000),  # U+03BC Greek mu
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
)


class GoSyntaxError(ValueError):
    """Text Go's parser would refuse."""


def parse_uint(text: str) -> int:
    """``strconv.ParseUint(text, 10, 64)``."""
    if not text or not all(c in _DIGITS for c in text):
        raise GoSyntaxError(f"invalid syntax: {text[:32]!r}")
    if len(text) > 20:
        raise GoSyntaxError("value out of range")
    value = int(text, 10)
    if value > MAX_UINT64:
        raise GoSyntaxError("value out of range")
    return value


def parse_duration_ns(text: str) -> int:
    """``time.ParseDuration(text)`` in nanoseconds."""
    s = text
    negative = False
    if s[:1] in ("-", "+"):
        negative = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise GoSyntaxError(f"invalid duration {text[:32]!r}")
    total = Fraction(0)
    pos = 0
    while pos < len(s):
        start = pos
        while pos < len(s) and s[pos] in _DIGITS:
            pos += 1
        whole = s[start:pos]
        fraction = ""
        if pos < len(s) and s[pos] == ".":
            pos += 1
            frac_start = pos
            while pos < len(s) and s[pos] in _DIGITS:
                pos += 1
            fraction = s[frac_start:pos]
        if not whole and not fraction:
            raise GoSyntaxError(f"invalid duration {text[:32]!r}")
        unit = next(((u, n) for u, n in _UNITS if s.startswith(u, pos)), None)
        if unit is None:
            what = "missing unit" if pos >= len(s) else "unknown unit"
            raise GoSyntaxError(f"{what} in duration {text[:32]!r}")
        pos += len(unit[0])
        whole = whole.lstrip("0")
        if len(whole) > 19:  # past 2^63 whatever the unit (and int() of huge text is slow)
            raise GoSyntaxError(f"invalid duration {text[:32]!r}")
        fraction = fraction[:19]  # Go drops digits past its precision too
        number = Fraction(int(whole or "0"))
        if fraction:
            number += Fraction(int(fraction), 10 ** len(fraction))
        total += number * unit[1]
        if total > MAX_DURATION_NS + 1:
            raise GoSyntaxError(f"invalid duration {text[:32]!r}")
    ns = int(total)  # Go truncates the fraction of a nanosecond
    if ns > MAX_DURATION_NS + (1 if negative else 0):
        raise GoSyntaxError(f"invalid duration {text[:32]!r}")
    return -ns if negative else ns
