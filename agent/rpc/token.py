"""The ACL token of the call being served, for code that sees only the request.

The gRPC handlers set ``request_token`` from the ``x-consul-token`` metadata of
each call, the HTTP API from ``X-Consul-Token`` / ``Authorization: Bearer`` /
``?token=``; each call runs in its own task, so the value is that call's. A
request's own token field, when set, takes precedence (``agent.acl.enforce``).
"""

from __future__ import annotations

from contextvars import ContextVar

__all__ = ["TOKEN_METADATA", "request_token"]

#: gRPC metadata key of the token (Consul's).
TOKEN_METADATA = "x-consul-token"

request_token: ContextVar[str] = ContextVar("consul_request_token", default="")
