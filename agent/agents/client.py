"""The client agent: runs beside applications, forwards every request to a server.

``ClientAgent`` (an ``AgentBase``) wires the connection pool, the router (one
Manager for the local datacenter, fed by the membership watch),
``Client.rpc`` with its rate limit and retries, the local state with its
checks and anti-entropy, and the listeners: on ``grpc_addr`` the Catalog,
Health, KV and Status services (each call forwarded through ``Client.rpc``,
so applications use the same stubs as against a server) plus AgentService,
gRPC health and reflection; on ``http_addr`` Consul's HTTP API. Each part's
stop is pushed as it starts; closing leaves gracefully.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator

from agent.acl.enforce import Gate, guard, token_of
from agent.acl.wiring import client_acl, with_token
from agent.agents.base import AgentBase
from agent.client.client import Client
from agent.config import VERSION, AgentConfig
from agent.durations import seconds_duration
from agent.errors import InvalidArgument
from agent.local.core import LocalAgent
from agent.membership.client import MembershipClient
from agent.membership.coordinates import CoordinateSync, CoordinateTracker, coordinate_samples
from agent.metrics import (
    Sample,
    client_samples,
    local_samples,
    member_samples,
    router_samples,
    views_samples,
)
from agent.pool import ConnPool
from agent.router import Router
from agent.rpc.methods import CLIENT_FORWARDED_SERVICES
from agent.views import ViewInvoker, ViewStore, client_source, views_stats
from generated.consul.agent.v1 import agent_pb2 as apb
from generated.consul.common.v1 import types_pb2 as pb
from generated.consul.membership.v1 import membership_pb2 as mpb
from generated.consul.subscribe.v1 import subscribe_pb2 as spb

__all__ = ["FORWARDED_SERVICES", "ClientAgent"]

logger = logging.getLogger(__name__)

FORWARDED_SERVICES = CLIENT_FORWARDED_SERVICES
AGENT_SERVICE = apb.DESCRIPTOR.services_by_name["AgentService"]

#: How long a closing client waits to tell its servers it left.
LEAVE_TIMEOUT = 5.0


def _with_token(request: spb.SubscribeRequest, token: str) -> spb.SubscribeRequest:
    """``request`` carrying ``token`` unless it carries one (a copy when it changes)."""
    if request.token or not token:
        return request
    out = spb.SubscribeRequest()
    out.CopyFrom(request)
    out.token = token
    return out


class _NoEndpoint:
    """Forwarded services have no local endpoint: every call goes through ``call``."""


class ClientAgent(AgentBase):
    """One client agent process's worth of machinery."""

    role = "client"

    def __init__(self, config: AgentConfig) -> None:
        super().__init__(config)
        self.grpc_address = ""
        self.pool = ConnPool(security=self.tls.outgoing())
        self.router = Router(
            config.datacenter,
            self.pool,
            member_count=lambda: len(self.membership.members),
            fixed_interval=config.rebalance_interval,
        )
        self.client = Client(
            self.router,
            self.pool,
            rate=config.rpc_rate,
            burst=config.rpc_max_burst,
            hold_timeout=config.rpc_hold_timeout,
        )
        # The LAN coordinate, fed by the heartbeats' round-trip times.
        self.lan_coords = CoordinateTracker(config.node_name)
        self.membership = MembershipClient(
            self.member,
            self.router,
            self.pool,
            list(config.retry_join),
            heartbeat_interval=max(0.25, config.suspect_timeout / 4),
            on_servers_changed=self._servers_changed,
            coordinates=None if config.disable_coordinates else self.lan_coords,
        )
        self.acl = client_acl(config, self.client, lambda: self.local.state)
        # Discovery reads (HTTP, gRPC, DNS) are answered from views fed by
        # server streams, the rest forwarded with the caller's token. With ACLs
        # on, the views subscribe with the agent's token and every read is
        # checked and filtered for its caller's token at read time.
        tokens = self.acl.resolver.tokens
        subscribe = client_source(self.client)
        self.views = ViewStore(
            lambda req: subscribe(_with_token(req, tokens.agent or tokens.default)),
            hold_timeout=config.rpc_hold_timeout,
        )
        self.reads = ViewInvoker(
            self.acl.forward,
            self.views,
            config.datacenter,
            gate=Gate(self.acl.resolver, node_name=config.node_name)
            if config.acl.enabled
            else None,
            prepare=lambda req: with_token(req, token_of(req) or tokens.default),
        )
        self.local = LocalAgent(
            node_name=config.node_name,
            datacenter=config.datacenter,
            invoker=self.acl.anti_entropy,
            node=self.node,
            members=self.members,
            describe=self.describe,
            cluster_size=lambda: max(1, len(self.membership.members)),
            data_dir=config.data_dir,
            enable_script_checks=config.enable_script_checks,
        )
        self._had_servers = False
        self.operator.join = self._join
        self.coordinate_sync = CoordinateSync(
            self.lan_coords,
            self.acl.anti_entropy,
            node=config.node_name,
            datacenter=config.datacenter,
            cluster_size=lambda: max(1, len(self.membership.members)),
            rate_target=config.sync_coordinate_rate_target,
            interval_min=config.sync_coordinate_interval_min,
        )

    # ----- identity ------------------------------------------------------

    @property
    def host(self) -> str:
        if self.config.advertise_addr:
            return self.config.advertise_addr
        return self.grpc_address.rpartition(":")[0] or "127.0.0.1"

    def member(self) -> mpb.Member:
        return mpb.Member(
            name=self.config.node_name,
            address=self.grpc_address,
            datacenter=self.config.datacenter,
            role=mpb.MEMBER_ROLE_NODE,
            tags={
                "version": VERSION,
                "node_address": self.host,
                "node_id": self.config.node_id,
                "role": "node",
            },
            status=mpb.MEMBER_STATUS_ALIVE,
        )

    def node(self) -> pb.Node:
        return pb.Node(
            id=self.config.node_id,
            name=self.config.node_name,
            address=self.host,
            datacenter=self.config.datacenter,
        )

    async def members(self, wan: bool) -> list[mpb.Member]:
        if wan:
            # As Consul: the WAN pool is the servers' business.
            raise InvalidArgument("WAN members are known to server agents only")
        return list(self.membership.members.values())

    def metric_samples(self) -> Iterator[Sample]:
        yield from client_samples(self.client.stats)
        yield from views_samples(self.views)
        yield from router_samples(self.router)
        yield from local_samples(self.local)
        yield from member_samples(self.membership.members.values(), self.membership.events, "lan")
        yield from coordinate_samples(self.lan_coords, self.coordinate_sync)
        yield Sample(
            "consul_membership_reconnects",
            "counter",
            "Membership stream reconnects",
            self.membership.reconnects,
        )

    def describe(self) -> apb.SelfResponse:
        cfg = self.config
        resp = apb.SelfResponse(
            node_name=cfg.node_name,
            datacenter=cfg.datacenter,
            server=False,
            version=VERSION,
            member=self.member(),
            heartbeat_interval=seconds_duration(self.membership.heartbeat_interval),
        )
        resp.start_time.FromNanoseconds(int(self.start_time * 1e9))
        if not cfg.disable_coordinates:
            resp.coordinate.CopyFrom(self.lan_coords.message())
        now_mono, now_wall = time.monotonic(), time.time()
        for state in self.router.state().values():
            rs = resp.routers.add(
                datacenter=state.datacenter,
                offline=state.offline,
                servers=[
                    apb.RouterServer(name=s.name, address=s.address, datacenter=s.datacenter)
                    for s in state.servers
                ],
            )
            rs.next_rebalance.FromNanoseconds(
                int((now_wall + state.next_rebalance - now_mono) * 1e9)
            )
        stats = self.client.stats
        resp.stats.update(
            {
                "consul.server": "false",
                "consul.known_servers": str(self.router.local.num_servers),
                "client.rpc": str(stats.rpc),
                "client.rpc_failed": str(stats.failed),
                "client.rpc_rate_limited": str(stats.rate_limited),
                "client.rpc_retries": str(stats.retries),
                "serf_lan.members": str(len(self.membership.members)),
                "serf_lan.events": str(self.membership.events),
                "agent.services": str(len(self.local.state.services)),
                "agent.checks": str(len(self.local.state.definitions)),
                **views_stats(self.views),
            }
        )
        return resp

    def _servers_changed(self) -> None:
        has = self.router.local.num_servers > 0
        if has and not self._had_servers:
            logger.info("servers available: full anti-entropy sync")
            self.local.ae.trigger()
        self._had_servers = has

    async def _join(self, address: str, wan: bool) -> int:
        if wan:
            raise InvalidArgument("Only server agents join the WAN pool")
        await self.membership.join_address(address)
        return 1

    # ----- lifecycle -----------------------------------------------------

    async def _start(self, stack: contextlib.AsyncExitStack) -> None:
        cfg = self.config
        self.pool.start()
        self.on_stop(stack, "pool", self.pool.aclose)
        self.router.start()
        self.on_stop(stack, "router", self.router.aclose)
        await self.views.start()
        self.on_stop(stack, "views", self.views.aclose)
        grpc_server = self.new_grpc_server(stack)
        self.grpc_address = self.bind(grpc_server, cfg.grpc_addr)
        self.bind_grpc_tls(grpc_server)
        self.serve_services(
            grpc_server,
            [(s, _NoEndpoint()) for s in FORWARDED_SERVICES],
            self.reads.rpc,
            serialize=self.reads.serialize,
        )
        agent_endpoint = guard(AGENT_SERVICE, self.local.endpoint, self.acl.agent_gate)
        self.serve_services(grpc_server, [(AGENT_SERVICE, agent_endpoint)])
        await self.serve_health_and_reflection(grpc_server, [*FORWARDED_SERVICES, AGENT_SERVICE])
        await self.membership.start()
        self.on_stop(
            stack,
            "membership",
            lambda: self.membership.aclose(leave=True),
            timeout=LEAVE_TIMEOUT,
        )
        await self.local.start()
        self.on_stop(stack, "local", self.local.aclose)
        if not cfg.disable_coordinates:
            await self.coordinate_sync.start()
            self.on_stop(stack, "coordinate-sync", self.coordinate_sync.aclose)
        await grpc_server.start()
        await self.start_http(
            stack,
            invoker=self.reads,
            agent_endpoint=agent_endpoint,  # type: ignore[arg-type]
            extend=self.acl.add_http,
        )
        await self.start_dns(stack, invoker=self.reads)
        logger.info(
            "client agent started node=%s datacenter=%s grpc=%s http=%s retry_join=%s"
            " https=%s grpc_tls=%s",
            cfg.node_name,
            cfg.datacenter,
            self.grpc_address,
            self.http_address,
            ",".join(cfg.retry_join),
            self.https_address,
            self.grpc_tls_address,
        )
