"""DNSServer on real loopback sockets with a fake read path: no stalls, TCP framing, cache."""

from __future__ import annotations

import asyncio
import random
import socket
import struct

import dns.asyncquery
import dns.message
import dns.rcode

from agent.dns.config import dns_config
from agent.dns.handler import DNSHandler
from agent.dns.server import DNSServer
from tests.unit.dns.fakes import FakeReads, entry


def server(reads: FakeReads, **raw: object) -> DNSServer:
    cfg = dns_config(raw)
    h = DNSHandler(cfg, reads, datacenter="dc1", node_name="a", rng=random.Random(1))
    return DNSServer(h, "127.0.0.1", 0, cfg)


def host_port(s: DNSServer) -> tuple[str, int]:
    host, _, port = s.address.rpartition(":")
    return host, int(port)


async def test_a_slow_read_does_not_stall_other_queries() -> None:
    reads = FakeReads()
    reads.add(entry("n1", "10.0.0.1", service="fast"))
    reads.add(entry("n2", "10.0.0.2", service="slow"))
    reads.gate["slow"] = asyncio.Event()
    async with server(reads) as s:
        host, port = host_port(s)
        slow = asyncio.create_task(
            dns.asyncquery.udp(
                dns.message.make_query("slow.service.consul.", "A"), host, port=port, timeout=10
            )
        )
        for _ in range(20):
            fast = await dns.asyncquery.udp(
                dns.message.make_query("fast.service.consul.", "A"), host, port=port, timeout=5
            )
            assert fast.answer[0][0].to_text() == "10.0.0.1"
        assert not slow.done()
        reads.gate["slow"].set()
        assert (await slow).answer[0][0].to_text() == "10.0.0.2"


async def test_tcp_carries_several_messages_and_garbage_closes_nothing_else() -> None:
    reads = FakeReads()
    reads.add(entry("n1", "10.0.0.1"))
    async with server(reads) as s:
        host, port = host_port(s)
        reader, writer = await asyncio.open_connection(host, port)
        for ident in (1, 2, 3):
            q = dns.message.make_query("web.service.consul.", "A", id=ident).to_wire()
            writer.write(struct.pack("!H", len(q)) + q)
            await writer.drain()
            (size,) = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), 5))
            msg = dns.message.from_wire(await asyncio.wait_for(reader.readexactly(size), 5))
            assert msg.id == ident and msg.answer
        writer.write(struct.pack("!H", 5) + b"\x00\x07abc")  # too short: dropped, no reply
        q = dns.message.make_query("web.service.consul.", "A", id=9).to_wire()
        writer.write(struct.pack("!H", len(q)) + q)
        await writer.drain()
        (size,) = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), 5))
        assert dns.message.from_wire(await reader.readexactly(size)).id == 9
        writer.close()
        # Raw UDP garbage does not stop the listener.
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.sendto(b"\xff" * 3, (host, port))
        sock.close()
        again = await dns.asyncquery.udp(
            dns.message.make_query("web.service.consul.", "A"), host, port=port, timeout=5
        )
        assert again.rcode() == dns.rcode.NOERROR


async def test_cache_answers_repeats_with_their_own_id() -> None:
    reads = FakeReads()
    reads.add(entry("n1", "10.0.0.1"))
    async with server(reads, use_cache=True, cache_max_age="1h") as s:
        host, port = host_port(s)
        for ident in (10, 11, 12):
            msg = await dns.asyncquery.udp(
                dns.message.make_query("web.service.consul.", "A", id=ident),
                host,
                port=port,
                timeout=5,
            )
            assert msg.id == ident and msg.answer[0][0].to_text() == "10.0.0.1"
        assert len(reads.stale_flags) == 1
        assert s.stats["cache_hits"] == 2


async def test_cached_multi_answer_replies_keep_varying_order() -> None:
    reads = FakeReads()
    for i in range(3):
        reads.add(entry(f"n{i}", f"10.0.0.{i}"))
    async with server(reads, use_cache=True, cache_max_age="1h") as s:
        host, port = host_port(s)
        orders = []
        for _ in range(12):
            msg = await dns.asyncquery.udp(
                dns.message.make_query("web.service.consul.", "A"), host, port=port, timeout=5
            )
            orders.append(tuple(rd.to_text() for rd in msg.answer[0]))
        assert len(set(orders)) > 1
        assert len(reads.stale_flags) == 4  # SHUFFLES renderings, then hits only
        assert s.stats["cache_hits"] == 11


async def test_expired_answers_are_refreshed_in_the_background() -> None:
    reads = FakeReads()
    reads.add(entry("n1", "10.0.0.1"))
    now = [0.0]
    cfg = dns_config({"use_cache": True, "cache_max_age": "10s"})
    h = DNSHandler(cfg, reads, datacenter="dc1", node_name="a", rng=random.Random(1))
    async with DNSServer(h, "127.0.0.1", 0, cfg, clock=lambda: now[0]) as s:
        host, port = host_port(s)

        async def ask() -> str:
            msg = await dns.asyncquery.udp(
                dns.message.make_query("web.service.consul.", "A"), host, port=port, timeout=5
            )
            return msg.answer[0][0].to_text() if msg.answer else ""

        assert await ask() == "10.0.0.1"
        reads.services[("dc1", "web")][0].node.address = "10.0.0.9"
        now[0] = 11.0  # expired: the stale answer is served, one refresh starts
        assert await ask() == "10.0.0.1"
        for _ in range(50):
            if await ask() == "10.0.0.9":
                break
            await asyncio.sleep(0.01)
        assert await ask() == "10.0.0.9"
        assert len(reads.stale_flags) == 2
        now[0] = 100.0  # long past expiry: a plain miss
        reads.services[("dc1", "web")][0].node.address = "10.0.0.7"
        assert await ask() == "10.0.0.7"


async def test_without_cache_every_query_reads() -> None:
    reads = FakeReads()
    reads.add(entry("n1", "10.0.0.1"))
    async with server(reads) as s:
        host, port = host_port(s)
        for _ in range(3):
            await dns.asyncquery.udp(
                dns.message.make_query("web.service.consul.", "A"), host, port=port, timeout=5
            )
        assert len(reads.stale_flags) == 3


async def test_a_failing_request_task_does_not_cancel_the_owner() -> None:
    # Regression: an exception escaping a request task made the TaskGroup
    # cancel the task that started the server (the agent's main task).
    reads = FakeReads()
    reads.add(entry("n1", "10.0.0.1"))
    async with server(reads) as s:

        async def boom() -> None:
            raise RuntimeError("boom")

        assert s._spawn(boom())
        for _ in range(10):
            await asyncio.sleep(0)
        host, port = host_port(s)
        msg = await dns.asyncquery.udp(
            dns.message.make_query("web.service.consul.", "A"), host, port=port, timeout=5
        )
        assert msg.answer
    assert not asyncio.current_task().cancelling()  # type: ignore[union-attr]
