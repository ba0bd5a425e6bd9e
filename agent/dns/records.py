"""DNS records as the handler builds them, and a message rendered from them.

A :class:`Rec` is one resource record (owner name, TTL, rdata). Consul's
answers are lists of single records (it trims answers one by one), so the
handler keeps lists and renders the wire message once at the end.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.CNAME
import dns.rdtypes.ANY.NS
import dns.rdtypes.ANY.PTR
import dns.rdtypes.ANY.SOA
import dns.rdtypes.ANY.TXT
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.rdtypes.IN.SRV
import dns.rrset

__all__ = ["Rec", "a_record", "cname", "ip_of", "ns", "ptr", "render", "soa", "srv", "txt"]

IN = dns.rdataclass.IN
T = dns.rdatatype


@dataclass(frozen=True, slots=True)
class Rec:
    name: dns.name.Name
    ttl: int
    rdata: dns.rdata.Rdata

    @property
    def rdtype(self) -> int:
        return int(self.rdata.rdtype)

    def key(self) -> str:
        return f"{self.name.to_text().lower()} {self.rdtype} {self.rdata.to_text()}"


def ip_of(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def a_record(
    qtype: int, name: dns.name.Name, ip: ipaddress.IPv4Address | ipaddress.IPv6Address, ttl: int
) -> Rec | None:
    """Consul's makeARecord: an A or AAAA for ``ip`` when the asked type wants one."""
    if isinstance(ip, ipaddress.IPv4Address):
        if qtype in (T.SRV, T.A, T.ANY, T.NS, T.TXT):
            return Rec(name, ttl, dns.rdtypes.IN.A.A(IN, T.A, str(ip)))
        return None
    if qtype in (T.SRV, T.AAAA, T.ANY, T.NS, T.TXT):
        return Rec(name, ttl, dns.rdtypes.IN.AAAA.AAAA(IN, T.AAAA, str(ip)))
    return None


def cname(name: dns.name.Name, target: str, ttl: int) -> Rec:
    return Rec(name, ttl, dns.rdtypes.ANY.CNAME.CNAME(IN, T.CNAME, dns.name.from_text(target)))


def srv(name: dns.name.Name, ttl: int, weight: int, port: int, target: str) -> Rec:
    rdata = dns.rdtypes.IN.SRV.SRV(
        IN, T.SRV, 1, max(0, min(weight, 65535)), port & 0xFFFF, dns.name.from_text(target)
    )
    return Rec(name, ttl, rdata)


def txt(name: dns.name.Name, ttl: int, text: str) -> Rec:
    return Rec(name, ttl, dns.rdtypes.ANY.TXT.TXT(IN, T.TXT, [text.encode()[:255]]))


def ns(name: dns.name.Name, ttl: int, target: str) -> Rec:
    return Rec(name, ttl, dns.rdtypes.ANY.NS.NS(IN, T.NS, dns.name.from_text(target)))


def ptr(name: dns.name.Name, target: str) -> Rec:
    return Rec(name, 0, dns.rdtypes.ANY.PTR.PTR(IN, T.PTR, dns.name.from_text(target)))


def soa(
    domain: str, serial: int, refresh: int, retry: int, expire: int, min_ttl: int
) -> Rec:
    rdata = dns.rdtypes.ANY.SOA.SOA(
        IN,
        T.SOA,
        dns.name.from_text("ns." + domain),
        dns.name.from_text("hostmaster." + domain),
        serial & 0xFFFFFFFF,
        refresh,
        retry,
        expire,
        min_ttl,
    )
    return Rec(dns.name.from_text(domain), min_ttl, rdata)


def render(
    query: dns.message.Message,
    *,
    rcode: int,
    answer: list[Rec],
    authority: list[Rec],
    extra: list[Rec],
    aa: bool,
    ra: bool,
    truncated: bool = False,
) -> bytes:
    """The reply to ``query`` (ID, question, RD, EDNS echoed) with these sections."""
    msg = dns.message.Message(id=query.id)
    flags = dns.flags.QR | (query.flags & dns.flags.RD)
    if aa:
        flags |= dns.flags.AA
    if ra:
        flags |= dns.flags.RA
    if truncated:
        flags |= dns.flags.TC
    msg.flags = flags
    msg.set_opcode(query.opcode())
    msg.set_rcode(dns.rcode.Rcode.make(rcode))
    msg.question = list(query.question)
    if query.edns >= 0:
        msg.use_edns(0, payload=max(512, query.payload))
    sections = ((msg.answer, answer), (msg.authority, authority), (msg.additional, extra))
    for section, recs in sections:
        # Consecutive records of one name, type and TTL share an RRset (the
        # wire is the same: one RR per rdata), which renders much faster.
        last: dns.rrset.RRset | None = None
        for rec in recs:
            rdtype = rec.rdata.rdtype
            same = last is not None and last.rdtype == rdtype and last.ttl == rec.ttl
            if last is None or not same or last.name != rec.name:
                last = dns.rrset.RRset(rec.name, IN, rdtype)
                last.update_ttl(rec.ttl)
                section.append(last)
            last.add(rec.rdata)
    return bytes(msg.to_wire())
