"""One call that builds an agent's DNS server from its settings (the agents' wiring)."""

from __future__ import annotations

from agent.config import AgentConfig
from agent.dns.backend import InvokerReads, RPCInvoker
from agent.dns.config import DNSConfig, dns_config, parse_addr
from agent.dns.handler import DNSHandler
from agent.dns.recursor import Recursors
from agent.dns.server import DNSServer

__all__ = ["agent_dns", "serve_dns"]


def serve_dns(
    address: str, config: DNSConfig, invoker: RPCInvoker, *, datacenter: str, node_name: str
) -> DNSServer | None:
    """A DNSServer on ``address`` (``host:port``; port -1 disables DNS: None)."""
    host, port = parse_addr(address, 8600)
    if port < 0:
        return None
    reads = InvokerReads(invoker, allow_stale=config.allow_stale, max_stale=config.max_stale)
    handler = DNSHandler(
        config,
        reads,
        datacenter=datacenter,
        node_name=node_name,
        recursors=Recursors(config) if config.recursors else None,
    )
    return DNSServer(handler, host, port, config)


def agent_dns(config: AgentConfig, invoker: RPCInvoker) -> DNSServer | None:
    """The DNS server an agent with ``config`` runs (None when ``dns_addr`` disables it)."""
    settings = dns_config(
        config.dns_config,
        domain=config.domain,
        alt_domain=config.alt_domain,
        recursors=config.recursors,
    )
    return serve_dns(
        config.dns_addr,
        settings,
        invoker,
        datacenter=config.datacenter,
        node_name=config.node_name,
    )
