"""The client agent's RPC path: forward to a local server, fail over, retry when safe."""

from __future__ import annotations

from agent.client.client import Client, ClientStats, RPCPool, ServerRouter
from agent.client.ratelimit import TokenBucket

__all__ = ["Client", "ClientStats", "RPCPool", "ServerRouter", "TokenBucket"]
