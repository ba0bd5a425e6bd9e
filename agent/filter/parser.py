"""A recursive-descent parser for go-bexpr's grammar (``grammar/grammar.peg``).

::

    Input       <- OrExpr EOF
    OrExpr      <- AndExpr ("or" AndExpr)*
    AndExpr     <- NotExpr ("and" NotExpr)*
    NotExpr     <- "not" NotExpr / "(" OrExpr ")" / Collection / Match
    Collection  <- ("all" / "any") Selector "as" Binding "{" OrExpr "}"
    Binding     <- Name ("," Name)?            (a Name may be "_": not bound)
    Match       <- Selector ("==" / "!=" / "contains" / "not contains"
                              / "matches" / "not matches") Value
                 / Selector "is" "not"? "empty"
                 / Value ("in" / "not in") Selector
    Selector    <- Identifier ("." Identifier / "." [0-9]+ / "[" String "]")*
                 / '"' ("/" JsonPointerSegment)+ '"'
    Identifier  <- [a-zA-Z] [a-zA-Z0-9_/]*
    Value       <- Selector (its text) / Number / String
    Number      <- "-"? ("0" / [1-9][0-9]*) ("." [0-9]+)?   followed by space, ")", "}" or EOF
    String      <- '"' (Go escapes) '"' / '`' raw '`'

Precedence is ``not`` over ``and`` over ``or``. Where bexpr's PEG insists on
whitespace (``(a == "x")and(b == "y")``, ``not(...)``) this parser only
insists on a word boundary, and a double-quoted string may contain ``\\"``:
both accept strictly more than bexpr, never something else.

Errors are :class:`ParseError` with a 0-based offset; ``compile_filter``
turns them into ``InvalidArgument`` with a 1-based position.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

from agent.filter.nodes import (
    And,
    Collection,
    CollectionOp,
    Match,
    MatchOp,
    Node,
    Not,
    Or,
    Selector,
)
from agent.filter.regex import Pattern, PatternError, compile_pattern

__all__ = ["MAX_DEPTH", "ParseError", "parse"]

# Deeper nesting of "(", "not" and all/any is refused: a clear error instead of
# Python's RecursionError. No real filter comes near it.
MAX_DEPTH = 64

_WS = " \t\r\n"
_IDENT_START = frozenset(string.ascii_letters)
_IDENT_CHARS = frozenset(string.ascii_letters + string.digits + "_/")
_DIGITS = frozenset(string.digits)
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?")
_POINTER_SEGMENT = re.compile(r"[\w\-.~:|]+")
_SIMPLE_ESCAPES = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    '"': '"',
}
_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}
_OPERATORS_HINT = (
    "==, !=, is empty, is not empty, in, not in, contains, not contains, matches or not matches"
)


class ParseError(Exception):
    """A malformed expression: ``message`` about the text at ``offset`` (0-based)."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


