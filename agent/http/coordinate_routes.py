"""``/v1/coordinate/*`` (Consul's coordinate endpoints) and ``?near=`` sorting.

- ``GET /v1/coordinate/datacenters``: the servers' WAN coordinates per
  datacenter, ``[{Datacenter, AreaID: "wan", Coordinates: [...]}]``.
- ``GET /v1/coordinate/nodes`` (``?segment``, blocking): ``[{Node, Segment, Coord}]``.
- ``GET /v1/coordinate/node/<n>``: that node's coordinates; 404 with an empty
  body (and ``X-Consul-Index``) when it has none, as Consul.
- ``PUT /v1/coordinate/update``: ``{Node, Segment, Coord}``, queued by the
  servers for their next batch (ACL ``node:write``); a malformed body is 400
  ``Request decode failed: ...``, a bad coordinate 400 ``rejected bad
  coordinate: ...``.

``near_sorted(handler)`` wraps a list read: with ``?near=<node>|_agent`` (the
agent answering) and the local datacenter, the rows are ordered by the
estimated RTT from that node, as Consul's ``sortNodesByDistanceFrom`` (nodes
without a coordinate last; no coordinate for the source: no reordering).
Client agents answer these reads from their views, so the sort is done here,
at the edge, on every agent alike.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from agent.coordinate import (
    Coordinate,
    coord_from_json,
    coord_json,
    from_proto,
    sort_by_distance,
    to_proto,
)
from agent.errors import InvalidArgument
from agent.http.base import Handler, context, json_response, meta_headers
from agent.http.params import decode_json, query_options, read_body, token, write_options
from generated.consul.common.v1 import query_pb2 as qpb
from generated.consul.coordinate.v1 import coordinate_pb2 as copb

__all__ = ["add_coordinate_routes", "near_sorted"]

_SVC = "/consul.coordinate.v1.CoordinateService/"


def _row(c: copb.NodeCoordinate) -> dict[str, Any]:
    return {"Node": c.node, "Segment": c.segment, "Coord": coord_json(from_proto(c.coord))}


def _segment(request: web.Request) -> str | None:
    return request.query.get("segment")


async def datacenters(request: web.Request) -> web.Response:
    resp = await context(request).call(
        _SVC + "ListDatacenters", copb.ListDatacentersRequest(), copb.ListDatacentersResponse
    )
    return json_response(
        request,
        [
            {
                "Datacenter": d.datacenter,
                "AreaID": d.area_id,
                "Coordinates": [_row(c) for c in d.coordinates],
            }
            for d in resp.datacenters
        ],
    )


async def nodes(request: web.Request) -> web.Response:
    req = copb.ListNodesRequest(options=query_options(request), segment=_segment(request))
    resp = await context(request).call(_SVC + "ListNodes", req, copb.ListNodesResponse)
    return json_response(request, [_row(c) for c in resp.coordinates], meta=resp.meta)


async def node(request: web.Request) -> web.Response:
    req = copb.GetNodeRequest(
        options=query_options(request), node=request.match_info["node"], segment=_segment(request)
    )
    resp = await context(request).call(_SVC + "GetNode", req, copb.GetNodeResponse)
    if not resp.coordinates:
        return web.Response(status=404, headers=meta_headers(resp.meta))
    return json_response(request, [_row(c) for c in resp.coordinates], meta=resp.meta)


def _text(doc: Mapping[str, Any], name: str) -> str:
    for key, value in doc.items():
        if key.lower() == name.lower():
            if not isinstance(value, str):
                raise InvalidArgument(f"Request decode failed: {name} must be a string")
            return value
    return ""


async def update(request: web.Request) -> web.Response:
    doc = decode_json(await read_body(request))
    if not isinstance(doc, dict):
        raise InvalidArgument("Request decode failed: the body must be a JSON object")
    raw = next((v for k, v in doc.items() if k.lower() == "coord"), None)
    if raw is None:
        raise InvalidArgument("rejected bad coordinate: <nil>")
    try:
        coord = coord_from_json(raw)
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None
    req = copb.UpdateRequest(
        write=write_options(request, _text(doc, "Datacenter")),
        node=_text(doc, "Node"),
        segment=_text(doc, "Segment"),
        coord=to_proto(coord),
    )
    await context(request).call(_SVC + "Update", req, copb.UpdateResponse)
    return web.Response(status=200)


# ----- ?near= ----------------------------------------------------------------


def _node_of(row: Any) -> str:
    """The node of a catalog, health-entry or check row."""
    if isinstance(row, dict):
        node = row.get("Node")
        if isinstance(node, dict):
            node = node.get("Node")
        if isinstance(node, str):
            return node
    return ""


async def _coordinates(request: web.Request) -> dict[str, Coordinate]:
    req = copb.ListNodesRequest(
        options=qpb.QueryOptions(token=token(request), consistency=qpb.CONSISTENCY_STALE),
        segment="",
    )
    resp = await context(request).call(_SVC + "ListNodes", req, copb.ListNodesResponse)
    return {c.node: from_proto(c.coord) for c in resp.coordinates}


def near_sorted(handler: Handler) -> Handler:
    """``handler``'s JSON list ordered by distance from ``?near=``."""

    async def sorted_handler(request: web.Request) -> web.StreamResponse:
        response = await handler(request)
        near = request.query.get("near", "")
        ctx = context(request)
        dc = request.query.get("dc", "")
        if (
            not near
            or (dc and dc != ctx.datacenter)
            or response.status != 200
            or not isinstance(response, web.Response)
            or not isinstance(response.body, bytes)
        ):
            return response
        rows = json.loads(response.body)
        if not isinstance(rows, list) or len(rows) < 2:
            return response
        source = ctx.node_name if near == "_agent" else near
        rows = sort_by_distance(rows, _node_of, source, await _coordinates(request))
        indent = 4 if "pretty" in request.query else None
        headers = {
            k: v
            for k, v in response.headers.items()
            if k.lower() not in ("content-type", "content-length")
        }
        return web.Response(
            body=json.dumps(rows, indent=indent).encode(),
            content_type="application/json",
            headers=headers,
        )

    return sorted_handler


def add_coordinate_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/v1/coordinate/datacenters", datacenters)
    router.add_get("/v1/coordinate/nodes", nodes)
    router.add_get("/v1/coordinate/node/{node}", node)
    router.add_put("/v1/coordinate/update", update)
