"""Names outside the domain go to the recursors; SERVFAIL (with RA) when none answers."""

from __future__ import annotations

import asyncio
import random

import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import dns.rrset

from agent.dns.config import dns_config
from agent.dns.handler import DNSHandler
from agent.dns.recursor import Recursors
from agent.dns.server import DNSServer
from tests.support.etcd import free_port
from tests.unit.dns.fakes import FakeReads, entry


class Upstream(asyncio.DatagramProtocol):
    """A recursor that knows one name; SERVFAIL when told to fail."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.asked = 0
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.asked += 1
        q = dns.message.from_wire(data)
        r = dns.message.make_response(q)
        if self.fail:
            r.set_rcode(dns.rcode.SERVFAIL)
        else:
            r.answer.append(dns.rrset.from_text(q.question[0].name, 60, "IN", "A", "192.0.2.7"))
        assert self.transport is not None
        self.transport.sendto(r.to_wire(), addr)


async def start_upstream(fail: bool = False) -> tuple[Upstream, asyncio.DatagramTransport, int]:
    loop = asyncio.get_running_loop()
    proto = Upstream(fail)
    transport, _ = await loop.create_datagram_endpoint(lambda: proto, local_addr=("127.0.0.1", 0))
    return proto, transport, transport.get_extra_info("sockname")[1]


def dns_server(recursors: list[str]) -> DNSServer:
    cfg = dns_config({"recursor_timeout": "1s"}, recursors=tuple(recursors))
    reads = FakeReads()
    reads.add(entry("n1", "10.0.0.1"))
    h = DNSHandler(
        cfg, reads, datacenter="dc1", node_name="a", recursors=Recursors(cfg), rng=random.Random(3)
    )
    return DNSServer(h, "127.0.0.1", 0, cfg)


async def test_forward_skipping_a_failing_recursor() -> None:
    bad, bad_t, bad_port = await start_upstream(fail=True)
    good, good_t, good_port = await start_upstream()
    dead = free_port()
    try:
        async with dns_server(
            [f"127.0.0.1:{dead}", f"127.0.0.1:{bad_port}", f"127.0.0.1:{good_port}"]
        ) as s:
            host, _, port = s.address.rpartition(":")
            q = dns.message.make_query("example.org.", "A")
            r = await dns.asyncquery.udp(q, host, port=int(port), timeout=10)
            assert r.rcode() == dns.rcode.NOERROR and r.id == q.id
            assert r.answer[0][0].to_text() == "192.0.2.7"
            assert bad.asked == 1 and good.asked == 1
            # The domain is still ours, with RA set now that recursors exist.
            mine = await dns.asyncquery.udp(
                dns.message.make_query("web.service.consul.", "A"), host, port=int(port), timeout=5
            )
            assert mine.flags & dns.flags.RA and mine.answer[0][0].to_text() == "10.0.0.1"
    finally:
        bad_t.close()
        good_t.close()


async def test_all_recursors_failing_is_servfail() -> None:
    _, bad_t, bad_port = await start_upstream(fail=True)
    try:
        async with dns_server([f"127.0.0.1:{bad_port}"]) as s:
            host, _, port = s.address.rpartition(":")
            r = await dns.asyncquery.udp(
                dns.message.make_query("example.org.", "A"), host, port=int(port), timeout=10
            )
            assert r.rcode() == dns.rcode.SERVFAIL and r.flags & dns.flags.RA
    finally:
        bad_t.close()


def test_bad_dns_settings_fail_at_startup() -> None:
    import pytest

    from agent.cli import build_config, parser
    from agent.errors import InvalidArgument

    with pytest.raises(InvalidArgument, match="Invalid recursor address"):
        build_config(parser().parse_args(["agent", "--dev", "--recursor", "127.0.0.1:notaport"]))
