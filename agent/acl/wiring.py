"""The pieces an agent composes to enforce ACLs, so its own hunks stay small.

- ``TokenInvoker``: an invoker that puts a token into requests carrying none
  (a client agent forwards the caller's token, else its ``default`` token;
  anti-entropy sends the ``agent`` token).
- ``LocalLookups``: names of the agent's own services and checks, for the
  checks of its AgentService.
- ``ServerLookups``: service and session owners read from a server's state.
- ``server_acl`` / ``client_acl``: the resolver, gate and (servers) the
  ACLService endpoint of one agent.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from aiohttp import web
from google.protobuf.message import Message

from agent.acl.endpoint import ACLEndpoint
from agent.acl.enforce import Gate
from agent.acl.resolver import RESOLVE_PATH, InvokerTokens, Resolver, StateTokens
from agent.acl.rules import Access
from agent.acl.tokens import AgentTokens
from agent.config import AgentConfig
from agent.errors import ACLDisabled, InvalidArgument
from agent.rpc.methods import MethodSpec, method_spec
from agent.rpc.token import request_token
from agent.state.acl import ACLState
from agent.state.blocking import QueryOpts
from agent.state.catalog import Catalog
from agent.state.sessions import SessionState
from generated.consul.agent.v1 import agent_pb2 as apb

__all__ = [
    "ClientACL",
    "LocalLookups",
    "ServerACL",
    "ServerLookups",
    "TokenInvoker",
    "add_http",
    "client_acl",
    "read_reset_index",
    "server_acl",
    "with_token",
]

logger = logging.getLogger(__name__)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Invoker(Protocol):
    async def rpc(self, spec: MethodSpec, request: Message) -> Any: ...


def with_token(msg: Message, token: str) -> Message:
    """``msg`` carrying ``token`` if it carries none (a copy when it changes)."""
    if not token:
        return msg
    fields = msg.DESCRIPTOR.fields_by_name
    for name in ("options", "write"):
        if name in fields:
            if getattr(msg, name).token:
                return msg
            copy = type(msg)()
            copy.CopyFrom(msg)
            getattr(copy, name).token = token
            return copy
    if "token" in fields and not getattr(msg, "token"):  # noqa: B009
        copy = type(msg)()
        copy.CopyFrom(msg)
        setattr(copy, "token", token)  # noqa: B010
        return copy
    return msg


class TokenInvoker:
    """Sends each call through ``inner`` with ``token()`` when it has none."""

    def __init__(self, inner: Invoker, token: Callable[[], str]) -> None:
        self.inner = inner
        self.token = token

    async def rpc(self, spec: MethodSpec, request: Message) -> Any:
        return await self.inner.rpc(spec, with_token(request, self.token()))


class _HasServices(Protocol):
    services: dict[str, Any]
    definitions: dict[str, apb.CheckDefinition]


class LocalLookups:
    """An agent's own services and checks (its local state)."""

    def __init__(self, state: Callable[[], _HasServices]) -> None:
        self.state = state

    async def service_name(self, node: str, service_id: str) -> str | None:
        svc = self.state().services.get(service_id)
        return str(svc.name) if svc is not None else None

    async def session_node(self, session_id: str) -> str | None:
        return None

    async def check_service(self, check_id: str) -> str | None:
        check = self.state().definitions.get(check_id)
        if check is None or not check.service_id:
            return None
        return await self.service_name("", check.service_id)


class ServerLookups:
    """Owners of catalog services and sessions, read from a server's state."""

    def __init__(self, catalog: Catalog, sessions: SessionState) -> None:
        self.catalog = catalog
        self.sessions = sessions

    async def service_name(self, node: str, service_id: str) -> str | None:
        read = await self.catalog.get_node(QueryOpts(), node)
        for svc in read.value[1]:
            if svc.id == service_id:
                return str(svc.name)
        return None

    async def session_node(self, session_id: str) -> str | None:
        read = await self.sessions.info(QueryOpts(), session_id)
        return str(read.value.node) if read.value is not None else None


def read_reset_index(data_dir: str) -> int | None:
    """The index in ``<data-dir>/acl-bootstrap-reset`` (Consul's reset file), if any."""
    if not data_dir:
        return None
    path = Path(data_dir) / "acl-bootstrap-reset"
    try:
        return int(path.read_text().strip())
    except FileNotFoundError:
        return None
    except ValueError:
        logger.warning("ignoring unreadable acl bootstrap reset file path=%s", path)
        return None


@dataclass
class ServerACL:
    state: ACLState
    resolver: Resolver
    gate: Gate
    agent_gate: Gate
    endpoint: ACLEndpoint

    def add_http(self, app: web.Application) -> None:
        add_http(app, self.resolver, self.agent_gate.node_name)

    async def start(self, is_leader: Callable[[], bool]) -> None:
        """Write the builtins, and the initial management token when configured."""
        if not self.resolver.enabled:
            return
        await self.state.ensure_builtins()
        secret = self.resolver.config.initial_management
        if secret:
            await self.state.ensure_management_token(secret)


