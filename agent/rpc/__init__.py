"""Shared gRPC plumbing: the method table (``methods``), serving (``listen``,
``handlers``: binding, health and reflection, dispatch, per-agent RPC stats).

Only the method table is re-exported here: the pool and the client import it
without pulling in the serving side.
"""

from __future__ import annotations

from agent.rpc.methods import (
    CLIENT_FORWARDED_SERVICES,
    SERVER_SERVICES,
    MethodSpec,
    all_methods,
    method_spec,
    methods_of,
    request_datacenter,
    request_wait,
    with_datacenter,
)

__all__ = [
    "CLIENT_FORWARDED_SERVICES",
    "SERVER_SERVICES",
    "MethodSpec",
    "all_methods",
    "method_spec",
    "methods_of",
    "request_datacenter",
    "request_wait",
    "with_datacenter",
]
