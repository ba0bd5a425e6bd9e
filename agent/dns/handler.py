"""Answer one DNS message as Consul's ``agent/dns.go`` does.

Wire checks first (miekg/dns's defaults, which Consul serves behind): under
12 bytes, or a response, is dropped; an opcode other than QUERY is NOTIMP; not
exactly one question (or more than one answer/authority record, more than two
additional) is FORMERR; a message dnspython cannot parse (truncated, a label
over 63 or a name over 255 bytes, a compression loop, trailing junk) is
FORMERR. A class other than IN/ANY is REFUSED.

Then by name: under ``domain``/``alt_domain`` → :meth:`DNSHandler._query`;
under ``arpa.`` → PTR; anything else goes to the recursors, and with none
configured is REFUSED (Consul registers no handler for ``.`` then, and its DNS
mux refuses what matches no handler).

Names (labels before the domain, read right to left up to the first kind
label): ``[tag.]name.service[.dc]``, ``_name._tag[.service][.dc]`` for SRV
(``_tcp`` is no tag), ``node.name[.dc]`` (dots allowed in the node name),
``<hex>.addr[.dc]``, ``name.query[.dc]`` and ``_name._tcp.query[.dc]``; the
datacenter part is ``dc`` or ``dc.dc``. SOA and NS questions answer the zone;
AXFR is NOTIMP. An unknown name, service, node, datacenter or query is
NXDOMAIN with the SOA in authority; a known name without records of the asked
type is NOERROR with the SOA (node lookups of other types: empty NOERROR, as
Consul); a failed read is SERVFAIL. Every answer is authoritative; RA only
with recursors.

Limits: over UDP at most ``udp_answer_limit`` answers without EDNS, and the
message within 512 bytes (or the EDNS size); over TCP within 64 KiB. TC only
with ``enable_truncate``. Additional records follow the answers that remain.
"""

from __future__ import annotations

import binascii
import ipaddress
import logging
import random
import struct
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.IN.A
import dns.rdtypes.IN.AAAA
import dns.reversename

from agent.dns import records as rr
from agent.dns.backend import DiscoveryReads
from agent.dns.config import DNSConfig
from agent.dns.recursor import Recursors
from agent.durations import parse_duration
from agent.errors import ConsulError, NoPathToDatacenter, NotFound
from generated.consul.common.v1 import types_pb2 as pb
from generated.consul.query.v1 import query_pb2 as qypb

__all__ = ["DNSHandler", "Reply", "header_only"]

logger = logging.getLogger(__name__)

T = dns.rdatatype
R = dns.rcode
MAX_RECURSION = 3
MAX_RECURSE_RECORDS = 5
MAX_UDP_DATAGRAM = 65535 - 68
MAX_TCP = 65523
_KINDS = ("service", "connect", "virtual", "ingress", "node", "query", "addr")


class NameNotFound(Exception):
    """NXDOMAIN."""


class NoData(Exception):
    """NOERROR with the SOA: the name exists, no record of this type."""


@dataclass(frozen=True, slots=True)
class Reply:
    """A rendered answer and whether it may be reused for the same question."""

    wire: bytes
    cacheable: bool = False


@dataclass
class _Answer:
    answer: list[rr.Rec] = field(default_factory=list)
    extra: list[rr.Rec] = field(default_factory=list)


def header_only(wire: bytes, rcode: int) -> bytes:
    """A bare reply (ID, QR, opcode, ``rcode``) to a message we could not parse."""
    ident, flags = struct.unpack("!HH", wire[:4])
    opcode = flags & 0x7800
    return struct.pack("!HHHHHH", ident, 0x8000 | opcode | rcode, 0, 0, 0, 0)


