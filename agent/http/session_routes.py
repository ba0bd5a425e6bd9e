"""``/v1/session/*``: sessions, the liveness behind KV locks, forwarded to the servers.

Consul's HTTP shapes: create answers ``{"ID": ...}``, destroy a bare
``true``, renew a one-element list (404 ``Session id '<id>' not found`` when
the session is gone), and the reads a list (``[]`` for an unknown session,
never ``null``) with the read headers, blocking on ``?index``.

The create body is read as Consul's agent reads it: the session defaults to
this agent's node, the ``serfHealth`` check, a 15 s lock delay and the
``release`` behavior; ``LockDelay`` is a Go duration string or nanoseconds
(under 1000 taken as seconds, Consul's ``lockDelayMinThreshold``); the
deprecated ``Checks`` field is merged into ``NodeChecks`` with Consul's
``fixupEmptySessionChecks`` rules, so ``"Checks": []`` still means no checks.
"""

from __future__ import annotations

from aiohttp import web

from agent.errors import InvalidArgument, NotFound
from agent.http.base import context, json_response
from agent.http.params import Fields, decode_json, query_options, read_body, write_options
from agent.shapes import session_json
from generated.consul.session.v1 import session_pb2 as sspb

__all__ = [
    "DEFAULT_LOCK_DELAY_NS",
    "LOCK_DELAY_MIN_THRESHOLD",
    "SERF_CHECK_ID",
    "add_session_routes",
    "create_request",
]

_SESSION = "/consul.session.v1.SessionService/"

SERF_CHECK_ID = "serfHealth"
DEFAULT_LOCK_DELAY_NS = 15 * 1_000_000_000
# Consul's lockDelayMinThreshold: users send ``"LockDelay": 5`` meaning
# seconds, which Go would read as 5 ns; a value under 1000 ns is taken as
# seconds instead.
LOCK_DELAY_MIN_THRESHOLD = 1000

_BEHAVIORS: dict[str, sspb.Behavior.ValueType] = {
    "": sspb.BEHAVIOR_RELEASE,
    "release": sspb.BEHAVIOR_RELEASE,
    "delete": sspb.BEHAVIOR_DELETE,
}


def _given(f: Fields, name: str) -> bool:
    """Whether the body names ``name`` at all, even as ``null`` or ``[]``."""
    want = name.lower()
    return any(k.replace("_", "").replace("-", "").lower() == want for k in f.names())


def _lock_delay_ns(f: Fields) -> int:
    seconds = f.duration("LockDelay")
    if seconds is None:
        return DEFAULT_LOCK_DELAY_NS
    ns = round(seconds * 1e9)
    if ns < LOCK_DELAY_MIN_THRESHOLD:
        ns *= 1_000_000_000
    return ns


def _node_checks(f: Fields) -> tuple[list[str], bool]:
    """The node checks of the session, and whether the body chose them.

    Consul starts from ``Checks`` and ``NodeChecks`` both ``[serfHealth]``,
    lets the body override either, then: an empty ``Checks`` empties
    ``NodeChecks``; a ``Checks`` of just ``serfHealth`` defers to
    ``NodeChecks``; an empty ``NodeChecks`` drops ``Checks``. What is left of
    both is the node checks (``Session.CheckIDs()``).
    """
    checks_given, node_checks_given = _given(f, "Checks"), _given(f, "NodeChecks")
    checks = f.strings("Checks") if checks_given else [SERF_CHECK_ID]
    node_checks = f.strings("NodeChecks") if node_checks_given else [SERF_CHECK_ID]
    if not checks:
        node_checks = []
    elif checks == [SERF_CHECK_ID] or not node_checks:
        checks = []
    merged = list(dict.fromkeys([*node_checks, *checks]))
    return merged, checks_given or node_checks_given


