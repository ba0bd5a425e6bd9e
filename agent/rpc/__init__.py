"""What the client agent knows about the RPCs it forwards."""

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
