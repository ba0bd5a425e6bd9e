"""Enforcement: which permission each RPC needs, and the filters for every read shape.

``guard(service, endpoint, gate)`` wraps a server endpoint object (Catalog,
Health, KV, Session, Event, Txn, Membership, Agent): each unary call first
resolves the caller's token once (the request's ``options.token`` /
``write.token`` / ``token`` field, else the ``x-consul-token`` gRPC metadata or
HTTP token of this call (``agent.rpc.token``), else the agent's default
token, else anonymous), then

- a write is checked before it runs (``PRE``): ``Permission denied`` with
  Consul's text, nothing changed;
- a read runs, then its answer is filtered (``POST``), and
  ``meta.results_filtered_by_acls`` is set when something was removed (the
  HTTP edge turns it into ``X-Consul-Results-Filtered-By-ACLs``).

Methods in neither table are not checked (Status, the membership protocol).
The filter functions (``filter_nodes``, ``filter_service_nodes``,
``filter_health_entries``, ``filter_checks``, ``filter_kv``, ``filter_keys``,
``filter_sessions``, ``filter_events``, ``filter_members``, ``filter_services``)
take an ``Authorizer`` and a list and are public, for local views that filter
a shared result per token at read time.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar

from google.protobuf.descriptor import ServiceDescriptor

from agent.acl.authorizer import Authorizer, denied
from agent.acl.resolver import Resolver
from agent.acl.rules import Access
from agent.rpc.token import request_token
from agent.state.blocking import QueryOpts
from generated.consul.agent.v1 import agent_pb2 as agpb
from generated.consul.catalog.v1 import catalog_pb2 as cpb
from generated.consul.common.v1 import types_pb2 as pb
from generated.consul.event.v1 import event_pb2 as epb
from generated.consul.kv.v1 import kv_pb2 as kpb
from generated.consul.membership.v1 import membership_pb2 as mpb
from generated.consul.session.v1 import session_pb2 as sspb
from generated.consul.subscribe.v1 import subscribe_pb2 as spb
from generated.consul.txn.v1 import txn_pb2 as tpb

__all__ = [
    "Gate",
    "authorize_subscribe",
    "filter_checks",
    "filter_events",
    "filter_health_entries",
    "filter_keys",
    "filter_kv",
    "filter_members",
    "filter_nodes",
    "filter_service_nodes",
    "filter_services",
    "filter_sessions",
    "guard",
]

T = TypeVar("T")

# ----- filters, one per read shape ---------------------------------------------


def _keep(items: Sequence[T], ok: Callable[[T], bool]) -> tuple[list[T], bool]:
    kept = [i for i in items if ok(i)]
    return kept, len(kept) != len(items)


def _all(authz: Authorizer, *resources: str) -> bool:
    return all(authz.reads_everything(r) for r in resources)


def filter_nodes(authz: Authorizer, nodes: Sequence[pb.Node]) -> tuple[list[pb.Node], bool]:
    if _all(authz, "node"):
        return list(nodes), False
    return _keep(nodes, lambda n: authz.node_read(n.name))


def filter_services(authz: Authorizer, names: Sequence[str]) -> tuple[list[str], bool]:
    if _all(authz, "service"):
        return list(names), False
    return _keep(names, authz.service_read)


def filter_service_nodes(
    authz: Authorizer, instances: Sequence[pb.ServiceInstance]
) -> tuple[list[pb.ServiceInstance], bool]:
    if _all(authz, "node", "service"):
        return list(instances), False
    return _keep(
        instances, lambda i: authz.node_read(i.node.name) and authz.service_read(i.service.name)
    )


def _check_ok(authz: Authorizer, check: pb.HealthCheck) -> bool:
    if not authz.node_read(check.node):
        return False
    return not check.service_name or authz.service_read(check.service_name)


def filter_checks(
    authz: Authorizer, checks: Sequence[pb.HealthCheck]
) -> tuple[list[pb.HealthCheck], bool]:
    if _all(authz, "node", "service"):
        return list(checks), False
    return _keep(checks, lambda c: _check_ok(authz, c))


def filter_health_entries(
    authz: Authorizer, entries: Sequence[pb.ServiceEntry]
) -> tuple[list[pb.ServiceEntry], bool]:
    """Entries whose node and service are readable (their checks are filtered by
    the caller with ``filter_checks``)."""
    if _all(authz, "node", "service"):
        return list(entries), False
    return _keep(
        entries, lambda e: authz.node_read(e.node.name) and authz.service_read(e.service.name)
    )


def filter_kv(authz: Authorizer, pairs: Sequence[kpb.KVPair]) -> tuple[list[kpb.KVPair], bool]:
    if _all(authz, "key"):
        return list(pairs), False
    return _keep(pairs, lambda p: authz.key_read(p.key))


def filter_keys(authz: Authorizer, names: Sequence[str]) -> tuple[list[str], bool]:
    if _all(authz, "key"):
        return list(names), False
    return _keep(names, authz.key_read)


def filter_sessions(
    authz: Authorizer, sessions: Sequence[sspb.Session]
) -> tuple[list[sspb.Session], bool]:
    if _all(authz, "session"):
        return list(sessions), False
    return _keep(sessions, lambda s: authz.session_read(s.node))


def filter_events(authz: Authorizer, events: Sequence[epb.Event]) -> tuple[list[epb.Event], bool]:
    if _all(authz, "event"):
        return list(events), False
    return _keep(events, lambda e: authz.event_read(e.name))


def filter_members(
    authz: Authorizer, members: Sequence[mpb.Member]
) -> tuple[list[mpb.Member], bool]:
    if _all(authz, "node"):
        return list(members), False
    return _keep(members, lambda m: authz.node_read(m.name))


# ----- what each RPC needs -------------------------------------------------------


class Lookups(Protocol):
    """Reads a check needs beyond the request (satisfied by the server agent)."""

    async def service_name(self, node: str, service_id: str) -> str | None: ...

    async def session_node(self, session_id: str) -> str | None: ...


def _replace(msg: Any, field: str, items: Sequence[Any]) -> None:
    target = getattr(msg, field)
    if len(items) == len(target):
        return  # nothing was filtered out
    del target[:]
    target.extend(items)


def _mark(resp: Any, filtered: bool) -> None:
    if filtered and resp.HasField("meta"):
        resp.meta.results_filtered_by_acls = True


def _need(authz: Authorizer, resource: str, name: str | None, access: Access) -> None:
    if not authz.allowed(resource, name, access):
        raise denied(authz.accessor, resource, access, name)


Pre = Callable[["Gate", Authorizer, Any], Awaitable[None]]
Post = Callable[["Gate", Authorizer, Any, Any], None]

_C = "/consul.catalog.v1.CatalogService/"
_H = "/consul.health.v1.HealthService/"
_K = "/consul.kv.v1.KVService/"
_S = "/consul.session.v1.SessionService/"
_E = "/consul.event.v1.EventService/"
_T = "/consul.txn.v1.TxnService/"
_M = "/consul.membership.v1.MembershipService/"
_A = "/consul.agent.v1.AgentService/"
_SNAP = "/consul.snapshot.v1.SnapshotService/"
_CFG = "/consul.config.v1.ConfigService/"
_OP = "/consul.operator.v1.OperatorService/"
_CO = "/consul.coordinate.v1.CoordinateService/"


async def _catalog_register(gate: Gate, authz: Authorizer, req: cpb.RegisterRequest) -> None:
    if not req.skip_node_update:
        _need(authz, "node", req.node.name, Access.WRITE)
    if req.HasField("service"):
        _need(authz, "service", req.service.name, Access.WRITE)
    for check in req.checks:
        if check.service_id:
            name = check.service_name or await gate.lookups.service_name(
                req.node.name, check.service_id
            )
            if name is None and req.HasField("service"):
                name = req.service.name
            _need(authz, "service", name or check.service_id, Access.WRITE)
        else:
            _need(authz, "node", req.node.name, Access.WRITE)


async def _catalog_deregister(gate: Gate, authz: Authorizer, req: cpb.DeregisterRequest) -> None:
    if req.service_id:
        name = await gate.lookups.service_name(req.node, req.service_id)
        _need(authz, "service", name or req.service_id, Access.WRITE)
    else:
        _need(authz, "node", req.node, Access.WRITE)


async def _kv_get(gate: Gate, authz: Authorizer, req: kpb.GetRequest) -> None:
    _need(authz, "key", req.key, Access.READ)


async def _kv_list(gate: Gate, authz: Authorizer, req: Any) -> None:
    if authz.key_list_policy:
        _need(authz, "key", req.prefix, Access.LIST)


async def _kv_put(gate: Gate, authz: Authorizer, req: kpb.PutRequest) -> None:
    _need(authz, "key", req.key, Access.WRITE)


async def _kv_delete(gate: Gate, authz: Authorizer, req: kpb.DeleteRequest) -> None:
    if req.recurse:
        if not authz.key_write_prefix(req.key):
            raise denied(authz.accessor, "key", Access.WRITE, req.key)
    else:
        _need(authz, "key", req.key, Access.WRITE)


async def _session_create(gate: Gate, authz: Authorizer, req: sspb.CreateRequest) -> None:
    _need(authz, "session", req.session.node, Access.WRITE)


async def _session_by_id(gate: Gate, authz: Authorizer, req: Any) -> None:
    node = await gate.lookups.session_node(req.id)
    if node is not None:
        _need(authz, "session", node, Access.WRITE)


async def _event_fire(gate: Gate, authz: Authorizer, req: epb.FireRequest) -> None:
    _need(authz, "event", req.event.name, Access.WRITE)


_TXN_READS = frozenset({"get", "check-index", "check-session", "check-not-exists"})


async def _txn(gate: Gate, authz: Authorizer, req: tpb.TxnRequest) -> None:
    for op in req.ops:
        verb = op.verb.lower()
        if verb == "get-tree":
            if authz.key_list_policy:
                _need(authz, "key", op.key, Access.LIST)
        elif verb in _TXN_READS:
            _need(authz, "key", op.key, Access.READ)
        elif verb == "delete-tree":
            if not authz.key_write_prefix(op.key):
                raise denied(authz.accessor, "key", Access.WRITE, op.key)
        else:
            _need(authz, "key", op.key, Access.WRITE)


def _post_nodes(gate: Gate, authz: Authorizer, req: Any, resp: Any) -> None:
    kept, cut = filter_nodes(authz, resp.nodes)
    _replace(resp, "nodes", kept)
    _mark(resp, cut)


def _post_services(gate: Gate, authz: Authorizer, req: Any, resp: Any) -> None:
    kept, cut = _keep(list(resp.services), lambda s: authz.service_read(s.name))
    _replace(resp, "services", kept)
    _mark(resp, cut)


def _post_get_node(gate: Gate, authz: Authorizer, req: Any, resp: Any) -> None:
    if resp.HasField("node") and not authz.node_read(resp.node.name):
        resp.ClearField("node")
        _replace(resp, "services", [])
        _mark(resp, True)
        return
    kept, cut = _keep(list(resp.services), lambda s: authz.service_read(s.name))
    _replace(resp, "services", kept)
    _mark(resp, cut)


def _post_instances(gate: Gate, authz: Authorizer, req: Any, resp: Any) -> None:
    kept, cut = filter_service_nodes(authz, resp.instances)
    _replace(resp, "instances", kept)
    _mark(resp, cut)


def _post_checks(gate: Gate, authz: Authorizer, req: Any, resp: Any) -> None:
    kept, cut = filter_checks(authz, resp.checks)
    _replace(resp, "checks", kept)
    _mark(resp, cut)


def _post_entries(gate: Gate, authz: Authorizer, req: Any, resp: Any) -> None:
    if _all(authz, "node", "service"):
        return
    # An entry's checks are its node's and its service's own: readable
    # whenever the entry is, so they need no checks of their own.
    kept, cut = filter_health_entries(authz, resp.entries)
    _replace(resp, "entries", kept)
    _mark(resp, cut)


def _post_kv(gate: Gate, authz: Authorizer, req: Any, resp: Any) -> None:
    kept, cut = filter_kv(authz, resp.pairs)
    _replace(resp, "pairs", kept)
    _mark(resp, cut)


def _post_keys(gate: Gate, authz: Authorizer, req: Any, resp: Any) -> None:
    kept, cut = filter_keys(authz, list(resp.keys))
    _replace(resp, "keys", kept)
    _mark(resp, cut)


def _post_session(gate: Gate, authz: Authorizer, req: Any, resp: Any) -> None:
    if resp.HasField("session") and not authz.session_read(resp.session.node):
        resp.ClearField("session")
        _mark(resp, True)


def _post_sessions(gate: Gate, authz: Authorizer, req: Any, resp: Any) -> None:
    kept, cut = filter_sessions(authz, resp.sessions)
    _replace(resp, "sessions", kept)
    _mark(resp, cut)


def _post_events(gate: Gate, authz: Authorizer, req: Any, resp: Any) -> None:
    kept, cut = filter_events(authz, resp.events)
    _replace(resp, "events", kept)
    _mark(resp, cut)


def _post_members(gate: Gate, authz: Authorizer, req: Any, resp: Any) -> None:
    kept, _ = filter_members(authz, resp.members)
    _replace(resp, "members", kept)


# The agent's own endpoints (AgentService), on the agent that holds the data.


async def _agent_register_service(
    gate: Gate, authz: Authorizer, req: agpb.RegisterServiceRequest
) -> None:
    _need(authz, "service", req.definition.service.name, Access.WRITE)


async def _agent_node_or_service(gate: Gate, authz: Authorizer, service_name: str | None) -> None:
    if service_name:
        _need(authz, "service", service_name, Access.WRITE)
    else:
        _need(authz, "node", gate.node_name, Access.WRITE)


async def _agent_deregister_service(
    gate: Gate, authz: Authorizer, req: agpb.DeregisterServiceRequest
) -> None:
    name = await gate.lookups.service_name(gate.node_name, req.service_id)
    _need(authz, "service", name or req.service_id, Access.WRITE)


async def _agent_register_check(
    gate: Gate, authz: Authorizer, req: agpb.RegisterCheckRequest
) -> None:
    service_id = req.check.service_id
    name = await gate.lookups.service_name(gate.node_name, service_id) if service_id else None
    await _agent_node_or_service(gate, authz, name or (service_id or None))


async def _agent_check_by_id(gate: Gate, authz: Authorizer, req: Any) -> None:
    name = await gate.check_service(req.check_id) if gate.check_service else None
    await _agent_node_or_service(gate, authz, name)


async def _agent_self(gate: Gate, authz: Authorizer, req: Any) -> None:
    _need(authz, "agent", gate.node_name, Access.READ)


async def _agent_maintenance(gate: Gate, authz: Authorizer, req: agpb.MaintenanceRequest) -> None:
    if req.service_id:
        name = await gate.lookups.service_name(gate.node_name, req.service_id)
        _need(authz, "service", name or req.service_id, Access.WRITE)
    else:
        _need(authz, "node", gate.node_name, Access.WRITE)


def _post_agent_services(gate: Gate, authz: Authorizer, req: Any, resp: Any) -> None:
    kept, _ = _keep(list(resp.services), lambda s: authz.service_read(s.name))
    _replace(resp, "services", kept)


def _post_agent_checks(gate: Gate, authz: Authorizer, req: Any, resp: Any) -> None:
    kept, _ = _keep(
        list(resp.checks),
        lambda c: (
            authz.node_read(gate.node_name)
            and (not c.service_name or authz.service_read(c.service_name))
        ),
    )
    _replace(resp, "checks", kept)


async def _management(gate: Gate, authz: Authorizer, req: Any) -> None:
    # Snapshots hold every secret: Consul asks for a management token (acl:write).
    _need(authz, "acl", None, Access.WRITE)


async def _operator_read(gate: Gate, authz: Authorizer, req: Any) -> None:
    _need(authz, "operator", None, Access.READ)


async def _operator_write(gate: Gate, authz: Authorizer, req: Any) -> None:
    _need(authz, "operator", None, Access.WRITE)


def _config_target(kind: str, name: str) -> tuple[str, str | None]:
    """The resource a config entry belongs to: its service, or the mesh."""
    if kind.startswith("service-"):
        return "service", name
    return "mesh", None


def _entry_kind_name(raw: bytes) -> tuple[str, str]:
    try:
        doc = json.loads(raw or b"{}")
    except (ValueError, RecursionError):
        return "", ""
    if not isinstance(doc, dict):
        return "", ""
    folded = {str(k).lower(): v for k, v in doc.items()}
    return str(folded.get("kind") or ""), str(folded.get("name") or "")


async def _config_apply(gate: Gate, authz: Authorizer, req: Any) -> None:
    kind, name = _entry_kind_name(req.entry_json)
    resource, segment = _config_target(kind, name)
    _need(authz, resource, segment, Access.WRITE)


async def _config_by_name(gate: Gate, authz: Authorizer, req: Any) -> None:
    resource, segment = _config_target(req.kind, req.name)
    write = req.DESCRIPTOR.name == "DeleteRequest"
    _need(authz, resource, segment, Access.WRITE if write else Access.READ)


def _post_config_list(gate: Gate, authz: Authorizer, req: Any, resp: Any) -> None:
    def ok(raw: bytes) -> bool:
        resource, segment = _config_target(*_entry_kind_name(raw))
        return authz.allowed(resource, segment, Access.READ)

    kept, cut = _keep(list(resp.entries_json), ok)
    _replace(resp, "entries_json", kept)
    _mark(resp, cut)


async def _coordinate_update(gate: Gate, authz: Authorizer, req: Any) -> None:
    # Consul's Coordinate.Update: node:write on the node whose coordinate it is.
    _need(authz, "node", req.node, Access.WRITE)


def _post_coordinates(gate: Gate, authz: Authorizer, req: Any, resp: Any) -> None:
    # Consul's filterACL for coordinates: only nodes the token may read.
    kept, cut = _keep(list(resp.coordinates), lambda c: authz.node_read(c.node))
    _replace(resp, "coordinates", kept)
    _mark(resp, cut)


PRE: dict[str, Pre] = {
    _CO + "Update": _coordinate_update,
    _SNAP + "Save": _management,
    _SNAP + "ReadChunk": _management,
    _SNAP + "BeginRestore": _management,
    _SNAP + "RestoreChunk": _management,
    _SNAP + "CommitRestore": _management,
    _OP + "RaftConfiguration": _operator_read,
    _OP + "RaftRemovePeer": _operator_write,
    _OP + "RaftTransferLeader": _operator_write,
    _OP + "AutopilotGetConfiguration": _operator_read,
    _OP + "AutopilotSetConfiguration": _operator_write,
    _OP + "AutopilotHealth": _operator_read,
    _OP + "AutopilotState": _operator_read,
    _OP + "Usage": _operator_read,
    _CFG + "Apply": _config_apply,
    _CFG + "Get": _config_by_name,
    _CFG + "Delete": _config_by_name,
    _C + "Register": _catalog_register,
    _C + "Deregister": _catalog_deregister,
    _K + "Get": _kv_get,
    _K + "List": _kv_list,
    _K + "Keys": _kv_list,
    _K + "Put": _kv_put,
    _K + "Delete": _kv_delete,
    _S + "Create": _session_create,
    _S + "Destroy": _session_by_id,
    _S + "Renew": _session_by_id,
    _E + "Fire": _event_fire,
    _T + "Txn": _txn,
    _A + "RegisterService": _agent_register_service,
    _A + "DeregisterService": _agent_deregister_service,
    _A + "RegisterCheck": _agent_register_check,
    _A + "DeregisterCheck": _agent_check_by_id,
    _A + "UpdateTTL": _agent_check_by_id,
    _A + "Self": _agent_self,
    _A + "Maintenance": _agent_maintenance,
}

POST: dict[str, Post] = {
    _CO + "ListNodes": _post_coordinates,
    _CO + "GetNode": _post_coordinates,
    _CFG + "List": _post_config_list,
    _C + "ListNodes": _post_nodes,
    _C + "ListServices": _post_services,
    _C + "GetNode": _post_get_node,
    _C + "ListServiceInstances": _post_instances,
    _H + "NodeChecks": _post_checks,
    _H + "ServiceChecks": _post_checks,
    _H + "ChecksInState": _post_checks,
    _H + "ServiceHealth": _post_entries,
    _K + "List": _post_kv,
    _K + "Keys": _post_keys,
    _S + "Info": _post_session,
    _S + "List": _post_sessions,
    _S + "ListNode": _post_sessions,
    _E + "List": _post_events,
    _M + "ListMembers": _post_members,
    _A + "ListServices": _post_agent_services,
    _A + "ListChecks": _post_agent_checks,
    _A + "ListMembers": _post_members,
}


def token_of(request: Any) -> str:
    """The token a request carries in its options, write options or ``token`` field."""
    fields = request.DESCRIPTOR.fields_by_name
    for name in ("options", "write"):
        if name in fields and request.HasField(name):
            token: str = getattr(request, name).token
            if token:
                return token
    if "token" in fields:
        plain: str = request.token
        if plain:
            return plain
    return request_token.get()


class _NoLookups:
    async def service_name(self, node: str, service_id: str) -> str | None:
        return None

    async def session_node(self, session_id: str) -> str | None:
        return None


class Gate:
    """One agent's enforcement: its resolver, node name and lookups."""

    def __init__(
        self,
        resolver: Resolver,
        *,
        node_name: str = "",
        lookups: Lookups | None = None,
        check_service: Callable[[str], Awaitable[str | None]] | None = None,
    ) -> None:
        self.resolver = resolver
        self.node_name = node_name
        self.lookups: Lookups = lookups or _NoLookups()
        self.check_service = check_service

    async def authorizer(self, request: Any) -> Authorizer:
        return await self.resolver.resolve(token_of(request))

    async def call(self, path: str, fn: Callable[[Any], Awaitable[Any]], request: Any) -> Any:
        if not self.resolver.enabled:
            return await fn(request)
        pre, post = PRE.get(path), POST.get(path)
        if pre is None and post is None:
            return await fn(request)
        authz = await self.authorizer(request)
        if pre is not None:
            await pre(self, authz, request)
        response = await fn(request)
        if post is not None:
            post(self, authz, request, response)
        return response


