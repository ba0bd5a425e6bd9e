"""User patterns run on RE2 (linear time, Go's syntax), with a bound on their size."""

from __future__ import annotations

import pytest
import re2

from agent.errors import InvalidArgument
from agent.filter import compile_filter
from agent.filter.regex import MAX_PATTERN_LENGTH, PatternError, compile_pattern

# The pattern: with Python's backtracking re, 27 "a" and a "!" held the
# agent's loop for seconds, each added character doubling it.
CATASTROPHIC = "(a+)+$"
VICTIM = "a" * 27 + "!"


def test_catastrophic_pattern_runs_on_re2_with_the_right_answer() -> None:
    pattern = compile_pattern(CATASTROPHIC)
    assert isinstance(pattern._regexp, re2._Regexp)
    # 10,000 characters would take longer than the universe's age under backtracking.
    assert pattern.search("a" * 10_000 + "!") is False
    assert pattern.search(VICTIM[:-1]) is True


def test_catastrophic_filter_is_evaluated_by_re2() -> None:
    flt = compile_filter(f'Service matches "{CATASTROPHIC}"')
    assert flt.matches({"Service": "a" * 10_000 + "!"}) is False
    assert flt.matches({"Service": "aaa"}) is True


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        (r"b\z", "web", True),  # Go's end of text
        (r"(?i)^WEB$", "web", True),
        (r"^\pL+$", "héllo", True),
        (r"(?P<x>w)eb", "web", True),
        (r"^.$", "é", True),  # one code point, not one byte
        ("a", "\ud800a", True),  # a lone surrogate in the text never raises
    ],
)
def test_go_syntax(pattern: str, text: str, expected: bool) -> None:
    assert compile_pattern(pattern).search(text) is expected


@pytest.mark.parametrize(
    "pattern",
    ["(", r"(?<=a)b", r"(a)\1", r"a\Z", "a{1001}", "x{1000}{1000}"],
)
def test_patterns_go_refuses_are_refused(pattern: str) -> None:
    with pytest.raises(PatternError):
        compile_pattern(pattern)
    with pytest.raises(InvalidArgument, match="invalid regular expression"):
        compile_filter(f"Name matches `{pattern}`")


def test_pattern_size_is_bounded() -> None:
    compile_pattern("a" * MAX_PATTERN_LENGTH)
    with pytest.raises(PatternError, match="too long"):
        compile_pattern("a" * (MAX_PATTERN_LENGTH + 1))
    with pytest.raises(InvalidArgument, match="too long"):
        compile_filter("Name matches `" + "a" * (MAX_PATTERN_LENGTH + 1) + "`")
