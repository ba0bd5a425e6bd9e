"""Malformed expressions, precedence, literals and the semantics of each operator."""

from __future__ import annotations

from typing import Any

import pytest

from agent.errors import InvalidArgument
from agent.filter import apply_filter, compile_filter
from agent.filter.nodes import And, Match, MatchOp, Not, Or
from agent.filter.parser import MAX_DEPTH

# -- malformed expressions ---------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "position", "expected"),
    [
        ("Service ==", 11, "expected a value after"),
        ("(a == b", 8, 'expected ")" to close the "(" at position 1'),
        ("Tags contains", 14, 'expected a value after "contains"'),
        ('Service == "web', 12, "unterminated string literal"),
        ("Service == `web", 12, "unterminated string literal"),
        ("==", 1, "expected a selector"),
        ("", 1, "the expression is empty"),
        ("   ", 4, "the expression is empty"),
        ("a == b)", 7, 'unmatched ")"'),
        ("a == b c == d", 8, 'expected "and", "or"'),
        ("a == b and", 11, "expected an expression"),
        ("a == b or or c == d", 11, 'expected an expression, found "or"'),
        ("and a == b", 1, 'expected an expression, found "and"'),
        ("Port == 0x50", 9, "invalid number"),
        ("Service", 8, 'expected an operator after "Service"'),
        ("Service = web", 9, "expected an operator"),
        ("Tags is", 8, 'expected "empty" or "not empty" after "is"'),
        ("Tags is not", 12, 'expected "empty" or "not empty"'),
        ("Tags not x", 10, 'expected "in", "contains" or "matches" after "not"'),
        ('"web" == Service', 1, 'expected a selector before "=="'),
        ("80 == Port", 1, 'expected a selector before "==", found a number'),
        ('"x" in', 7, 'expected a selector after "in"'),
        ('"x" in "plain"', 8, 'expected a selector after "in"'),
        ("Version == 1.2.3", 12, 'invalid number "1.2.3"'),
        ("Port == 80abc", 9, "invalid number"),
        ("Node == node-1", 13, 'expected "and", "or"'),  # bexpr needs quotes here too
        ("Meta.", 6, 'expected a name after "."'),
        ("Meta[rack] == x", 6, "expected a quoted key"),
        ('Meta["rack" == x', 13, 'expected "]"'),
        ('Name == "a\\qb"', 11, 'invalid escape sequence "\\q"'),
        ('Name matches "("', 14, "invalid regular expression"),
        ("all Tags as t { t == x", 23, 'expected "}" to close'),
        ("all Tags as t t == x }", 15, 'expected "{"'),
        ("all Tags as _ { x == y }", 13, "binds nothing"),
        ("all Tags as i, i { i == 1 }", 16, "cannot name both"),
        ("all Tags as i, _ { i.Name == 1 }", 20, '"i" is an index or a key'),
        ("$foo == 1", 1, 'found "$"'),
    ],
)
def test_malformed_expression_is_invalid_argument(
    expression: str, position: int, expected: str
) -> None:
    with pytest.raises(InvalidArgument) as info:
        compile_filter(expression)
    message = info.value.message
    assert expected in message
    assert f"at position {position} " in message
    assert info.value.http_status == 400


def test_too_deep_nesting_is_a_clear_error() -> None:
    with pytest.raises(InvalidArgument, match="nests too deeply"):
        compile_filter("(" * (MAX_DEPTH + 1) + "a == b" + ")" * (MAX_DEPTH + 1))
    with pytest.raises(InvalidArgument, match="nests too deeply"):
        compile_filter("not " * (MAX_DEPTH + 1) + "a == b")


def test_long_flat_chains_parse() -> None:
    expression = " or ".join(f"Port == {i}" for i in range(2000))
    assert compile_filter(expression).matches({"Port": 1999})


# -- precedence and grouping -------------------------------------------------


def test_precedence_not_binds_tighter_than_and_tighter_than_or() -> None:
    root = compile_filter("a == 1 and not b == 2 or c == 3").root
    assert isinstance(root, Or)
    left, right = root.operands
    assert isinstance(left, And) and isinstance(right, Match)
    assert isinstance(left.operands[1], Not)


