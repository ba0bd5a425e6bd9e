"""``/v1/event/fire/<name>`` and ``/v1/event/list``: user events through the servers.

Consul gossips a user event and each agent keeps the ones meant for it; here
the servers keep a datacenter's last events and every agent reads them, so
the list applies Consul's agent-side filter (``shouldProcessUserEvent``): an
event whose ``NodeFilter`` does not match this agent's node name, or whose
``ServiceFilter`` (and ``TagFilter``) matches none of its local services, is
not listed here, as a Consul agent would never have stored it. Filters are Go
regular expressions matched anywhere in the name (``regexp.MatchString``),
run by RE2 in linear time (:mod:`agent.filter.regex`).

Fire answers the event as recorded (``Payload`` in base64, ``null`` when
empty); list answers every matching event, oldest first, ``?name=`` keeping
one name, with ``X-Consul-Index`` to block on with ``?index``. As in Consul,
``?node``, ``?service`` and ``?tag`` are fire parameters; list ignores them.
"""

from __future__ import annotations

from aiohttp import web

from agent.errors import InvalidArgument
from agent.filter.regex import Pattern, PatternError, compile_pattern
from agent.http.base import Context, context, json_response
from agent.http.params import query_options, read_body, write_options
from agent.shapes import event_json
from generated.consul.agent.v1 import agent_pb2 as apb
from generated.consul.common.v1 import types_pb2 as pb
from generated.consul.event.v1 import event_pb2 as epb

__all__ = ["MAX_EVENT_PAYLOAD", "USER_EVENT_MAX_VERSION", "add_event_routes", "applies_to"]

_EVENT = "/consul.event.v1.EventService/"

# The servers refuse larger payloads (agent.state.events.MAX_PAYLOAD); the body
# is cut off here, before it is read whole.
MAX_EVENT_PAYLOAD = 100 * 1024
# Consul's userEventMaxVersion: newer events are not for this agent.
USER_EVENT_MAX_VERSION = 1


def _compile(pattern: str, what: str) -> Pattern:
    try:
        return compile_pattern(pattern)
    except PatternError as exc:
        raise InvalidArgument(f"Invalid {what} filter: {exc.message}") from None


def _validate(event: epb.Event) -> None:
    """Consul's validateUserEventParams: compilable filters, no tag filter alone."""
    if event.tag_filter and not event.service_filter:
        raise InvalidArgument("Cannot provide tag filter without service filter")
    for pattern, what in (
        (event.node_filter, "node"),
        (event.service_filter, "service"),
        (event.tag_filter, "tag"),
    ):
        if pattern:
            _compile(pattern, what)


def applies_to(event: epb.Event, node_name: str, services: list[pb.Service]) -> bool:
    """Whether an agent named ``node_name`` running ``services`` keeps ``event``."""
    if event.version > USER_EVENT_MAX_VERSION:
        return False
    try:
        if event.node_filter and not compile_pattern(event.node_filter).search(node_name):
            return False
        if not event.service_filter:
            return True
        service_re = compile_pattern(event.service_filter)
        tag_re = compile_pattern(event.tag_filter) if event.tag_filter else None
    except PatternError:
        # Consul drops an event whose filter does not compile.
        return False
    for svc in services:
        if not (service_re.search(svc.name) or service_re.search(svc.id)):
            continue
        if tag_re is None or any(tag_re.search(tag) for tag in svc.tags):
            return True
    return False


async def fire(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if not name:
        raise InvalidArgument("Missing name")
    query = request.query
    event = epb.Event(
        name=name,
        node_filter=query.get("node", ""),
        service_filter=query.get("service", ""),
        tag_filter=query.get("tag", ""),
    )
    _validate(event)
    event.payload = await read_body(
        request, MAX_EVENT_PAYLOAD, f"Payload exceeds {MAX_EVENT_PAYLOAD} byte limit"
    )
    req = epb.FireRequest(write=write_options(request), event=event)
    resp = await context(request).call(_EVENT + "Fire", req, epb.FireResponse)
    return json_response(request, event_json(resp.event))


async def _local_services(ctx: Context) -> list[pb.Service]:
    resp = await ctx.agent.ListServices(apb.ListServicesRequest())
    return list(resp.services)


async def list_events(request: web.Request) -> web.Response:
    ctx = context(request)
    req = epb.ListRequest(options=query_options(request), name=request.query.get("name", ""))
    resp = await ctx.call(_EVENT + "List", req, epb.ListResponse)
    services: list[pb.Service] = []
    if any(e.service_filter for e in resp.events):
        services = await _local_services(ctx)
    events = [e for e in resp.events if applies_to(e, ctx.node_name, services)]
    return json_response(request, [event_json(e) for e in events], meta=resp.meta)


def add_event_routes(router: web.UrlDispatcher) -> None:
    router.add_put("/v1/event/fire/{name:.*}", fire)
    router.add_get("/v1/event/list", list_events)
