"""``/v1/operator``: raft, autopilot, usage, keyring and segment, in Consul's shapes.

- ``GET /v1/operator/raft/configuration``: ``{Servers: [{ID, Node, Address,
  Leader, ProtocolVersion, Voter, LastIndex}], Index}`` (what a peer is on
  each store: ``agent.server.operator``), plus ``ConsulServers``.
- ``DELETE /v1/operator/raft/peer?id=|?address=``: 200 with no body, or
  Consul's 400 when neither or both are given.
- ``POST /v1/operator/raft/transfer-leader[?id=]``: ``{"Success": true}``.
- ``GET|PUT /v1/operator/autopilot/configuration`` (``?cas=``: the answer is
  ``true``/``false``; without it, ``true``), ``GET .../autopilot/health``
  (429 when unhealthy, as Consul), ``GET .../autopilot/state``.
- ``GET /v1/operator/usage[?global]``: ``{Usage: {<dc>: {...}}, Index, ...}``
  (Consul's QueryMeta fields too), every known datacenter with ``?global``.
- ``/v1/operator/keyring``: there is no gossip encryption, so every method
  answers what Consul answers when encryption is not enabled: each member
  reports the failure, and the agent a 500 listing them (list: "Keyring is
  empty (encryption not enabled)"; install, use, remove: "No keyring to
  modify (encryption not enabled)"), as Consul's serf key manager does.
- ``GET /v1/operator/segment``: 501, network segments are a Consul
  Enterprise feature and there is none to list.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from agent.errors import ConsulError, InvalidArgument
from agent.http.base import context, json_response, text_response
from agent.http.params import (
    decode_json,
    flag,
    query_options,
    read_body,
    uint_param,
    write_options,
)
from generated.consul.agent.v1 import agent_pb2 as apb
from generated.consul.catalog.v1 import catalog_pb2 as cpb
from generated.consul.common.v1 import query_pb2 as qpb
from generated.consul.membership.v1 import membership_pb2 as mpb
from generated.consul.operator.v1 import operator_pb2 as opb

__all__ = ["add_operator_api_routes"]

_SVC = "/consul.operator.v1.OperatorService/"
_CATALOG = "/consul.catalog.v1.CatalogService/"

#: What each member of a pool says to a keyring query without encryption.
KEYRING_EMPTY = "Keyring is empty (encryption not enabled)"
KEYRING_NO_MODIFY = "No keyring to modify (encryption not enabled)"


def raft_server_json(s: opb.RaftServer) -> dict[str, Any]:
    return {
        "ID": s.id,
        "Node": s.node,
        "Address": s.address,
        "Leader": s.leader,
        "ProtocolVersion": s.protocol_version,
        "Voter": s.voter,
        "LastIndex": s.last_index,
    }


async def raft_configuration(request: web.Request) -> web.Response:
    resp = await context(request).call(
        _SVC + "RaftConfiguration",
        opb.RaftConfigurationRequest(options=query_options(request)),
        opb.RaftConfigurationResponse,
    )
    doc = {
        "Servers": [raft_server_json(s) for s in resp.servers],
        "Index": resp.index,
        "ConsulServers": [
            {"Node": s.node, "Address": s.address, "Leader": s.leader, "Status": s.status}
            for s in resp.consul_servers
        ],
    }
    return json_response(request, doc, meta=resp.meta)


async def raft_remove_peer(request: web.Request) -> web.Response:
    has_id, has_address = "id" in request.query, "address" in request.query
    if not has_id and not has_address:
        raise InvalidArgument(
            "Must specify either ?id with the server's ID or ?address with IP:port of peer to"
            " remove"
        )
    if has_id and has_address:
        raise InvalidArgument("Must specify only one of ?id or ?address")
    peer_id, address = request.query.get("id", ""), request.query.get("address", "")
    if not (peer_id or address):
        raise InvalidArgument(f"?{'id' if has_id else 'address'} must not be empty")
    await context(request).call(
        _SVC + "RaftRemovePeer",
        opb.RaftRemovePeerRequest(write=write_options(request), id=peer_id, address=address),
        opb.RaftRemovePeerResponse,
    )
    return web.Response(status=200)


async def raft_transfer_leader(request: web.Request) -> web.Response:
    resp = await context(request).call(
        _SVC + "RaftTransferLeader",
        opb.RaftTransferLeaderRequest(write=write_options(request), id=request.query.get("id", "")),
        opb.RaftTransferLeaderResponse,
    )
    return json_response(request, {"Success": resp.success})


async def autopilot_get(request: web.Request) -> web.Response:
    resp = await context(request).call(
        _SVC + "AutopilotGetConfiguration",
        opb.AutopilotGetConfigurationRequest(options=query_options(request)),
        opb.AutopilotGetConfigurationResponse,
    )
    return json_response(request, json.loads(resp.configuration_json), meta=resp.meta)


async def autopilot_set(request: web.Request) -> web.Response:
    body = await read_body(request)
    try:
        doc = decode_json(body)
    except InvalidArgument as exc:
        message = exc.message.removeprefix("Request decode failed: ")
        raise InvalidArgument(f"Error parsing autopilot config: {message}") from None
    if "cas" in request.query:
        try:
            cas = uint_param(request.query, "cas")
        except InvalidArgument:
            raise InvalidArgument(
                f"Error parsing cas value: {request.query.get('cas', '')!r} is not a number"
            ) from None
    else:
        cas = None
    resp = await context(request).call(
        _SVC + "AutopilotSetConfiguration",
        opb.AutopilotSetConfigurationRequest(
            write=write_options(request),
            configuration_json=json.dumps(doc if doc is not None else {}).encode(),
            cas=cas or 0,
            has_cas=cas is not None,
        ),
        opb.AutopilotSetConfigurationResponse,
    )
    return json_response(request, resp.applied if cas is not None else True)


async def autopilot_health(request: web.Request) -> web.Response:
    resp = await context(request).call(
        _SVC + "AutopilotHealth",
        opb.AutopilotHealthRequest(options=query_options(request)),
        opb.AutopilotHealthResponse,
    )
    status = 200 if resp.healthy else 429
    return json_response(request, json.loads(resp.health_json), status=status, meta=resp.meta)


async def autopilot_state(request: web.Request) -> web.Response:
    resp = await context(request).call(
        _SVC + "AutopilotState",
        opb.AutopilotStateRequest(options=query_options(request)),
        opb.AutopilotStateResponse,
    )
    return json_response(request, json.loads(resp.state_json), meta=resp.meta)


async def usage(request: web.Request) -> web.Response:
    ctx = context(request)
    opts = query_options(request)
    resp = await ctx.call(_SVC + "Usage", opb.UsageRequest(options=opts), opb.UsageResponse)
    per_dc: dict[str, Any] = json.loads(resp.usage_json)
    if flag(request.query, "global"):  # every known datacenter, each asked where it is
        listed = await ctx.call(
            _CATALOG + "ListDatacenters",
            cpb.ListDatacentersRequest(options=opts),
            cpb.ListDatacentersResponse,
        )
        for dc in listed.datacenters:
            if dc in per_dc:
                continue
            remote = qpb.QueryOptions()
            remote.CopyFrom(opts)
            remote.datacenter = dc
            other = await ctx.call(
                _SVC + "Usage", opb.UsageRequest(options=remote), opb.UsageResponse
            )
            per_dc.update(json.loads(other.usage_json))
    # Consul's answer embeds its QueryMeta (api.Usage decodes both).
    doc = {
        "Usage": per_dc,
        "Index": resp.meta.index,
        "LastContact": 0,
        "KnownLeader": resp.meta.known_leader,
        "ConsistencyLevel": "",
        "NotModified": False,
        "Backend": 0,
        "ResultsFilteredByACLs": False,
    }
    return json_response(request, doc, meta=resp.meta)


def _multierror(errors: list[str]) -> str:
    """hashicorp/go-multierror's text, as Consul's keyring endpoint returns it."""
    if len(errors) == 1:
        return f"1 error occurred:\n\t* {errors[0]}\n\n"
    points = "\n\t".join(f"* {e}" for e in errors)
    return f"{len(errors)} errors occurred:\n\t{points}\n\n"


async def keyring(request: web.Request) -> web.Response:
    if request.method != "GET":
        body = decode_json(await read_body(request))
        if body is not None and not isinstance(body, dict):
            raise InvalidArgument("Request decode failed: the body must be a JSON object")
    elif "local-only" in request.query and request.query["local-only"] not in (
        "",
        "true",
        "false",
        "1",
        "0",
    ):
        raise InvalidArgument(
            f"Error parsing local-only: {request.query['local-only']!r} is not a boolean"
        )
    message = KEYRING_EMPTY if request.method == "GET" else KEYRING_NO_MODIFY
    ctx = context(request)
    errors: list[str] = []
    for wan in (True, False):
        try:
            listed = await ctx.agent.ListMembers(apb.ListMembersRequest(wan=wan))
        except ConsulError:
            continue
        alive = sorted(m.name for m in listed.members if m.status == mpb.MEMBER_STATUS_ALIVE)
        if not alive:
            continue
        pool = "WAN" if wan else f"{ctx.datacenter} (LAN)"
        errors.append(f"{pool} error: {len(alive)}/{len(alive)} nodes reported failure")
        errors.extend(f"{name}: {message}" for name in alive)
    if not errors:  # no member answered: this agent speaks for itself
        errors = [
            f"{ctx.datacenter} (LAN) error: 1/1 nodes reported failure",
            f"{ctx.node_name}: {message}",
        ]
    return text_response(500, _multierror(errors))


async def segment(request: web.Request) -> web.Response:
    return text_response(
        501,
        "Network segments are not supported: they are a Consul Enterprise feature, and"
        " consul-grpc has one LAN pool per datacenter",
    )


def add_operator_api_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/v1/operator/raft/configuration", raft_configuration)
    router.add_delete("/v1/operator/raft/peer", raft_remove_peer)
    router.add_post("/v1/operator/raft/transfer-leader", raft_transfer_leader)
    router.add_get("/v1/operator/autopilot/configuration", autopilot_get)
    router.add_put("/v1/operator/autopilot/configuration", autopilot_set)
    router.add_get("/v1/operator/autopilot/health", autopilot_health)
    router.add_get("/v1/operator/autopilot/state", autopilot_state)
    router.add_get("/v1/operator/usage", usage)
    for method in ("GET", "POST", "PUT", "DELETE"):
        router.add_route(method, "/v1/operator/keyring", keyring)
    router.add_get("/v1/operator/segment", segment)
