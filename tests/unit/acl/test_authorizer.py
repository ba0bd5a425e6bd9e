"""Authorizer precedence tables: exact beats prefix, longest prefix wins, defaults."""

from __future__ import annotations

import pytest

from agent.acl.authorizer import Authorizer
from agent.acl.rules import Access, parse_rules

RULES = """
key_prefix "" { policy = "read" }
key_prefix "app/" { policy = "write" }
key_prefix "app/locked/" { policy = "deny" }
key "app/locked/open" { policy = "write" }
key_prefix "lists/" { policy = "list" }
service_prefix "" { policy = "read" }
service "db" { policy = "deny" }
service_prefix "web" { policy = "write" }
node "n1" { policy = "write" }
operator = "read"
"""


def authz(default_allow: bool = False, **kw: bool) -> Authorizer:
    return Authorizer(parse_rules(RULES), default_allow=default_allow, accessor="a-1", **kw)


@pytest.mark.parametrize(
    ("resource", "name", "need", "allowed"),
    [
        # longest prefix wins
        ("key", "other", Access.READ, True),
        ("key", "other", Access.WRITE, False),
        ("key", "app/x", Access.WRITE, True),
        ("key", "app/locked/x", Access.READ, False),
        # exact beats prefix
        ("key", "app/locked/open", Access.WRITE, True),
        ("key", "app/locked/open2", Access.READ, False),
        # list grants read and list, not write
        ("key", "lists/a", Access.LIST, True),
        ("key", "lists/a", Access.READ, True),
        ("key", "lists/a", Access.WRITE, False),
        # read does not grant list
        ("key", "other", Access.LIST, False),
        ("service", "api", Access.READ, True),
        ("service", "db", Access.READ, False),
        ("service", "web-frontend", Access.WRITE, True),
        ("node", "n1", Access.WRITE, True),
        # no rule: default deny
        ("node", "n2", Access.READ, False),
        ("session", "n1", Access.READ, False),
        ("operator", None, Access.READ, True),
        ("operator", None, Access.WRITE, False),
        ("acl", None, Access.READ, False),
    ],
)
def test_precedence_table(resource: str, name: str | None, need: Access, allowed: bool) -> None:
    assert authz().allowed(resource, name, need) is allowed


def test_default_allow_fills_gaps_but_not_acl_and_not_explicit_deny() -> None:
    a = authz(default_allow=True)
    assert a.node_read("n2") and a.node_write("n2")
    assert a.allowed("keyring", None, Access.WRITE)
    assert not a.acl_read()
    assert not a.service_read("db")


def test_management_may_do_anything() -> None:
    a = Authorizer(
        parse_rules('service "db" { policy = "deny" }'), default_allow=False, manage=True
    )
    assert a.service_write("db") and a.acl_write() and a.key_write_prefix("")


def test_key_write_prefix_needs_write_on_everything_beneath() -> None:
    a = authz()
    assert a.key_write("app/")
    assert not a.key_write_prefix("app/")  # app/locked/ beneath is deny
    assert a.key_write_prefix("app/x/")
    assert not a.key_write_prefix("")


def test_denied_text_is_consuls() -> None:
    a = authz()
    with pytest.raises(Exception) as err:
        a.require("service", "db", Access.WRITE)
    assert str(err.value) == (
        "Permission denied: token with AccessorID 'a-1' lacks permission 'service:write' on \"db\""
    )
    with pytest.raises(Exception) as err2:
        a.require("operator", None, Access.WRITE)
    assert str(err2.value).endswith("lacks permission 'operator:write'")


def test_disabled_allows_everything() -> None:
    a = Authorizer.allow_all()
    assert a.acl_write() and a.key_write_prefix("")


@pytest.mark.parametrize(
    ("rules", "default_allow", "expected"),
    [
        ('service_prefix "" { policy = "read" }', False, True),
        ('service_prefix "" { policy = "read" }\nservice "db" { policy = "deny" }', False, False),
        ('service "web" { policy = "write" }', False, False),
        ('service "web" { policy = "write" }', True, True),
        ("", True, True),
        ('service_prefix "a" { policy = "deny" }', True, False),
    ],
)
def test_reads_everything_shortcut_agrees_with_rules(
    rules: str, default_allow: bool, expected: bool
) -> None:
    a = Authorizer(parse_rules(rules), default_allow=default_allow)
    assert a.reads_everything("service") is expected
    if expected:  # the shortcut may only say yes when every name is readable
        assert all(a.service_read(n) for n in ("web", "db", "a1", ""))


def test_memo_keeps_answers_stable() -> None:
    a = authz()
    first = [a.key_read("app/locked/x") for _ in range(3)]
    assert first == [False, False, False]
    assert a.key_read("other") is True
