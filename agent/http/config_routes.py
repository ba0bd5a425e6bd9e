"""``/v1/config``: Consul's configuration entries (apply, read, list, delete).

``PUT /v1/config`` answers ``true``/``false`` (``?cas=`` makes it a
compare-and-set); ``GET /v1/config/<kind>/<name>`` the entry (404 ``Config
entry not found for "<kind>" / "<name>"``), ``GET /v1/config/<kind>`` every
entry of the kind (``[]`` when none), both with ``X-Consul-Index`` and
blocking queries; ``DELETE /v1/config/<kind>/<name>`` answers ``{}``, or
``true``/``false`` with ``?cas=``, as Consul's handlers do.
"""

from __future__ import annotations

import json

from aiohttp import web

from agent.errors import NotFound
from agent.http.base import context, json_response
from agent.http.params import decode_json, query_options, read_body, uint_param, write_options
from generated.consul.config.v1 import config_pb2 as cfpb

__all__ = ["add_config_routes"]

_SVC = "/consul.config.v1.ConfigService/"


async def apply_entry(request: web.Request) -> web.Response:
    ctx = context(request)
    body = await read_body(request)
    decode_json(body)  # malformed or too deeply nested: a 400 here, before any RPC
    cas = uint_param(request.query, "cas")
    resp = await ctx.call(
        _SVC + "Apply",
        cfpb.ApplyRequest(
            write=write_options(request),
            entry_json=body,
            cas=cas or 0,
            has_cas=cas is not None,
        ),
        cfpb.ApplyResponse,
    )
    return json_response(request, resp.applied)


async def get_entries(request: web.Request) -> web.Response:
    ctx = context(request)
    kind = request.match_info["kind"]
    name = request.match_info.get("name", "")
    opts = query_options(request)
    if name:
        got = await ctx.call(
            _SVC + "Get", cfpb.GetRequest(options=opts, kind=kind, name=name), cfpb.GetResponse
        )
        if not got.entry_json:
            raise NotFound(f"Config entry not found for {json.dumps(kind)} / {json.dumps(name)}")
        return json_response(request, json.loads(got.entry_json), meta=got.meta)
    listed = await ctx.call(
        _SVC + "List", cfpb.ListRequest(options=opts, kind=kind), cfpb.ListResponse
    )
    return json_response(request, [json.loads(e) for e in listed.entries_json], meta=listed.meta)


async def delete_entry(request: web.Request) -> web.Response:
    ctx = context(request)
    cas = uint_param(request.query, "cas")
    resp = await ctx.call(
        _SVC + "Delete",
        cfpb.DeleteRequest(
            write=write_options(request),
            kind=request.match_info["kind"],
            name=request.match_info["name"],
            cas=cas or 0,
            has_cas=cas is not None,
        ),
        cfpb.DeleteResponse,
    )
    return json_response(request, resp.deleted if cas is not None else {})


def add_config_routes(router: web.UrlDispatcher) -> None:
    router.add_put("/v1/config", apply_entry)
    router.add_get("/v1/config/{kind}", get_entries)
    router.add_get("/v1/config/{kind}/{name:.+}", get_entries)
    router.add_delete("/v1/config/{kind}/{name:.+}", delete_entry)