#: Agent routes served by the HTTP layer alone: (resource, access), as Consul's.
_AGENT_HTTP = {
    ("GET", "/v1/agent/metrics"): ("agent", Access.READ),
    ("PUT", "/v1/agent/leave"): ("operator", Access.WRITE),
    ("PUT", "/v1/agent/reload"): ("agent", Access.WRITE),
    ("GET", "/v1/operator/keyring"): ("keyring", Access.READ),
    ("POST", "/v1/operator/keyring"): ("keyring", Access.WRITE),
    ("PUT", "/v1/operator/keyring"): ("keyring", Access.WRITE),
    ("DELETE", "/v1/operator/keyring"): ("keyring", Access.WRITE),
}


def add_http(app: web.Application, resolver: Resolver, node_name: str) -> None:
    """The agent's HTTP-only ACL parts: ``/v1/agent/token/<kind>``, and checks on
    the agent routes that never reach an endpoint (metrics, leave)."""

    async def set_token(request: web.Request) -> web.StreamResponse:
        authz = await resolver.resolve(request_token.get())
        if not resolver.enabled:
            raise ACLDisabled()
        authz.require("acl", None, Access.WRITE)
        raw = await request.read()
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            raise InvalidArgument("Request decode failed: body is not JSON") from None
        if not isinstance(body, dict):
            raise InvalidArgument("Request body must be a JSON object")
        folded = {str(k).lower(): v for k, v in body.items()}
        token = folded.get("token", "")
        if not isinstance(token, str):
            raise InvalidArgument("Token must be a string")
        resolver.tokens.update(request.match_info["kind"], token)
        resolver.invalidate()
        return web.Response(status=200)

    @web.middleware
    async def agent_routes(request: web.Request, handler: Handler) -> web.StreamResponse:
        need = _AGENT_HTTP.get((request.method, request.path))
        if need is not None and resolver.enabled:
            resource, access = need
            authz = await resolver.resolve(request_token.get())
            authz.require(resource, node_name if resource == "agent" else None, access)
        return await handler(request)

    app.router.add_put("/v1/agent/token/{kind}", set_token)
    app.middlewares.append(agent_routes)


def server_acl(
    config: AgentConfig,
    state: ACLState,
    catalog: Catalog,
    sessions: SessionState,
    local_state: Callable[[], _HasServices],
    known_leader: Callable[[], bool],
    invoker: Invoker | None = None,
) -> ServerACL:
    """A server's ACL parts. With ``primary_datacenter`` set to another
    datacenter, tokens unknown here are asked of the primary through
    ``invoker`` (the server's dispatcher, which forwards over the WAN): Consul's
    global tokens, without replication."""
    dc = config.datacenter
    primary = config.primary_datacenter
    remote = (
        InvokerTokens(invoker, method_spec(RESOLVE_PATH), datacenter=primary, requesting=dc)
        if invoker is not None and primary and primary != dc
        else None
    )
    tokens = StateTokens(state, dc, primary=primary, remote=remote)
    resolver = Resolver(
        config.acl,
        tokens,
        version=state.index,
        tokens=AgentTokens(config.acl, config.data_dir),
        node_name=config.node_name,
    )
    local = LocalLookups(local_state)
    return ServerACL(
        state=state,
        resolver=resolver,
        gate=Gate(resolver, lookups=ServerLookups(catalog, sessions)),
        agent_gate=Gate(
            resolver, node_name=config.node_name, lookups=local, check_service=local.check_service
        ),
        endpoint=ACLEndpoint(
            state,
            resolver,
            datacenter=config.datacenter,
            known_leader=known_leader,
            reset_index=lambda: read_reset_index(config.data_dir),
            tokens=tokens,
        ),
    )


@dataclass
class ClientACL:
    resolver: Resolver
    agent_gate: Gate
    forward: TokenInvoker
    anti_entropy: TokenInvoker

    def add_http(self, app: web.Application) -> None:
        add_http(app, self.resolver, self.agent_gate.node_name)


def client_acl(
    config: AgentConfig, client: Invoker, local_state: Callable[[], _HasServices]
) -> ClientACL:
    resolver = Resolver(
        config.acl,
        InvokerTokens(client, method_spec(RESOLVE_PATH)),
        tokens=AgentTokens(config.acl, config.data_dir),
        node_name=config.node_name,
    )
    tokens = resolver.tokens
    local = LocalLookups(local_state)
    return ClientACL(
        resolver=resolver,
        agent_gate=Gate(
            resolver, node_name=config.node_name, lookups=local, check_service=local.check_service
        ),
        forward=TokenInvoker(client, lambda: request_token.get() or tokens.default),
        anti_entropy=TokenInvoker(client, lambda: tokens.agent),
    )