def parse(text: str) -> Node:
    """The syntax tree of ``text``; raises :class:`ParseError`."""
    return _Parser(text).parse()


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.depth = 0
        # Names bound by enclosing all/any, innermost last: name -> "index" or "value".
        self.scopes: list[dict[str, str]] = []

    # -- helpers -----------------------------------------------------------

    def fail(self, message: str, offset: int | None = None) -> NoReturn:
        raise ParseError(message, self.pos if offset is None else offset)

    def peek(self, ahead: int = 0) -> str:
        i = self.pos + ahead
        return self.text[i] if i < len(self.text) else ""

    def skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in _WS:
            self.pos += 1

    def at_keyword(self, word: str) -> bool:
        """True when ``word`` starts here and ends at a word boundary."""
        if not self.text.startswith(word, self.pos):
            return False
        after = self.pos + len(word)
        return after >= len(self.text) or self.text[after] not in _IDENT_CHARS

    def accept_keyword(self, word: str) -> bool:
        """Consume optional whitespace and ``word``; on a miss consume nothing."""
        start = self.pos
        self.skip_ws()
        if self.at_keyword(word):
            self.pos += len(word)
            return True
        self.pos = start
        return False

    def expect_char(self, char: str, message: str) -> None:
        self.skip_ws()
        if self.peek() != char:
            self.fail(message)
        self.pos += 1

    @contextmanager
    def nested(self) -> Iterator[None]:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            self.fail(f"expression nests too deeply (more than {MAX_DEPTH} levels)")
        try:
            yield
        finally:
            self.depth -= 1

    # -- expressions -------------------------------------------------------

    def parse(self) -> Node:
        self.skip_ws()
        if self.pos >= len(self.text):
            self.fail("the expression is empty")
        node = self.or_expr()
        self.skip_ws()
        if self.pos < len(self.text):
            if self.peek() == ")":
                self.fail('unmatched ")"')
            self.fail('expected "and", "or" or the end of the expression')
        return node

    def or_expr(self) -> Node:
        operands = [self.and_expr()]
        while self.accept_keyword("or"):
            operands.append(self.and_expr())
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def and_expr(self) -> Node:
        operands = [self.not_expr()]
        while self.accept_keyword("and"):
            operands.append(self.not_expr())
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def not_expr(self) -> Node:
        self.skip_ws()
        if self.accept_keyword("not"):
            with self.nested():
                operand = self.not_expr()
            # "not not x" is x, as bexpr folds it.
            return operand.operand if isinstance(operand, Not) else Not(operand)
        return self.primary()

    def primary(self) -> Node:
        self.skip_ws()
        start = self.pos
        if self.peek() == "(":
            self.pos += 1
            with self.nested():
                node = self.or_expr()
            self.expect_char(")", f'expected ")" to close the "(" at position {start + 1}')
            return node
        for op in CollectionOp:
            if self.at_keyword(op.value):
                collection = self.collection(op)
                if collection is not None:
                    return collection
        return self.match()

    def collection(self, op: CollectionOp) -> Node | None:
        """``all|any Selector as Binding { OrExpr }``; None (nothing consumed) if not one.

        ``all`` and ``any`` are also valid selector names, so this commits only
        once it has seen ``<all|any> <selector> as``.
        """
        start = self.pos
        self.pos += len(op.value)
        self.skip_ws()
        if self.pos == start + len(op.value) or self.peek() not in _IDENT_START:
            self.pos = start
            return None
        selector = self.selector()
        if not self.accept_keyword("as"):
            self.pos = start
            return None
        default_name, index_name, value_name = self.binding()
        self.expect_char("{", f'expected "{{" to open the body of "{op.value}"')
        open_at = self.pos - 1
        scope: dict[str, str] = {}
        for name, kind in ((index_name, "index"), (value_name, "value"), (default_name, "value")):
            if name is not None:
                scope[name] = kind
        self.scopes.append(scope)
        with self.nested():
            body = self.or_expr()
        self.scopes.pop()
        self.expect_char("}", f'expected "}}" to close the "{{" at position {open_at + 1}')
        return Collection(op, selector, default_name, index_name, value_name, body)

    def binding(self) -> tuple[str | None, str | None, str | None]:
        """(default, index, value) names of ``as x`` / ``as i, v`` / ``as _, v`` / ``as i, _``."""
        self.skip_ws()
        first_at = self.pos
        first = self.binding_name()
        self.skip_ws()
        if self.peek() != ",":
            if first is None:
                self.fail('"_" binds nothing: name the element, e.g. "as tag"', first_at)
            return first, None, None
        self.pos += 1
        self.skip_ws()
        second_at = self.pos
        second = self.binding_name()
        if first is None and second is None:
            self.fail('"as _, _" binds nothing: name the index, the value or both', first_at)
        if first is not None and first == second:
            self.fail(f'"{first}" cannot name both the index and the value', second_at)
        return None, first, second

    def binding_name(self) -> str | None:
        if self.peek() == "_" and self.peek(1) not in _IDENT_CHARS:
            self.pos += 1
            return None
        if self.peek() not in _IDENT_START:
            self.fail('expected a name after "as", e.g. "as tag" or "as key, value"')
        return self.identifier()

    # -- match expressions -------------------------------------------------

    def match(self) -> Node:
        self.skip_ws()
        start = self.pos
        for word in ("and", "or"):
            if self.at_keyword(word):
                self.fail(f'expected an expression, found "{word}"')
        char = self.peek()
        selector: Selector | None = None
        if char in ('"', "`"):
            value = self.string_literal()
            if char == '"':
                selector = _json_pointer(value, self.text[start : self.pos])
            kind = "a quoted string"
        elif char == "-" or char in _DIGITS:
            value = self.number()
            kind = "a number"
        elif char in _IDENT_START:
            selector = self.selector()
            value = ".".join(selector.path)
            kind = "a selector"
        elif not char:
            self.fail('expected an expression: a selector, a value, "not" or "("')
        else:
            self.fail(f'expected a selector, a value, "not" or "(", found "{char}"')

        op, op_text, value_first = self.operator(start)
        if value_first:
            return Match(self.in_selector(op_text), op, value, op_text)
        if selector is None:
            self.fail(
                f'expected a selector before "{op_text}", found {kind}; '
                'write the selector first, e.g. Service == "web"',
                start,
            )
        self.check_scope(selector, start)
        if not op.takes_value:
            return Match(selector, op, None, op_text)
        self.skip_ws()
        value_at = self.pos
        value = self.value(op_text)
        pattern = None
        if op in (MatchOp.MATCHES, MatchOp.NOT_MATCHES):
            pattern = _compile_regex(value, value_at)
        return Match(selector, op, value, op_text, pattern)

    def operator(self, term_at: int) -> tuple[MatchOp, str, bool]:
        """(operator, its text as written, True when the value comes first: ``in``)."""
        self.skip_ws()
        if self.text.startswith("==", self.pos):
            self.pos += 2
            return MatchOp.EQUAL, "==", False
        if self.text.startswith("!=", self.pos):
            self.pos += 2
            return MatchOp.NOT_EQUAL, "!=", False
        if self.accept_keyword("is"):
            if self.accept_keyword("empty"):
                return MatchOp.IS_EMPTY, "is empty", False
            if self.accept_keyword("not") and self.accept_keyword("empty"):
                return MatchOp.IS_NOT_EMPTY, "is not empty", False
            self.skip_ws()
            self.fail('expected "empty" or "not empty" after "is"')
        if self.accept_keyword("contains"):
            return MatchOp.IN, "contains", False
        if self.accept_keyword("matches"):
            return MatchOp.MATCHES, "matches", False
        if self.accept_keyword("in"):
            return MatchOp.IN, "in", True
        if self.accept_keyword("not"):
            if self.accept_keyword("contains"):
                return MatchOp.NOT_IN, "not contains", False
            if self.accept_keyword("matches"):
                return MatchOp.NOT_MATCHES, "not matches", False
            if self.accept_keyword("in"):
                return MatchOp.NOT_IN, "not in", True
            self.skip_ws()
            self.fail('expected "in", "contains" or "matches" after "not"')
        term = self.text[term_at : self.pos].strip()
        self.fail(f'expected an operator after "{term}": {_OPERATORS_HINT}')

    def in_selector(self, op_text: str) -> Selector:
        """The selector after ``in`` / ``not in``: a name path or a quoted JSON pointer."""
        self.skip_ws()
        start = self.pos
        if self.peek() in _IDENT_START:
            selector = self.selector()
            self.check_scope(selector, start)
            return selector
        if self.peek() == '"':
            text = self.string_literal()
            pointer = _json_pointer(text, self.text[start : self.pos])
            if pointer is not None:
                return pointer
        self.fail(
            f'expected a selector after "{op_text}", e.g. "primary" {op_text} ServiceTags', start
        )

    def value(self, op_text: str) -> str:
        char = self.peek()
        if char in ('"', "`"):
            return self.string_literal()
        if char == "-" or char in _DIGITS:
            return self.number()
        if char in _IDENT_START:
            return ".".join(self.selector().path)
        self.fail(f'expected a value after "{op_text}": a quoted string, a number or a word')

    def check_scope(self, selector: Selector, offset: int) -> None:
        name = selector.path[0]
        for scope in reversed(self.scopes):
            if name in scope:
                if scope[name] == "index" and len(selector.path) > 1:
                    self.fail(
                        f'"{name}" is an index or a key: "{selector}" selects nothing', offset
                    )
                return

    # -- tokens ------------------------------------------------------------

    def identifier(self) -> str:
        start = self.pos
        self.pos += 1
        while self.pos < len(self.text) and self.text[self.pos] in _IDENT_CHARS:
            self.pos += 1
        return self.text[start : self.pos]

    def selector(self) -> Selector:
        start = self.pos
        path = [self.identifier()]
        while True:
            char = self.peek()
            if char == ".":
                after = self.peek(1)
                self.pos += 1
                if after in _IDENT_START:
                    path.append(self.identifier())
                elif after in _DIGITS:
                    digits_at = self.pos
                    while self.peek() in _DIGITS:
                        self.pos += 1
                    path.append(self.text[digits_at : self.pos])
                else:
                    self.fail('expected a name after "."')
            elif char == "[":
                self.pos += 1
                self.skip_ws()
                if self.peek() not in ('"', "`"):
                    self.fail('expected a quoted key inside "[ ]", e.g. Meta["rack-1"]')
                path.append(self.string_literal())
                self.expect_char("]", 'expected "]" to close the index')
            else:
                break
        return Selector(tuple(path), self.text[start : self.pos])

    def number(self) -> str:
        start = self.pos
        found = _NUMBER.match(self.text, start)
        end = found.end() if found else start
        after = self.text[end : end + 1]
        if found is None or (after and after not in _WS and after not in ")}"):
            stop = end
            while stop < len(self.text) and self.text[stop] not in _WS + ")}":
                stop += 1
            word = self.text[start:stop]
            self.fail(f'invalid number "{word}": quote values that are not numbers, e.g. "{word}"')
        self.pos = end
        return found.group()

    def string_literal(self) -> str:
        quote = self.peek()
        start = self.pos
        if quote == "`":
            end = self.text.find("`", start + 1)
            if end < 0:
                self.fail("unterminated string literal: missing the closing `", start)
            self.pos = end + 1
            return self.text[start + 1 : end]
        out: list[str] = []
        i = start + 1
        while i < len(self.text):
            char = self.text[i]
            if char == '"':
                self.pos = i + 1
                return "".join(out)
            if char == "\\":
                decoded, i = self.escape(i)
                out.append(decoded)
            else:
                out.append(char)
                i += 1
        self.fail('unterminated string literal: missing the closing "', start)

    def escape(self, at: int) -> tuple[str, int]:
        """Decode the Go escape sequence at ``at`` (a backslash): (text, next offset)."""
        kind = self.text[at + 1 : at + 2]
        if not kind:
            self.fail('unterminated string literal: missing the closing "', at)
        if kind in _SIMPLE_ESCAPES:
            return _SIMPLE_ESCAPES[kind], at + 2
        if kind in _HEX_ESCAPES:
            width = _HEX_ESCAPES[kind]
            digits = self.text[at + 2 : at + 2 + width]
            if len(digits) == width and all(c in string.hexdigits for c in digits):
                code = int(digits, 16)
                if code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF:
                    return chr(code), at + 2 + width
        elif kind in "01234567":
            digits = self.text[at + 1 : at + 4]
            if len(digits) == 3 and all(c in "01234567" for c in digits) and int(digits, 8) < 256:
                return chr(int(digits, 8)), at + 4
        self.fail(f'invalid escape sequence "\\{kind}" in string (use `...` for raw text)', at)


def _json_pointer(value: str, text: str) -> Selector | None:
    """The selector a double-quoted ``"/a/b"`` names, or None if it is no JSON pointer."""
    if not value.startswith("/"):
        return None
    segments = value[1:].split("/")
    if not all(_POINTER_SEGMENT.fullmatch(segment) for segment in segments):
        return None
    path = tuple(s.replace("~1", "/").replace("~0", "~") for s in segments)
    return Selector(path, text)


def _compile_regex(value: str, offset: int) -> Pattern:
    # RE2, as Go's regexp: linear time, Go's syntax (see agent.filter.regex).
    try:
        return compile_pattern(value)
    except PatternError as exc:
        raise ParseError(f"invalid regular expression: {exc.message}", offset) from None
