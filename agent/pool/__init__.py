"""The connection pool: one shared gRPC channel per server address."""

from __future__ import annotations

from agent.pool.failure import is_transport_failure
from agent.pool.pool import (
    CHANNEL_OPTIONS,
    SERVER_KEEPALIVE_OPTIONS,
    ChannelSecurity,
    ConnectFailed,
    ConnPool,
    PoolStats,
)

__all__ = [
    "CHANNEL_OPTIONS",
    "SERVER_KEEPALIVE_OPTIONS",
    "ChannelSecurity",
    "ConnPool",
    "ConnectFailed",
    "PoolStats",
    "is_transport_failure",
]
