"""Consul's DNS interface: names, records, limits and codes of ``agent/dns.go``."""

from __future__ import annotations

from agent.dns.backend import DiscoveryReads, InvokerReads, RPCInvoker
from agent.dns.config import DNSConfig, dns_config, parse_addr
from agent.dns.handler import DNSHandler, Reply
from agent.dns.recursor import Recursors
from agent.dns.serve import agent_dns, serve_dns
from agent.dns.server import DNSServer

__all__ = [
    "DNSConfig",
    "DNSHandler",
    "DNSServer",
    "DiscoveryReads",
    "InvokerReads",
    "RPCInvoker",
    "Recursors",
    "Reply",
    "agent_dns",
    "dns_config",
    "parse_addr",
    "serve_dns",
]
