"""Consul's ACL rule language: HCL or JSON text in, a ``Rules`` value out.

A policy's ``Rules`` is HCL (``key_prefix "app/" { policy = "read" }``) or the
same structure as JSON (``{"key_prefix": {"app/": {"policy": "read"}}}``).
Two kinds of resource:

- *segmented*: ``key``, ``service``, ``node``, ``agent``, ``session``,
  ``event``, ``query``, each also as ``<name>_prefix``; a block per segment
  (a name, or a prefix; ``""`` is every name) holding ``policy``;
- *plain*: ``acl``, ``operator``, ``keyring``, ``mesh``, ``peering``: one
  attribute, ``operator = "read"``.

Access levels are ``read``, ``write``, ``deny`` and (only on ``key`` and
``key_prefix``) ``list``. When two rules name the same thing (in one policy or
across a token's policies) the stronger wins, strongest first: ``deny``,
``write``, ``list``, ``read``.

Parse errors are ``InvalidArgument`` naming the line and column, as Consul's
HCL parser does (``At 2:17: ...``); the text is capped at ``MAX_RULES_SIZE``.
HCL is parsed by python-hcl2 (HCL2 is a superset of the block and attribute
forms Consul's rules use).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import hcl2
from lark.exceptions import LarkError, UnexpectedInput

from agent.errors import InvalidArgument

__all__ = [
    "MAX_RULES_SIZE",
    "PLAIN",
    "SEGMENTED",
    "Access",
    "Rules",
    "merge_rules",
    "parse_rules",
]

#: Rules longer than this are refused. Consul has no fixed cap; 64 KiB holds
#: about 1500 one-line rules, far more than a hand-written policy needs.
MAX_RULES_SIZE = 64 * 1024

SEGMENTED = ("key", "service", "node", "agent", "session", "event", "query")
PLAIN = ("acl", "operator", "keyring", "mesh", "peering")
# Attributes a segment block may hold beside ``policy`` (accepted, not enforced).
_EXTRA_BLOCK_KEYS = frozenset({"intentions"})


class Access(IntEnum):
    """An access level; a larger value takes precedence when rules collide."""

    READ = 1
    LIST = 2
    WRITE = 3
    DENY = 4

    @property
    def word(self) -> str:
        return self.name.lower()


_WORDS = {a.word: a for a in Access}


@dataclass(slots=True)
class Rules:
    """One policy's rules (or several merged): exact and prefix rules per resource."""

    #: resource -> segment -> access, for ``service "web"``.
    exact: dict[str, dict[str, Access]] = field(default_factory=dict)
    #: resource -> prefix -> access, for ``service_prefix "we"``.
    prefix: dict[str, dict[str, Access]] = field(default_factory=dict)
    #: resource -> access, for ``operator = "read"``.
    plain: dict[str, Access] = field(default_factory=dict)

    def add(self, resource: str, segment: str | None, access: Access, *, is_prefix: bool) -> None:
        if segment is None:
            old = self.plain.get(resource)
            if old is None or access > old:
                self.plain[resource] = access
            return
        table = (self.prefix if is_prefix else self.exact).setdefault(resource, {})
        old = table.get(segment)
        if old is None or access > old:
            table[segment] = access

    def merge(self, other: Rules) -> None:
        for resource, access in other.plain.items():
            self.add(resource, None, access, is_prefix=False)
        for is_prefix, tables in ((False, other.exact), (True, other.prefix)):
            for resource, segments in tables.items():
                for segment, access in segments.items():
                    self.add(resource, segment, access, is_prefix=is_prefix)


def merge_rules(parts: list[Rules]) -> Rules:
    """One ``Rules`` holding every rule of ``parts``, the stronger access winning."""
    out = Rules()
    for part in parts:
        out.merge(part)
    return out


def _unquote(value: Any) -> Any:
    # python-hcl2 keeps the quotes of string literals and labels.
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def _access(value: Any, where: str, *, allow_list: bool) -> Access:
    word = _unquote(value)
    access = _WORDS.get(word) if isinstance(word, str) else None
    if access is None or (access is Access.LIST and not allow_list):
        raise InvalidArgument(f"Invalid rule: invalid policy {word!r} for {where}")
    return access


def _segments(name: str, value: Any) -> list[tuple[str, dict[str, Any]]]:
    """(segment, body) pairs of a segmented resource, from HCL's or JSON's shape."""
    items = value if isinstance(value, list) else [value]
    out: list[tuple[str, dict[str, Any]]] = []
    for item in items:
        if not isinstance(item, dict):
            raise InvalidArgument(f"Invalid rule: {name} must be a block with a name")
        for label, body in item.items():
            if not isinstance(body, dict):
                raise InvalidArgument(f"Invalid rule: {name} {label} must be a block")
            out.append((str(_unquote(label)), body))
    return out


def _from_tree(tree: dict[str, Any]) -> Rules:
    rules = Rules()
    for raw_name, value in tree.items():
        name = str(_unquote(raw_name))
        if name.startswith("__"):
            continue
        base = name.removesuffix("_prefix")
        if name in PLAIN:
            rules.add(name, None, _access(value, name, allow_list=False), is_prefix=False)
        elif base in SEGMENTED:
            for segment, body in _segments(name, value):
                keys = {k for k in body if not k.startswith("__")}
                unknown = keys - {"policy"} - _EXTRA_BLOCK_KEYS
                if unknown:
                    raise InvalidArgument(
                        f"Invalid rule: unknown key {sorted(unknown)[0]!r} in {name} {segment!r}"
                    )
                if "policy" not in body:
                    if keys & _EXTRA_BLOCK_KEYS:
                        continue
                    raise InvalidArgument(f"Invalid rule: {name} {segment!r} has no policy")
                access = _access(body["policy"], f"{name} {segment!r}", allow_list=base == "key")
                rules.add(base, segment, access, is_prefix=name != base)
        else:
            raise InvalidArgument(f"Invalid rule: unknown resource {name!r}")
    return rules


def parse_rules(text: str) -> Rules:
    """The rules in ``text`` (HCL or JSON); ``InvalidArgument`` with the position if bad."""
    if len(text.encode()) > MAX_RULES_SIZE:
        raise InvalidArgument(f"Rules too large: more than {MAX_RULES_SIZE} bytes")
    if not text.strip():
        return Rules()
    tree: Any
    if text.lstrip().startswith("{"):
        try:
            tree = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidArgument(
                f"Failed to parse ACL rules: At {exc.lineno}:{exc.colno}: {exc.msg}"
            ) from None
    else:
        try:
            tree = hcl2.loads(text)
        except UnexpectedInput as exc:
            token = getattr(exc, "token", None) or getattr(exc, "char", "")
            detail = f"unexpected {str(token).strip()!r}" if str(token).strip() else "syntax error"
            raise InvalidArgument(
                f"Failed to parse ACL rules: At {exc.line}:{exc.column}: {detail}"
            ) from None
        except (LarkError, ValueError, TypeError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InvalidArgument(f"Failed to parse ACL rules: {first}") from None
    if not isinstance(tree, dict):
        raise InvalidArgument("Failed to parse ACL rules: rules must be an object")
    return _from_tree(tree)
