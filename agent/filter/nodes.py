"""The syntax tree of a filter expression: immutable, shared by every evaluation.

A compiled tree holds no per-request state (regular expressions are compiled
once, at parse time), so one tree may be cached and evaluated concurrently.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TypeAlias

from agent.filter.regex import Pattern

__all__ = [
    "And",
    "Collection",
    "CollectionOp",
    "Match",
    "MatchOp",
    "Node",
    "Not",
    "Or",
    "Selector",
]


class MatchOp(enum.Enum):
    """A matching operator; ``contains`` is ``in`` with its operands swapped, as in bexpr."""

    EQUAL = "=="
    NOT_EQUAL = "!="
    IN = "in"
    NOT_IN = "not in"
    IS_EMPTY = "is empty"
    IS_NOT_EMPTY = "is not empty"
    MATCHES = "matches"
    NOT_MATCHES = "not matches"

    @property
    def negated(self) -> bool:
        """True for the operators that are the negation of another one."""
        return self in _NEGATED

    @property
    def takes_value(self) -> bool:
        """False for ``is empty`` and ``is not empty``."""
        return self not in (MatchOp.IS_EMPTY, MatchOp.IS_NOT_EMPTY)

    @property
    def when_missing(self) -> bool:
        """The result for a selector that finds nothing (bexpr's NotPresentDisposition).

        Nothing equals, contains or matches a missing field, and a missing field
        is empty: so ``==``, ``in``, ``matches`` and ``is not empty`` are false,
        and their negations are true.
        """
        return self in (MatchOp.NOT_EQUAL, MatchOp.NOT_IN, MatchOp.IS_EMPTY, MatchOp.NOT_MATCHES)


_NEGATED = frozenset({MatchOp.NOT_EQUAL, MatchOp.NOT_IN, MatchOp.IS_NOT_EMPTY, MatchOp.NOT_MATCHES})


class CollectionOp(enum.Enum):
    """``all`` / ``any`` over a list or a map."""

    ALL = "all"
    ANY = "any"


@dataclass(frozen=True, slots=True)
class Selector:
    """A path into a row: ``Service.Meta["rack-1"]`` is ``("Service", "Meta", "rack-1")``."""

    path: tuple[str, ...]
    text: str  # as written, for error messages

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class Match:
    """``<selector> <op> <value>`` (or ``<value> in <selector>``, or ``<selector> is empty``)."""

    selector: Selector
    op: MatchOp
    value: str | None  # the raw literal, converted to the field's type when compared
    op_text: str  # as written ("contains" or "in"), for error messages
    pattern: Pattern | None = None  # compiled value of matches / not matches


@dataclass(frozen=True, slots=True)
class Not:
    """``not <operand>``."""

    operand: Node


@dataclass(frozen=True, slots=True)
class And:
    """``a and b and ...``, evaluated left to right, stopping at the first false."""

    operands: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    """``a or b or ...``, evaluated left to right, stopping at the first true."""

    operands: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Collection:
    """``all|any <selector> as <binding> { <body> }``.

    Bindings as in bexpr: ``as x`` binds a list's element or a map's key;
    ``as i, v`` binds index (or key) and element (or value); ``_`` skips one.
    """

    op: CollectionOp
    selector: Selector
    default_name: str | None
    index_name: str | None
    value_name: str | None
    body: Node


Node: TypeAlias = Match | Not | And | Or | Collection
