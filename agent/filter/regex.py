"""User patterns, evaluated in linear time by RE2 with Go's (Consul's) syntax.

Consul runs every user pattern (``?filter=`` ``matches``, user event filters)
through Go's ``regexp``, an RE2 engine: time linear in the text, whatever the
pattern. Python's ``re`` backtracks: ``(a+)+$`` against 27 ``a`` and a ``!``
held an agent's event loop for seconds, doubling with each character. Here
every user pattern goes through Google's RE2 (the ``re2`` module of the
``google-re2`` wheel), which is the C++ twin of Go's engine and accepts the
same syntax (``\\z``, ``(?i)``, ``\\pL``, ``(?P<name>...)``; no backreferences
and no lookaround, refused as Go refuses them).

Bounds: a pattern longer than :data:`MAX_PATTERN_LENGTH` characters is refused
before compiling, and RE2's program memory is capped by :data:`MAX_MEMORY` (a
pattern whose program would not fit is refused, not slowly run). Both refusals
are :class:`PatternError` with a short text, which callers map to HTTP 400 /
INVALID_ARGUMENT.

Text and pattern are matched as UTF-8 bytes; a lone surrogate (which Python
strings can hold and Go strings cannot) is passed through as the invalid bytes
it would be in Go, so it never raises.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import re2

__all__ = ["MAX_MEMORY", "MAX_PATTERN_LENGTH", "Pattern", "PatternError", "compile_pattern"]

# Real patterns are short (a service name, a version prefix); 1 KiB leaves room
# for long alternations while keeping compile cost and memory small.
MAX_PATTERN_LENGTH = 1024
# RE2's budget for one compiled program (its default is 8 MiB); a pattern that
# needs more, like a{1000}{1000}, fails to compile instead of eating memory.
MAX_MEMORY = 1 << 20
# Compiled patterns are immutable; blocking queries and event lists reuse them.
_CACHE_SIZE = 256


class PatternError(ValueError):
    """A pattern RE2 refuses, or one too long; ``message`` is short and safe to show."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _options() -> Any:
    options = re2.Options()
    options.log_errors = False  # RE2 would print every refused pattern to stderr
    options.max_mem = MAX_MEMORY
    return options


@dataclass(frozen=True, slots=True)
class Pattern:
    """A compiled user pattern; ``search`` is Go's ``regexp.MatchString``."""

    source: str
    _regexp: Any = field(repr=False, compare=False)

    def search(self, text: str) -> bool:
        """Whether the pattern matches anywhere in ``text`` (linear time)."""
        return self._regexp.search(_utf8(text)) is not None


def compile_pattern(source: str) -> Pattern:
    """``source`` compiled by RE2; raises :class:`PatternError` if refused."""
    if len(source) > MAX_PATTERN_LENGTH:
        raise PatternError(
            f"regular expression too long: {len(source)} characters, at most {MAX_PATTERN_LENGTH}"
        )
    return _compile(source)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _compile(source: str) -> Pattern:
    try:
        regexp = re2.compile(_utf8(source), _options())
    except re2.error as exc:
        raise PatternError(_error_text(exc)) from None
    return Pattern(source, regexp)


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _error_text(exc: BaseException) -> str:
    detail = exc.args[0] if exc.args else ""
    if isinstance(detail, bytes):
        detail = detail.decode("utf-8", "replace")
    text = str(detail) or "invalid pattern"
    return text.encode("ascii", "backslashreplace").decode("ascii")[:200]
