"""Forwarding names outside the domain to the configured recursors.

As Consul's ``handleRecurse``: the query goes to each recursor in turn
(``sequential``, or a random order with ``random``), over the client's
transport, with ``recursor_timeout`` (2 s) per try; an answer other than
NOERROR/NXDOMAIN moves on to the next; the first good answer is passed
through; when every recursor fails the client gets SERVFAIL with RA set.
"""

from __future__ import annotations

import asyncio
import logging
import random

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype

from agent.dns import records as rr
from agent.dns.config import DNSConfig, parse_addr

__all__ = ["Recursors"]

logger = logging.getLogger(__name__)


class Recursors:
    def __init__(self, config: DNSConfig, rng: random.Random | None = None) -> None:
        self.config = config
        self.addrs = [parse_addr(r) for r in config.recursors]
        self.rng = rng or random.Random()

    def _order(self) -> list[tuple[str, int]]:
        order = list(self.addrs)
        if self.config.recursor_strategy == "random":
            self.rng.shuffle(order)
        return order

    async def _exchange(
        self, query: dns.message.Message, addr: tuple[str, int], tcp: bool
    ) -> dns.message.Message:
        timeout = self.config.recursor_timeout
        if tcp:
            return await dns.asyncquery.tcp(query, addr[0], port=addr[1], timeout=timeout)
        return await dns.asyncquery.udp(query, addr[0], port=addr[1], timeout=timeout)

    async def forward(self, query: dns.message.Message, wire: bytes, tcp: bool) -> bytes:
        q = query.question[0]
        for addr in self._order():
            try:
                answer = await asyncio.wait_for(
                    self._exchange(query, addr, tcp), self.config.recursor_timeout + 0.5
                )
            except (dns.exception.DNSException, OSError, TimeoutError) as exc:
                logger.warning("dns: recurse failed recursor=%s:%d error=%r", *addr, exc)
                continue
            if answer.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
                logger.debug("dns: recursor answered rcode=%s", dns.rcode.to_text(answer.rcode()))
                continue
            answer.id = query.id
            return bytes(answer.to_wire())
        logger.error("dns: all recursors failed for name=%s", q.name)
        reply = rr.render(
            query, rcode=dns.rcode.SERVFAIL, answer=[], authority=[], extra=[], aa=False, ra=True
        )
        return reply

    async def resolve_a(self, name: dns.name.Name) -> list[rr.Rec]:
        """The A records of ``name`` from the first recursor that answers."""
        query = dns.message.make_query(name, dns.rdatatype.A)
        for addr in self._order():
            try:
                answer = await asyncio.wait_for(
                    self._exchange(query, addr, False), self.config.recursor_timeout + 0.5
                )
            except (dns.exception.DNSException, OSError, TimeoutError) as exc:
                logger.warning("dns: cname recurse failed name=%s error=%r", name, exc)
                continue
            return [rr.Rec(rrset.name, rrset.ttl, rd) for rrset in answer.answer for rd in rrset]
        return []


