"""Compiling a ``?filter=`` expression once and applying it to rows."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from agent.errors import InvalidArgument
from agent.filter.evaluate import evaluate
from agent.filter.nodes import Node
from agent.filter.parser import ParseError, parse

__all__ = ["Filter", "apply_filter", "compile_filter"]

T = TypeVar("T")

# Blocking queries re-run the same filter on every wake-up; a compiled filter
# is immutable, so parsing once per distinct expression is enough.
_CACHE_SIZE = 256
# Show at most this much of the text at an error, so a message stays one line.
_SNIPPET = 20


@dataclass(frozen=True, slots=True)
class Filter:
    """A compiled filter expression; immutable and safe to share across requests."""

    expression: str
    root: Node = field(repr=False, compare=False)

    def matches(self, row: Mapping[str, Any]) -> bool:
        """Whether ``row`` passes the filter.

        Raises ``InvalidArgument`` when an operator meets a value it cannot
        handle (``==`` on a list, ``matches`` on a number), as bexpr does.
        """
        return evaluate(self.root, row)


def compile_filter(expression: str) -> Filter:
    """Parse ``expression``; a malformed one raises ``InvalidArgument`` (HTTP 400)
    saying where (1-based position) and what was expected."""
    return _compile(expression)


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _compile(expression: str) -> Filter:
    try:
        root = parse(expression)
    except ParseError as exc:
        raise InvalidArgument(_describe(expression, exc)) from None
    return Filter(expression, root)


def apply_filter(
    expression: str | None,
    rows: Iterable[T],
    to_row: Callable[[T], Mapping[str, Any]],
) -> list[T]:
    """The items of ``rows`` whose ``to_row`` view passes ``expression``, in order.

    ``None``, an empty or an all-blank expression keeps every item.
    """
    if expression is None or not expression.strip():
        return list(rows)
    compiled = compile_filter(expression)
    return [item for item in rows if compiled.matches(to_row(item))]


def _describe(expression: str, exc: ParseError) -> str:
    offset = exc.offset
    if offset >= len(expression):
        where = "end of input"
    else:
        rest = expression[offset:]
        snippet = rest if len(rest) <= _SNIPPET else rest[:_SNIPPET] + "..."
        where = f"near {snippet!r}"
    # Consul (bexpr.CreateFilter) prefixes its parser's message so; the rest is ours.
    return (
        "Failed to create boolean expression evaluator: "
        f"invalid filter expression at position {offset + 1} ({where}): {exc.message}"
    )
