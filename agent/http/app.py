"""The aiohttp application of Consul's ``/v1`` HTTP API.

Wiring: give :func:`build_app` something that sends RPCs to the servers (a
client agent's ``Client``, or a server agent's in-process dispatcher, as an
:class:`~agent.http.protocols.Invoker`) and the agent's ``AgentEndpoint`` (a
:class:`~agent.http.protocols.LocalAgent`), then serve it with
:class:`~agent.http.server.HTTPServer`::

    app = build_app(client, endpoint, datacenter="dc1", node_name="node-1", on_leave=leave)
    async with HTTPServer(app, "127.0.0.1", 8500) as http:
        logger.info("http listening address=%s", http.address)
        ...

``on_leave`` runs the graceful leave for ``PUT /v1/agent/leave``; the request
waits for it, so it must not wait for the HTTP server itself to close (signal
the shutdown instead).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from agent.http.acl_routes import add_acl_routes, token_middleware
from agent.http.agent_routes import add_agent_routes
from agent.http.base import CONTEXT, Context, error_middleware
from agent.http.catalog_routes import add_catalog_routes, add_health_routes
from agent.http.config_routes import add_config_routes
from agent.http.connect_routes import add_connect_routes
from agent.http.event_routes import add_event_routes
from agent.http.kv_routes import add_kv_routes, add_status_routes
from agent.http.limits import (
    LIMITS,
    TRACKER,
    ClientTracker,
    HTTPLimits,
    blocking_query_middleware,
    write_shield_middleware,
)
from agent.http.params import MAX_BODY_SIZE
from agent.http.protocols import Invoker, LocalAgent
from agent.http.query_routes import add_query_routes
from agent.http.session_routes import add_session_routes
from agent.http.snapshot_routes import add_snapshot_routes
from agent.http.txn_routes import add_txn_routes
from agent.http.ui_routes import add_ui_routes

__all__ = ["build_app"]


def build_app(
    invoker: Invoker,
    agent_endpoint: LocalAgent,
    *,
    datacenter: str,
    node_name: str,
    on_leave: Callable[[], Awaitable[None]] | None = None,
    ui: bool = False,
    limits: HTTPLimits | None = None,
) -> web.Application:
    """Consul's ``/v1`` API: agent, catalog, health, kv, status, session, event and txn."""
    app = web.Application(
        middlewares=[
            write_shield_middleware,
            error_middleware,
            blocking_query_middleware,
            token_middleware,
        ],
        client_max_size=MAX_BODY_SIZE,
    )
    app[LIMITS] = limits or HTTPLimits()
    app[TRACKER] = ClientTracker(app[LIMITS])
    app[CONTEXT] = Context(
        invoker=invoker,
        agent=agent_endpoint,
        datacenter=datacenter,
        node_name=node_name,
        on_leave=on_leave,
    )
    add_agent_routes(app.router)
    add_catalog_routes(app.router)
    add_health_routes(app.router)
    add_connect_routes(app.router)
    add_kv_routes(app.router)
    add_status_routes(app.router)
    add_session_routes(app.router)
    add_event_routes(app.router)
    add_txn_routes(app.router)
    add_snapshot_routes(app.router)
    add_config_routes(app.router)
    add_acl_routes(app.router)
    add_ui_routes(app.router, serve_ui=ui)
    add_query_routes(app.router)
    return app
