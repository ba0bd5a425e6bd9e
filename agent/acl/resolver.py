"""The resolver: a token secret in, an ``Authorizer`` out, with a small cache.

Where the token comes from: the request's own token, else the agent's
``acl.tokens.default``, else the anonymous token (SecretID ``anonymous``).

Two sources of identities:

- on a server, ``StateTokens`` reads the datacenter's store (token, its
  policies and roles, identities, templated policies; expired tokens and
  policies limited to other datacenters do not count). The cache is keyed by
  the ACL index (``idx/acl/``, touched by every ACL write on any server): a
  write anywhere invalidates every server's cache on its next request.
- on a client agent, an ``Invoker`` asks a server (``ResolveToken``); entries
  live ``acl.token_ttl`` (30 s, as Consul's). When no server answers,
  ``acl.down_policy`` decides: ``extend-cache``/``async-cache`` keep using a
  cached entry however old (deny without one), ``allow``/``deny`` as named.

Compiling is the costly part (the HCL parser), so parsed rule texts are
cached too, by text.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

from agent.acl.authorizer import Authorizer
from agent.acl.identity import node_identity_rules, service_identity_rules, templated_rules
from agent.acl.rules import Rules, merge_rules, parse_rules
from agent.acl.tokens import AgentTokens
from agent.config import ACLConfig
from agent.errors import ACLNotFound, ConsulError, InvalidArgument, Unavailable
from agent.rpc.methods import MethodSpec
from agent.state.acl import ANONYMOUS_SECRET, GLOBAL_MANAGEMENT_ID, ACLState
from generated.consul.acl.v1 import acl_pb2 as apb
from generated.consul.common.v1 import query_pb2 as qpb

__all__ = ["Identity", "InvokerTokens", "Resolver", "StateTokens", "token_expired"]

logger = logging.getLogger(__name__)

#: Cached authorizers per resolver (one per distinct token in use).
CACHE_SIZE = 1024

RESOLVE_PATH = "/consul.acl.v1.ACLService/ResolveToken"


@dataclass(frozen=True, slots=True)
class Identity:
    """What a token amounts to: who, and every rule text that applies."""

    accessor: str
    management: bool
    rules: tuple[str, ...]
    #: Wall-clock expiry (epoch seconds) of the token; None for never.
    expires: float | None = None
    #: Resolved by the primary datacenter (a global token): cached for token_ttl.
    remote: bool = False


@lru_cache(maxsize=512)
def _parsed(text: str) -> Rules:
    return parse_rules(text)


def token_expiry(token: dict[str, Any]) -> float | None:
    """The token's ``ExpirationTime`` in epoch seconds; None for never."""
    when = token.get("ExpirationTime")
    if not when:
        return None
    try:
        return dt.datetime.fromisoformat(str(when).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def token_expired(token: dict[str, Any], now: float) -> bool:
    expiry = token_expiry(token)
    return expiry is not None and expiry <= now


class StateTokens:
    """Identities read from a server's ACL state."""

    def __init__(
        self,
        state: ACLState,
        datacenter: str,
        *,
        primary: str = "",
        remote: Fetch | None = None,
    ) -> None:
        self.state = state
        self.datacenter = datacenter
        #: Tokens unknown here are asked of the primary datacenter (global tokens).
        self.primary = primary if primary and primary != datacenter else ""
        self.remote = remote
        self._dc = datacenter

    def _here(self, datacenters: Any) -> bool:
        return not datacenters or self._dc in datacenters

    async def _policy_rules(self, links: list[dict[str, Any]], out: list[str]) -> bool:
        management = False
        for link in links:
            policy = None
            if link.get("ID"):
                policy = await self.state.policy(str(link["ID"]))
            elif link.get("Name"):
                policy = await self.state.policy_by_name(str(link["Name"]))
            if policy is None or not self._here(policy.get("Datacenters")):
                continue
            if policy["ID"] == GLOBAL_MANAGEMENT_ID:
                management = True
            out.append(str(policy.get("Rules", "")))
        return management

    async def identity_of(self, token: dict[str, Any], datacenter: str = "") -> Identity:
        """What ``token`` may do in ``datacenter`` (default: this one)."""
        self._dc = datacenter or self.datacenter
        rules: list[str] = []
        management = await self._policy_rules(list(token.get("Policies") or []), rules)
        holders = [token]
        for link in token.get("Roles") or []:
            role = None
            if link.get("ID"):
                role = await self.state.role(str(link["ID"]))
            elif link.get("Name"):
                role = await self.state.role_by_name(str(link["Name"]))
            if role is not None:
                holders.append(role)
                management |= await self._policy_rules(list(role.get("Policies") or []), rules)
        for holder in holders:
            for si in holder.get("ServiceIdentities") or []:
                if self._here(si.get("Datacenters")):
                    rules.append(service_identity_rules(str(si.get("ServiceName", ""))))
            for ni in holder.get("NodeIdentities") or []:
                if ni.get("Datacenter", self._dc) == self._dc:
                    rules.append(node_identity_rules(str(ni.get("NodeName", ""))))
            for tp in holder.get("TemplatedPolicies") or []:
                if self._here(tp.get("Datacenters")):
                    rules.append(
                        templated_rules(str(tp.get("TemplateName")), tp.get("TemplateVariables"))
                    )
        return Identity(str(token["AccessorID"]), management, tuple(rules), token_expiry(token))

    async def __call__(self, secret: str) -> Identity:
        token = await self.state.token_by_secret(secret)
        if token is None and self.primary and self.remote is not None:
            ident = await self.remote(secret)
            return Identity(ident.accessor, ident.management, ident.rules, ident.expires, True)
        if token is None or token_expired(token, time.time()):
            raise ACLNotFound()
        return await self.identity_of(token)


class Invoker(Protocol):
    async def rpc(self, spec: MethodSpec, request: Any) -> Any: ...


class InvokerTokens:
    """Identities asked of a server: a client agent's resolver, or a server
    asking the primary datacenter (``datacenter``) about a global token."""

    def __init__(
        self, invoker: Invoker, spec: MethodSpec, *, datacenter: str = "", requesting: str = ""
    ) -> None:
        self.invoker = invoker
        self.spec = spec
        self.datacenter = datacenter
        self.requesting = requesting

    async def __call__(self, secret: str) -> Identity:
        req = apb.ResolveTokenRequest(
            options=qpb.QueryOptions(token=secret, datacenter=self.datacenter),
            requesting_datacenter=self.requesting,
        )
        resp: apb.ResolveTokenResponse = await self.invoker.rpc(self.spec, req)
        expires = (
            resp.expiration_time.ToNanoseconds() / 1e9 if resp.HasField("expiration_time") else None
        )
        return Identity(resp.accessor_id, resp.management, tuple(resp.rules), expires)


Fetch = Callable[[str], Awaitable[Identity]]


class Resolver:
    """Token secret -> ``Authorizer`` for one agent (see the module docstring)."""

    def __init__(
        self,
        config: ACLConfig,
        fetch: Fetch,
        *,
        version: Callable[[], Awaitable[int]] | None = None,
        clock: Callable[[], float] = time.monotonic,
        tokens: AgentTokens | None = None,
        node_name: str = "",
    ) -> None:
        self.config = config
        self.tokens = tokens or AgentTokens(config)
        self.node_name = node_name
        self.fetch = fetch
        self.version = version
        self.clock = clock
        # secret -> (authorizer, version or cache expiry, token expiry (wall clock))
        self._cache: OrderedDict[str, tuple[Authorizer, float, float | None]] = OrderedDict()
        self.wall: Callable[[], float] = time.time
        # Global tokens resolved by the primary: refetched after token_ttl.
        self._remote_until: dict[str, float] = {}

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    def secret_of(self, token: str) -> str:
        return token or self.tokens.default or ANONYMOUS_SECRET

    def recovery(self) -> Authorizer:
        """What the ``agent_recovery`` token may do: this agent, and read its nodes."""
        rules = _parsed(
            f'agent "{self.node_name}" {{ policy = "write" }}\nnode_prefix "" {{ policy = "read" }}'
        )
        return Authorizer(rules, default_allow=False, accessor="agent-recovery")

    def compile(self, ident: Identity) -> Authorizer:
        try:
            rules = merge_rules([_parsed(text) for text in ident.rules])
        except InvalidArgument as exc:  # a stored policy that no longer parses
            logger.warning("stored rules fail to parse accessor=%s error=%s", ident.accessor, exc)
            rules = Rules()
        return Authorizer(
            rules,
            default_allow=self.config.default_policy == "allow",
            manage=ident.management,
            accessor=ident.accessor,
            key_list_policy=self.config.enable_key_list_policy,
        )

    def invalidate(self) -> None:
        self._cache.clear()
        self._remote_until.clear()

    async def resolve(self, token: str) -> Authorizer:
        """The authorizer of ``token``; ``ACLNotFound`` for an unknown secret."""
        if not self.config.enabled:
            return Authorizer.allow_all()
        secret = self.secret_of(token)
        recovery = self.tokens.agent_recovery
        if recovery and secret == recovery:
            return self.recovery()
        if self.version is not None:
            return await self._resolve_versioned(secret, self.version)
        return await self._resolve_ttl(secret)

    async def _resolve_versioned(
        self, secret: str, version: Callable[[], Awaitable[int]]
    ) -> Authorizer:
        current = float(await version())
        hit = self._cache.get(secret)
        if hit is not None and hit[1] == current:
            if hit[2] is not None and hit[2] <= self.wall():
                self._cache.pop(secret, None)
                raise ACLNotFound()
            fresh_until = self._remote_until.get(secret)
            if fresh_until is None or fresh_until > self.clock():
                return hit[0]
        try:
            ident = await self.fetch(secret)
        except Unavailable as exc:  # the primary datacenter, for a global token
            return self._down(secret, hit, exc)
        authz = self.compile(ident)
        self._remember(secret, authz, current, ident.expires)
        if ident.remote:
            self._remote_until[secret] = self.clock() + self.config.token_ttl
        else:
            self._remote_until.pop(secret, None)
        return authz

    async def _resolve_ttl(self, secret: str) -> Authorizer:
        now = self.clock()
        hit = self._cache.get(secret)
        if hit is not None and hit[2] is not None and hit[2] <= self.wall():
            self._cache.pop(secret, None)
            raise ACLNotFound()
        if hit is not None and hit[1] > now:
            return hit[0]
        try:
            ident = await self.fetch(secret)
            authz = self.compile(ident)
        except Unavailable as exc:
            return self._down(secret, hit, exc)
        except ConsulError as exc:
            if isinstance(exc, ACLNotFound) or exc.http_status < 500:
                raise
            return self._down(secret, hit, exc)
        self._remember(secret, authz, now + self.config.token_ttl, ident.expires)
        return authz

    def _down(
        self, secret: str, hit: tuple[Authorizer, float, float | None] | None, exc: ConsulError
    ) -> Authorizer:
        policy = self.config.down_policy
        logger.warning("acl servers unreachable down_policy=%s error=%s", policy, exc)
        if policy == "allow":
            return Authorizer(Rules(), default_allow=True, accessor="")
        if policy in ("extend-cache", "async-cache") and hit is not None:
            return hit[0]
        return Authorizer(Rules(), default_allow=False, accessor="")

    def _remember(
        self, secret: str, authz: Authorizer, stamp: float, expires: float | None
    ) -> None:
        self._cache[secret] = (authz, stamp, expires)
        self._cache.move_to_end(secret)
        while len(self._cache) > CACHE_SIZE:
            old, _ = self._cache.popitem(last=False)
            self._remote_until.pop(old, None)
