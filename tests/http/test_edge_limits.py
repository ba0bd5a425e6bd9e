"""Issue 15 on a real listener: vanished clients, per-client limits, raw bytes.

The app runs behind :class:`HTTPServer` on 127.0.0.1:0 (the agents' own
listener) with a fake invoker whose blocking reads park until cancelled;
clients are raw sockets, so a test can vanish mid-request.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from google.protobuf.message import Message

from agent.http import HTTPServer, build_app
from agent.http.limits import TOO_MANY_CONNECTIONS, TRACKER, ClientTracker, HTTPLimits
from agent.rpc.methods import MethodSpec
from tests.http.fakes import FakeAgent, FakeInvoker

pytestmark = pytest.mark.timeout(60)


@dataclass
class ParkingInvoker(FakeInvoker):
    """Blocking reads (min_index > 0) park until cancelled; counts them both ways."""

    parked: int = 0
    cancelled: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def rpc(self, spec: MethodSpec, request: Message) -> Message:
        if getattr(request, "key", "") == "slow-write":
            self.parked += 1
            try:
                await self.release.wait()
            finally:
                self.parked -= 1
        options = getattr(request, "options", None)
        if options is not None and options.min_index > 0:
            self.parked += 1
            try:
                await self.release.wait()
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
            finally:
                self.parked -= 1
        return await super().rpc(spec, request)


@dataclass
class Live:
    server: HTTPServer
    invoker: ParkingInvoker
    tracker: ClientTracker
    host: str
    port: int

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.wait_for(asyncio.open_connection(self.host, self.port), 5)

    async def send(self, raw: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await self.connect()
        writer.write(raw)
        await writer.drain()
        return reader, writer


async def _poll(check: Callable[[], bool | Awaitable[bool]], what: str, limit: float = 10) -> None:
    async with asyncio.timeout(limit):
        while True:
            result = check()
            if not isinstance(result, bool):
                result = await result
            if result:
                return
            await asyncio.sleep(0.02)
    raise AssertionError(what)  # pragma: no cover


async def _read_all(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.read(), 10)


def _get(path: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n".encode()


@pytest.fixture
async def live() -> AsyncIterator[Live]:
    invoker = ParkingInvoker()
    limits = HTTPLimits(
        max_conns_per_client=6, max_blocking_queries_per_client=3, max_query_time=60
    )
    app = build_app(invoker, FakeAgent(), datacenter="dc1", node_name="n", limits=limits)
    async with HTTPServer(app, "127.0.0.1", 0) as server:
        host, _, port = server.address.rpartition(":")
        yield Live(server, invoker, app[TRACKER], host, int(port))
        invoker.release.set()


async def test_vanished_client_cancels_its_blocking_query_regression(live: Live) -> None:
    # aiohttp kept the handler of a client that left until its wait expired
    # (minutes): 3 tasks on the client agent, 2 on the server, an etcd watch.
    writers = []
    for _ in range(3):
        _, writer = await live.send(_get("/v1/catalog/nodes?index=5&wait=5m"))
        writers.append(writer)
    await _poll(lambda: live.invoker.parked == 3, "three blocking queries parked")
    assert sum(live.tracker.blocking.values()) == 3
    for writer in writers:
        writer.close()
    await _poll(lambda: live.invoker.cancelled == 3, "handlers cancelled on disconnect", limit=5)
    await _poll(lambda: not live.tracker.blocking, "blocking-query count back to zero")
    await _poll(lambda: not live.tracker.connections, "connection count back to zero")


async def test_blocking_queries_over_the_per_client_cap_get_429_at_once(live: Live) -> None:
    held = [await live.send(_get("/v1/catalog/nodes?index=5")) for _ in range(3)]
    await _poll(lambda: live.invoker.parked == 3, "three blocking queries parked")
    reader, writer = await live.send(_get("/v1/catalog/nodes?index=5", "Connection: close\r\n"))
    answer = await _read_all(reader)
    assert answer.startswith(b"HTTP/1.1 429"), answer
    assert b"Too many concurrent blocking queries" in answer
    writer.close()
    # A non-blocking read from the same client is still served.
    reader, writer = await live.send(_get("/v1/catalog/nodes", "Connection: close\r\n"))
    assert (await _read_all(reader)).startswith(b"HTTP/1.1 200")
    writer.close()
    for _, w in held:
        w.close()


async def test_connections_over_http_max_conns_per_client_get_429(live: Live) -> None:
    held = [await live.connect() for _ in range(6)]
    await _poll(lambda: sum(live.tracker.connections.values()) == 6, "six connections counted")
    reader, writer = await live.connect()
    answer = await _read_all(reader)
    assert answer.startswith(b"HTTP/1.1 429 Too Many Requests"), answer
    assert answer.endswith(TOO_MANY_CONNECTIONS.encode())
    writer.close()
    held[0][1].close()
    await _poll(lambda: sum(live.tracker.connections.values()) == 5, "a slot freed")
    reader, writer = await live.send(_get("/v1/status/leader", "Connection: close\r\n"))
    assert (await _read_all(reader)).startswith(b"HTTP/1.1 200")
    writer.close()
    for _, w in held[1:]:
        w.close()


async def test_wait_is_capped_at_max_query_time(live: Live) -> None:
    live.invoker.release.set()
    reader, writer = await live.send(
        _get("/v1/catalog/nodes?index=5&wait=10m", "Connection: close\r\n")
    )
    assert (await _read_all(reader)).startswith(b"HTTP/1.1 200")
    writer.close()
    opts = live.invoker.last("ListNodes").options  # type: ignore[attr-defined]
    assert opts.max_wait.seconds == 60


async def test_token_header_with_invalid_utf8_is_not_a_500_regression(live: Live) -> None:
    # aiohttp decodes header bytes with surrogateescape: b"\xff" arrives as "\udcff",
    # which protobuf cannot encode.
    reader, writer = await live.send(
        b"GET /v1/catalog/nodes HTTP/1.1\r\nHost: x\r\nX-Consul-Token: t\xff\r\n"
        b"Connection: close\r\n\r\n"
    )
    assert (await _read_all(reader)).startswith(b"HTTP/1.1 200")
    writer.close()
    assert live.invoker.last("ListNodes").options.token == "t\ufffd"  # type: ignore[attr-defined]


async def test_raw_invalid_utf8_in_path_is_not_a_500_regression(live: Live) -> None:
    for path in (b"/v1/kv/\xff\xfe", b"/v1/catalog/service/\xed\xa0\x80", b"/v1/event/fire/\xff"):
        reader, writer = await live.send(
            b"PUT "
            + path
            + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )
        answer = await _read_all(reader)
        writer.close()
        status = int(answer.split(b" ", 2)[1])
        assert status < 500, answer


async def test_write_whose_client_left_still_completes(live: Live) -> None:
    # Handler cancellation is for reads: a write half done would leave the
    # agent and the servers out of step.
    _, writer = await live.send(
        b"PUT /v1/kv/slow-write HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nv"
    )
    await _poll(lambda: live.invoker.parked == 1, "the write is in flight")
    writer.close()
    await _poll(lambda: not live.tracker.connections, "the client is gone")
    live.invoker.release.set()
    await _poll(lambda: "slow-write" in live.invoker.kv, "the write completed")
    await _poll(lambda: not live.tracker.shielded, "no shielded write left")
