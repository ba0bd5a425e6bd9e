"""The one transport-failure rule: when a failed call takes its server out of first place.

Both callers of servers, ``Client`` (the RPC path) and ``MembershipClient``
(the membership stream and heartbeats), ask ``is_transport_failure`` and, when
it says yes, rotate the router (``notify_failed_server``) and drop the channel
(``ConnPool.mark_failed``). Everything else is an answer of the server and
leaves the router alone:

=============================================  ===========  ===========
failure                                        read         write
=============================================  ===========  ===========
could not connect (``ConnectionError``)        transport    transport
UNAVAILABLE / CANCELLED from the transport     transport    transport
UNAVAILABLE carrying a Consul error text       answer       answer
DEADLINE_EXCEEDED                              transport    answer (*)
any other status                               answer       answer
=============================================  ===========  ===========

(*) a write that timed out may have been applied: the server is not blamed.
A server's UNAVAILABLE with its own text ("No cluster leader", a store outage
it reports) is the server speaking, so the caller retries by its own rules
without rotating.
"""

from __future__ import annotations

import grpc
import grpc.aio

from agent.errors import Unavailable, from_rpc_error

__all__ = ["is_consul_text", "is_transport_failure"]

_TRANSPORT_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED})


def is_consul_text(details: str) -> bool:
    """Whether an UNAVAILABLE carries a Consul error a server sent on purpose."""
    return type(from_rpc_error(grpc.StatusCode.UNAVAILABLE, details)) is not Unavailable


def is_transport_failure(exc: BaseException, *, read: bool) -> bool:
    """Whether ``exc`` means the server did not answer (see the table above)."""
    if isinstance(exc, ConnectionError):
        return True
    if not isinstance(exc, grpc.aio.AioRpcError):
        return False
    code = exc.code()
    if code in _TRANSPORT_CODES:
        return not is_consul_text(exc.details() or "")
    return code == grpc.StatusCode.DEADLINE_EXCEEDED and read