@pytest.mark.parametrize(
    ("expression", "row", "expected"),
    [
        # a and not b or c  ==  (a and (not b)) or c
        ("a == 1 and not b == 2 or c == 3", {"a": 0, "b": 0, "c": 3}, True),
        ("a == 1 and (not b == 2 or c == 3)", {"a": 0, "b": 0, "c": 3}, False),
        ("a == 1 or b == 2 and c == 3", {"a": 1, "b": 0, "c": 0}, True),
        ("(a == 1 or b == 2) and c == 3", {"a": 1, "b": 0, "c": 0}, False),
        ("not a == 1 and b == 2", {"a": 0, "b": 2}, True),
        ("not (a == 1 and b == 2)", {"a": 1, "b": 0}, True),
        ("not not a == 1", {"a": 1}, True),
        ("((a == 1))", {"a": 1}, True),
        ("(a == 1)and(b == 2)", {"a": 1, "b": 2}, True),
        ("not(a == 1)", {"a": 2}, True),
    ],
)
def test_grouping(expression: str, row: dict[str, Any], expected: bool) -> None:
    assert compile_filter(expression).matches(row) is expected


def test_not_not_folds() -> None:
    assert isinstance(compile_filter("not not a == 1").root, Match)


# -- literals and selectors --------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "op", "value"),
    [
        ('Name == "web"', MatchOp.EQUAL, "web"),
        ("Name == `a\\nb`", MatchOp.EQUAL, "a\\nb"),  # raw: no escapes
        ('Name == "a\\nb\\t\\"c\\\\"', MatchOp.EQUAL, 'a\nb\t"c\\'),
        ('Name == "\\x41\\u00e9\\101"', MatchOp.EQUAL, "A\u00e9A"),
        ("Name == web.v1", MatchOp.EQUAL, "web.v1"),  # a bare selector-like word
        ('Name == Meta["x"]', MatchOp.EQUAL, "Meta.x"),
        ("Port == -12.5", MatchOp.EQUAL, "-12.5"),
        ("Port != 0", MatchOp.NOT_EQUAL, "0"),
        ("Tags contains x", MatchOp.IN, "x"),
        ("x in Tags", MatchOp.IN, "x"),
        ("x not in Tags", MatchOp.NOT_IN, "x"),
        ("Tags not contains x", MatchOp.NOT_IN, "x"),
        ("Tags is empty", MatchOp.IS_EMPTY, None),
        ("Tags  is\tnot\nempty", MatchOp.IS_NOT_EMPTY, None),
        ("Name not matches x", MatchOp.NOT_MATCHES, "x"),
    ],
)
def test_literals(expression: str, op: MatchOp, value: str | None) -> None:
    root = compile_filter(expression).root
    assert isinstance(root, Match)
    assert (root.op, root.value) == (op, value)


@pytest.mark.parametrize(
    ("expression", "path"),
    [
        ("Service.Meta.version == x", ("Service", "Meta", "version")),
        ('Node.Meta["rack-1"] == x', ("Node", "Meta", "rack-1")),
        ("Node.Meta[ `a.b` ] == x", ("Node", "Meta", "a.b")),
        ("Checks.0.Status == x", ("Checks", "0", "Status")),
        ('"/Service/Meta/a~1b" == x', ("Service", "Meta", "a/b")),
        ('x in "/Service/Tags"', ("Service", "Tags")),
        ("notes == x", ("notes",)),  # keywords only at a word boundary
        ("all == x", ("all",)),
        ("any in Tags", ("Tags",)),
    ],
)
def test_selectors(expression: str, path: tuple[str, ...]) -> None:
    root = compile_filter(expression).root
    assert isinstance(root, Match)
    assert root.selector.path == path


