"""gRPC checks: the standard ``grpc.health.v1.Health/Check`` of the target.

Like Consul's ``CheckGRPC``: the target is ``host:port`` with an optional
``/service`` naming the service to ask about (empty asks about the server as a
whole); SERVING is passing, any other answer or error is critical. Each probe
dials afresh and closes its channel, so a restarted server is seen at once
instead of after a channel's reconnect backoff.
"""

from __future__ import annotations

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agent.checks.runner import IntervalRunner
from agent.checks.spec import split_grpc_target
from agent.checks.status import CRITICAL, PASSING
from agent.durations import format_duration

__all__ = ["GRPCRunner"]

_CHANNEL_OPTIONS = [("grpc.enable_retries", 0)]


class GRPCRunner(IntervalRunner):
    """A gRPC health check.

    ``tls_skip_verify`` cannot be honoured (grpcio offers no way to skip
    verification); with ``grpc_use_tls`` the server's certificate is verified
    against the system roots.
    """

    def _channel(self, addr: str) -> grpc.aio.Channel:
        if self.spec.grpc_use_tls:
            return grpc.aio.secure_channel(
                addr, grpc.ssl_channel_credentials(), options=_CHANNEL_OPTIONS
            )
        return grpc.aio.insecure_channel(addr, options=_CHANNEL_OPTIONS)

    async def probe(self) -> tuple[str, str]:
        target = self.spec.grpc
        addr, service = split_grpc_target(target)
        async with self._channel(addr) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            try:
                response = await stub.Check(
                    health_pb2.HealthCheckRequest(service=service), timeout=self.spec.timeout
                )
            except grpc.aio.AioRpcError as exc:
                if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                    return CRITICAL, (
                        f"gRPC {target} timed out after {format_duration(self.spec.timeout)}"
                    )
                return CRITICAL, f"gRPC {target} failed: {exc.code().name}: {exc.details()}"
        status = int(response.status)
        if status != health_pb2.HealthCheckResponse.SERVING:
            name = health_pb2.HealthCheckResponse.ServingStatus.Name(status)
            return CRITICAL, f"gRPC {target} serving status: {name}"
        return PASSING, f"gRPC check {target}: success"
