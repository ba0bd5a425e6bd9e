"""Connect reads: ``/v1/catalog/connect``, ``/v1/health/connect``, ``/v1/health/ingress``,
``/v1/catalog/gateway-services``, and ``/v1/catalog/node-services``.

``connect`` reads are the service reads with the request's ``connect`` flag
(Consul's ``ServiceSpecificRequest.Connect``): the proxies whose
``Proxy.DestinationServiceName`` is the service, and its Connect-native
instances. ``ingress`` and ``gateway-services`` join config entries
(``ingress-gateway``, ``terminating-gateway``) with the catalog: their index is
the highest of the reads they made, and a blocking one (``?index``) waits on
all those reads at once and answers (read again) when the first moves.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from google.protobuf.message import Message

from agent.filter import apply_filter
from agent.http.base import Context, context, json_response, read_json
from agent.http.catalog_routes import peered
from agent.http.params import flag, node_meta, query_options
from agent.shapes import catalog_service_json, node_json, service_entry_json, service_json
from generated.consul.catalog.v1 import catalog_pb2 as cpb
from generated.consul.common.v1 import query_pb2 as qpb
from generated.consul.config.v1 import config_pb2 as cfpb
from generated.consul.health.v1 import health_pb2 as hpb

__all__ = ["add_connect_routes"]

_CATALOG = "/consul.catalog.v1.CatalogService/"
_HEALTH = "/consul.health.v1.HealthService/"
_CONFIG = "/consul.config.v1.ConfigService/"


async def catalog_connect(request: web.Request) -> web.Response:
    req = cpb.ListServiceInstancesRequest(
        options=query_options(request),
        service=request.match_info["service"],
        tags=request.query.getall("tag", []),
        node_meta=node_meta(request.query),
        connect=True,
    )
    return await read_json(
        request,
        _CATALOG + "ListServiceInstances",
        req,
        cpb.ListServiceInstancesResponse,
        lambda resp: [catalog_service_json(i.node, i.service) for i in resp.instances],
    )


async def health_connect(request: web.Request) -> web.Response:
    req = hpb.ServiceHealthRequest(
        options=query_options(request),
        service=request.match_info["service"],
        tags=request.query.getall("tag", []),
        passing_only=flag(request.query, "passing"),
        node_meta=node_meta(request.query),
        connect=True,
    )
    return await read_json(
        request,
        _HEALTH + "ServiceHealth",
        req,
        hpb.ServiceHealthResponse,
        lambda resp: [service_entry_json(e) for e in resp.entries],
    )


async def node_services(request: web.Request) -> web.Response:
    """Consul's ``NodeServiceList``: the node and its services as a list (filtered)."""
    opts = query_options(request)
    expr = opts.filter
    opts.filter = ""
    req = cpb.GetNodeRequest(options=opts, node=request.match_info["node"])
    resp = await context(request).call(_CATALOG + "GetNode", req, cpb.GetNodeResponse)
    services = apply_filter(expr, list(resp.services), service_json)
    body = {
        "Node": node_json(resp.node) if resp.HasField("node") else None,
        "Services": [service_json(s) for s in services],
    }
    return json_response(request, body, meta=resp.meta)


# -- joins of config entries and the catalog ------------------------------


@dataclass(slots=True)
class _Part:
    """One read a joined answer was made of, and the index it saw."""

    path: str
    request: Message
    response_type: type[Message]
    index: int


def _meta(parts: list[_Part]) -> qpb.QueryMeta:
    return qpb.QueryMeta(index=max([p.index for p in parts] or [1]), known_leader=True)


async def _call(ctx: Context, parts: list[_Part], path: str, req: Message, rtype: Any) -> Any:
    resp = await ctx.call(path, req, rtype)
    parts.append(_Part(path, req, rtype, resp.meta.index))
    return resp


Snapshot = Callable[[qpb.QueryOptions, list[_Part]], Awaitable[Any]]


async def _joined(request: web.Request, snapshot: Snapshot) -> web.Response:
    """Answer ``snapshot`` (non-blocking reads), blocking as one query over its parts."""
    ctx = context(request)
    opts = query_options(request)
    min_index = opts.min_index
    plain = qpb.QueryOptions()
    plain.CopyFrom(opts)
    plain.min_index = 0
    plain.ClearField("max_wait")
    parts: list[_Part] = []
    body = await snapshot(plain, parts)
    if min_index and _meta(parts).index <= min_index:
        await _wait_any(ctx, parts, opts)
        parts = []
        body = await snapshot(plain, parts)
    return json_response(request, body, meta=_meta(parts))


