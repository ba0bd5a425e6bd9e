"""The ``Authorizer``: what one token may do, compiled from its rules.

A token's policies, roles, service/node identities and templated policies all
come down to rules (``agent.acl.rules``), merged into one ``Rules`` (the
stronger access wins on a collision). Deciding a request then goes, as in
Consul's ``policy_authorizer.go`` + ``ChainedAuthorizer``:

1. For a segmented resource (``service "web"``): an exact rule for the name
   wins; else the longest prefix rule that the name starts with. For a plain
   one (``operator``), its rule.
2. The rule's access grants: ``write`` read, list and write; ``list`` read and
   list; ``read`` only read; ``deny`` nothing.
3. No rule: the default, from ``acl.default_policy``: ``allow`` grants
   everything but ACL management, ``deny`` nothing.

A management token (``global-management`` policy) may do anything.

``key_write_prefix`` (recursive deletes) needs write on the prefix *and* no
rule under it that withholds write, as Consul's.

Worked example, ``key_prefix "" { policy = "read" }`` and ``key "app/secret"
{ policy = "deny" }``, default deny: ``app/x`` is readable (prefix ""),
``app/secret`` is not (exact beats prefix), nothing is writable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from agent.acl.rules import Access, Rules
from agent.errors import PermissionDenied

__all__ = ["ANONYMOUS_ACCESSOR", "Authorizer", "Decision", "denied"]

ANONYMOUS_ACCESSOR = "00000000-0000-0000-0000-000000000002"
#: Decisions remembered per authorizer (a few hundred bytes each at most).
MEMO_SIZE = 4096


class Decision(Enum):
    ALLOW = "allow"
    DENY = "deny"
    DEFAULT = "default"


def _grants(access: Access, need: Access) -> Decision:
    if access is Access.DENY:
        return Decision.DENY
    if access is Access.WRITE:
        return Decision.ALLOW
    if access is Access.LIST:
        return Decision.ALLOW if need in (Access.READ, Access.LIST) else Decision.DENY
    return Decision.ALLOW if need is Access.READ else Decision.DENY


def denied(accessor: str, resource: str, need: Access, name: str | None) -> PermissionDenied:
    """Consul's 403 text for ``accessor`` lacking ``resource:need`` (on ``name``)."""
    who = f"token with AccessorID '{accessor}'" if accessor else "provided token"
    text = f"Permission denied: {who} lacks permission '{resource}:{need.word}'"
    if name is not None:
        text += f' on "{name}"'
    return PermissionDenied(text)


@dataclass(frozen=True, slots=True)
class Authorizer:
    """The decisions of one token. Immutable: safe to cache and share."""

    rules: Rules
    #: ``acl.default_policy`` is ``allow``.
    default_allow: bool
    #: A management token: everything allowed.
    manage: bool = False
    accessor: str = ANONYMOUS_ACCESSOR
    #: ``acl.enable_key_list_policy``: KV listings need ``list``, not ``read``.
    key_list_policy: bool = False
    #: ACLs disabled: nothing is checked.
    disabled: bool = False
    #: Decisions already made ((resource, name, need) -> allowed): a filtered
    #: read asks the same few questions for every entry. Bounded by MEMO_SIZE.
    _memo: dict[tuple[str, str | None, Access], bool] = field(
        default_factory=dict, compare=False, repr=False
    )

    @classmethod
    def allow_all(cls) -> Authorizer:
        """What every request gets when ACLs are disabled."""
        return cls(Rules(), default_allow=True, manage=True, accessor="", disabled=True)

    # ----- the decision ----------------------------------------------------

    def _rule(self, resource: str, name: str) -> Access | None:
        exact = self.rules.exact.get(resource)
        if exact is not None and name in exact:
            return exact[name]
        prefixes = self.rules.prefix.get(resource)
        if not prefixes:
            return None
        best: str | None = None
        for prefix in prefixes:
            if name.startswith(prefix) and (best is None or len(prefix) > len(best)):
                best = prefix
        return None if best is None else prefixes[best]

    def decide(self, resource: str, name: str | None, need: Access) -> Decision:
        if self.manage:
            return Decision.ALLOW
        if name is None:
            access = self.rules.plain.get(resource)
            if access is None and resource in ("mesh", "peering"):
                access = self.rules.plain.get("operator")  # Consul: mesh falls back to operator
        else:
            access = self._rule(resource, name)
        return Decision.DEFAULT if access is None else _grants(access, need)

    def allowed(self, resource: str, name: str | None, need: Access) -> bool:
        key = (resource, name, need)
        hit = self._memo.get(key)
        if hit is not None:
            return hit
        decision = self.decide(resource, name, need)
        if decision is Decision.DEFAULT:
            # default allow never grants ACL management
            result = False if resource == "acl" else self.default_allow
        else:
            result = decision is Decision.ALLOW
        if len(self._memo) >= MEMO_SIZE:
            self._memo.clear()
        self._memo[key] = result
        return result

    def require(self, resource: str, name: str | None, need: Access) -> None:
        """Raise Consul's ``Permission denied`` unless ``resource:need`` on ``name``."""
        if not self.allowed(resource, name, need):
            raise denied(self.accessor, resource, need, name)

    def reads_everything(self, resource: str) -> bool:
        """True when every name of ``resource`` is readable: a read filter over it
        can keep every entry without asking per entry (the common
        ``service_prefix "" { policy = "read" }`` case)."""
        key = (resource, "\x00*", Access.READ)
        hit = self._memo.get(key)
        if hit is not None:
            return hit
        if self.manage:
            result = True
        else:
            exact = self.rules.exact.get(resource, {})
            prefix = self.rules.prefix.get(resource, {})
            no_denial = all(a is not Access.DENY for a in (*exact.values(), *prefix.values()))
            covered = "" in prefix or self.default_allow
            result = no_denial and covered
        self._memo[key] = result
        return result

    # ----- Consul's verbs ---------------------------------------------------

    def key_read(self, key: str) -> bool:
        return self.allowed("key", key, Access.READ)

    def key_list(self, prefix: str) -> bool:
        """May list keys under ``prefix`` (only asked with enable_key_list_policy)."""
        return self.allowed("key", prefix, Access.LIST)

    def key_write(self, key: str) -> bool:
        return self.allowed("key", key, Access.WRITE)

    def key_write_prefix(self, prefix: str) -> bool:
        """Write on ``prefix`` and on every rule beneath it (a recursive delete)."""
        if self.manage:
            return True
        for table in (self.rules.exact.get("key", {}), self.rules.prefix.get("key", {})):
            for segment, access in table.items():
                if segment.startswith(prefix) and access is not Access.WRITE:
                    return False
        return self.key_write(prefix)

    def service_read(self, name: str) -> bool:
        return self.allowed("service", name, Access.READ)

    def service_write(self, name: str) -> bool:
        return self.allowed("service", name, Access.WRITE)

    def node_read(self, name: str) -> bool:
        return self.allowed("node", name, Access.READ)

    def node_write(self, name: str) -> bool:
        return self.allowed("node", name, Access.WRITE)

    def session_read(self, node: str) -> bool:
        return self.allowed("session", node, Access.READ)

    def event_read(self, name: str) -> bool:
        return self.allowed("event", name, Access.READ)

    def acl_read(self) -> bool:
        return self.allowed("acl", None, Access.READ)

    def acl_write(self) -> bool:
        return self.allowed("acl", None, Access.WRITE)
