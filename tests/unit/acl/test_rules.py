"""The rule language: HCL and JSON forms, precedence on collisions, errors with positions."""

from __future__ import annotations

import pytest

from agent.acl.rules import MAX_RULES_SIZE, Access, merge_rules, parse_rules
from agent.errors import InvalidArgument


def test_hcl_blocks_and_plain_rules() -> None:
    rules = parse_rules(
        """
        key_prefix "" { policy = "read" }
        key "app/secret" { policy = "deny" }
        service_prefix "web" {
          policy = "write"
          intentions = "read"
        }
        node "n1" { policy = "write" }
        operator = "read"
        """
    )
    assert rules.prefix["key"] == {"": Access.READ}
    assert rules.exact["key"] == {"app/secret": Access.DENY}
    assert rules.prefix["service"] == {"web": Access.WRITE}
    assert rules.exact["node"] == {"n1": Access.WRITE}
    assert rules.plain == {"operator": Access.READ}


def test_json_form_is_the_same() -> None:
    hcl = parse_rules('key_prefix "a/" { policy = "list" }\nacl = "write"')
    js = parse_rules('{"key_prefix": {"a/": {"policy": "list"}}, "acl": "write"}')
    assert hcl == js


@pytest.mark.parametrize(
    ("text", "wanted"),
    [
        ('key "x" { policy = }', "At 1:"),
        ('key "x" { policy = "read" ', "Failed to parse ACL rules"),
        ('{"key": ', "At 1:"),
        ('service "x" { policy = "list" }', "invalid policy 'list'"),
        ('bogus "x" { policy = "read" }', "unknown resource 'bogus'"),
        ('key "x" { polcy = "read" }', "unknown key 'polcy'"),
        ('operator = "admin"', "invalid policy 'admin'"),
    ],
)
def test_bad_rules_are_invalid_argument(text: str, wanted: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        parse_rules(text)
    assert wanted in err.value.message
    assert err.value.http_status == 400


def test_oversized_rules_are_refused() -> None:
    line = 'key "k" { policy = "read" }\n'
    with pytest.raises(InvalidArgument, match="Rules too large"):
        parse_rules(line * (MAX_RULES_SIZE // len(line) + 1))


def test_merge_stronger_access_wins() -> None:
    # deny > write > list > read, whichever policy says it.
    a = parse_rules('key "k" { policy = "read" }\nservice "s" { policy = "deny" }')
    b = parse_rules('key "k" { policy = "write" }\nservice "s" { policy = "write" }')
    c = parse_rules('key "k" { policy = "list" }')
    merged = merge_rules([a, b, c])
    assert merged.exact["key"]["k"] is Access.WRITE
    assert merged.exact["service"]["s"] is Access.DENY
    assert merge_rules([c, a]).exact["key"]["k"] is Access.LIST


def test_empty_rules() -> None:
    assert parse_rules("") == parse_rules("   \n")
