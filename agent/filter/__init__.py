"""Consul's ``?filter=`` expressions (go-bexpr syntax) for catalog, health and agent reads.

Usage::

    from agent.filter import apply_filter, compile_filter

    rows = apply_filter(request_filter, services, to_row=service_to_json)
    compile_filter('Service.Tags contains "primary"')  # raises InvalidArgument if malformed

The language, as Consul documents it (api-docs/features/filtering)::

    <Selector> == "<Value>"            <Selector> != "<Value>"
    <Selector> is empty                <Selector> is not empty
    "<Value>" in <Selector>            "<Value>" not in <Selector>
    <Selector> contains "<Value>"      <Selector> not contains "<Value>"
    <Selector> matches "<regexp>"      <Selector> not matches "<regexp>"
    <Expr> and <Expr>    <Expr> or <Expr>    not <Expr>    ( <Expr> )
    all|any <Selector> as <name> { <Expr> }       (also "as i, v", "as _, v")

- Selectors are dotted names (``Service.Meta.version``); a map key that is not
  a name is written ``NodeMeta["rack-1"]``; a list element ``Checks.0``; a
  quoted JSON pointer ``"/Service/Meta/version"`` also works.
- Values are double-quoted strings (Go escapes), backtick raw strings,
  numbers, or bare words (``passing``, ``true``). The literal is converted to
  the field's type for ``==``: ``ServicePort == 80``, ``Enabled == true``.
- Precedence: ``not`` binds tighter than ``and``, which binds tighter than ``or``.
- Regular expressions are Go RE2 syntax, run in linear time by RE2 itself
  (:mod:`agent.filter.regex`), at most 1024 characters.

Choices where we differ from bexpr, which checks selectors against a static
Go type when the filter is created: we have untyped rows, so an unknown or
missing field is never an error. It finds nothing, and nothing is equal to,
contains or matches it, while it ``is empty`` (so ``==`` is false, ``!=`` and
``is empty`` are true), exactly bexpr's rule for a missing map key. A selector
running through a list is true if it holds for ANY element, as Consul does for
``Checks.Status == "passing"``. Misusing an operator on a value that is present
(``ServiceTags == "a"``, ``ServicePort matches "8.*"``) raises
``InvalidArgument`` while filtering. See :mod:`agent.filter.evaluate`.
"""

from __future__ import annotations

from agent.filter.expression import Filter, apply_filter, compile_filter

__all__ = ["Filter", "apply_filter", "compile_filter"]
