"""``/v1/agent/*``: the local agent's services, checks, members, self, maintenance and leave.

Each handler turns Consul's request into an AgentService message, calls the
local agent object in-process, and answers with Consul's shape. Writes answer
200 with an empty body, as Consul does (clients only look at the status).
"""

from __future__ import annotations

import hashlib
from typing import Any

from aiohttp import web

from agent.config import VERSION
from agent.errors import ConsulError, InvalidArgument, NotFound
from agent.http.base import context, json_response
from agent.http.central_config import CentralConfig
from agent.http.decode import check_definition, parse_status, service_definition
from agent.http.params import Fields, decode_json, flag, read_body, token
from agent.shapes import agent_check_json, agent_service_json, member_json
from generated.consul.agent.v1 import agent_pb2 as apb
from generated.consul.common.v1 import types_pb2 as pb

__all__ = ["add_agent_routes"]


def _ok() -> web.Response:
    return web.Response(status=200)


async def _body_fields(request: web.Request, what: str) -> Fields:
    return Fields(decode_json(await read_body(request)), what)


def _timestamp(ts: Any) -> str:
    return str(ts.ToJsonString()) if ts.seconds or ts.nanos else ""


def _stats(stats: dict[str, str]) -> dict[str, dict[str, str]]:
    """``section.name`` keys as Consul's nested ``Stats`` (no section means ``agent``)."""
    out: dict[str, dict[str, str]] = {}
    for key, value in sorted(stats.items()):
        section, _, name = key.partition(".")
        if not name:
            section, name = "agent", key
        out.setdefault(section, {})[name] = value
    return out


async def agent_self(request: web.Request) -> web.Response:
    ctx = context(request)
    resp = await ctx.agent.Self(apb.SelfRequest())
    member = member_json(resp.member) if resp.HasField("member") else None
    config = {
        "Datacenter": resp.datacenter or ctx.datacenter,
        "PrimaryDatacenter": resp.datacenter or ctx.datacenter,
        "NodeName": resp.node_name or ctx.node_name,
        "NodeID": resp.member.tags.get("node_id", ""),
        "Server": resp.server,
        "Version": resp.version or VERSION,
        "Revision": "",
        "BuildDate": "",
    }
    # Consul's top-level keys exactly (clients check them); what only we have,
    # the router's view, sits in DebugConfig, Consul's free-form runtime config.
    debug = {
        **config,
        # One entry per datacenter routed to: order, offline flag, next rebalance.
        "Routers": [
            {
                "Datacenter": r.datacenter,
                "Offline": r.offline,
                "NextRebalance": _timestamp(r.next_rebalance),
                "Servers": [
                    {"Name": s.name, "Address": s.address, "Datacenter": s.datacenter}
                    for s in r.servers
                ],
            }
            for r in resp.routers
        ],
        "StartTime": _timestamp(resp.start_time),
    }
    body = {
        "Config": config,
        "Coord": None,
        "DebugConfig": debug,
        "Member": member,
        "Meta": {},
        "Stats": _stats(dict(resp.stats)),
        "xDS": None,
    }
    return json_response(request, body)


async def agent_members(request: web.Request) -> web.Response:
    wan = flag(request.query, "wan")
    resp = await context(request).agent.ListMembers(apb.ListMembersRequest(wan=wan))
    return json_response(request, [member_json(m) for m in resp.members])


async def _services(request: web.Request) -> list[pb.Service]:
    req = apb.ListServicesRequest(filter=request.query.get("filter", ""))
    resp = await context(request).agent.ListServices(req)
    return list(resp.services)


async def agent_services(request: web.Request) -> web.Response:
    dc = context(request).datacenter
    services = await _services(request)
    return json_response(request, {s.id: agent_service_json(s, dc) for s in services})


async def agent_service(request: web.Request) -> web.Response:
    service_id = request.match_info["service_id"]
    resp = await context(request).agent.ListServices(apb.ListServicesRequest())
    for svc in resp.services:
        if svc.id == service_id:
            if "merge-central-config" in request.query:
                ctx = context(request)
                await CentralConfig(ctx, ctx.datacenter, token(request)).merge(svc)
            body = agent_service_json(svc, context(request).datacenter)
            digest = hashlib.sha256(svc.SerializeToString(deterministic=True))
            body["ContentHash"] = digest.hexdigest()[:16]
            return json_response(request, body)
    raise NotFound(f"unknown service ID: {service_id}")


