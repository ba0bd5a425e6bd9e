"""``/v1/catalog/*`` and ``/v1/health/*``: reads and writes forwarded to the servers.

Every read carries QueryOptions from the query string (``?dc``, ``?index`` and
``?wait``, ``?stale``/``?consistent``, ``?filter``, the token) and answers
with the read headers of the server's QueryMeta.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from agent.errors import InvalidArgument
from agent.filter import apply_filter
from agent.http.base import context, front_cached, json_response, read_json
from agent.http.central_config import CentralConfig
from agent.http.decode import STATUS_BY_NAME, catalog_deregister, catalog_register
from agent.http.params import (
    Fields,
    decode_json,
    flag,
    node_meta,
    query_options,
    read_body,
    write_options,
)
from agent.shapes import (
    catalog_service_json,
    check_json,
    node_json,
    service_entry_json,
    service_json,
)
from generated.consul.catalog.v1 import catalog_pb2 as cpb
from generated.consul.common.v1 import query_pb2 as qpb
from generated.consul.common.v1 import types_pb2 as pb
from generated.consul.health.v1 import health_pb2 as hpb

__all__ = ["add_catalog_routes", "add_health_routes"]

_CATALOG = "/consul.catalog.v1.CatalogService/"
_HEALTH = "/consul.health.v1.HealthService/"


async def _write_body(request: web.Request, what: str) -> tuple[Fields, qpb.WriteOptions]:
    """The body of a catalog write, and its write options (body values as Consul takes them)."""
    body = Fields(decode_json(await read_body(request)), what)
    opts = write_options(request, body.text("Datacenter"))
    if not opts.token:
        write_request = body.obj("WriteRequest")
        if write_request is not None:
            opts.token = write_request.text("Token")
    return body, opts


async def register(request: web.Request) -> web.Response:
    body, opts = await _write_body(request, "register")
    req = catalog_register(body)
    req.write.CopyFrom(opts)
    await context(request).call(_CATALOG + "Register", req, cpb.RegisterResponse)
    return json_response(request, True)


async def deregister(request: web.Request) -> web.Response:
    body, opts = await _write_body(request, "deregister")
    req = catalog_deregister(body)
    req.write.CopyFrom(opts)
    await context(request).call(_CATALOG + "Deregister", req, cpb.DeregisterResponse)
    return json_response(request, True)


async def datacenters(request: web.Request) -> web.Response:
    req = cpb.ListDatacentersRequest(options=query_options(request))
    resp = await context(request).call(
        _CATALOG + "ListDatacenters", req, cpb.ListDatacentersResponse
    )
    return json_response(request, list(resp.datacenters))


async def nodes(request: web.Request) -> web.Response:
    req = cpb.ListNodesRequest(options=query_options(request), node_meta=node_meta(request.query))
    return await read_json(
        request,
        _CATALOG + "ListNodes",
        req,
        cpb.ListNodesResponse,
        lambda resp: [node_json(n) for n in resp.nodes],
    )


async def services(request: web.Request) -> web.Response:
    req = cpb.ListServicesRequest(
        options=query_options(request), node_meta=node_meta(request.query)
    )
    return await read_json(
        request,
        _CATALOG + "ListServices",
        req,
        cpb.ListServicesResponse,
        lambda resp: {s.name: list(s.tags) for s in resp.services},
    )


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def peered(handler: Handler, empty: Any) -> Handler:
    """``handler`` accepting ``?peer=`` as Consul does. We hold no peerings, so a
    named peer has nothing imported: Consul answers such a read with an empty
    result (and the index), not an error; ``?peer=`` empty is the local data."""

    async def handle(request: web.Request) -> web.StreamResponse:
        resp = await handler(request)
        if not request.query.get("peer") or not isinstance(resp, web.Response):
            return resp
        headers = {k: v for k, v in resp.headers.items() if k.startswith("X-Consul-")}
        return web.Response(
            text=json.dumps(empty), content_type="application/json", headers=headers
        )

    return handle


def _merge_central(request: web.Request) -> CentralConfig | None:
    """The merger of ``?merge-central-config``, or None when not asked for."""
    if "merge-central-config" not in request.query:
        return None
    opts = query_options(request)
    return CentralConfig(context(request), opts.datacenter, opts.token)


async def service(request: web.Request) -> web.Response:
    req = cpb.ListServiceInstancesRequest(
        options=query_options(request),
        service=request.match_info["service"],
        tags=request.query.getall("tag", []),
        node_meta=node_meta(request.query),
    )
    central = _merge_central(request)
    if central is not None:
        resp = await context(request).call(
            _CATALOG + "ListServiceInstances", req, cpb.ListServiceInstancesResponse
        )
        for instance in resp.instances:
            await central.merge(instance.service)
        body = [catalog_service_json(i.node, i.service) for i in resp.instances]
        return json_response(request, body, meta=resp.meta)
    return await read_json(
        request,
        _CATALOG + "ListServiceInstances",
        req,
        cpb.ListServiceInstancesResponse,
        lambda resp: [catalog_service_json(i.node, i.service) for i in resp.instances],
    )


async def node(request: web.Request) -> web.Response:
    req = cpb.GetNodeRequest(options=query_options(request), node=request.match_info["node"])

    def body(resp: cpb.GetNodeResponse) -> dict[str, Any] | None:
        if not resp.HasField("node"):
            return None
        # ?filter applies to the node's services (Consul's NodeServices filter).
        services = apply_filter(req.options.filter, list(resp.services), service_json)
        return {
            "Node": node_json(resp.node),
            "Services": {s.id: service_json(s) for s in services},
        }

    return await read_json(request, _CATALOG + "GetNode", req, cpb.GetNodeResponse, body)


def add_catalog_routes(router: web.UrlDispatcher) -> None:
    router.add_put("/v1/catalog/register", register)
    router.add_put("/v1/catalog/deregister", deregister)
    router.add_get("/v1/catalog/datacenters", datacenters)
    router.add_get("/v1/catalog/nodes", peered(front_cached(nodes), []))
    router.add_get("/v1/catalog/services", peered(front_cached(services), {}))
    router.add_get("/v1/catalog/service/{service}", peered(front_cached(service), []))
    router.add_get("/v1/catalog/node/{node}", peered(front_cached(node), None))


async def node_checks(request: web.Request) -> web.Response:
    req = hpb.NodeChecksRequest(options=query_options(request), node=request.match_info["node"])
    return await read_json(
        request,
        _HEALTH + "NodeChecks",
        req,
        hpb.NodeChecksResponse,
        lambda resp: [check_json(c) for c in resp.checks],
    )


async def service_checks(request: web.Request) -> web.Response:
    req = hpb.ServiceChecksRequest(
        options=query_options(request), service=request.match_info["service"]
    )
    return await read_json(
        request,
        _HEALTH + "ServiceChecks",
        req,
        hpb.ServiceChecksResponse,
        lambda resp: [check_json(c) for c in resp.checks],
    )


async def service_health(request: web.Request) -> web.Response:
    req = hpb.ServiceHealthRequest(
        options=query_options(request),
        service=request.match_info["service"],
        tags=request.query.getall("tag", []),
        passing_only=flag(request.query, "passing"),
        node_meta=node_meta(request.query),
    )
    central = _merge_central(request)
    if central is not None:
        resp = await context(request).call(
            _HEALTH + "ServiceHealth", req, hpb.ServiceHealthResponse
        )
        for entry in resp.entries:
            await central.merge(entry.service)
        body = [service_entry_json(e) for e in resp.entries]
        return json_response(request, body, meta=resp.meta)
    return await read_json(
        request,
        _HEALTH + "ServiceHealth",
        req,
        hpb.ServiceHealthResponse,
        lambda resp: [service_entry_json(e) for e in resp.entries],
    )


async def checks_in_state(request: web.Request) -> web.Response:
    name = request.match_info["state"]
    state: pb.HealthStatus.ValueType = pb.HEALTH_STATUS_UNSPECIFIED
    if name in STATUS_BY_NAME:
        state = STATUS_BY_NAME[name]
    elif name != "any":
        raise InvalidArgument(
            f"Invalid state {name!r}: must be 'any', 'passing', 'warning' or 'critical'"
        )
    req = hpb.ChecksInStateRequest(options=query_options(request), state=state)
    resp = await context(request).call(_HEALTH + "ChecksInState", req, hpb.ChecksInStateResponse)
    return json_response(request, [check_json(c) for c in resp.checks], meta=resp.meta)


def add_health_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/v1/health/node/{node}", peered(front_cached(node_checks), []))
    router.add_get("/v1/health/checks/{service}", peered(front_cached(service_checks), []))
    router.add_get("/v1/health/service/{service}", peered(front_cached(service_health), []))
    router.add_get("/v1/health/state/{state}", checks_in_state)
