"""Evaluating a filter's syntax tree against one Consul-shaped row.

Rows are JSON-like: mappings, lists, strings, numbers, booleans and None.
The rules follow go-bexpr (``evaluate.go``) as Consul runs it:

- A selector walks mappings by key. A key that is absent, a JSON ``null``, or
  a step into a string or number finds nothing, and the operator answers its
  "missing" result: ``==``, ``in``/``contains``, ``matches`` and
  ``is not empty`` are false; ``!=``, ``not in``, ``not matches`` and
  ``is empty`` are true. (bexpr knows the row's static type and rejects an
  unknown top-level field when the filter is created; we have no types, so we
  treat every unknown field like a missing map key and never error for it.)
- A selector that meets a list before its end continues into every element
  and is true if it is true for ANY element, as Consul's bexpr does for
  ``Checks.Status == "passing"`` on ``/v1/health/service``. The operator is
  applied per element, so ``Checks.Status != "passing"`` means "some check is
  not passing"; ``not Checks.Status == "passing"`` means "no check is
  passing". A numeric step (``Checks.0.Status``) indexes the list instead.
- ``==``/``!=`` convert the literal to the field's type (bool as Go's
  ``strconv.ParseBool``, integers as ``ParseInt`` with base prefixes,
  floats); a literal that does not convert is simply not equal.
- ``in``/``contains``: substring of a string, key of a map, element of a list
  (each element compared as ``==`` does).
- ``is empty``: length zero of a string, list or map.
- ``matches``: regular-expression search in a string.
- Applying an operator to a value it cannot handle (``==`` on a list,
  ``matches`` on a number, ``contains`` on a boolean) raises
  ``InvalidArgument``, as bexpr refuses such a filter with a 400.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, TypeAlias

from agent.errors import InvalidArgument
from agent.filter.nodes import And, Collection, CollectionOp, Match, MatchOp, Node, Not, Or

__all__ = ["evaluate"]

# Names bound by enclosing all/any: (name, value) pairs, innermost last.
Bindings: TypeAlias = tuple[tuple[str, Any], ...]

_GO_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_GO_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})
_GO_OCTAL = re.compile(r"([+-]?)0([0-7]+)")


def evaluate(node: Node, row: Mapping[str, Any], bindings: Bindings = ()) -> bool:
    """Whether ``row`` satisfies ``node``; raises ``InvalidArgument`` on a type misuse."""
    if isinstance(node, Match):
        root, path = _root(node.selector.path, row, bindings)
        return _match_at(node, root, path, 0)
    if isinstance(node, And):
        return all(evaluate(operand, row, bindings) for operand in node.operands)
    if isinstance(node, Or):
        return any(evaluate(operand, row, bindings) for operand in node.operands)
    if isinstance(node, Not):
        return not evaluate(node.operand, row, bindings)
    return _collection(node, row, bindings)


def _root(
    path: tuple[str, ...], row: Mapping[str, Any], bindings: Bindings
) -> tuple[Any, tuple[str, ...]]:
    """Where a selector starts: a bound name's value, else the row."""
    for name, value in reversed(bindings):
        if name == path[0]:
            return value, path[1:]
    return row, path


def _match_at(match: Match, value: Any, path: tuple[str, ...], i: int) -> bool:
    while i < len(path):
        step = path[i]
        if isinstance(value, Mapping):
            if step not in value:
                return match.op.when_missing
            value = value[step]
        elif isinstance(value, list | tuple):
            if step.isascii() and step.isdigit():
                index = int(step)
                if index >= len(value):
                    return match.op.when_missing
                value = value[index]
            else:
                # Consul's implicit ANY over a list of objects.
                return any(_match_at(match, item, path, i) for item in value)
        else:
            return match.op.when_missing
        i += 1
    if value is None:
        return match.op.when_missing
    return _apply(match, value)


