"""The server's RPC endpoints: Catalog, Health, KV, Status, Membership.

Each method takes the request message and returns the response message,
raising ``agent.errors.ConsulError`` for the caller; ``handlers`` turns these
into gRPC handlers (datacenter forwarding, error mapping). Requests are
validated here, once, before the state layer sees them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from agent.convert import check_name, query_meta, query_opts
from agent.durations import seconds_duration
from agent.errors import InvalidArgument
from agent.filter import apply_filter
from agent.membership.hub import MemberHub, wan_view
from agent.server.leader import LeaderElection
from agent.shapes import (
    catalog_service_json,
    check_json,
    node_json,
    service_entry_json,
)
from agent.state.blocking import QueryOpts
from agent.state.catalog import Catalog
from agent.state.events import EventState
from agent.state.kv import KVState
from agent.state.members import Members
from agent.state.services import validate_service
from agent.state.sessions import SessionState
from agent.state.txn import TxnState
from generated.consul.catalog.v1 import catalog_pb2 as cpb
from generated.consul.common.v1 import query_pb2 as qpb
from generated.consul.common.v1 import types_pb2 as pb
from generated.consul.event.v1 import event_pb2 as epb
from generated.consul.health.v1 import health_pb2 as hpb
from generated.consul.kv.v1 import kv_pb2 as kpb
from generated.consul.membership.v1 import membership_pb2 as mpb
from generated.consul.session.v1 import session_pb2 as sspb
from generated.consul.status.v1 import status_pb2 as spb
from generated.consul.txn.v1 import txn_pb2 as tpb

__all__ = [
    "CatalogEndpoint",
    "EventEndpoint",
    "HealthEndpoint",
    "KVEndpoint",
    "MembershipEndpoint",
    "ServerContext",
    "SessionEndpoint",
    "StatusEndpoint",
    "TxnEndpoint",
]

T = TypeVar("T")


@dataclass
class ServerContext:
    """What every endpoint of one server agent shares."""

    name: str
    datacenter: str
    address: str
    catalog: Catalog
    kv: KVState
    sessions: SessionState
    events: EventState
    txn: TxnState
    lan: Members
    lan_hub: MemberHub
    wan: Members
    wan_hub: MemberHub
    leader: LeaderElection
    heartbeat_interval: float
    #: Other datacenters known through the WAN pool (filled by the WAN router).
    remote_datacenters: Callable[[], Sequence[str]] = field(default=lambda: ())
    #: Refuse a second server in this datacenter (memory store).
    single_server: bool = False
    #: Server peers, for Status.Peers.
    peers: Callable[[], Sequence[str]] = field(default=lambda: ())

    def meta(self, index: int) -> qpb.QueryMeta:
        return query_meta(index, self.leader.known_leader)


def _filtered(expr: str, rows: Sequence[T], to_row: Callable[[T], dict[str, Any]]) -> list[T]:
    return apply_filter(expr, rows, to_row) if expr else list(rows)


def _status(value: int, what: str = "status") -> int:
    if value not in pb.HealthStatus.values():
        raise InvalidArgument(f"Unknown {what} {value}")
    return value


class CatalogEndpoint:
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    async def Register(self, req: cpb.RegisterRequest) -> cpb.RegisterResponse:
        check_name(req.node.name, "node name")
        check_name(req.node.address, "node address", required=not req.skip_node_update)
        req.node.datacenter = self.ctx.datacenter
        service = req.service if req.HasField("service") else None
        if service is not None:
            check_name(service.name, "service name")
            check_name(service.id, "service ID", required=False)
            if not 0 <= service.port <= 65535:
                raise InvalidArgument(f"Invalid service port {service.port}")
            validate_service(service)
        for check in req.checks:
            _status(check.status, "check status")
            check_name(check.check_id or check.name, "check ID or name")
        index = await self.ctx.catalog.register(
            req.node, service, list(req.checks), skip_node_update=req.skip_node_update
        )
        return cpb.RegisterResponse(meta=qpb.WriteMeta(index=index))

    async def Deregister(self, req: cpb.DeregisterRequest) -> cpb.DeregisterResponse:
        check_name(req.node, "node")
        index = await self.ctx.catalog.deregister(req.node, req.service_id, req.check_id)
        return cpb.DeregisterResponse(meta=qpb.WriteMeta(index=index))

    async def ListDatacenters(self, req: cpb.ListDatacentersRequest) -> cpb.ListDatacentersResponse:
        others = sorted(set(self.ctx.remote_datacenters()) - {self.ctx.datacenter})
        return cpb.ListDatacentersResponse(datacenters=[self.ctx.datacenter, *others])

    async def ListNodes(self, req: cpb.ListNodesRequest) -> cpb.ListNodesResponse:
        opts = query_opts(req.options)
        read = await self.ctx.catalog.list_nodes(opts, dict(req.node_meta))
        nodes = _filtered(opts.filter, read.value, node_json)
        return cpb.ListNodesResponse(meta=self.ctx.meta(read.index), nodes=nodes)

    async def ListServices(self, req: cpb.ListServicesRequest) -> cpb.ListServicesResponse:
        opts = query_opts(req.options)
        if opts.filter:
            # Consul filters the service rows, then folds them by name.
            inst = await self.ctx.catalog.list_services(opts, dict(req.node_meta))
            summaries = []
            for name in inst.value:
                rows = await self.ctx.catalog.service_instances(
                    QueryOpts(), name, (), dict(req.node_meta)
                )
                kept = _filtered(opts.filter, rows.value, lambda r: catalog_service_json(*r))
                if kept:
                    tags = sorted({t for _, s in kept for t in s.tags})
                    summaries.append(cpb.ServiceSummary(name=name, tags=tags))
            return cpb.ListServicesResponse(meta=self.ctx.meta(inst.index), services=summaries)
        read = await self.ctx.catalog.list_services(opts, dict(req.node_meta))
        return cpb.ListServicesResponse(
            meta=self.ctx.meta(read.index),
            services=[cpb.ServiceSummary(name=n, tags=t) for n, t in read.value.items()],
        )

    async def GetNode(self, req: cpb.GetNodeRequest) -> cpb.GetNodeResponse:
        check_name(req.node, "node")
        opts = query_opts(req.options)
        read = await self.ctx.catalog.get_node(opts, req.node)
        node, services = read.value
        resp = cpb.GetNodeResponse(meta=self.ctx.meta(read.index), services=services)
        if node is not None:
            resp.node.CopyFrom(node)
        return resp

    async def ListServiceInstances(
        self, req: cpb.ListServiceInstancesRequest
    ) -> cpb.ListServiceInstancesResponse:
        check_name(req.service, "service name")
        opts = query_opts(req.options)
        read = await self.ctx.catalog.service_instances(
            opts, req.service, list(req.tags), dict(req.node_meta), connect=req.connect
        )
        rows = _filtered(opts.filter, read.value, lambda r: catalog_service_json(*r))
        return cpb.ListServiceInstancesResponse(
            meta=self.ctx.meta(read.index),
            instances=[pb.ServiceInstance(node=n, service=s) for n, s in rows],
        )


class HealthEndpoint:
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    async def NodeChecks(self, req: hpb.NodeChecksRequest) -> hpb.NodeChecksResponse:
        check_name(req.node, "node")
        opts = query_opts(req.options)
        read = await self.ctx.catalog.node_checks(opts, req.node)
        checks = _filtered(opts.filter, read.value, check_json)
        return hpb.NodeChecksResponse(meta=self.ctx.meta(read.index), checks=checks)

    async def ServiceChecks(self, req: hpb.ServiceChecksRequest) -> hpb.ServiceChecksResponse:
        check_name(req.service, "service name")
        opts = query_opts(req.options)
        read = await self.ctx.catalog.service_checks(opts, req.service)
        checks = _filtered(opts.filter, read.value, check_json)
        return hpb.ServiceChecksResponse(meta=self.ctx.meta(read.index), checks=checks)

    async def ServiceHealth(self, req: hpb.ServiceHealthRequest) -> hpb.ServiceHealthResponse:
        check_name(req.service, "service name")
        opts = query_opts(req.options)
        read = await self.ctx.catalog.service_health(
            opts,
            req.service,
            list(req.tags),
            req.passing_only,
            dict(req.node_meta),
            connect=req.connect,
        )
        entries = _filtered(opts.filter, read.value, service_entry_json)
        return hpb.ServiceHealthResponse(meta=self.ctx.meta(read.index), entries=entries)

    async def ChecksInState(self, req: hpb.ChecksInStateRequest) -> hpb.ChecksInStateResponse:
        opts = query_opts(req.options)
        state = _status(req.state, "state")
        read = await self.ctx.catalog.checks_in_state(opts, state)
        checks = _filtered(opts.filter, read.value, check_json)
        return hpb.ChecksInStateResponse(meta=self.ctx.meta(read.index), checks=checks)


class KVEndpoint:
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    async def Get(self, req: kpb.GetRequest) -> kpb.GetResponse:
        read = await self.ctx.kv.get(query_opts(req.options), req.key)
        resp = kpb.GetResponse(meta=self.ctx.meta(read.index))
        if read.value is not None:
            resp.pair.CopyFrom(read.value)
        return resp

    async def List(self, req: kpb.ListRequest) -> kpb.ListResponse:
        read = await self.ctx.kv.list_prefix(query_opts(req.options), req.prefix)
        return kpb.ListResponse(meta=self.ctx.meta(read.index), pairs=read.value)

    async def Keys(self, req: kpb.KeysRequest) -> kpb.KeysResponse:
        read = await self.ctx.kv.keys(query_opts(req.options), req.prefix, req.separator)
        return kpb.KeysResponse(meta=self.ctx.meta(read.index), keys=read.value)

    async def Put(self, req: kpb.PutRequest) -> kpb.PutResponse:
        applied, index = await self.ctx.kv.put(
            req.key,
            req.value,
            flags=req.flags,
            cas=req.cas if req.HasField("cas") else None,
            acquire=req.acquire,
            release=req.release,
        )
        return kpb.PutResponse(meta=qpb.WriteMeta(index=index), applied=applied)

    async def Delete(self, req: kpb.DeleteRequest) -> kpb.DeleteResponse:
        index = await self.ctx.kv.delete(
            req.key, recurse=req.recurse, cas=req.cas if req.HasField("cas") else None
        )
        return kpb.DeleteResponse(meta=qpb.WriteMeta(index=index))


class StatusEndpoint:
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    async def Ping(self, req: spb.PingRequest) -> spb.PingResponse:
        return spb.PingResponse(name=self.ctx.name, datacenter=self.ctx.datacenter)

    async def Leader(self, req: spb.LeaderRequest) -> spb.LeaderResponse:
        return spb.LeaderResponse(address=self.ctx.leader.leader_address)

    async def Peers(self, req: spb.PeersRequest) -> spb.PeersResponse:
        return spb.PeersResponse(addresses=sorted(self.ctx.peers()))


class MembershipEndpoint:
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    def _pool(self, wan: bool) -> Members:
        return self.ctx.wan if wan else self.ctx.lan

    async def Join(self, req: mpb.JoinRequest) -> mpb.JoinResponse:
        members = self._pool(req.wan)
        member = req.member
        if req.wan and member.role != mpb.MEMBER_ROLE_SERVER:
            raise InvalidArgument("Only servers join the WAN pool")
        if member.datacenter != self.ctx.datacenter and not req.wan:
            raise InvalidArgument(
                f"Member datacenter {member.datacenter!r} does not match"
                f" this server's datacenter {self.ctx.datacenter!r}"
            )
        if (
            member.role == mpb.MEMBER_ROLE_SERVER
            and not req.wan
            and self.ctx.single_server
            and member.name != self.ctx.name
        ):
            raise InvalidArgument(
                f"Server {member.name!r} cannot join datacenter {self.ctx.datacenter!r}: its"
                " servers use the embedded memory store, which holds exactly one server;"
                " run every server with --store etcd to have several"
            )
        await members.join(member)
        return mpb.JoinResponse(
            heartbeat_interval=seconds_duration(self.ctx.heartbeat_interval),
            suspect_timeout=seconds_duration(members.suspect_timeout),
        )

    async def Heartbeat(self, req: mpb.HeartbeatRequest) -> mpb.HeartbeatResponse:
        check_name(req.name, "member name")
        return mpb.HeartbeatResponse(known=await self._pool(req.wan).heartbeat(req.name))

    async def Leave(self, req: mpb.LeaveRequest) -> mpb.LeaveResponse:
        check_name(req.name, "member name")
        await self._pool(req.wan).leave(req.name, prune=req.prune)
        return mpb.LeaveResponse()

    async def ListMembers(self, req: mpb.ListMembersRequest) -> mpb.ListMembersResponse:
        members, _ = await self._pool(req.wan).list()
        return mpb.ListMembersResponse(members=members)

    async def WatchMembers(
        self, req: mpb.WatchMembersRequest
    ) -> AsyncIterator[mpb.WatchMembersResponse]:
        stream = (
            wan_view(self.ctx.lan_hub, self.ctx.wan_hub) if req.wan else self.ctx.lan_hub.stream()
        )
        async for message in stream:
            yield message


class SessionEndpoint:
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    async def Create(self, req: sspb.CreateRequest) -> sspb.CreateResponse:
        check_name(req.session.node, "Node")
        session_id, index = await self.ctx.sessions.create(
            req.session, node_checks_set=req.node_checks_set
        )
        return sspb.CreateResponse(meta=qpb.WriteMeta(index=index), id=session_id)

    async def Destroy(self, req: sspb.DestroyRequest) -> sspb.DestroyResponse:
        check_name(req.id, "session ID")
        index = await self.ctx.sessions.destroy(req.id)
        return sspb.DestroyResponse(meta=qpb.WriteMeta(index=index))

    async def Renew(self, req: sspb.RenewRequest) -> sspb.RenewResponse:
        check_name(req.id, "session ID")
        return sspb.RenewResponse(session=await self.ctx.sessions.renew(req.id))

    async def Info(self, req: sspb.InfoRequest) -> sspb.InfoResponse:
        check_name(req.id, "session ID")
        read = await self.ctx.sessions.info(query_opts(req.options), req.id)
        resp = sspb.InfoResponse(meta=self.ctx.meta(read.index))
        if read.value is not None:
            resp.session.CopyFrom(read.value)
        return resp

    async def List(self, req: sspb.ListRequest) -> sspb.ListResponse:
        read = await self.ctx.sessions.list_sessions(query_opts(req.options))
        return sspb.ListResponse(meta=self.ctx.meta(read.index), sessions=read.value)

    async def ListNode(self, req: sspb.ListNodeRequest) -> sspb.ListNodeResponse:
        check_name(req.node, "node")
        read = await self.ctx.sessions.list_sessions(query_opts(req.options), req.node)
        return sspb.ListNodeResponse(meta=self.ctx.meta(read.index), sessions=read.value)


class EventEndpoint:
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    async def Fire(self, req: epb.FireRequest) -> epb.FireResponse:
        return epb.FireResponse(event=await self.ctx.events.fire(req.event))

    async def List(self, req: epb.ListRequest) -> epb.ListResponse:
        read = await self.ctx.events.list(query_opts(req.options), req.name)
        return epb.ListResponse(meta=self.ctx.meta(read.index), events=read.value)


class TxnEndpoint:
    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    async def Txn(self, req: tpb.TxnRequest) -> tpb.TxnResponse:
        return await self.ctx.txn.apply(list(req.ops))