class _Guarded:
    """An endpoint whose unary methods go through a ``Gate`` first."""

    def __init__(self, service: ServiceDescriptor, endpoint: object, gate: Gate) -> None:
        self._service = service.full_name
        self._endpoint = endpoint
        self._gate = gate

    def __getattr__(self, name: str) -> Any:
        fn = getattr(self._endpoint, name)
        path = f"/{self._service}/{name}"
        if path not in PRE and path not in POST:
            return fn

        async def gated(request: Any) -> Any:
            return await self._gate.call(path, fn, request)

        return gated


def guard(service: ServiceDescriptor, endpoint: object, gate: Gate) -> object:
    """``endpoint`` with ACL enforcement on each of ``service``'s methods."""
    return _Guarded(service, endpoint, gate)


#: For readers that want a plain QueryOpts (local views).
EMPTY_OPTS = QueryOpts()


#: What a subscription to each topic shows, as (resource, name of the key or
#: None for every name): a subscriber must be able to read all of it, since
#: agents filter views per caller at read time, not per subscriber.
def _subscription_needs(request: spb.SubscribeRequest) -> list[tuple[str, str | None]]:
    key = request.key
    if request.topic in (spb.TOPIC_SERVICE_HEALTH, spb.TOPIC_SERVICE_HEALTH_CONNECT):
        return [("service", key), ("node", None)]
    if request.topic == spb.TOPIC_CATALOG_SERVICES:
        return [("service", None)]
    if request.topic == spb.TOPIC_CATALOG_NODES:
        return [("node", None)]
    if request.topic == spb.TOPIC_NODE:
        return [("node", key), ("service", None)]
    if request.topic == spb.TOPIC_KV_KEY:
        return [("key", key)]
    return [("key", None)]  # a prefix: every key under it, deny rules included


async def authorize_subscribe(resolver: Resolver, request: spb.SubscribeRequest) -> None:
    """Refuse a subscription whose token may not read the whole topic key."""
    if not resolver.enabled:
        return
    authz = await resolver.resolve(request.token or request_token.get())
    for resource, name in _subscription_needs(request):
        ok = (
            authz.reads_everything(resource)
            if name is None
            else authz.allowed(resource, name, Access.READ)
        )
        if not ok:
            raise denied(authz.accessor, resource, Access.READ, name)
