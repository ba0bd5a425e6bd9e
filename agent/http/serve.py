"""Serving the HTTP API from an agent: the app, the metrics route, the listener."""

from __future__ import annotations

import asyncio
import json
import ssl

from aiohttp import web

from agent.http.app import build_app
from agent.http.limits import TRACKER, HTTPLimits, http_samples
from agent.http.operator_routes import OperatorHooks, add_operator_routes
from agent.http.protocols import Invoker, LocalAgent
from agent.http.server import HTTPServer
from agent.metrics import PROMETHEUS_CONTENT_TYPE, AgentMetrics

__all__ = ["serve_http"]


def serve_http(
    address: str,
    *,
    invoker: Invoker,
    agent_endpoint: LocalAgent,
    datacenter: str,
    node_name: str,
    metrics: AgentMetrics,
    leave_requested: asyncio.Event,
    ui: bool = False,
    limits: HTTPLimits | None = None,
    https: tuple[str, ssl.SSLContext] | None = None,
    operator: OperatorHooks | None = None,
) -> HTTPServer:
    """An unstarted HTTPServer for ``address`` (``host:port``; port 0 picks one; empty:
    no plaintext listener), and HTTPS on ``https`` (address, context) if given."""

    async def on_leave() -> None:
        # Only signal: the agent's owner shuts down (and closes this server).
        leave_requested.set()

    app = build_app(
        invoker,
        agent_endpoint,
        datacenter=datacenter,
        node_name=node_name,
        on_leave=on_leave,
        ui=ui,
        limits=limits,
    )
    tracker = app[TRACKER]

    metrics.add_source(lambda: http_samples(tracker))

    async def agent_metrics(request: web.Request) -> web.Response:
        if request.query.get("format") == "prometheus":
            return web.Response(
                body=metrics.prometheus(), headers={"Content-Type": PROMETHEUS_CONTENT_TYPE}
            )
        return web.Response(text=json.dumps(metrics.consul_json()), content_type="application/json")

    app.router.add_get("/v1/agent/metrics", agent_metrics)
    add_operator_routes(app, operator or OperatorHooks())
    host, _, port = address.rpartition(":")
    tls = None
    if https is not None:
        tls_host, _, tls_port = https[0].rpartition(":")
        tls = (tls_host or "127.0.0.1", int(tls_port), https[1])
    return HTTPServer(app, host or "127.0.0.1", int(port) if port else None, https=tls)
