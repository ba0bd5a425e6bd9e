"""Docker HEALTHCHECK for a consul-grpc agent: exit 0 when its gRPC health says SERVING.

Asks the standard ``grpc.health.v1`` service on ``$CONSUL_GRPC_HEALTH_ADDR``
(default ``127.0.0.1:8502``, the agent's ``--grpc-addr``), with a 2 s deadline.
"""

from __future__ import annotations

import os
import sys

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def main() -> int:
    address = os.environ.get("CONSUL_GRPC_HEALTH_ADDR", "127.0.0.1:8502")
    with grpc.insecure_channel(address) as channel:
        try:
            resp = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=2.0
            )
        except grpc.RpcError as exc:
            print(f"{address}: {exc.code().name}", file=sys.stderr)
            return 1
    serving = resp.status == health_pb2.HealthCheckResponse.SERVING
    print(f"{address}: {health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)}")
    return 0 if serving else 1


if __name__ == "__main__":
    sys.exit(main())
