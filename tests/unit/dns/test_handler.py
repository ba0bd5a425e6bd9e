"""DNSHandler against a fake read path: Consul's names, records, limits and codes."""

from __future__ import annotations

import random
import struct

import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import pytest

from agent.dns.config import dns_config
from agent.dns.handler import DNSHandler
from agent.errors import NoServers
from generated.consul.query.v1 import query_pb2 as qypb
from tests.unit.dns.fakes import CRITICAL, WARNING, FakeReads, entry

T = dns.rdatatype


def handler(reads: FakeReads, **raw: object) -> DNSHandler:
    top = {k: raw.pop(k) for k in ("domain", "alt_domain", "recursors") if k in raw}
    cfg = dns_config(raw, **top)  # type: ignore[arg-type]
    return DNSHandler(
        cfg, reads, datacenter="dc1", node_name="agent-1", rng=random.Random(7), clock=lambda: 1e9
    )


async def ask(
    h: DNSHandler,
    name: str,
    rdtype: str = "A",
    *,
    tcp: bool = False,
    edns: int = -1,
    payload: int = 1232,
) -> dns.message.Message:
    q = dns.message.make_query(name, rdtype, use_edns=edns if edns >= 0 else False, payload=payload)
    reply = await h.handle(q.to_wire(), tcp=tcp)
    assert reply is not None
    return dns.message.from_wire(reply.wire)


def answers(msg: dns.message.Message, rdtype: int | None = None) -> list[str]:
    return sorted(
        rd.to_text() for rrset in msg.answer if rdtype in (None, rrset.rdtype) for rd in rrset
    )


@pytest.fixture
def reads() -> FakeReads:
    r = FakeReads()
    r.add(entry("n1", "10.0.0.1"))
    r.add(entry("n2", "10.0.0.2", tags=("primary",)))
    r.add(entry("n3", "10.0.0.3", status=CRITICAL))
    r.add(entry("n4", "10.0.0.4", status=WARNING))
    return r


async def test_a_records_leave_out_critical_instances(reads: FakeReads) -> None:
    msg = await ask(handler(reads), "web.service.consul.")
    assert msg.rcode() == dns.rcode.NOERROR
    assert msg.flags & dns.flags.AA and not msg.flags & dns.flags.RA
    assert answers(msg) == ["10.0.0.1", "10.0.0.2", "10.0.0.4"]


async def test_only_passing_also_leaves_out_warning(reads: FakeReads) -> None:
    msg = await ask(handler(reads, only_passing=True), "web.service.consul.")
    assert answers(msg) == ["10.0.0.1", "10.0.0.2"]


async def test_tag_and_rfc2782_names(reads: FakeReads) -> None:
    h = handler(reads)
    assert answers(await ask(h, "primary.web.service.consul.")) == ["10.0.0.2"]
    srv = await ask(h, "_web._primary.service.consul.", "SRV")
    assert [rd.target.to_text() for rrset in srv.answer for rd in rrset] == ["n2.node.dc1.consul."]
    every = await ask(h, "_web._tcp.service.dc1.consul.", "SRV")
    assert len(answers(every)) == 3


async def test_srv_targets_weights_and_additional_records() -> None:
    r = FakeReads()
    r.add(entry("n1", "10.0.0.1", port=8080, weights=(10, 1)))
    r.add(entry("n2", "10.0.0.2", port=8081, service_address="192.168.1.5", weights=(3, 1)))
    msg = await ask(handler(r), "web.service.consul.", "SRV")
    srv = {rd.target.to_text(): (rd.weight, rd.port) for rrset in msg.answer for rd in rrset}
    assert srv == {"n1.node.dc1.consul.": (10, 8080), "c0a80105.addr.dc1.consul.": (3, 8081)}
    extra = {rrset.name.to_text(): rrset[0].to_text() for rrset in msg.additional}
    assert extra == {"n1.node.dc1.consul.": "10.0.0.1", "c0a80105.addr.dc1.consul.": "192.168.1.5"}


async def test_unknown_service_is_nxdomain_with_soa(reads: FakeReads) -> None:
    msg = await ask(handler(reads), "nope.service.consul.")
    assert msg.rcode() == dns.rcode.NXDOMAIN
    assert [r.rdtype for r in msg.authority] == [T.SOA]
    soa = msg.authority[0][0]
    assert soa.mname.to_text() == "ns.consul." and soa.rname.to_text() == "hostmaster.consul."
    assert soa.serial == 1_000_000_000


async def test_known_name_without_records_of_the_type_is_nodata(reads: FakeReads) -> None:
    msg = await ask(handler(reads), "web.service.consul.", "AAAA")
    assert msg.rcode() == dns.rcode.NOERROR and not msg.answer
    assert [r.rdtype for r in msg.authority] == [T.SOA]
    unknown_type = await ask(handler(reads), "web.service.consul.", "TYPE65280")
    assert unknown_type.rcode() == dns.rcode.NOERROR and not unknown_type.answer


