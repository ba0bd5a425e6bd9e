"""ConnPool without a gRPC server: sharing, reaping, retiring, connect failures."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import grpc
import pytest

from agent.pool import ConnectFailed, ConnPool
from agent.router import Server
from agent.rpc import method_spec
from generated.consul.status.v1 import status_pb2

PING = method_spec("/consul.status.v1.StatusService/Ping")
WATCH = method_spec("/consul.membership.v1.MembershipService/WatchMembers")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.fixture
async def silent_address() -> AsyncIterator[str]:
    """A TCP listener that accepts and never speaks HTTP/2: connects hang."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"127.0.0.1:{port}"
    for w in held:
        w.close()
    server.close()


async def test_one_channel_per_address_under_concurrent_first_use() -> None:
    async with ConnPool() as pool:

        async def get() -> grpc.aio.Channel:
            await asyncio.sleep(0)
            return pool.channel("127.0.0.1:1")

        channels = await asyncio.gather(*(get() for _ in range(100)))
        assert len({id(c) for c in channels}) == 1
        assert pool.stats.dials == 1
        assert pool.channel("127.0.0.1:2") is not channels[0]
        assert pool.addresses() == ["127.0.0.1:1", "127.0.0.1:2"]


@pytest.mark.parametrize("address", ["", "nohost", "host"])
async def test_bad_address_is_a_clear_error(address: str) -> None:
    async with ConnPool() as pool:
        with pytest.raises(ValueError, match="host:port"):
            pool.channel(address)


def test_bad_settings() -> None:
    with pytest.raises(ValueError):
        ConnPool(idle_timeout=0)


async def test_idle_channels_are_reaped() -> None:
    clock = Clock()
    async with ConnPool(idle_timeout=127, clock=clock) as pool:
        pool.channel("127.0.0.1:1")
        clock.now = 100.0
        pool.channel("127.0.0.1:2")
        clock.now = 126.9
        assert await pool.reap_idle() == 0
        clock.now = 127.0
        assert await pool.reap_idle() == 1
        assert pool.addresses() == ["127.0.0.1:2"]
        clock.now = 300.0
        assert await pool.reap_idle() == 1
        assert pool.addresses() == []
        pool.channel("127.0.0.1:1")  # dialed again
        assert pool.stats.dials == 3


async def test_reaper_loop_runs_on_its_interval() -> None:
    async with ConnPool(idle_timeout=0.05, reap_interval=0.02) as pool:
        pool.channel("127.0.0.1:1")
        async with asyncio.timeout(5):
            while pool.addresses():
                await asyncio.sleep(0.01)
        assert pool.stats.reaped == 1


async def test_call_in_flight_is_not_reaped(silent_address: str) -> None:
    clock = Clock()
    async with ConnPool(idle_timeout=1, connect_timeout=0.5, clock=clock) as pool:
        call = asyncio.create_task(
            pool.call(silent_address, PING, status_pb2.PingRequest(), timeout=5)
        )
        async with asyncio.timeout(5):
            while not pool.addresses():
                await asyncio.sleep(0.01)
        clock.now = 1000.0
        assert await pool.reap_idle() == 0
        with pytest.raises(ConnectFailed, match="connect timed out"):
            await call
        assert await pool.reap_idle() == 0  # last use was just now
        clock.now = 2000.0
        assert await pool.reap_idle() == 1


async def test_connect_refused_is_connect_failed() -> None:
    address = f"127.0.0.1:{closed_port()}"
    async with ConnPool(connect_timeout=5) as pool:
        async with asyncio.timeout(10):
            with pytest.raises(ConnectFailed) as info:
                await pool.call(address, PING, status_pb2.PingRequest(), timeout=5)
        assert info.value.address == address
        assert pool.stats.connect_failures == 1


async def test_mark_failed_redials() -> None:
    async with ConnPool() as pool:
        first = pool.channel("127.0.0.1:1")
        pool.mark_failed("127.0.0.1:1")
        pool.mark_failed("127.0.0.1:1")  # twice: harmless
        pool.mark_failed("127.0.0.1:9")  # unknown: harmless
        assert pool.addresses() == []
        second = pool.channel("127.0.0.1:1")
        assert second is not first
        assert pool.stats.retired == 1


async def test_mark_failed_waits_for_calls_in_flight(silent_address: str) -> None:
    async with ConnPool(connect_timeout=0.5) as pool:
        call = asyncio.create_task(
            pool.call(silent_address, PING, status_pb2.PingRequest(), timeout=5)
        )
        async with asyncio.timeout(5):
            while not pool.addresses():
                await asyncio.sleep(0.01)
        old = pool.channel(silent_address)
        pool.mark_failed(silent_address)
        assert old.get_state() != grpc.ChannelConnectivity.SHUTDOWN
        assert len(pool._retired) == 1
        with pytest.raises(ConnectFailed):
            await call
        async with asyncio.timeout(5):
            while pool._closers or pool._retired:
                await asyncio.sleep(0.01)
        assert old.get_state() == grpc.ChannelConnectivity.SHUTDOWN


async def test_ping_false_for_dead_server_drops_channel() -> None:
    server = Server("s1", f"127.0.0.1:{closed_port()}", "dc1")
    async with ConnPool(ping_timeout=2) as pool:
        async with asyncio.timeout(10):
            assert await pool.ping(server) is False
        assert pool.addresses() == []


async def test_ping_deadline_on_a_silent_server(silent_address: str) -> None:
    async with ConnPool(ping_timeout=0.3) as pool:
        async with asyncio.timeout(5):
            assert await pool.ping(Server("s1", silent_address, "dc1")) is False


async def test_kind_mismatch_and_bad_timeout() -> None:
    async with ConnPool() as pool:
        with pytest.raises(ValueError, match="stream"):
            await pool.call("127.0.0.1:1", WATCH, WATCH.request_type(), timeout=1)
        with pytest.raises(ValueError, match="positive"):
            await pool.call("127.0.0.1:1", PING, PING.request_type(), timeout=0)
        with pytest.raises(ValueError, match="not a streaming"):
            async for _ in pool.stream("127.0.0.1:1", PING, PING.request_type()):
                pass


async def test_aclose_closes_everything_and_refuses_new_use() -> None:
    pool = ConnPool()
    pool.start()
    channel = pool.channel("127.0.0.1:1")
    await pool.aclose()
    await pool.aclose()  # idempotent
    assert channel.get_state() == grpc.ChannelConnectivity.SHUTDOWN
    with pytest.raises(RuntimeError, match="closed"):
        pool.channel("127.0.0.1:1")
    with pytest.raises(RuntimeError, match="closed"):
        pool.start()
