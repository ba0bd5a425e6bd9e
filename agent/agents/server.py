"""The server agent: store, state, leader, membership, and the RPC listeners.

``ServerAgent`` is an async context manager (``AgentBase``). Starting it opens
the store (memory or etcd), joins this server to the datacenter's LAN pool,
starts the leader election (the leader reconciles membership into the
catalog), and serves every RPC service, gRPC health and reflection on
``rpc_addr`` and ``grpc_addr``, then Consul's HTTP API. Each part's stop is
pushed as it starts, so a failed start unwinds and closing stops everything in
reverse: the heartbeat and HTTP first, the member marked LEFT, the leadership
and its lease given up, the listeners drained for up to two seconds, the store
last.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

from agent.acl.enforce import authorize_subscribe, guard
from agent.acl.wiring import TokenInvoker, server_acl
from agent.agents.base import AgentBase
from agent.config import VERSION, AgentConfig
from agent.coordinate import Coordinate
from agent.durations import seconds_duration
from agent.errors import InvalidArgument
from agent.local.core import LocalAgent
from agent.membership.coordinates import CoordinateSync, CoordinateTracker, coordinate_samples
from agent.membership.hub import MemberHub, wan_member
from agent.metrics import (
    Sample,
    local_samples,
    member_samples,
    router_samples,
    stream_samples,
    views_samples,
)
from agent.pool import ConnPool
from agent.router import Router
from agent.rpc.handlers import Dispatcher, Forwarder
from agent.rpc.methods import SERVER_SERVICES
from agent.server.config_entries import ConfigEndpoint
from agent.server.coordinates import (
    BatchConfig,
    CoordinateBatcher,
    CoordinateEndpoint,
    ServerProber,
    batcher_samples,
)
from agent.server.endpoints import (
    CatalogEndpoint,
    EventEndpoint,
    HealthEndpoint,
    KVEndpoint,
    MembershipEndpoint,
    ServerContext,
    SessionEndpoint,
    StatusEndpoint,
    TxnEndpoint,
)
from agent.server.leader import LeaderElection
from agent.server.operator import ClusterAdmin, Identity, OperatorEndpoint
from agent.server.query_endpoint import PreparedQueryEndpoint
from agent.server.reconcile import reconcile_forever
from agent.server.snapshots import SnapshotEndpoint
from agent.server.wan import WanForwarder, WanLinks
from agent.state.acl import ACLState
from agent.state.catalog import Catalog
from agent.state.config_entries import ConfigEntries
from agent.state.coordinates import CoordinateState
from agent.state.events import EventState
from agent.state.kv import KVState
from agent.state.members import Members
from agent.state.operator import AutopilotConfigs, UsageCounter
from agent.state.sessions import SessionState
from agent.state.txn import TxnState
from agent.store import Store
from agent.store.factory import open_store
from agent.store.replica import ReplicaStore
from agent.stream import Publisher, SubscribeEndpoint, WanStreamForwarder
from agent.stream.endpoint import GatedSubscribe
from agent.tasks import Background
from agent.views import ViewInvoker, ViewStore, views_stats
from generated.consul.agent.v1 import agent_pb2 as apb
from generated.consul.common.v1 import types_pb2 as pb
from generated.consul.membership.v1 import membership_pb2 as mpb

__all__ = ["ServerAgent"]

logger = logging.getLogger(__name__)

AGENT_SERVICE = apb.DESCRIPTOR.services_by_name["AgentService"]

#: How long a closing server waits to tell the others it left.
LEAVE_TIMEOUT = 3.0


class ServerAgent(AgentBase):
    """One server agent process's worth of machinery."""

    role = "server"

    def __init__(self, config: AgentConfig, *, forward: Forwarder | None = None) -> None:
        super().__init__(config)
        self.forward = forward
        namespace = f"/consul-grpc/{config.datacenter}/"
        self.store: Store = open_store(
            config.store, endpoints=config.etcd_endpoints, namespace=namespace
        )
        # With etcd, reads come from a local mirror of the datacenter's keys.
        self.replica = ReplicaStore(self.store) if self.store.kind == "etcd" else None
        self.catalog = Catalog(self.store, self.replica)
        self.kv = KVState(self.store, self.replica)
        self.sessions = SessionState(self.store, self.catalog, self.kv)
        self.events = EventState(self.store)
        self.txn = TxnState(self.store, self.kv)
        self.config_entries = ConfigEntries(self.store, self.replica)
        # Membership reads (every heartbeat checks its alive key) come from the
        # replica on etcd; writes and the liveness lease go to the store.
        members_store: Store = self.replica or self.store
        self.lan = Members(
            members_store,
            "lan",
            suspect_timeout=config.suspect_timeout,
            reconnect_timeout=config.reconnect_timeout,
        )
        self.hub = MemberHub(self.store, "lan")
        self.wan = Members(
            members_store,
            "wan",
            suspect_timeout=config.suspect_timeout,
            reconnect_timeout=config.reconnect_timeout,
        )
        self.wan_hub = MemberHub(self.store, "wan")
        self.pool = ConnPool(security=self.tls.outgoing(self._datacenter_of))
        self.wan_router = Router(
            config.datacenter,
            self.pool,
            self_name=f"{config.node_name}.{config.datacenter}",
            fixed_interval=config.rebalance_interval,
        )
        self.forwarder = forward or WanForwarder(self.wan_router, self.pool)
        self.heartbeat_interval = max(0.25, config.suspect_timeout / 4)
        # Network coordinates: the LAN one (probes of other servers), the WAN
        # one (WAN heartbeats), and the batcher of the agents' Coordinate.Update.
        self.lan_coords = CoordinateTracker(config.node_name)
        self.wan_coords = CoordinateTracker(f"{config.node_name}.{config.datacenter}")
        self.coordinates = CoordinateState(self.store, self.replica)
        self.coordinate_batcher = CoordinateBatcher(
            self.coordinates,
            BatchConfig(
                config.coordinate_update_period,
                config.coordinate_update_batch_size,
                config.coordinate_update_max_batches,
            ),
        )
        self.rpc_address = ""
        self.grpc_address = ""
        self.leader: LeaderElection | None = None
        self._loops = Background("server-agent")
        self.links = WanLinks(
            member=self.wan_member,
            router=self.wan_router,
            pool=self.pool,
            seeds=list(config.retry_join_wan),
            wan_hub=self.wan_hub,
            heartbeat_interval=self.heartbeat_interval,
            coordinates=self.wan_coords,
        )
        self.dispatch = Dispatcher(config.datacenter, self.forwarder)
        # Subscriptions (agent.stream) and this server's own views (agent.views).
        self.publisher = Publisher(
            self.replica or self.store,
            self.catalog,
            self.kv,
            known_leader=lambda: bool(self.leader and self.leader.known_leader),
        )
        self.subscribe = SubscribeEndpoint(
            self.publisher, config.datacenter, WanStreamForwarder(self.wan_router, self.pool)
        )
        self.views = ViewStore(self.subscribe.Subscribe, hold_timeout=config.rpc_hold_timeout)
        self.reads = ViewInvoker(
            self.dispatch,
            self.views,
            config.datacenter,
            blocking_only=True,
            enabled=not config.acl.enabled,
        )
        self.local = LocalAgent(
            node_name=config.node_name,
            datacenter=config.datacenter,
            invoker=TokenInvoker(self.dispatch, lambda: self.acl.resolver.tokens.agent),
            node=self.node,
            members=self.members,
            describe=self.describe,
            cluster_size=lambda: max(1, len(self.hub.members)),
            data_dir=config.data_dir,
            enable_script_checks=config.enable_script_checks,
        )
        self.operator.join = self._join
        self.prober = ServerProber(
            self.lan_coords,
            self.pool,
            lambda: self.hub.members.values(),
            interval=self.heartbeat_interval,
        )
        self.coordinate_sync = CoordinateSync(
            self.lan_coords,
            TokenInvoker(self.dispatch, lambda: self.acl.resolver.tokens.agent),
            node=config.node_name,
            datacenter=config.datacenter,
            cluster_size=lambda: max(1, len(self.hub.members)),
            rate_target=config.sync_coordinate_rate_target,
            interval_min=config.sync_coordinate_interval_min,
        )

        self.acl = server_acl(
            config,
            ACLState(self.store, self.replica),
            self.catalog,
            self.sessions,
            lambda: self.local.state,
            lambda: bool(self.leader and self.leader.known_leader),
            self.dispatch,
        )

    def node(self) -> pb.Node:
        return pb.Node(
            id=self.config.node_id,
            name=self.config.node_name,
            address=self.rpc_address.rpartition(":")[0],
            datacenter=self.config.datacenter,
        )

    async def members(self, wan: bool) -> list[mpb.Member]:
        if not wan:
            return list(self.hub.members.values())
        view = {m.name: m for m in self.wan_hub.members.values()}
        for link in self.links.links.values():
            view.update(link.members)
        for m in self.hub.members.values():
            if m.role == mpb.MEMBER_ROLE_SERVER:
                view[f"{m.name}.{m.datacenter}"] = wan_member(m)
        return list(view.values())

    def metric_samples(self) -> Iterator[Sample]:
        yield from router_samples(self.wan_router)
        yield from local_samples(self.local)
        yield from member_samples(self.hub.members.values(), self.hub.events, "lan")
        yield from member_samples(self.wan_hub.members.values(), self.wan_hub.events, "wan")
        yield from views_samples(self.views)
        yield from stream_samples(self.publisher)
        yield from coordinate_samples(self.lan_coords, self.coordinate_sync)
        yield from batcher_samples(self.coordinate_batcher)
        leader = self.leader
        yield Sample(
            "consul_server_is_leader",
            "gauge",
            "1 on the leader",
            float(bool(leader and leader.is_leader)),
        )

    def describe(self) -> apb.SelfResponse:
        cfg = self.config
        resp = apb.SelfResponse(
            node_name=cfg.node_name,
            datacenter=cfg.datacenter,
            server=True,
            version=VERSION,
            member=self.member,
            heartbeat_interval=seconds_duration(self.heartbeat_interval),
        )
        resp.start_time.FromNanoseconds(int(self.start_time * 1e9))
        if not self.config.disable_coordinates:
            resp.coordinate.CopyFrom(self.lan_coords.message())
        leader = self.leader
        resp.stats.update(
            {
                "consul.server": "true",
                "consul.leader": str(bool(leader and leader.is_leader)).lower(),
                "consul.leader_addr": leader.leader_address if leader else "",
                "consul.known_datacenters": str(1 + len(self.links.datacenters())),
                "serf_lan.members": str(len(self.hub.members)),
                "agent.services": str(len(self.local.state.services)),
                "agent.checks": str(len(self.local.state.definitions)),
                "agent.store": self.store.kind,
                "stream.subscribers": str(self.publisher.stats.subscribers),
                **views_stats(self.views),
            }
        )
        return resp

    @property
    def member(self) -> mpb.Member:
        return mpb.Member(
            name=self.config.node_name,
            address=self.rpc_address,
            datacenter=self.config.datacenter,
            role=mpb.MEMBER_ROLE_SERVER,
            tags={
                "version": VERSION,
                "grpc_addr": self.grpc_address,
                "role": "consul",
                "node_id": self.config.node_id,
            },
            status=mpb.MEMBER_STATUS_ALIVE,
        )

    def wan_member(self) -> mpb.Member:
        return wan_member(self.member)

    def peers(self) -> list[str]:
        return [
            m.address
            for m in self.hub.members.values()
            if m.role == mpb.MEMBER_ROLE_SERVER and m.status == mpb.MEMBER_STATUS_ALIVE
        ]

    async def _join(self, address: str, wan: bool) -> int:
        """Servers of a datacenter share its store, so a LAN join only checks that
        ``address`` is a member already; a WAN join adds a seed for the WAN links."""
        if wan:
            await self.links.add_seed(address)
            return 1
        known = {m.address for m in self.hub.members.values()} | {self.rpc_address}
        if address not in known:
            raise InvalidArgument(
                f"Error joining address {address!r}: the servers of datacenter"
                f" {self.config.datacenter!r} share its store and client agents join them;"
                " a server is not a member of this pool"
            )
        return 1

    async def _start(self, stack: contextlib.AsyncExitStack) -> None:
        cfg = self.config
        await self.store.start()
        self.on_stop(stack, "store", self.store.aclose)
        if self.replica is not None:
            await self.replica.start()
            self.on_stop(stack, "replica", self.replica.aclose)
        grpc_server = self.new_grpc_server(stack)
        # Stopped before the gRPC server: subscriptions end at once, so their
        # agents move to another server instead of waiting out the grace.
        await self.publisher.start()
        self.on_stop(stack, "publisher", self.publisher.aclose)
        await self.views.start()
        self.on_stop(stack, "views", self.views.aclose)
        self.rpc_address = self.bind(grpc_server, cfg.rpc_addr, self.tls.rpc_server_credentials())
        if cfg.grpc_addr and cfg.grpc_addr != cfg.rpc_addr:
            self.grpc_address = self.bind(grpc_server, cfg.grpc_addr)
        else:
            self.grpc_address = self.rpc_address
        self.bind_grpc_tls(grpc_server)
        self.leader = leader = LeaderElection(
            self.store,
            cfg.node_name,
            self.rpc_address,
            ttl=max(1, round(cfg.leader_ttl)),
            on_elected=lambda: reconcile_forever(
                self.catalog,
                self.lan,
                cfg.datacenter,
                wan=self.wan,
                sessions=self.sessions,
                kv=self.kv,
            ),
        )
        ctx = ServerContext(
            name=cfg.node_name,
            datacenter=cfg.datacenter,
            address=self.rpc_address,
            catalog=self.catalog,
            kv=self.kv,
            sessions=self.sessions,
            events=self.events,
            txn=self.txn,
            lan=self.lan,
            lan_hub=self.hub,
            wan=self.wan,
            wan_hub=self.wan_hub,
            remote_datacenters=self.links.datacenters,
            leader=leader,
            heartbeat_interval=self.heartbeat_interval,
            single_server=self.store.kind == "memory",
            peers=self.peers,
            lan_coords=self.lan_coords,
            wan_coords=self.wan_coords,
            coordinate_state=self.coordinates,
        )
        self.context = ctx
        endpoints: list[object] = [
            CatalogEndpoint(ctx),
            HealthEndpoint(ctx),
            KVEndpoint(ctx),
            StatusEndpoint(ctx),
            MembershipEndpoint(ctx),
            SessionEndpoint(ctx),
            EventEndpoint(ctx),
            TxnEndpoint(ctx),
            SnapshotEndpoint(self.store, cfg.datacenter),
            ConfigEndpoint(self.config_entries, ctx.meta),
            self.acl.endpoint,
            PreparedQueryEndpoint(ctx, self.store, self.dispatch.rpc, reader=self.replica),
            self._operator_endpoint(ctx),
            GatedSubscribe(
                self.subscribe, lambda req: authorize_subscribe(self.acl.gate.resolver, req)
            ),
            CoordinateEndpoint(
                self.coordinates, self.coordinate_batcher, ctx.meta, self.wan_coordinates
            ),
        ]
        endpoints = [
            guard(s, e, self.acl.gate) for s, e in zip(SERVER_SERVICES, endpoints, strict=True)
        ]
        agent_endpoint = guard(AGENT_SERVICE, self.local.endpoint, self.acl.agent_gate)
        for service, endpoint in zip(SERVER_SERVICES, endpoints, strict=True):
            self.dispatch.register(service, endpoint)
        self.serve_services(
            grpc_server, list(zip(SERVER_SERVICES, endpoints, strict=True)), self.reads.rpc
        )
        self.serve_services(grpc_server, [(AGENT_SERVICE, agent_endpoint)])
        await self.serve_health_and_reflection(grpc_server, [*SERVER_SERVICES, AGENT_SERVICE])
        await self.hub.start()
        self.on_stop(stack, "lan-hub", self.hub.aclose)
        await self.wan_hub.start()
        self.on_stop(stack, "wan-hub", self.wan_hub.aclose)
        self.pool.start()
        self.on_stop(stack, "pool", self.pool.aclose)
        self.wan_router.start()
        self.on_stop(stack, "wan-router", self.wan_router.aclose)
        for pool in (self.lan, self.wan):
            await pool.start()
            self.on_stop(stack, f"liveness-{pool.pool}", pool.aclose)
        await self.lan.join(self.member)
        self.on_stop(
            stack,
            "leave",
            lambda: self.lan.leave(cfg.node_name),
            timeout=LEAVE_TIMEOUT,
        )
        await leader.start()
        self.on_stop(stack, "leader", leader.aclose)
        await self.acl.start(lambda: leader.is_leader)
        await grpc_server.start()
        await self.links.start()
        self.on_stop(stack, "wan-links", self.links.aclose)
        await self.local.start()
        self.on_stop(stack, "local", self.local.aclose)
        await self.start_http(
            stack,
            invoker=self.reads,
            agent_endpoint=agent_endpoint,  # type: ignore[arg-type]
            extend=self.acl.add_http,
        )
        await self.start_dns(stack, invoker=self.reads)
        self._loops.spawn(self._stay_alive(), "server-heartbeat")
        self.on_stop(stack, "heartbeat", self._loops.aclose)
        await self.coordinate_batcher.start()
        self.on_stop(stack, "coordinate-batcher", self.coordinate_batcher.aclose)
        if not cfg.disable_coordinates:
            await self.prober.start()
            self.on_stop(stack, "coordinate-prober", self.prober.aclose)
            await self.coordinate_sync.start()
            self.on_stop(stack, "coordinate-sync", self.coordinate_sync.aclose)
        logger.info(
            "server agent started node=%s datacenter=%s store=%s rpc=%s grpc=%s http=%s"
            " https=%s grpc_tls=%s",
            cfg.node_name,
            cfg.datacenter,
            self.store.kind,
            self.rpc_address,
            self.grpc_address,
            self.http_address,
            self.https_address,
            self.grpc_tls_address,
        )

    def _operator_endpoint(self, ctx: ServerContext) -> OperatorEndpoint:
        """``/v1/operator``: on etcd, the etcd cluster's members are the raft peers."""
        cluster: ClusterAdmin | None = None
        if self.store.kind == "etcd":
            from agent.store.etcd import EtcdStore  # etcd3aio only when etcd is used
            from agent.store.etcd_cluster import EtcdCluster

            assert isinstance(self.store, EtcdStore)
            cluster = EtcdCluster(self.store)
        return OperatorEndpoint(
            store=self.store,
            cluster=cluster,
            me=Identity(
                self.config.node_id, self.config.node_name, lambda: self.rpc_address, VERSION
            ),
            leader=ctx.leader,
            servers=lambda: list(self.hub.members.values()),
            autopilot=AutopilotConfigs(self.store, self.replica),
            usage=UsageCounter(self.replica or self.store),
            meta=ctx.meta,
            datacenter=self.config.datacenter,
        )

    def wan_coordinates(self) -> dict[str, dict[str, Coordinate]]:
        """Datacenter -> server node -> WAN coordinate: ours and those heard over
        the WAN (Serf's cached coordinates of the WAN pool), for alive members."""
        view = self._wan_view()
        alive = {n for n, m in view.items() if m.status == mpb.MEMBER_STATUS_ALIVE}
        alive.add(self.wan_coords.name)
        out: dict[str, dict[str, Coordinate]] = {}
        for name, coord in self.wan_coords.cache.items():
            if name not in alive:
                continue
            node, _, dc = name.rpartition(".")
            if node and dc:
                out.setdefault(dc, {})[node] = coord
        return out

    def _wan_view(self) -> dict[str, mpb.Member]:
        view = {m.name: m for m in self.wan_hub.members.values()}
        for link in self.links.links.values():
            view.update(link.members)
        return view

    def _datacenter_of(self, address: str) -> str | None:
        """The datacenter of the server at ``address``, if known (the name its TLS
        certificate must carry): from the WAN router, else from a WAN member."""
        for state in self.wan_router.state().values():
            for server in state.servers:
                if server.address == address:
                    return server.datacenter
        for member in self.wan_hub.members.values():
            if member.address == address:
                return member.datacenter
        return None

    async def _stay_alive(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            try:
                if not await self.lan.heartbeat(self.config.node_name):
                    logger.warning("own membership lapsed; joining again")
                    await self.lan.join(self.member)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("heartbeat failed error=%s", exc)
