"""ConnPool, Router and Client against real grpc.aio servers on 127.0.0.1:0."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
import pytest

from agent.client import Client
from agent.errors import NotFound, Unavailable
from agent.pool import SERVER_KEEPALIVE_OPTIONS, ConnPool
from agent.router import Router, Server
from agent.rpc import method_spec
from generated.consul.catalog.v1 import catalog_pb2, catalog_pb2_grpc
from generated.consul.common.v1 import types_pb2
from generated.consul.status.v1 import status_pb2, status_pb2_grpc

LIST_NODES = method_spec("/consul.catalog.v1.CatalogService/ListNodes")
GET_NODE = method_spec("/consul.catalog.v1.CatalogService/GetNode")
REGISTER = method_spec("/consul.catalog.v1.CatalogService/Register")


class Status(status_pb2_grpc.StatusServiceServicer):
    def __init__(self, name: str) -> None:
        self.name = name
        self.pings = 0

    async def Ping(self, request: status_pb2.PingRequest, context: Any) -> status_pb2.PingResponse:
        self.pings += 1
        return status_pb2.PingResponse(name=self.name, datacenter="dc1")


class Catalog(catalog_pb2_grpc.CatalogServiceServicer):
    """Answers ListNodes with one node named after the server; knows no node by name."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.registered: list[str] = []
        self.hang = False  # when set, calls hang until the server stops
        self.entered = asyncio.Event()

    async def _maybe_hang(self) -> None:
        self.entered.set()
        if self.hang:
            await asyncio.Event().wait()

    async def ListNodes(
        self, request: catalog_pb2.ListNodesRequest, context: Any
    ) -> catalog_pb2.ListNodesResponse:
        await self._maybe_hang()
        reply = catalog_pb2.ListNodesResponse(nodes=[types_pb2.Node(name=self.name)])
        reply.meta.index = 1
        return reply

    async def GetNode(
        self, request: catalog_pb2.GetNodeRequest, context: Any
    ) -> catalog_pb2.GetNodeResponse:
        await context.abort(grpc.StatusCode.NOT_FOUND, f"Unknown node {request.node!r}")
        raise AssertionError("unreachable")

    async def Register(
        self, request: catalog_pb2.RegisterRequest, context: Any
    ) -> catalog_pb2.RegisterResponse:
        self.registered.append(request.node.name)
        await self._maybe_hang()
        reply = catalog_pb2.RegisterResponse()
        reply.meta.index = len(self.registered)
        return reply


class FakeServer:
    def __init__(self, name: str) -> None:
        self.name = name
        self.status = Status(name)
        self.catalog = Catalog(name)
        self.grpc: grpc.aio.Server | None = None
        self.address = ""

    async def start(self) -> None:
        self.grpc = grpc.aio.server(options=list(SERVER_KEEPALIVE_OPTIONS))
        status_pb2_grpc.add_StatusServiceServicer_to_server(self.status, self.grpc)
        catalog_pb2_grpc.add_CatalogServiceServicer_to_server(self.catalog, self.grpc)
        port = self.grpc.add_insecure_port("127.0.0.1:0")
        self.address = f"127.0.0.1:{port}"
        await self.grpc.start()

    async def stop(self) -> None:
        if self.grpc is not None:
            await self.grpc.stop(grace=None)
            self.grpc = None

    @property
    def server(self) -> Server:
        return Server(self.name, self.address, "dc1")


@pytest.fixture
async def servers() -> AsyncIterator[list[FakeServer]]:
    started = [FakeServer("s1"), FakeServer("s2")]
    for s in started:
        await s.start()
    yield started
    for s in started:
        await s.stop()


@pytest.fixture
async def pool() -> AsyncIterator[ConnPool]:
    async with ConnPool(ping_timeout=1.0, connect_timeout=3.0) as p:
        yield p


def client_for(pool: ConnPool, *servers: Server) -> tuple[Router, Client]:
    router = Router("dc1", pool, rng=random.Random(1))
    for s in servers:
        router.add_server(s)
    return router, Client(router, pool, hold_timeout=5.0, call_timeout=3.0)


async def test_concurrent_first_use_makes_one_channel(
    servers: list[FakeServer], pool: ConnPool
) -> None:
    s1 = servers[0]
    results = await asyncio.gather(*(pool.ping(s1.server) for _ in range(100)))
    assert all(results)
    assert pool.stats.dials == 1
    assert pool.addresses() == [s1.address]
    assert s1.status.pings == 100


async def test_ping_true_then_false_after_stop(servers: list[FakeServer], pool: ConnPool) -> None:
    s1 = servers[0]
    assert await pool.ping(s1.server) is True
    await s1.stop()
    async with asyncio.timeout(10):
        assert await pool.ping(s1.server) is False
    assert pool.addresses() == []  # dropped, will redial


async def test_unary_call_through_the_pool(servers: list[FakeServer], pool: ConnPool) -> None:
    reply = await pool.call(servers[1].address, LIST_NODES, catalog_pb2.ListNodesRequest(), 3.0)
    assert isinstance(reply, catalog_pb2.ListNodesResponse)
    assert [n.name for n in reply.nodes] == ["s2"]