async def agent_checks(request: web.Request) -> web.Response:
    req = apb.ListChecksRequest(filter=request.query.get("filter", ""))
    resp = await context(request).agent.ListChecks(req)
    return json_response(request, {c.check_id: agent_check_json(c) for c in resp.checks})


async def register_service(request: web.Request) -> web.Response:
    definition = service_definition(await _body_fields(request, "service"))
    req = apb.RegisterServiceRequest(
        definition=definition,
        token=token(request),
        replace_existing_checks=flag(request.query, "replace-existing-checks"),
    )
    await context(request).agent.RegisterService(req)
    return _ok()


async def deregister_service(request: web.Request) -> web.Response:
    req = apb.DeregisterServiceRequest(
        service_id=request.match_info["service_id"], token=token(request)
    )
    await context(request).agent.DeregisterService(req)
    return _ok()


async def register_check(request: web.Request) -> web.Response:
    check = check_definition(await _body_fields(request, "check"))
    if not check.name:
        raise InvalidArgument("Missing check name")
    await context(request).agent.RegisterCheck(
        apb.RegisterCheckRequest(check=check, token=token(request))
    )
    return _ok()


async def deregister_check(request: web.Request) -> web.Response:
    req = apb.DeregisterCheckRequest(check_id=request.match_info["check_id"], token=token(request))
    await context(request).agent.DeregisterCheck(req)
    return _ok()


_TTL_STATUS: dict[str, pb.HealthStatus.ValueType] = {
    "pass": pb.HEALTH_STATUS_PASSING,
    "warn": pb.HEALTH_STATUS_WARNING,
    "fail": pb.HEALTH_STATUS_CRITICAL,
}


async def _update_ttl(
    request: web.Request, status: pb.HealthStatus.ValueType, output: str
) -> web.Response:
    req = apb.UpdateTTLRequest(
        check_id=request.match_info["check_id"],
        status=status,
        output=output,
        token=token(request),
    )
    await context(request).agent.UpdateTTL(req)
    return _ok()


async def check_ttl(request: web.Request) -> web.Response:
    status = _TTL_STATUS[request.match_info["verb"]]
    return await _update_ttl(request, status, request.query.get("note", ""))


async def check_update(request: web.Request) -> web.Response:
    body = decode_json(await read_body(request))
    fields = Fields({} if body is None else body, "update")
    status = fields.text("Status")
    if not status:
        raise InvalidArgument("Missing check status: must be 'passing', 'warning' or 'critical'")
    return await _update_ttl(request, parse_status(status), fields.text("Output"))


def _enable(request: web.Request) -> bool:
    if "enable" not in request.query:
        raise InvalidArgument("Missing value for enable")
    try:
        return flag(request.query, "enable")
    except InvalidArgument:
        raise InvalidArgument("Invalid value for enable") from None


async def node_maintenance(request: web.Request) -> web.Response:
    req = apb.MaintenanceRequest(
        enable=_enable(request), reason=request.query.get("reason", ""), token=token(request)
    )
    await context(request).agent.Maintenance(req)
    return _ok()


async def service_maintenance(request: web.Request) -> web.Response:
    req = apb.MaintenanceRequest(
        enable=_enable(request),
        reason=request.query.get("reason", ""),
        service_id=request.match_info["service_id"],
        token=token(request),
    )
    await context(request).agent.Maintenance(req)
    return _ok()


async def leave(request: web.Request) -> web.Response:
    on_leave = context(request).on_leave
    if on_leave is None:
        raise ConsulError("Leave is not supported by this agent")
    await on_leave()
    return _ok()


def add_agent_routes(router: web.UrlDispatcher) -> None:
    router.add_get("/v1/agent/self", agent_self)
    router.add_get("/v1/agent/members", agent_members)
    router.add_get("/v1/agent/services", agent_services)
    router.add_get("/v1/agent/service/{service_id}", agent_service)
    router.add_get("/v1/agent/checks", agent_checks)
    router.add_put("/v1/agent/service/register", register_service)
    router.add_put("/v1/agent/service/deregister/{service_id}", deregister_service)
    router.add_put("/v1/agent/service/maintenance/{service_id}", service_maintenance)
    router.add_put("/v1/agent/check/register", register_check)
    router.add_put("/v1/agent/check/deregister/{check_id}", deregister_check)
    router.add_put("/v1/agent/check/{verb:pass|warn|fail}/{check_id}", check_ttl)
    router.add_put("/v1/agent/check/update/{check_id}", check_update)
    router.add_put("/v1/agent/maintenance", node_maintenance)
    router.add_put("/v1/agent/leave", leave)
