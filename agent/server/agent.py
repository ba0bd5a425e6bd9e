"""The server agent: store, state, leader, membership, and the RPC listeners.

``ServerAgent`` is an async context manager. Starting it opens the store
(memory or etcd), joins this server to the datacenter's LAN pool, starts the
leader election (the leader reconciles membership into the catalog), and
serves every RPC service, gRPC health and reflection on ``rpc_addr`` and
``grpc_addr``. Closing it leaves gracefully: the member is marked LEFT, the
leadership and its lease are given up, listeners drain for up to two seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from agent.config import VERSION, AgentConfig
from agent.convert import seconds_duration
from agent.http.serve import serve_http
from agent.http.server import HTTPServer
from agent.local.core import LocalAgent
from agent.membership.hub import MemberHub, wan_member
from agent.metrics import (
    AgentMetrics,
    Sample,
    local_samples,
    member_samples,
    router_samples,
    stream_samples,
    views_samples,
)
from agent.pool import SERVER_KEEPALIVE_OPTIONS, ConnPool
from agent.router import Router
from agent.rpc.methods import SERVER_SERVICES
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
from agent.server.handlers import Dispatcher, Forwarder, service_handler
from agent.server.leader import LeaderElection
from agent.server.reconcile import reconcile_forever
from agent.server.wan import WanForwarder, WanLinks
from agent.state.catalog import Catalog
from agent.state.events import EventState
from agent.state.kv import KVState
from agent.state.members import Members
from agent.state.sessions import SessionState
from agent.state.txn import TxnState
from agent.store import Store
from agent.store.factory import open_store
from agent.store.replica import ReplicaStore
from agent.stream import Publisher, SubscribeEndpoint, WanStreamForwarder
from agent.views import ViewInvoker, ViewStore, views_stats
from generated.consul.agent.v1 import agent_pb2 as apb
from generated.consul.common.v1 import types_pb2 as pb
from generated.consul.membership.v1 import membership_pb2 as mpb

__all__ = ["ServerAgent", "bind_grpc"]

logger = logging.getLogger(__name__)

SERVICES = SERVER_SERVICES

AGENT_SERVICE = apb.DESCRIPTOR.services_by_name["AgentService"]

GRPC_OPTIONS = [
    ("grpc.max_receive_message_length", 8 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    *SERVER_KEEPALIVE_OPTIONS,
]


def bind_grpc(server: grpc.aio.Server, address: str) -> str:
    """Bind ``address`` (port 0 picks one); the address actually bound."""
    host, _, _ = address.rpartition(":")
    port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot bind {address}")
    return f"{host}:{port}"


def add_health_and_reflection(server: grpc.aio.Server, names: list[str]) -> health.HealthServicer:
    servicer = health.HealthServicer(experimental_non_blocking=True)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    for name in ["", *names]:
        servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        [
            *names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ],
        server,
    )
    return servicer


class ServerAgent:
    """One server agent process's worth of machinery."""

    def __init__(self, config: AgentConfig, *, forward: Forwarder | None = None) -> None:
        self.config = config
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
        self.lan = Members(
            self.store,
            "lan",
            suspect_timeout=config.suspect_timeout,
            reconnect_timeout=config.reconnect_timeout,
        )
        self.hub = MemberHub(self.store, "lan")
        self.wan = Members(
            self.store,
            "wan",
            suspect_timeout=config.suspect_timeout,
            reconnect_timeout=config.reconnect_timeout,
        )
        self.wan_hub = MemberHub(self.store, "wan")
        self.pool = ConnPool()
        self.wan_router = Router(
            config.datacenter,
            self.pool,
            self_name=f"{config.node_name}.{config.datacenter}",
            fixed_interval=config.rebalance_interval,
        )
        self.forwarder = forward or WanForwarder(self.wan_router, self.pool)
        self.heartbeat_interval = max(0.25, config.suspect_timeout / 4)
        self.rpc_address = ""
        self.grpc_address = ""
        self.leader: LeaderElection | None = None
        self.grpc_server: grpc.aio.Server | None = None
        self.start_time = time.time()
        self._tasks: list[asyncio.Task[None]] = []
        self.links = WanLinks(
            member=self.wan_member,
            router=self.wan_router,
            pool=self.pool,
            seeds=list(config.retry_join_wan),
            wan_hub=self.wan_hub,
            heartbeat_interval=self.heartbeat_interval,
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
        self.reads = ViewInvoker(self.dispatch, self.views, config.datacenter, blocking_only=True)
        self.metrics = AgentMetrics(self.metric_samples)
        self.leave_requested = asyncio.Event()
        self.http: HTTPServer | None = None
        self.http_address = ""
        self.local = LocalAgent(
            node_name=config.node_name,
            datacenter=config.datacenter,
            invoker=self.dispatch,
            node=self.node,
            members=self.members,
            describe=self.describe,
            cluster_size=lambda: max(1, len(self.hub.members)),
            data_dir=config.data_dir,
            enable_script_checks=config.enable_script_checks,
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

    async def __aenter__(self) -> ServerAgent:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        cfg = self.config
        await self.store.start()
        if self.replica is not None:
            await self.replica.start()
        self.grpc_server = grpc.aio.server(options=GRPC_OPTIONS)
        self.rpc_address = bind_grpc(self.grpc_server, cfg.rpc_addr)
        if cfg.grpc_addr and cfg.grpc_addr != cfg.rpc_addr:
            self.grpc_address = bind_grpc(self.grpc_server, cfg.grpc_addr)
        else:
            self.grpc_address = self.rpc_address
        self.leader = LeaderElection(
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
            leader=self.leader,
            heartbeat_interval=self.heartbeat_interval,
            single_server=self.store.kind == "memory",
            peers=self.peers,
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
            self.subscribe,
        ]
        for service, endpoint in zip(SERVICES, endpoints, strict=True):
            self.dispatch.register(service, endpoint)
            self.grpc_server.add_generic_rpc_handlers(
                [service_handler(service, endpoint, self.reads.rpc)]
            )
        self.grpc_server.add_generic_rpc_handlers(
            [service_handler(AGENT_SERVICE, self.local.endpoint)]
        )
        add_health_and_reflection(
            self.grpc_server, [s.full_name for s in [*SERVICES, AGENT_SERVICE]]
        )
        await self.publisher.start()
        await self.views.start()
        await self.hub.start()
        await self.wan_hub.start()
        self.pool.start()
        self.wan_router.start()
        await self.lan.join(self.member)
        await self.leader.start()
        await self.grpc_server.start()
        await self.links.start()
        await self.local.start()
        if cfg.http_addr:
            self.http = serve_http(
                cfg.http_addr,
                invoker=self.reads,
                agent_endpoint=self.local.endpoint,
                datacenter=cfg.datacenter,
                node_name=cfg.node_name,
                metrics=self.metrics,
                leave_requested=self.leave_requested,
            )
            await self.http.start()
            self.http_address = self.http.address
        self._tasks.append(asyncio.create_task(self._stay_alive(), name="server-heartbeat"))
        logger.info(
            "server agent started node=%s datacenter=%s store=%s rpc=%s grpc=%s http=%s",
            cfg.node_name,
            cfg.datacenter,
            self.store.kind,
            self.rpc_address,
            self.grpc_address,
            self.http_address,
        )

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

    async def aclose(self, *, leave: bool = True) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.http is not None:
            await self.http.aclose()
        await self.local.aclose()
        await self.links.aclose()
        if leave:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.lan.leave(self.config.node_name), 3.0)
        if self.leader is not None:
            await self.leader.aclose()
        await self.publisher.aclose()  # ends subscriptions: their agents move on at once
        if self.grpc_server is not None:
            await self.grpc_server.stop(grace=2.0)
        await self.views.aclose()
        await self.hub.aclose()
        await self.wan_hub.aclose()
        await self.wan_router.aclose()
        await self.pool.aclose()
        if self.replica is not None:
            await self.replica.aclose()
        await self.store.aclose()
        logger.info("server agent stopped node=%s", self.config.node_name)
