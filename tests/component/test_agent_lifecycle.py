"""Agents start and stop as one unit: a failed start undoes itself, a stop stops everything.

Real in-process agents (memory store, real gRPC and HTTP listeners on
loopback), no fakes: what is checked is what a process would leak.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import grpc
import pytest

from agent.agents import ClientAgent, ServerAgent, StopFailed
from agent.config import AgentConfig
from agent.membership.hub import MemberHub
from agent.server.wan import WanLinks


def _taken_port() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock


def _server_config(tmp_path: Path, http_addr: str) -> AgentConfig:
    return AgentConfig(
        server=True,
        dev=True,
        node_name="s1",
        node_id="00000000-0000-4000-8000-000000000001",
        data_dir=str(tmp_path / "data"),
        rpc_addr="127.0.0.1:0",
        grpc_addr="127.0.0.1:0",
        http_addr=http_addr,
        dns_addr="127.0.0.1:0",
    ).validated()


def _other_tasks() -> set[asyncio.Task[object]]:
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}


def _port_free(address: str) -> bool:
    host, _, port = address.rpartition(":")
    with socket.socket() as sock:
        try:
            sock.bind((host, int(port)))
        except OSError:
            return False
    return True


async def _settled(before: set[asyncio.Task[object]]) -> set[asyncio.Task[object]]:
    """Tasks beyond ``before`` still alive after a bounded settle."""
    for _ in range(100):
        left = {t for t in _other_tasks() - before if not t.done()}
        if not left:
            return left
        await asyncio.sleep(0.05)
    return left


async def test_failed_start_leaks_nothing_regression(tmp_path: Path) -> None:
    """Bug: a server whose HTTP port was taken failed to start but left its
    leader election, member hubs and anti-entropy running and its gRPC port
    bound. Now the start unwinds in reverse."""
    before = _other_tasks()
    with _taken_port() as taken:
        host, port = taken.getsockname()
        agent = ServerAgent(_server_config(tmp_path, f"{host}:{port}"))
        with pytest.raises(OSError):
            await agent.start()
    assert agent.rpc_address, "the gRPC listener was bound before HTTP failed"
    left = await _settled(before)
    assert not left, f"tasks left running: {sorted(t.get_name() for t in left)}"
    assert _port_free(agent.rpc_address), "the gRPC port is still bound"
    # Nothing is served any more on it.
    async with grpc.aio.insecure_channel(agent.rpc_address) as channel:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(channel.channel_ready(), 0.5)


async def test_stop_runs_every_part_and_reports_each_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Bug: ``aclose()`` stopped at the first exception. Now every part is
    stopped and every failure is reported together."""
    hub_close, links_close = MemberHub.aclose, WanLinks.aclose

    async def broken_hub(self: MemberHub) -> None:
        await hub_close(self)
        raise RuntimeError(f"{self.pool} hub would not stop")

    async def broken_links(self: WanLinks) -> None:
        await links_close(self)
        raise ValueError("links would not stop")

    monkeypatch.setattr(MemberHub, "aclose", broken_hub)
    monkeypatch.setattr(WanLinks, "aclose", broken_links)
    before = _other_tasks()
    agent = ServerAgent(_server_config(tmp_path, "127.0.0.1:0"))
    await agent.start()
    rpc_address, http_address = agent.rpc_address, agent.http_address
    with pytest.raises(StopFailed) as caught:
        await agent.aclose()
    messages = sorted(str(e) for e in caught.value.exceptions)
    assert messages == ["lan hub would not stop", "links would not stop", "wan hub would not stop"]
    # Parts stopped after the failures (listeners, store) were stopped too.
    assert _port_free(rpc_address), "the gRPC listener was not stopped"
    assert _port_free(http_address), "the HTTP listener was not stopped"
    left = await _settled(before)
    assert not left, f"tasks left running: {sorted(t.get_name() for t in left)}"


async def test_client_failed_start_leaks_nothing(tmp_path: Path) -> None:
    before = _other_tasks()
    with _taken_port() as taken:
        host, port = taken.getsockname()
        agent = ClientAgent(
            AgentConfig(
                node_name="c1",
                node_id="00000000-0000-4000-8000-000000000002",
                data_dir=str(tmp_path / "c1"),
                grpc_addr="127.0.0.1:0",
                http_addr=f"{host}:{port}",
                dns_addr="127.0.0.1:0",
                retry_join=("127.0.0.1:1",),
            ).validated()
        )
        with pytest.raises(OSError):
            await agent.start()
    left = await _settled(before)
    assert not left, f"tasks left running: {sorted(t.get_name() for t in left)}"
    assert _port_free(agent.grpc_address)


async def test_health_watch_streams_hold_no_threads_regression(tmp_path: Path) -> None:
    """Bug: the synchronous grpc.health.v1 servicer parked a default-executor
    thread per Watch stream; after six (the executor's size on 2 CPUs)
    Health/Check answered DEADLINE_EXCEEDED for good and host-name resolution
    (HTTP checks against ``localhost``) stalled. The agents now serve the
    asyncio servicer: any number of watchers, and the executor stays free."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    agent = ServerAgent(_server_config(tmp_path, "127.0.0.1:0"))
    await agent.start()
    try:
        channels = [grpc.aio.insecure_channel(agent.grpc_address) for _ in range(4)]
        watches = []
        for i in range(24):  # four times the executor's size on 2 CPUs
            stub = health_pb2_grpc.HealthStub(channels[i % len(channels)])
            call = stub.Watch(health_pb2.HealthCheckRequest(service=""))
            first = await asyncio.wait_for(call.read(), 10)
            assert first.status == health_pb2.HealthCheckResponse.SERVING
            watches.append(call)
        async with grpc.aio.insecure_channel(agent.grpc_address) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            resp = await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
        # The default executor still resolves host names (what HTTP checks need).
        infos = await asyncio.wait_for(
            asyncio.get_running_loop().getaddrinfo("localhost", 80), 10
        )
        assert infos
        for call in watches:
            call.cancel()
        for channel in channels:
            await channel.close()
    finally:
        await agent.aclose()