class DNSHandler:
    """Turns one request's bytes into the reply's bytes."""

    def __init__(
        self,
        config: DNSConfig,
        reads: DiscoveryReads,
        *,
        datacenter: str,
        node_name: str,
        recursors: Recursors | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.reads = reads
        self.datacenter = datacenter
        self.node_name = node_name
        self.recursors = recursors
        self.rng = rng or random.Random()
        self.clock = clock
        self.domain = dns.name.from_text(config.domain)
        self.alt = dns.name.from_text(config.alt_domain) if config.alt_domain else None

    # ----- wire -----------------------------------------------------------

    async def handle(self, wire: bytes, *, tcp: bool = False, client_ip: str = "") -> Reply | None:
        if len(wire) < 12:
            return None
        flags, qd, an, ns, ar = struct.unpack("!HHHHH", wire[2:12])
        if flags & 0x8000:
            return None
        opcode = (flags >> 11) & 0xF
        if opcode != dns.opcode.QUERY:
            return Reply(header_only(wire, R.NOTIMP))
        if qd != 1 or an > 1 or ns > 1 or ar > 2:
            return Reply(header_only(wire, R.FORMERR))
        try:
            query = dns.message.from_wire(wire)
        except (dns.exception.DNSException, ValueError, UnicodeError, IndexError, struct.error):
            return Reply(header_only(wire, R.FORMERR))
        if not query.question:
            return Reply(header_only(wire, R.FORMERR))
        q = query.question[0]
        if q.rdclass not in (dns.rdataclass.IN, dns.rdataclass.ANY):
            return Reply(self._reply(query, R.REFUSED, _Answer(), aa=False))
        name = q.name
        if self._in_domain(name):
            return await self._handle_query(query, tcp)
        if name.is_subdomain(dns.name.from_text("arpa.")):
            return await self._handle_ptr(query, wire, tcp)
        if self.recursors is not None and self.config.recursors:
            return Reply(await self.recursors.forward(query, wire, tcp))
        return Reply(self._reply(query, R.REFUSED, _Answer(), aa=False))

    def _in_domain(self, name: dns.name.Name) -> bool:
        return name.is_subdomain(self.domain) or (
            self.alt is not None and name.is_subdomain(self.alt)
        )

    def _response_domain(self, name: dns.name.Name) -> str:
        longer_domain = name.is_subdomain(self.domain) and len(self.domain) > len(self.alt or ())
        if self.alt is not None and name.is_subdomain(self.alt) and not longer_domain:
            return self.config.alt_domain
        return self.config.domain

    def _reply(
        self,
        query: dns.message.Message,
        rcode: int,
        ans: _Answer,
        *,
        authority: list[rr.Rec] | None = None,
        aa: bool = True,
        truncated: bool = False,
    ) -> bytes:
        return rr.render(
            query,
            rcode=rcode,
            answer=ans.answer,
            authority=authority or [],
            extra=ans.extra,
            aa=aa,
            ra=bool(self.config.recursors),
            truncated=truncated,
        )

    def _soa(self, name: dns.name.Name) -> rr.Rec:
        c = self.config
        return rr.soa(
            self._response_domain(name),
            int(self.clock()),
            c.soa_refresh,
            c.soa_retry,
            c.soa_expire,
            c.soa_min_ttl,
        )

    # ----- the domain ------------------------------------------------------

    async def _handle_query(self, query: dns.message.Message, tcp: bool) -> Reply:
        q = query.question[0]
        ans = _Answer()
        authority: list[rr.Rec] = []
        rcode = R.NOERROR
        if q.rdtype == T.SOA:
            ns, glue = await self._nameservers(q.name)
            ans.answer.append(self._soa(q.name))
            authority, ans.extra = ns, glue
        elif q.rdtype == T.NS:
            ans.answer, ans.extra = await self._nameservers(q.name)
        elif q.rdtype in (T.AXFR, T.IXFR):
            rcode = R.NOTIMP
        else:
            try:
                await self._dispatch(q.name, q.rdtype, query, ans, MAX_RECURSION)
            except NameNotFound:
                rcode = R.NXDOMAIN
                ans = _Answer()
                authority = [self._soa(q.name)]
            except NoData:
                authority = [self._soa(q.name)]
            except (NotFound, NoPathToDatacenter):
                rcode = R.NXDOMAIN
                ans = _Answer()
                authority = [self._soa(q.name)]
            except ConsulError as exc:
                logger.warning("dns read failed name=%s error=%s", q.name, exc.message)
                rcode = R.SERVFAIL
                ans = _Answer()
        wire, trimmed = self._trim(query, rcode, ans, authority, tcp)
        if trimmed and self.config.enable_truncate:
            wire = self._reply(query, rcode, ans, authority=authority, truncated=True)
        return Reply(wire, cacheable=rcode in (R.NOERROR, R.NXDOMAIN) and q.rdtype != T.SOA)

    async def _nameservers(self, qname: dns.name.Name) -> tuple[list[rr.Rec], list[rr.Rec]]:
        try:
            servers = await self.reads.service_nodes(self.datacenter, "consul", "", stale=True)
        except ConsulError as exc:
            logger.warning("dns: unable to get the list of servers error=%s", exc.message)
            return [], []
        servers = _healthy(servers, False)
        self.rng.shuffle(servers)
        domain = self._response_domain(qname)
        zone = dns.name.from_text(domain)
        ttl = int(self.config.node_ttl)
        ns_recs: list[rr.Rec] = []
        extra: list[rr.Rec] = []
        for entry in servers:
            fqdn = f"{entry.node.name}.node.{entry.node.datacenter or self.datacenter}.{domain}"
            try:
                target = dns.name.from_text(fqdn.lower())
            except dns.exception.DNSException:
                continue
            ns_recs.append(rr.ns(zone, ttl, fqdn.lower()))
            extra += await self._node_records(entry.node, T.ANY, target, ttl, MAX_RECURSION)
            if len(ns_recs) >= 3:
                break
        return ns_recs, extra

    async def _dispatch(
        self,
        qname: dns.name.Name,
        qtype: int,
        query: dns.message.Message | None,
        ans: _Answer,
        level: int,
    ) -> None:
        domain = self._response_domain(qname)
        rel = qname.relativize(dns.name.from_text(domain))
        labels = [lbl.decode("utf-8", "replace").lower() for lbl in rel.labels]
        if rel == dns.name.empty:
            labels = []
        kind, parts, suffixes = "", [], []
        for i in range(len(labels) - 1, -1, -1):
            if labels[i] in _KINDS:
                kind, parts, suffixes = labels[i], labels[:i], labels[i + 1 :]
                break
            if qtype == T.SRV and labels[i].startswith("_"):
                kind, parts, suffixes = "service", labels[: i + 1], labels[i + 1 :]
                break
        if kind == "service":
            if not parts:
                raise NameNotFound
            dc = self._locality(suffixes)
            if len(parts) == 2 and parts[0].startswith("_") and parts[1].startswith("_"):
                tag = parts[1][1:]
                tag = "" if tag == "tcp" else tag
                service = parts[0][1:]
            else:
                tag = ".".join(parts[:-1])
                service = parts[-1]
            await self._service(qname, qtype, dc, service, tag, ans, level)
        elif kind == "node":
            if not parts:
                raise NameNotFound
            dc = self._locality(suffixes)
            await self._node(qname, qtype, dc, ".".join(parts), ans, level)
        elif kind == "query":
            if not parts or len(suffixes) > 1:
                raise NameNotFound
            dc = suffixes[0] if suffixes else self.datacenter
            if len(parts) >= 2 and parts[0].startswith("_") and parts[-1].startswith("_"):
                name = ".".join(parts[:-1])[1:]
            else:
                name = ".".join(parts)
            await self._prepared(qname, qtype, dc, name, query, ans, level)
        elif kind == "addr":
            if len(parts) != 1:
                raise NameNotFound
            self._addr(qname, qtype, parts[0], ans)
        else:
            raise NameNotFound

    def _locality(self, suffixes: list[str]) -> str:
        if not suffixes:
            return self.datacenter
        if len(suffixes) == 1:
            return suffixes[0]
        if len(suffixes) == 2 and suffixes[1] == "dc":
            return suffixes[0]
        raise NameNotFound

    def _addr(self, qname: dns.name.Name, qtype: int, hexed: str, ans: _Answer) -> None:
        try:
            raw = binascii.unhexlify(hexed)
        except (binascii.Error, ValueError):
            raise NameNotFound from None
        ttl = int(self.config.node_ttl)
        if len(raw) == 4:
            v4 = str(ipaddress.IPv4Address(raw))
            rec = rr.Rec(qname, ttl, dns.rdtypes.IN.A.A(rr.IN, T.A, v4))
            (ans.answer if qtype in (T.A, T.ANY) else ans.extra).append(rec)
        elif len(raw) == 16:
            v6 = str(ipaddress.IPv6Address(raw))
            rec = rr.Rec(qname, ttl, dns.rdtypes.IN.AAAA.AAAA(rr.IN, T.AAAA, v6))
            (ans.answer if qtype in (T.AAAA, T.ANY) else ans.extra).append(rec)
        else:
            raise NameNotFound

    # ----- nodes -----------------------------------------------------------

    async def _node(
        self, qname: dns.name.Name, qtype: int, dc: str, node_name: str, ans: _Answer, level: int
    ) -> None:
        if qtype not in (T.ANY, T.A, T.AAAA, T.TXT):
            return
        node = await self.reads.node(dc, node_name, stale=True)
        if node is None:
            raise NameNotFound
        ttl = int(self.config.node_ttl)
        if qtype != T.TXT:
            ans.answer += await self._node_records(node, qtype, qname, ttl, level)
        if self.config.node_meta_txt or qtype in (T.TXT, T.ANY):
            metas = _meta_txt(qname, node, ttl)
            if qtype in (T.TXT, T.ANY):
                ans.answer += metas
            else:
                ans.extra += metas

    async def _node_records(
        self, node: pb.Node, qtype: int, qname: dns.name.Name, ttl: int, level: int
    ) -> list[rr.Rec]:
        ip = rr.ip_of(self._translate(node.datacenter, node.address, node.tagged_addresses))
        if ip is None:
            target = node.address if node.address.endswith(".") else node.address + "."
            try:
                out = [rr.cname(qname, target, ttl)]
            except dns.exception.DNSException:
                return []
            return out + await self._resolve_cname(target, level)
        rec = rr.a_record(qtype, qname, ip, ttl)
        return [rec] if rec is not None else []

    def _translate(self, dc: str, address: str, tagged: Mapping[str, str]) -> str:
        """The WAN address of a node of another datacenter, when it has one."""
        if dc and dc != self.datacenter:
            wan = tagged.get("wan", "")
            if wan:
                return wan
        return address

    async def _resolve_cname(self, target: str, level: int) -> list[rr.Rec]:
        try:
            name = dns.name.from_text(target)
        except dns.exception.DNSException:
            return []
        if self._in_domain(name):
            if level < 1:
                logger.error("dns: infinite CNAME recursion for name=%s", target)
                return []
            inner = _Answer()
            try:
                await self._dispatch(name, T.ANY, None, inner, level - 1)
            except (NameNotFound, NoData, ConsulError):
                return []
            return inner.answer
        if self.recursors is not None and self.config.recursors:
            return await self.recursors.resolve_a(name)
        return []

    # ----- services --------------------------------------------------------

    async def _service(
        self,
        qname: dns.name.Name,
        qtype: int,
        dc: str,
        service: str,
        tag: str,
        ans: _Answer,
        level: int,
    ) -> None:
        entries = await self.reads.service_nodes(dc, service, tag, stale=True)
        entries = _healthy(entries, self.config.only_passing)
        if not entries:
            raise NameNotFound
        self.rng.shuffle(entries)
        ttl = int(self.config.ttl_for_service(service))
        await self._service_records(qname, qtype, dc, entries, ttl, ans, level)
        if not ans.answer:
            raise NoData

    async def _service_records(
        self,
        qname: dns.name.Name,
        qtype: int,
        dc: str,
        entries: list[pb.ServiceEntry],
        ttl: int,
        ans: _Answer,
        level: int,
    ) -> None:
        if qtype == T.SRV:
            seen: set[str] = set()
            domain = self._response_domain(qname)
            for e in entries:
                key = f"{e.node.name}:{e.service.address}:{e.service.port}"
                if key in seen:
                    continue
                seen.add(key)
                answers, extra = await self._instance(qname, qtype, dc, e, ttl, level)
                ans.answer += answers
                ans.extra += extra
                if self.config.node_meta_txt and e.node.meta:
                    target = dns.name.from_text(f"{e.node.name}.node.{dc}.{domain}".lower())
                    ans.extra += _meta_txt(target, e.node, ttl)
            return
        handled: set[str] = set()
        first_cname: list[rr.Rec] = []
        count = 0
        for e in entries:
            answers, _ = await self._instance(qname, qtype, dc, e, ttl, level)
            if not answers:
                continue
            key = answers[0].key()
            if key in handled:
                continue
            handled.add(key)
            if answers[0].rdtype == T.CNAME:
                if not first_cname:
                    first_cname = answers
                continue
            ans.answer += answers
            count += 1
            if count == self.config.a_record_limit:
                return
        if not ans.answer and first_cname:
            ans.answer = first_cname

    async def _instance(
        self, qname: dns.name.Name, qtype: int, dc: str, e: pb.ServiceEntry, ttl: int, level: int
    ) -> tuple[list[rr.Rec], list[rr.Rec]]:
        """Consul's makeNodeServiceRecords: (answers, additional) of one instance."""
        service_addr = e.service.address
        node_addr = self._translate(e.node.datacenter, e.node.address, e.node.tagged_addresses)
        if not service_addr and not node_addr:
            return [], []
        node_ip, service_ip = rr.ip_of(node_addr), rr.ip_of(service_addr)
        domain = self._response_domain(qname)
        if not service_addr and node_ip is not None:
            if node_addr != e.node.address:
                return self._from_ip(qname, qtype, dc, node_ip, e, ttl, domain)
            return self._from_node(qname, qtype, dc, node_ip, e, ttl, domain)
        if not service_addr:
            return await self._from_fqdn(qname, qtype, node_addr, e, ttl, level)
        if service_ip is not None:
            return self._from_ip(qname, qtype, dc, service_ip, e, ttl, domain)
        if _fqdn(service_addr) == qname.to_text().lower() and node_ip is not None:
            return self._from_node(qname, qtype, dc, node_ip, e, ttl, domain)
        return await self._from_fqdn(qname, qtype, service_addr, e, ttl, level)

    def _from_node(
        self,
        qname: dns.name.Name,
        qtype: int,
        dc: str,
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
        e: pb.ServiceEntry,
        ttl: int,
        domain: str,
    ) -> tuple[list[rr.Rec], list[rr.Rec]]:
        if qtype == T.SRV:
            target = f"{e.node.name}.node.{dc}.{domain}".lower()
            rec = rr.a_record(qtype, dns.name.from_text(target), ip, ttl)
            if rec is None:
                return [], []
            return [rr.srv(qname, ttl, _weight(e), e.service.port, target)], [rec]
        rec = rr.a_record(qtype, qname, ip, ttl)
        return ([rec] if rec is not None else []), []

    def _from_ip(
        self,
        qname: dns.name.Name,
        qtype: int,
        dc: str,
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
        e: pb.ServiceEntry,
        ttl: int,
        domain: str,
    ) -> tuple[list[rr.Rec], list[rr.Rec]]:
        if qtype == T.SRV:
            target = f"{ip.packed.hex()}.addr.{dc}.{domain}"
            rec = rr.a_record(qtype, dns.name.from_text(target), ip, ttl)
            if rec is None:
                return [], []
            return [rr.srv(qname, ttl, _weight(e), e.service.port, target)], [rec]
        rec = rr.a_record(qtype, qname, ip, ttl)
        return ([rec] if rec is not None else []), []

    async def _from_fqdn(
        self, qname: dns.name.Name, qtype: int, fqdn: str, e: pb.ServiceEntry, ttl: int, level: int
    ) -> tuple[list[rr.Rec], list[rr.Rec]]:
        target = _fqdn(fqdn)
        try:
            dns.name.from_text(target)
        except dns.exception.DNSException:
            return [], []
        more = await self._resolve_cname(target, level)
        additional = [
            rr.Rec(r.name, ttl, r.rdata) for r in more if r.rdtype in (T.CNAME, T.A, T.AAAA)
        ][:MAX_RECURSE_RECORDS]
        if qtype == T.SRV:
            return [rr.srv(qname, ttl, _weight(e), e.service.port, target)], additional
        return [rr.cname(qname, target, ttl), *additional], []

    # ----- prepared queries --------------------------------------------------

    async def _prepared(
        self,
        qname: dns.name.Name,
        qtype: int,
        dc: str,
        name: str,
        query: dns.message.Message | None,
        ans: _Answer,
        level: int,
    ) -> None:
        source = qypb.QuerySource(datacenter=self.datacenter, node=self.node_name)
        try:
            out = await self.reads.execute_query(dc, name, source, stale=True)
        except NotFound:
            raise NameNotFound from None
        ttl = 0
        if out.dns.ttl:
            try:
                ttl = int(parse_duration(out.dns.ttl))
            except ConsulError:
                logger.warning("dns: bad prepared query TTL ttl=%s query=%s", out.dns.ttl, name)
        else:
            ttl = int(self.config.ttl_for_service(out.service))
        if not out.nodes:
            raise NameNotFound
        nodes = list(out.nodes)
        await self._service_records(qname, qtype, out.datacenter or dc, nodes, ttl, ans, level)
        if not ans.answer:
            raise NoData

    # ----- PTR ---------------------------------------------------------------

    async def _handle_ptr(self, query: dns.message.Message, wire: bytes, tcp: bool) -> Reply:
        q = query.question[0]
        ans = _Answer()
        authority: list[rr.Rec] = []
        try:
            ip = str(dns.reversename.to_address(q.name))
        except (dns.exception.DNSException, ValueError):
            ip = ""
        if ip:
            try:
                for node in await self.reads.nodes(self.datacenter, stale=True):
                    if rr.ip_of(node.address) == rr.ip_of(ip):
                        target = f"{node.name}.node.{node.datacenter or self.datacenter}."
                        ans.answer.append(rr.ptr(q.name, (target + self.config.domain).lower()))
                        break
            except ConsulError as exc:
                logger.warning("dns: PTR lookup failed error=%s", exc.message)
        rcode = R.NOERROR
        if not ans.answer:
            if self.recursors is not None and self.config.recursors:
                return Reply(await self.recursors.forward(query, wire, tcp))
            rcode = R.NXDOMAIN
            authority = [self._soa(q.name)]
        return Reply(self._reply(query, rcode, ans, authority=authority), cacheable=True)

    # ----- trimming ------------------------------------------------------------

    def _trim(
        self,
        query: dns.message.Message,
        rcode: int,
        ans: _Answer,
        authority: list[rr.Rec],
        tcp: bool,
    ) -> tuple[bytes, bool]:
        """Consul's trimUDPResponse / trimTCPResponse: the rendered reply, and
        whether answers were dropped. Renders once when the reply fits."""
        before = len(ans.answer)
        q = query.question[0]
        if tcp:
            cap = 1024 if q.rdtype == T.SRV else 4096
            ans.answer = ans.answer[:cap]
            max_size = MAX_TCP
        else:
            max_size = 512
            if query.edns >= 0 and query.payload > max_size:
                max_size = min(query.payload, MAX_UDP_DATAGRAM)
            limit = min(8, self.config.udp_answer_limit)
            if max_size == 512 and len(ans.answer) > limit:
                ans.answer = ans.answer[:limit]
            max_size -= 8
        extra_all = list(ans.extra)
        if len(ans.answer) < before and extra_all:
            _sync_extra(ans, extra_all)
        wire = self._reply(query, rcode, ans, authority=authority)
        if len(ans.answer) <= 1 or len(wire) <= max_size:
            return wire, len(ans.answer) < before
        authority.clear()
        lo, hi = 1, len(ans.answer)
        answers = ans.answer
        while lo < hi:
            mid = (lo + hi + 1) // 2
            ans.answer = answers[:mid]
            if extra_all:
                _sync_extra(ans, extra_all)
            if len(self._reply(query, rcode, ans, authority=authority)) <= max_size:
                lo = mid
            else:
                hi = mid - 1
        ans.answer = answers[:lo]
        if extra_all:
            _sync_extra(ans, extra_all)
        return self._reply(query, rcode, ans, authority=authority), True


def _fqdn(name: str) -> str:
    name = name.lower()
    return name if name.endswith(".") else name + "."


def _healthy(entries: list[pb.ServiceEntry], only_passing: bool) -> list[pb.ServiceEntry]:
    """Consul's CheckServiceNodes.Filter: any critical check (or, with
    ``only_passing``, anything not passing) drops the instance."""
    out = []
    for e in entries:
        bad = False
        for c in e.checks:
            if c.status in (pb.HEALTH_STATUS_CRITICAL, pb.HEALTH_STATUS_MAINTENANCE) or (
                only_passing and c.status != pb.HEALTH_STATUS_PASSING
            ):
                bad = True
                break
        if not bad:
            out.append(e)
    return out


def _weight(e: pb.ServiceEntry) -> int:
    """Consul's findWeight: the Weights for the aggregate status of the instance's checks."""
    w = e.service.weights
    passing, warning = (w.passing, w.warning) if e.service.HasField("weights") else (1, 1)
    statuses = [c.status for c in e.checks if c.service_name in ("", e.service.name)]
    if any(s in (pb.HEALTH_STATUS_CRITICAL, pb.HEALTH_STATUS_MAINTENANCE) for s in statuses):
        return 0
    if any(s == pb.HEALTH_STATUS_WARNING for s in statuses):
        return warning
    return passing


def _rfc1464(key: str, value: str) -> str:
    key = key.replace("`", "``").replace("=", "`=")
    stripped = key.lstrip(" ")
    key = "` " * (len(key) - len(stripped)) + stripped
    stripped = key.rstrip(" ")
    key = stripped + "` " * (len(key) - len(stripped))
    return key + "=" + value.replace("`", "``")


def _meta_txt(qname: dns.name.Name, node: pb.Node, ttl: int) -> list[rr.Rec]:
    out = []
    for key, value in sorted(node.meta.items()):
        text = value if key.lower().startswith("rfc1035-") else _rfc1464(key, value)
        out.append(rr.txt(qname, ttl, text))
    return out


def _sync_extra(ans: _Answer, pool: list[rr.Rec]) -> None:
    """Consul's syncExtra: only the additional records the remaining SRV answers need."""
    index: dict[str, rr.Rec] = {}
    for rec in pool:
        index.setdefault(rec.name.to_text().lower(), rec)
    extra: list[rr.Rec] = []
    done: set[str] = set()
    for a in ans.answer:
        if a.rdtype != T.SRV:
            continue
        target = a.rdata.target.to_text().lower()  # type: ignore[attr-defined]
        while target not in done:
            done.add(target)
            found = index.get(target)
            if found is None:
                break
            extra.append(found)
            if found.rdtype != T.CNAME:
                break
            target = found.rdata.target.to_text().lower()  # type: ignore[attr-defined]
    ans.extra = extra

