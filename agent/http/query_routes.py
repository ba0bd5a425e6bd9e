"""``/v1/query``: prepared queries (create, list, read, update, delete, execute, explain).

Consul's shapes: ``POST /v1/query`` answers ``{"ID": ...}``; ``GET /v1/query``
a list (``[]`` when there is none), ``GET /v1/query/<id>`` a one-element list;
``PUT`` and ``DELETE`` an empty 200; ``.../execute`` the instances with
``Service``, ``Nodes``, ``DNS``, ``Datacenter`` and ``Failovers``;
``.../explain`` ``{"Query": ...}``. An unknown query is a 404 ``Query not
found``. ``?limit=`` caps an execution; the executing agent is the ``Near``
source for ``_agent``.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from agent.errors import InvalidArgument
from agent.http.base import context, json_response
from agent.http.params import (
    Fields,
    decode_json,
    query_options,
    read_body,
    uint_param,
    write_options,
)
from agent.shapes import service_entry_json
from generated.consul.query.v1 import query_pb2 as qypb

__all__ = ["add_query_routes", "query_from_json", "query_json"]

_QUERY = "/consul.query.v1.PreparedQueryService/"

_TEMPLATE_TYPES = {
    "": qypb.TEMPLATE_TYPE_UNSPECIFIED,
    "name_prefix_match": qypb.TEMPLATE_TYPE_NAME_PREFIX_MATCH,
}


def query_from_json(f: Fields) -> qypb.PreparedQuery:
    """A Consul prepared-query definition as a PreparedQuery."""
    q = qypb.PreparedQuery(
        id=f.text("ID"), name=f.text("Name"), session=f.text("Session"), token=f.text("Token")
    )
    template = f.obj("Template")
    if template is not None:
        kind = template.text("Type")
        if kind not in _TEMPLATE_TYPES:
            raise InvalidArgument(f"Bad Type '{kind}'")
        q.template.type = _TEMPLATE_TYPES[kind]
        q.template.regexp = template.text("Regexp")
        q.template.remove_empty_tags = template.boolean("RemoveEmptyTags")
    service = f.obj("Service")
    if service is not None:
        s = q.service
        s.service = service.text("Service")
        s.only_passing = service.boolean("OnlyPassing")
        s.near = service.text("Near")
        s.tags.extend(service.strings("Tags"))
        s.node_meta.update(service.string_map("NodeMeta"))
        s.service_meta.update(service.string_map("ServiceMeta"))
        s.ignore_check_ids.extend(service.strings("IgnoreCheckIDs"))
        failover = service.obj("Failover")
        if failover is not None:
            s.failover.nearest_n = failover.integer("NearestN")
            s.failover.datacenters.extend(failover.strings("Datacenters"))
    dns = f.obj("DNS")
    if dns is not None:
        q.dns.ttl = dns.text("TTL")
    return q


def query_json(q: qypb.PreparedQuery) -> dict[str, Any]:
    """A PreparedQuery in Consul's JSON shape."""
    s = q.service
    kind = "name_prefix_match" if q.template.type == qypb.TEMPLATE_TYPE_NAME_PREFIX_MATCH else ""
    return {
        "ID": q.id,
        "Name": q.name,
        "Session": q.session,
        "Token": q.token,
        "Template": {
            "Type": kind,
            "Regexp": q.template.regexp,
            "RemoveEmptyTags": q.template.remove_empty_tags,
        },
        "Service": {
            "Service": s.service,
            "Failover": {
                "NearestN": s.failover.nearest_n,
                "Datacenters": list(s.failover.datacenters),
            },
            "OnlyPassing": s.only_passing,
            "IgnoreCheckIDs": list(s.ignore_check_ids),
            "Near": s.near,
            "Tags": list(s.tags),
            "NodeMeta": dict(s.node_meta),
            "ServiceMeta": dict(s.service_meta),
        },
        "DNS": {"TTL": q.dns.ttl},
        "CreateIndex": q.create_index,
        "ModifyIndex": q.modify_index,
    }


async def _body(request: web.Request) -> qypb.PreparedQuery:
    body = decode_json(await read_body(request))
    return query_from_json(Fields({} if body is None else body, "query"))


async def create(request: web.Request) -> web.Response:
    req = qypb.CreateRequest(write=write_options(request), query=await _body(request))
    resp = await context(request).call(_QUERY + "Create", req, qypb.CreateResponse)
    return json_response(request, {"ID": resp.id})


async def list_queries(request: web.Request) -> web.Response:
    req = qypb.ListRequest(options=query_options(request))
    resp = await context(request).call(_QUERY + "List", req, qypb.ListResponse)
    return json_response(request, [query_json(q) for q in resp.queries], meta=resp.meta)


async def get(request: web.Request) -> web.Response:
    req = qypb.GetRequest(options=query_options(request), id=request.match_info["id"])
    resp = await context(request).call(_QUERY + "Get", req, qypb.GetResponse)
    return json_response(request, [query_json(q) for q in resp.queries], meta=resp.meta)


async def update(request: web.Request) -> web.Response:
    query = await _body(request)
    query.id = request.match_info["id"]
    req = qypb.UpdateRequest(write=write_options(request), query=query)
    await context(request).call(_QUERY + "Update", req, qypb.UpdateResponse)
    return web.Response(status=200)


async def delete(request: web.Request) -> web.Response:
    req = qypb.DeleteRequest(write=write_options(request), id=request.match_info["id"])
    await context(request).call(_QUERY + "Delete", req, qypb.DeleteResponse)
    return web.Response(status=200)


def _source(request: web.Request) -> qypb.QuerySource:
    ctx = context(request)
    return qypb.QuerySource(datacenter=ctx.datacenter, node=ctx.node_name, ip=request.remote or "")


async def execute(request: web.Request) -> web.Response:
    limit = uint_param(request.query, "limit") or 0
    req = qypb.ExecuteRequest(
        options=query_options(request),
        query_id_or_name=request.match_info["id"],
        limit=min(limit, (1 << 31) - 1),
        source=_source(request),
    )
    resp = await context(request).call(_QUERY + "Execute", req, qypb.ExecuteResponse)
    body = {
        "Service": resp.service,
        "Nodes": [service_entry_json(e) for e in resp.nodes],
        "DNS": {"TTL": resp.dns.ttl},
        "Datacenter": resp.datacenter,
        "Failovers": resp.failovers,
    }
    return json_response(request, body, meta=resp.meta)


async def explain(request: web.Request) -> web.Response:
    req = qypb.ExplainRequest(
        options=query_options(request),
        query_id_or_name=request.match_info["id"],
        source=_source(request),
    )
    resp = await context(request).call(_QUERY + "Explain", req, qypb.ExplainResponse)
    return json_response(request, {"Query": query_json(resp.query)}, meta=resp.meta)


def add_query_routes(router: web.UrlDispatcher) -> None:
    router.add_post("/v1/query", create)
    router.add_get("/v1/query", list_queries)
    router.add_get("/v1/query/{id}/execute", execute)
    router.add_get("/v1/query/{id}/explain", explain)
    router.add_get("/v1/query/{id}", get)
    router.add_put("/v1/query/{id}", update)
    router.add_delete("/v1/query/{id}", delete)
