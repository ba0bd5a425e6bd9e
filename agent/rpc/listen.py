"""Shared gRPC serving: bind a listener, serve standard health and reflection.

Both agents serve their services on ``grpc.aio`` servers made here. Health is
the asyncio servicer of ``grpc_health`` (not the thread-pool one): a
``Health/Watch`` stream is a coroutine parked on a condition, so any number of
monitoring watchers cost no executor thread (with the synchronous servicer,
six Watch streams on 2 CPUs filled the default executor, after which
``Health/Check`` and every host-name resolution of the agent stalled).
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

__all__ = ["GRPC_SERVER_OPTIONS", "add_health_and_reflection", "bind_grpc"]

#: Options of every agent listener: an 8 MiB request cap, and keepalive pings
#: to callers every 10 s so a vanished peer is found within 15 s.
GRPC_SERVER_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.max_receive_message_length", 8 * 1024 * 1024),
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
)


def bind_grpc(
    server: grpc.aio.Server, address: str, credentials: grpc.ServerCredentials | None = None
) -> str:
    """Bind ``address`` (port 0 picks one), over TLS with ``credentials``; the address bound."""
    host, _, _ = address.rpartition(":")
    if credentials is not None:
        port = server.add_secure_port(address, credentials)
    else:
        port = server.add_insecure_port(address)
    if port == 0:
        raise OSError(f"cannot bind {address}")
    return f"{host}:{port}"


async def add_health_and_reflection(
    server: grpc.aio.Server, names: Sequence[str]
) -> health.aio.HealthServicer:
    """Serve grpc.health.v1 (every name SERVING) and server reflection on ``server``."""
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    for name in ["", *names]:
        await servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    reflection.enable_server_reflection(
        [
            *names,
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            reflection.SERVICE_NAME,
        ],
        server,
    )
    return servicer