async def test_unknown_datacenter_is_nxdomain_and_no_server_is_servfail(reads: FakeReads) -> None:
    h = handler(reads)
    assert (await ask(h, "web.service.dc9.consul.")).rcode() == dns.rcode.NXDOMAIN
    reads.fail = NoServers()
    msg = await ask(h, "web.service.consul.")
    assert msg.rcode() == dns.rcode.SERVFAIL and not msg.answer


async def test_udp_answer_limit_edns_and_tcp() -> None:
    r = FakeReads()
    for i in range(20):
        r.add(entry(f"n{i}", f"10.0.1.{i}"))
    h = handler(r)
    assert len(answers(await ask(h, "web.service.consul."))) == 3
    plain = await ask(h, "web.service.consul.")
    assert not plain.flags & dns.flags.TC
    assert len(answers(await ask(h, "web.service.consul.", edns=0, payload=4096))) == 20
    assert len(answers(await ask(h, "web.service.consul.", tcp=True))) == 20
    truncating = handler(r, enable_truncate=True, udp_answer_limit=5)
    cut = await ask(truncating, "web.service.consul.")
    assert len(answers(cut)) == 5 and cut.flags & dns.flags.TC


async def test_udp_reply_fits_512_bytes_without_edns() -> None:
    r = FakeReads()
    for i in range(30):
        r.add(entry(f"node-with-a-rather-long-name-{i:02d}", f"10.0.2.{i}"))
    msg = await ask(handler(r, udp_answer_limit=8), "web.service.consul.", "SRV")
    assert 1 <= len(msg.answer) <= 8
    assert len(msg.to_wire()) <= 512
    # Every SRV target still has its address in the additional section.
    targets = {rd.target for rrset in msg.answer for rd in rrset}
    assert targets == {rrset.name for rrset in msg.additional}


async def test_edns_is_echoed(reads: FakeReads) -> None:
    msg = await ask(handler(reads), "web.service.consul.", edns=0, payload=1400)
    assert msg.edns == 0 and msg.payload == 1400
    assert (await ask(handler(reads), "web.service.consul.")).edns == -1


async def test_a_record_limit_and_service_ttl(reads: FakeReads) -> None:
    h = handler(reads, a_record_limit=1, service_ttl={"w*": "5s", "web": "30s", "*": "1s"})
    msg = await ask(h, "web.service.consul.")
    assert len(answers(msg)) == 1
    assert msg.answer[0].ttl == 30
    reads.add(entry("n9", "10.0.0.9", service="wiki"))
    assert (await ask(h, "wiki.service.consul.")).answer[0].ttl == 5
    reads.add(entry("n8", "10.0.0.8", service="db"))
    assert (await ask(h, "db.service.consul.")).answer[0].ttl == 1


async def test_node_lookup_with_dots_and_meta_txt() -> None:
    r = FakeReads()
    r.add(entry("web.rack1", "10.0.3.1", meta={"rack": "r1", "rfc1035-x": "raw"}))
    h = handler(r, node_ttl="10s")
    msg = await ask(h, "web.rack1.node.consul.")
    assert answers(msg) == ["10.0.3.1"] and msg.answer[0].ttl == 10
    assert sorted(rd.to_text() for rrset in msg.additional for rd in rrset) == [
        '"rack=r1"',
        '"raw"',
    ]
    txt = await ask(h, "web.rack1.node.dc1.consul.", "TXT")
    assert answers(txt) == ['"rack=r1"', '"raw"']
    assert (await ask(h, "nobody.node.consul.")).rcode() == dns.rcode.NXDOMAIN
    srv = await ask(h, "web.rack1.node.consul.", "SRV")
    assert srv.rcode() == dns.rcode.NOERROR and not srv.answer and not srv.authority


async def test_hostname_addresses_are_cnames() -> None:
    r = FakeReads()
    r.add(entry("n1", "10.0.0.1", service="ext", service_address="db.example.com"))
    msg = await ask(handler(r), "ext.service.consul.")
    assert [rrset.rdtype for rrset in msg.answer] == [T.CNAME]
    assert answers(msg) == ["db.example.com."]


async def test_addr_names() -> None:
    h = handler(FakeReads())
    assert answers(await ask(h, "0a000001.addr.dc1.consul.")) == ["10.0.0.1"]
    v6 = await ask(h, "20010db8000000000000000000000001.addr.consul.", "AAAA")
    assert answers(v6) == ["2001:db8::1"]
    assert (await ask(h, "zz.addr.consul.")).rcode() == dns.rcode.NXDOMAIN


