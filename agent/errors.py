"""The error hierarchy of consul-grpc, and the one place it meets the wire.

::

    ConsulError                      500  INTERNAL          (Consul's text, as is)
    ├── InvalidArgument              400  INVALID_ARGUMENT  bad input
    ├── NotFound                     404  NOT_FOUND
    ├── PermissionDenied             403  PERMISSION_DENIED "Permission denied"
    │   └── ACLNotFound                   "ACL not found" (an unknown token secret)
    ├── ACLDisabled                  401  UNAUTHENTICATED   "ACL support disabled"
    ├── CASConflict                  200* ABORTED           a check-and-set lost
    ├── RateLimited                  429  RESOURCE_EXHAUSTED "RPC rate limit exceeded"
    ├── Unavailable                  500  UNAVAILABLE       retryable on a read
    │   ├── NoServers                     "No known Consul servers"
    │   ├── NoLeader                      "No cluster leader"
    │   └── RemoteDCUnreachable           "Remote DC has no server currently reachable"
    ├── NoPathToDatacenter           500  UNAVAILABLE       "No path to datacenter"
    ├── OperationRefused             500  FAILED_PRECONDITION Consul's refusal text (raft peers)
    └── StoreError                   500  UNAVAILABLE       the store did not answer

(*) the HTTP API answers a lost CAS with 200 ``false``, as Consul does.

Every error knows its gRPC status code and its HTTP status. ``from_rpc_error``
maps a gRPC error received from a server back into this hierarchy, so a client
agent re-raises what the server raised; ``abort`` sends one out.
"""

from __future__ import annotations

from typing import ClassVar, NoReturn

import grpc

__all__ = [
    "ACLDisabled",
    "ACLNotFound",
    "CASConflict",
    "ConsulError",
    "InvalidArgument",
    "NoLeader",
    "NoPathToDatacenter",
    "NoServers",
    "NotFound",
    "OperationRefused",
    "PermissionDenied",
    "RateLimited",
    "RemoteDCUnreachable",
    "StoreError",
    "Unavailable",
    "abort",
    "from_rpc_error",
]


class ConsulError(Exception):
    """Base of every error the agent reports to a caller."""

    grpc_code: ClassVar[grpc.StatusCode] = grpc.StatusCode.INTERNAL
    http_status: ClassVar[int] = 500
    default_message: ClassVar[str] = "Internal error"

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)


class InvalidArgument(ConsulError):
    """The request is malformed: a missing or oversized field, a bad value."""

    grpc_code = grpc.StatusCode.INVALID_ARGUMENT
    http_status = 400
    default_message = "Bad request"


class NotFound(ConsulError):
    """The named thing does not exist."""

    grpc_code = grpc.StatusCode.NOT_FOUND
    http_status = 404
    default_message = "Not found"


class PermissionDenied(ConsulError):
    """The token may not do this."""

    grpc_code = grpc.StatusCode.PERMISSION_DENIED
    http_status = 403
    default_message = "Permission denied"


class ACLNotFound(PermissionDenied):
    """The token secret names no token (Consul answers 403 "ACL not found")."""

    default_message = "ACL not found"


class ACLDisabled(ConsulError):
    """An ACL endpoint was called on an agent with ACLs disabled."""

    grpc_code = grpc.StatusCode.UNAUTHENTICATED
    http_status = 401
    default_message = "ACL support disabled"


class CASConflict(ConsulError):
    """A check-and-set write found another index than the one it was given."""

    grpc_code = grpc.StatusCode.ABORTED
    http_status = 200
    default_message = "Check-and-set conflict"


class RateLimited(ConsulError):
    """The client agent's token bucket is empty."""

    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED
    http_status = 429
    default_message = "RPC rate limit exceeded"


class Unavailable(ConsulError):
    """No server could answer; a read may be tried again elsewhere."""

    grpc_code = grpc.StatusCode.UNAVAILABLE
    http_status = 500
    default_message = "Service unavailable"


class NoServers(Unavailable):
    """The router knows no server."""

    default_message = "No known Consul servers"


class NoLeader(Unavailable):
    """The datacenter has no leader right now."""

    default_message = "No cluster leader"


class RemoteDCUnreachable(Unavailable):
    """The datacenter is known but none of its servers answers."""

    default_message = "Remote DC has no server currently reachable"


class NoPathToDatacenter(ConsulError):
    """No server of the datacenter is known at all."""

    grpc_code = grpc.StatusCode.UNAVAILABLE
    http_status = 500
    default_message = "No path to datacenter"


class OperationRefused(ConsulError):
    """An operation Consul refuses with a plain error (HTTP 500 and its text): an
    unknown raft peer, a leadership with nowhere to go. Not a server fault."""

    grpc_code = grpc.StatusCode.FAILED_PRECONDITION
    http_status = 500
    default_message = "Operation refused"


class StoreError(ConsulError):
    """The store (etcd) failed or timed out."""

    grpc_code = grpc.StatusCode.UNAVAILABLE
    http_status = 500
    default_message = "Store unavailable"


_BY_TEXT: dict[str, type[ConsulError]] = {
    cls.default_message: cls
    for cls in (
        NoServers,
        NoLeader,
        RemoteDCUnreachable,
        NoPathToDatacenter,
        RateLimited,
        ACLNotFound,
        ACLDisabled,
    )
}
_BY_CODE: dict[grpc.StatusCode, type[ConsulError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.ABORTED: CASConflict,
    grpc.StatusCode.RESOURCE_EXHAUSTED: RateLimited,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.FAILED_PRECONDITION: OperationRefused,
}


def from_rpc_error(code: grpc.StatusCode, details: str | None) -> ConsulError:
    """The ConsulError a server meant by answering ``code`` with ``details``."""
    text = details or ""
    for prefix, cls in _BY_TEXT.items():
        if text.startswith(prefix):
            return cls(text)
    return _BY_CODE.get(code, ConsulError)(text or None)


async def abort(context: grpc.aio.ServicerContext[object, object], err: ConsulError) -> NoReturn:
    """Send ``err`` to a gRPC caller as its status code and Consul's text."""
    await context.abort(err.grpc_code, err.message)
    raise AssertionError("unreachable: context.abort raises")  # pragma: no cover
