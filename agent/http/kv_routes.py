"""``/v1/kv/<key>`` and ``/v1/status/*``.

KV answers as Consul does: a read is a list of pairs with base64 values (or the
bare value with ``?raw``, or key names with ``?keys``), a missing key is a 404
that still carries ``X-Consul-Index`` (so a client can block on its creation),
and writes answer a bare ``true``/``false``, a lost check-and-set being 200
``false``.
"""

from __future__ import annotations

from aiohttp import web

from agent.errors import CASConflict, InvalidArgument
from agent.http.base import context, json_response, meta_headers, read_json
from agent.http.params import flag, query_options, read_body, uint_param, write_options
from agent.shapes import kv_json
from generated.consul.common.v1 import query_pb2 as qpb
from generated.consul.kv.v1 import kv_pb2 as kpb
from generated.consul.status.v1 import status_pb2 as spb

__all__ = ["MAX_VALUE_SIZE", "add_kv_routes", "add_status_routes"]

_KV = "/consul.kv.v1.KVService/"
_STATUS = "/consul.status.v1.StatusService/"

# Consul's kv_max_value_size default.
MAX_VALUE_SIZE = 512 * 1024


def _not_found(meta: qpb.QueryMeta) -> web.Response:
    return web.Response(status=404, headers=meta_headers(meta))


def _key(request: web.Request) -> str:
    return request.match_info["key"]


def _require_key(key: str) -> str:
    if not key:
        raise InvalidArgument("Missing key name")
    return key


async def kv_get(request: web.Request) -> web.StreamResponse:
    ctx = context(request)
    query = request.query
    key = _key(request)
    opts = query_options(request)
    # Lists are rendered through ``read_json``: at an agent whose views answer
    # them, the JSON of a version is built once and shared by every reader
    # (1,000 watchers of a 10,000-key prefix woken by one write rendered it
    # 1,000 times: about 40 ms of CPU each).
    if flag(query, "keys"):
        keys_req = kpb.KeysRequest(options=opts, prefix=key, separator=query.get("separator", ""))
        return await read_json(
            request,
            _KV + "Keys",
            keys_req,
            kpb.KeysResponse,
            lambda r: list(r.keys),
            missing=lambda r: not r.keys and bool(key),
        )
    if flag(query, "recurse"):
        list_req = kpb.ListRequest(options=opts, prefix=key)
        return await read_json(
            request,
            _KV + "List",
            list_req,
            kpb.ListResponse,
            lambda r: [kv_json(p) for p in r.pairs],
            missing=lambda r: not r.pairs,
        )
    get_req = kpb.GetRequest(options=opts, key=_require_key(key))
    got = await ctx.call(_KV + "Get", get_req, kpb.GetResponse)
    if not got.HasField("pair"):
        return _not_found(got.meta)
    if flag(query, "raw"):
        headers = meta_headers(got.meta)
        headers["X-Content-Type-Options"] = "nosniff"
        return web.Response(
            body=got.pair.value, headers=headers, content_type="application/octet-stream"
        )
    return json_response(request, [kv_json(got.pair)], meta=got.meta)


async def kv_put(request: web.Request) -> web.Response:
    query = request.query
    key = _require_key(_key(request))
    flags = uint_param(query, "flags") or 0
    req = kpb.PutRequest(
        write=write_options(request),
        key=key,
        flags=flags,
        acquire=query.get("acquire", ""),
        release=query.get("release", ""),
    )
    cas = uint_param(query, "cas")
    if cas is not None:
        req.cas = cas
    req.value = await read_body(
        request, MAX_VALUE_SIZE, f"Value exceeds {MAX_VALUE_SIZE} byte limit"
    )
    try:
        resp = await context(request).call(_KV + "Put", req, kpb.PutResponse)
    except CASConflict:
        return json_response(request, False)
    return json_response(request, bool(resp.applied))


async def kv_delete(request: web.Request) -> web.Response:
    query = request.query
    recurse = flag(query, "recurse")
    key = _key(request) if recurse else _require_key(_key(request))
    req = kpb.DeleteRequest(write=write_options(request), key=key, recurse=recurse)
    cas = uint_param(query, "cas")
    if cas is not None:
        req.cas = cas
    try:
        await context(request).call(_KV + "Delete", req, kpb.DeleteResponse)
    except CASConflict:
        return json_response(request, False)
    return json_response(request, True)


def add_kv_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/v1/kv/{key:.*}", kv_get)
    router.add_put("/v1/kv/{key:.*}", kv_put)
    router.add_delete("/v1/kv/{key:.*}", kv_delete)


async def leader(request: web.Request) -> web.Response:
    req = spb.LeaderRequest(datacenter=request.query.get("dc", ""))
    resp = await context(request).call(_STATUS + "Leader", req, spb.LeaderResponse)
    return json_response(request, resp.address)


async def peers(request: web.Request) -> web.Response:
    req = spb.PeersRequest(datacenter=request.query.get("dc", ""))
    resp = await context(request).call(_STATUS + "Peers", req, spb.PeersResponse)
    return json_response(request, list(resp.addresses))


def add_status_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/v1/status/leader", leader)
    router.add_get("/v1/status/peers", peers)