async def _wait_any(ctx: Context, parts: list[_Part], opts: qpb.QueryOptions) -> None:
    """Block on every part at once (each from the index it saw) until one moves or all time out."""
    tasks: list[asyncio.Task[Any]] = []
    for part in parts:
        req = type(part.request)()
        req.CopyFrom(part.request)
        options = getattr(req, "options")  # noqa: B009 - every part is a read with options
        options.min_index = part.index
        options.max_wait.CopyFrom(opts.max_wait)
        tasks.append(asyncio.create_task(ctx.call(part.path, req, part.response_type)))
    if not tasks:
        return
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()  # an error of the first read is the answer's
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def _entries(
    ctx: Context, opts: qpb.QueryOptions, parts: list[_Part], kind: str
) -> list[dict[str, Any]]:
    req = cfpb.ListRequest(options=opts, kind=kind)
    listed = await _call(ctx, parts, _CONFIG + "List", req, cfpb.ListResponse)
    return [e for e in (json.loads(raw) for raw in listed.entries_json) if isinstance(e, dict)]


def _objs(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _gateway_service(entry: dict[str, Any], service: dict[str, Any], kind: str) -> dict[str, Any]:
    """Consul's ``GatewayService`` (empty fields left out, as its JSON does)."""
    return {
        "Gateway": {"Name": entry.get("Name", "")},
        "Service": {"Name": service.get("Name", "")},
        "GatewayKind": kind,
    }


def _ingress_services(entry: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for listener in _objs(entry.get("Listeners")):
        for service in _objs(listener.get("Services")):
            row = _gateway_service(entry, service, "ingress-gateway")
            row["Port"] = listener.get("Port", 0)
            row["Protocol"] = listener.get("Protocol") or "tcp"
            if service.get("Hosts"):
                row["Hosts"] = service["Hosts"]
            out.append(row)
    return out


def _terminating_services(entry: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for service in _objs(entry.get("Services")):
        row = _gateway_service(entry, service, "terminating-gateway")
        for key in ("CAFile", "CertFile", "KeyFile", "SNI"):
            if service.get(key):
                row[key] = service[key]
        out.append(row)
    return out


def _with_indexes(row: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    row["CreateIndex"] = entry.get("CreateIndex", 0)
    row["ModifyIndex"] = entry.get("ModifyIndex", 0)
    return row


async def gateway_services(request: web.Request) -> web.Response:
    gateway = request.match_info["gateway"]
    ctx = context(request)

    async def snapshot(opts: qpb.QueryOptions, parts: list[_Part]) -> Any:
        expr = opts.filter
        plain = qpb.QueryOptions()
        plain.CopyFrom(opts)
        plain.filter = ""
        rows: list[dict[str, Any]] = []
        for kind, services in (
            ("ingress-gateway", _ingress_services),
            ("terminating-gateway", _terminating_services),
        ):
            for entry in await _entries(ctx, plain, parts, kind):
                if entry.get("Name") == gateway:
                    rows += [_with_indexes(r, entry) for r in services(entry)]
        return apply_filter(expr, rows, lambda r: r)

    return await _joined(request, snapshot)


async def health_ingress(request: web.Request) -> web.Response:
    """Health entries of the ingress gateways exposing the service (Consul's
    ``ServiceSpecificRequest.Ingress``): tags, node meta, ``passing`` and the
    filter apply to the gateways' entries."""
    service = request.match_info["service"]
    ctx = context(request)
    tags = request.query.getall("tag", [])
    passing = flag(request.query, "passing")
    meta = node_meta(request.query)

    async def snapshot(opts: qpb.QueryOptions, parts: list[_Part]) -> Any:
        plain = qpb.QueryOptions()
        plain.CopyFrom(opts)
        plain.filter = ""
        gateways: list[str] = []
        for entry in await _entries(ctx, plain, parts, "ingress-gateway"):
            names = {r["Service"]["Name"] for r in _ingress_services(entry)}
            # "*" exposes every service (Consul's wildcard listener).
            if (service in names or "*" in names) and entry.get("Name") not in gateways:
                gateways.append(str(entry.get("Name")))
        out: list[Any] = []
        for gateway in gateways:
            req = hpb.ServiceHealthRequest(
                options=opts, service=gateway, tags=tags, passing_only=passing, node_meta=meta
            )
            resp = await _call(
                ctx, parts, _HEALTH + "ServiceHealth", req, hpb.ServiceHealthResponse
            )
            out += [
                service_entry_json(e) for e in resp.entries if e.service.kind == "ingress-gateway"
            ]
        return out

    return await _joined(request, snapshot)


def add_connect_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/v1/catalog/connect/{service}", catalog_connect)
    router.add_get("/v1/health/connect/{service}", health_connect)
    router.add_get("/v1/health/ingress/{service}", health_ingress)
    router.add_get("/v1/catalog/gateway-services/{gateway}", gateway_services)
    router.add_get(
        "/v1/catalog/node-services/{node}", peered(node_services, {"Node": None, "Services": []})
    )