async def test_soa_ns_and_axfr() -> None:
    r = FakeReads()
    r.add(entry("s1", "10.0.9.1", service="consul", port=8300))
    h = handler(r)
    ns = await ask(h, "consul.", "NS")
    assert answers(ns) == ["s1.node.dc1.consul."]
    assert [rrset[0].to_text() for rrset in ns.additional] == ["10.0.9.1"]
    soa = await ask(h, "consul.", "SOA")
    assert [rrset.rdtype for rrset in soa.answer] == [T.SOA] and soa.authority
    assert (await ask(h, "consul.", "AXFR", tcp=True)).rcode() == dns.rcode.NOTIMP


async def test_prepared_query_names_and_ttl(reads: FakeReads) -> None:
    reads.queries["geo"] = qypb.ExecuteResponse(
        service="web",
        nodes=[entry("n7", "10.0.7.1")],
        dns=qypb.DNSOptions(ttl="15s"),
        datacenter="dc2",
    )
    h = handler(reads)
    msg = await ask(h, "geo.query.consul.")
    assert answers(msg) == ["10.0.7.1"] and msg.answer[0].ttl == 15
    srv = await ask(h, "_geo._tcp.query.consul.", "SRV")
    assert [rd.target.to_text() for rrset in srv.answer for rd in rrset] == ["n7.node.dc2.consul."]
    assert (await ask(h, "missing.query.consul.")).rcode() == dns.rcode.NXDOMAIN


async def test_outside_the_domain_without_recursors_is_refused(reads: FakeReads) -> None:
    msg = await ask(handler(reads), "example.com.")
    assert msg.rcode() == dns.rcode.REFUSED


async def test_alt_domain(reads: FakeReads) -> None:
    h = handler(reads, domain="consul", alt_domain="example.internal")
    msg = await ask(h, "web.service.example.internal.", "SRV")
    assert msg.rcode() == dns.rcode.NOERROR
    assert all(
        rd.target.to_text().endswith(".dc1.example.internal.")
        for rrset in msg.answer
        for rd in rrset
    )


async def test_reads_are_stale_reads(reads: FakeReads) -> None:
    await ask(handler(reads), "web.service.consul.")
    assert reads.stale_flags == [True]


# ----- bad input -------------------------------------------------------------


def header(
    ident: int = 0x1234, flags: int = 0x0100, qd: int = 1, an: int = 0, ns: int = 0, ar: int = 0
) -> bytes:
    return struct.pack("!HHHHHH", ident, flags, qd, an, ns, ar)


def question(
    name: bytes = b"\x03web\x07service\x06consul\x00", qtype: int = 1, qclass: int = 1
) -> bytes:
    return name + struct.pack("!HH", qtype, qclass)


async def raw(h: DNSHandler, wire: bytes) -> dns.message.Message | None:
    reply = await h.handle(wire)
    if reply is None:
        return None
    assert len(reply.wire) >= 12
    ident, _flags = struct.unpack("!HH", reply.wire[:4])
    assert ident == struct.unpack("!H", wire[:2])[0]
    return dns.message.from_wire(reply.wire, question_only=True)


@pytest.mark.parametrize(
    ("wire", "rcode"),
    [
        (header(qd=0), dns.rcode.FORMERR),
        (header(qd=2) + question() + question(), dns.rcode.FORMERR),
        (header() + b"\x03web", dns.rcode.FORMERR),  # truncated question
        (header() + question(b"\x40" + b"a" * 64 + b"\x00"), dns.rcode.FORMERR),  # label > 63
        (header() + question((b"\x3f" + b"a" * 63) * 5 + b"\x00"), dns.rcode.FORMERR),  # > 255
        (header() + b"\xc0\x0c" + struct.pack("!HH", 1, 1), dns.rcode.FORMERR),  # pointer loop
        (header() + question() + b"junk", dns.rcode.FORMERR),
        (header(flags=0x2800) + question(), dns.rcode.NOTIMP),  # UPDATE
        (header(flags=0x1000) + question(), dns.rcode.NOTIMP),  # STATUS
        (header() + question(qclass=3), dns.rcode.REFUSED),  # CHAOS
        (header(an=3) + question(), dns.rcode.FORMERR),
    ],
)
async def test_bad_input_gets_a_code(reads: FakeReads, wire: bytes, rcode: int) -> None:
    msg = await raw(handler(reads), wire)
    assert msg is not None and msg.rcode() == rcode


async def test_short_messages_and_responses_are_dropped(reads: FakeReads) -> None:
    h = handler(reads)
    assert await h.handle(b"") is None
    assert await h.handle(b"\x12\x34\x01") is None
    assert await h.handle(header()[:11]) is None
    assert await h.handle(header(flags=0x8100) + question()) is None


async def test_fuzzed_messages_never_crash(reads: FakeReads) -> None:
    h = handler(reads)
    rng = random.Random(11)
    good = dns.message.make_query("web.service.consul.", "SRV", use_edns=0).to_wire()
    for _ in range(500):
        data = bytearray(good)
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        data = data[: rng.randint(0, len(data))]
        await h.handle(bytes(data))  # any reply or None; never an exception