def _apply(match: Match, value: Any) -> bool:
    op = match.op
    if op in (MatchOp.EQUAL, MatchOp.NOT_EQUAL):
        if isinstance(value, Mapping | list | tuple):
            raise _misuse(match, value, 'use "contains" or "is empty" on it')
        result = _equal(match.value or "", value)
    elif op in (MatchOp.IN, MatchOp.NOT_IN):
        result = _contains(match, value)
    elif op in (MatchOp.IS_EMPTY, MatchOp.IS_NOT_EMPTY):
        if not isinstance(value, str | Mapping | list | tuple):
            raise _misuse(match, value, "only a string, a list or a map can be empty")
        result = len(value) == 0
    else:
        if not isinstance(value, str) or match.pattern is None:
            raise _misuse(match, value, "only a string can match a regular expression")
        result = match.pattern.search(value)
    return not result if op.negated else result


def _contains(match: Match, value: Any) -> bool:
    raw = match.value or ""
    if isinstance(value, str):
        return raw in value
    if isinstance(value, Mapping):
        return raw in value
    if isinstance(value, list | tuple):
        return any(
            _equal(raw, item)
            for item in value
            if item is not None and not isinstance(item, Mapping | list | tuple)
        )
    raise _misuse(match, value, "it needs a string, a list or a map")


def _equal(raw: str, value: Any) -> bool:
    """``raw`` (the literal as written) converted to ``value``'s type, compared."""
    if isinstance(value, bool):
        if raw in _GO_TRUE:
            return value
        if raw in _GO_FALSE:
            return not value
        return False
    if isinstance(value, int):
        return _parse_int(raw) == value
    if isinstance(value, float):
        try:
            return float(raw) == value
        except ValueError:
            return False
    if isinstance(value, str):
        return raw == value
    return raw == str(value)


def _parse_int(raw: str) -> int | None:
    """Go's ``strconv.ParseInt(raw, 0, 64)``: decimal, 0x, 0o, 0b, or a leading-0 octal."""
    if raw != raw.strip():
        return None
    try:
        return int(raw, 0)
    except ValueError:
        pass
    octal = _GO_OCTAL.fullmatch(raw)
    return int(octal.group(1) + octal.group(2), 8) if octal else None


def _collection(node: Collection, row: Mapping[str, Any], bindings: Bindings) -> bool:
    root, path = _root(node.selector.path, row, bindings)
    value: Any = root
    for step in path:
        if isinstance(value, Mapping) and step in value:
            value = value[step]
        elif isinstance(value, list | tuple) and step.isascii() and step.isdigit():
            index = int(step)
            value = value[index] if index < len(value) else None
        else:
            value = None
        if value is None:
            break
    want_all = node.op is CollectionOp.ALL
    if value is None:
        # Nothing to iterate: "all" holds vacuously, "any" does not.
        return want_all
    # (default binding, index binding, value binding) per element: "as x" is a
    # map's key but a list's element, as in bexpr.
    items: list[tuple[Any, Any, Any]]
    if isinstance(value, Mapping):
        items = [(key, key, item) for key, item in value.items()]
    elif isinstance(value, list | tuple):
        items = [(item, index, item) for index, item in enumerate(value)]
    else:
        raise InvalidArgument(
            f'filter: "{node.op.value}" needs a list or a map, '
            f"but {node.selector} is {_kind(value)}"
        )
    for default, index, item in items:
        inner = bindings
        if node.default_name is not None:
            inner += ((node.default_name, default),)
        if node.index_name is not None:
            inner += ((node.index_name, index),)
        if node.value_name is not None:
            inner += ((node.value_name, item),)
        if evaluate(node.body, row, inner) != want_all:
            return not want_all
    return want_all


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a map"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"


def _misuse(match: Match, value: Any, hint: str) -> InvalidArgument:
    return InvalidArgument(
        f'filter: cannot use "{match.op_text}" on {match.selector}, which is {_kind(value)}: {hint}'
    )