def create_request(f: Fields, node_name: str) -> sspb.CreateRequest:
    """A ``/v1/session/create`` body as a CreateRequest (without write options)."""
    behavior_text = f.text("Behavior")
    behavior = _BEHAVIORS.get(behavior_text)
    if behavior is None:
        raise InvalidArgument(
            f"Invalid Behavior setting {behavior_text!r}: must be 'release' or 'delete'"
        )
    session = sspb.Session(
        name=f.text("Name"),
        node=f.text("Node") or node_name,
        behavior=behavior,
    )
    session.lock_delay.FromNanoseconds(_lock_delay_ns(f))
    ttl_text = f.get("TTL")
    if ttl_text is not None and ttl_text != "":
        ttl = f.duration("TTL")
        if ttl is not None and ttl > 0:
            session.ttl.FromNanoseconds(round(ttl * 1e9))
    node_checks, node_checks_set = _node_checks(f)
    if node_checks_set:
        session.node_checks.extend(node_checks)
    for n, check in enumerate(f.objs("ServiceChecks")):
        check_id = check.text("ID")
        if not check_id:
            raise InvalidArgument(f"Request decode failed: session.ServiceChecks[{n}].ID missing")
        session.service_checks.append(check_id)
    return sspb.CreateRequest(session=session, node_checks_set=node_checks_set)


def _path_value(request: web.Request, what: str) -> str:
    value = request.match_info["value"]
    if not value:
        raise InvalidArgument(f"Missing {what}")
    return value


async def create(request: web.Request) -> web.Response:
    ctx = context(request)
    body = decode_json(await read_body(request))
    req = create_request(Fields({} if body is None else body, "session"), ctx.node_name)
    req.write.CopyFrom(write_options(request))
    resp = await ctx.call(_SESSION + "Create", req, sspb.CreateResponse)
    return json_response(request, {"ID": resp.id})


async def destroy(request: web.Request) -> web.Response:
    req = sspb.DestroyRequest(write=write_options(request), id=_path_value(request, "session"))
    await context(request).call(_SESSION + "Destroy", req, sspb.DestroyResponse)
    return json_response(request, True)


async def renew(request: web.Request) -> web.Response:
    session_id = _path_value(request, "session")
    req = sspb.RenewRequest(write=write_options(request), id=session_id)
    not_found = f"Session id '{session_id}' not found"
    try:
        resp = await context(request).call(_SESSION + "Renew", req, sspb.RenewResponse)
    except NotFound:
        raise NotFound(not_found) from None
    if not resp.HasField("session"):
        raise NotFound(not_found)
    return json_response(request, [session_json(resp.session)])


async def info(request: web.Request) -> web.Response:
    req = sspb.InfoRequest(options=query_options(request), id=_path_value(request, "session"))
    resp = await context(request).call(_SESSION + "Info", req, sspb.InfoResponse)
    body = [session_json(resp.session)] if resp.HasField("session") else []
    return json_response(request, body, meta=resp.meta)


async def node_sessions(request: web.Request) -> web.Response:
    req = sspb.ListNodeRequest(
        options=query_options(request), node=_path_value(request, "node name")
    )
    resp = await context(request).call(_SESSION + "ListNode", req, sspb.ListNodeResponse)
    return json_response(request, [session_json(s) for s in resp.sessions], meta=resp.meta)


async def list_sessions(request: web.Request) -> web.Response:
    req = sspb.ListRequest(options=query_options(request))
    resp = await context(request).call(_SESSION + "List", req, sspb.ListResponse)
    return json_response(request, [session_json(s) for s in resp.sessions], meta=resp.meta)


def add_session_routes(router: web.UrlDispatcher) -> None:
    router.add_put("/v1/session/create", create)
    router.add_put("/v1/session/destroy/{value:.*}", destroy)
    router.add_put("/v1/session/renew/{value:.*}", renew)
    router.add_get("/v1/session/info/{value:.*}", info)
    router.add_get("/v1/session/node/{value:.*}", node_sessions)
    router.add_get("/v1/session/list", list_sessions)