async def test_client_fails_over_to_second_server_after_stop(
    servers: list[FakeServer], pool: ConnPool
) -> None:
    s1, s2 = servers
    router, client = client_for(pool, s1.server, s2.server)
    reply = await client.rpc(LIST_NODES, catalog_pb2.ListNodesRequest())
    assert [n.name for n in reply.nodes] == ["s1"]  # type: ignore[attr-defined]

    await s1.stop()
    async with asyncio.timeout(15):
        reply = await client.rpc(LIST_NODES, catalog_pb2.ListNodesRequest())
    assert [n.name for n in reply.nodes] == ["s2"]  # type: ignore[attr-defined]
    assert router.find_server() == s2.server
    assert client.stats.failed == 1
    assert client.stats.retries == 1
    assert s1.address not in pool.addresses()


async def test_raw_transport_error_after_stop(servers: list[FakeServer], pool: ConnPool) -> None:
    # The failure the client sees comes from the transport, not from a server answer.
    s1 = servers[0]
    assert await pool.ping(s1.server)
    await s1.stop()
    with pytest.raises((grpc.aio.AioRpcError, ConnectionError)) as info:
        await pool.call(s1.address, LIST_NODES, catalog_pb2.ListNodesRequest(), 3.0)
    if isinstance(info.value, grpc.aio.AioRpcError):
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_write_that_cannot_connect_fails_over(
    servers: list[FakeServer], pool: ConnPool
) -> None:
    s1, s2 = servers
    await s1.stop()
    router, client = client_for(pool, s1.server, s2.server)
    request = catalog_pb2.RegisterRequest(node=types_pb2.Node(name="n1", address="10.1.1.1"))
    async with asyncio.timeout(15):
        await client.rpc(REGISTER, request)
    assert s2.catalog.registered == ["n1"]
    assert router.find_server() == s2.server


async def test_application_error_keeps_the_server(
    servers: list[FakeServer], pool: ConnPool
) -> None:
    s1, s2 = servers
    router, client = client_for(pool, s1.server, s2.server)
    with pytest.raises(NotFound, match="Unknown node"):
        await client.rpc(GET_NODE, catalog_pb2.GetNodeRequest(node="nope"))
    assert router.find_server() == s1.server
    assert client.stats.failed == 0
    assert pool.addresses() == [s1.address]


async def test_all_servers_down_read_gives_unavailable(
    servers: list[FakeServer], pool: ConnPool
) -> None:
    for s in servers:
        await s.stop()
    router, _ = client_for(pool, servers[0].server, servers[1].server)
    client = Client(router, pool, hold_timeout=1.0, call_timeout=1.0)
    async with asyncio.timeout(15):
        with pytest.raises(Unavailable):
            await client.rpc(LIST_NODES, catalog_pb2.ListNodesRequest())


async def test_rebalance_with_real_pings_skips_a_dead_server(
    servers: list[FakeServer], pool: ConnPool
) -> None:
    s1, s2 = servers
    await s1.stop()
    router, _ = client_for(pool, s1.server, s2.server)
    manager = router.local
    async with asyncio.timeout(15):
        for seed in range(4):  # whatever the shuffle, s2 ends up first
            manager._rng = random.Random(seed)
            assert await manager.rebalance_servers()
            assert manager.find_server() == s2.server
    await s2.stop()
    async with asyncio.timeout(15):
        assert await manager.rebalance_servers() is False
    assert manager.offline
    assert {s.name for s in manager.servers} == {"s1", "s2"}


async def test_read_broken_mid_call_fails_over(servers: list[FakeServer], pool: ConnPool) -> None:
    s1, s2 = servers
    router, client = client_for(pool, s1.server, s2.server)
    s1.catalog.hang = True
    call = asyncio.create_task(client.rpc(LIST_NODES, catalog_pb2.ListNodesRequest()))
    await asyncio.wait_for(s1.catalog.entered.wait(), 5)
    await s1.stop()  # the call was sent and is now cut
    async with asyncio.timeout(15):
        reply = await call
    assert [n.name for n in reply.nodes] == ["s2"]  # type: ignore[attr-defined]
    assert router.find_server() == s2.server
    assert client.stats.failed == 1


async def test_write_broken_mid_call_is_not_retried(
    servers: list[FakeServer], pool: ConnPool
) -> None:
    s1, s2 = servers
    router, client = client_for(pool, s1.server, s2.server)
    s1.catalog.hang = True
    request = catalog_pb2.RegisterRequest(node=types_pb2.Node(name="n1", address="10.1.1.1"))
    call = asyncio.create_task(client.rpc(REGISTER, request))
    await asyncio.wait_for(s1.catalog.entered.wait(), 5)
    await s1.stop()
    async with asyncio.timeout(15):
        with pytest.raises(Unavailable):
            await call
    assert s1.catalog.registered == ["n1"]  # it did reach s1...
    assert s2.catalog.registered == []  # ...so it was not sent again
    assert router.find_server() == s2.server  # but s1 left first place