# -- semantics ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "row", "expected"),
    [
        # The literal takes the field's type.
        ("Port == 80", {"Port": 80}, True),
        ('Port == "80"', {"Port": 80}, True),
        ('Port == "0x50"', {"Port": 80}, True),  # ParseInt with base 0
        ('Port == "0120"', {"Port": 80}, True),  # Go's leading-0 octal
        ("Port == 80.0", {"Port": 80}, False),  # ParseInt refuses it
        ("Port != web", {"Port": 80}, True),  # not convertible: not equal
        ("Weight == 1.5", {"Weight": 1.5}, True),
        ("Weight == 2", {"Weight": 2.0}, True),
        ("On == true", {"On": True}, True),
        ("On == True", {"On": True}, True),
        ("On == 1", {"On": True}, True),
        ("On == f", {"On": False}, True),
        ("On == yes", {"On": True}, False),
        ('Name == "80"', {"Name": "80"}, True),
        ("Name == 80", {"Name": "80"}, True),
        # A missing field: nothing equals it, it is empty, nothing is in it.
        ("Missing == x", {}, False),
        ("Missing != x", {}, True),
        ("Missing is empty", {}, True),
        ("Missing is not empty", {}, False),
        ("x in Missing", {}, False),
        ("x not in Missing", {}, True),
        ("Missing matches x", {}, False),
        ("Missing not matches x", {}, True),
        ("Meta.key is empty", {"Meta": {}}, True),
        ("Meta.key == x", {"Meta": None}, False),
        ("Name.deeper == x", {"Name": "web"}, False),
        ("Nothing is empty", {"Nothing": None}, True),
        # in / contains
        ("eb in Name", {"Name": "web"}, True),
        ("x in Tags", {"Tags": ["x", "y"]}, True),
        ("z in Tags", {"Tags": ["x", "y"]}, False),
        ("80 in Ports", {"Ports": [443, 80]}, True),
        ("k in Meta", {"Meta": {"k": ""}}, True),
        ("v in Meta", {"Meta": {"k": "v"}}, False),  # keys, not values
        ("Tags contains x", {"Tags": [{"x": 1}, None, "x"]}, True),
        # is empty
        ("Name is empty", {"Name": ""}, True),
        ("Tags is empty", {"Tags": []}, True),
        ("Meta is not empty", {"Meta": {"a": "b"}}, True),
        # matches is an unanchored search
        ('Name matches "eb"', {"Name": "web"}, True),
        ('Name matches "^eb"', {"Name": "web"}, False),
        ('Name matches "(?i)^WEB$"', {"Name": "web"}, True),
        ('Name matches "b\\\\z"', {"Name": "web"}, True),  # Go's \z
        # implicit any through nested lists
        (
            "Groups.Members.Name == b",
            {"Groups": [{"Members": [{"Name": "a"}]}, {"Members": [{"Name": "b"}]}]},
            True,
        ),
        ("Checks.Status == passing", {"Checks": []}, False),
        ("Checks.Status != passing", {"Checks": []}, False),
        ("Checks.9.Status == x", {"Checks": [{"Status": "x"}]}, False),
    ],
)
def test_semantics(expression: str, row: dict[str, Any], expected: bool) -> None:
    assert compile_filter(expression).matches(row) is expected


@pytest.mark.parametrize(
    ("expression", "row", "expected"),
    [
        ('Tags == "a"', {"Tags": ["a"]}, 'cannot use "==" on Tags, which is a list'),
        ("Meta != x", {"Meta": {}}, 'cannot use "!=" on Meta, which is a map'),
        ("Port matches 8", {"Port": 80}, "which is a number"),
        ("On contains x", {"On": True}, "which is a boolean"),
        ("Port is empty", {"Port": 80}, "only a string, a list or a map can be empty"),
        ("all Name as n { n == x }", {"Name": "web"}, '"all" needs a list or a map'),
    ],
)
def test_operator_misuse_is_invalid_argument(
    expression: str, row: dict[str, Any], expected: str
) -> None:
    with pytest.raises(InvalidArgument, match=expected):
        compile_filter(expression).matches(row)


def test_nested_collections_see_outer_bindings() -> None:
    row = {"Groups": [{"Name": "g1", "Tags": ["x"]}, {"Name": "g2", "Tags": ["y"]}]}
    flt = compile_filter("any Groups as g { g.Name == g2 and any g.Tags as t { t == y } }")
    assert flt.matches(row)
    assert not compile_filter(
        "any Groups as g { g.Name == g1 and all g.Tags as t { t == y } }"
    ).matches(row)


# -- apply_filter ------------------------------------------------------------


@pytest.mark.parametrize("expression", [None, "", "  \n"])
def test_apply_filter_without_expression_keeps_everything(expression: str | None) -> None:
    rows = iter([3, 1, 2])
    assert apply_filter(expression, rows, lambda n: {"n": n}) == [3, 1, 2]


def test_apply_filter_keeps_order_and_originals() -> None:
    class Service:
        def __init__(self, name: str, port: int) -> None:
            self.name, self.port = name, port

    services = [Service("a", 1), Service("b", 2), Service("c", 1)]
    kept = apply_filter("Port == 1", services, lambda s: {"Name": s.name, "Port": s.port})
    assert kept == [services[0], services[2]]


def test_apply_filter_rejects_a_malformed_expression_before_reading_rows() -> None:
    def rows() -> Any:
        raise AssertionError("rows read")
        yield

    with pytest.raises(InvalidArgument, match="position"):
        apply_filter("Service ==", rows(), lambda row: row)
