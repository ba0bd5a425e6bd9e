"""Health reads through a client agent: Consul's HTTP API beside the agent's gRPC API.

    .venv/bin/python bench/http_vs_grpc.py [--seconds 3] [--concurrency 16]

Starts a dev server and a client agent (real processes), registers 10
instances of ``web`` with passing checks, then runs the same closed-loop load
against ``GET /v1/health/service/web?passing`` (aiohttp, keep-alive) and
``HealthService.ServiceHealth(passing_only)`` on the same agent, in one run,
and prints both and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import aiohttp
import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import run_load
from generated.consul.catalog.v1 import catalog_pb2 as cpb
from generated.consul.catalog.v1 import catalog_pb2_grpc
from generated.consul.common.v1 import types_pb2 as pb
from generated.consul.health.v1 import health_pb2 as hpb
from generated.consul.health.v1 import health_pb2_grpc
from tests.support.procs import Cluster


async def main(seconds: float, concurrency: int) -> None:
    cluster = Cluster()
    dev = cluster.server("bench-dev", "--dev", "--log-level", "WARNING")
    agent = cluster.client("bench-c1", "--retry-join", dev.rpc_addr, "--log-level", "WARNING")
    try:
        async with grpc.aio.insecure_channel(agent.grpc_addr) as ch:
            catalog = catalog_pb2_grpc.CatalogServiceStub(ch)
            for i in range(10):
                await catalog.Register(
                    cpb.RegisterRequest(
                        node=pb.Node(name=f"node-{i}", address=f"10.0.0.{i}"),
                        service=pb.Service(name="web", port=8080),
                        checks=[
                            pb.HealthCheck(
                                check_id="web",
                                name="web",
                                status=pb.HEALTH_STATUS_PASSING,
                                service_id="web",
                            )
                        ],
                    ),
                    timeout=10,
                )
            health = health_pb2_grpc.HealthServiceStub(ch)
            req = hpb.ServiceHealthRequest(service="web", passing_only=True)
            assert len((await health.ServiceHealth(req, timeout=10)).entries) == 10
            via_grpc = await run_load(
                "gRPC ServiceHealth(passing)",
                lambda: health.ServiceHealth(req, timeout=10),
                concurrency=concurrency,
                seconds=seconds,
            )
        url = f"http://{agent.http_addr}/v1/health/service/web?passing"
        conn = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=conn) as session:

            async def get() -> object:
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=10)) as resp:
                    body = await resp.json()
                    assert resp.status == 200 and len(body) == 10
                    return body

            await get()
            via_http = await run_load(
                "HTTP GET /v1/health/service/web?passing",
                get,
                concurrency=concurrency,
                seconds=seconds,
            )
    finally:
        cluster.stop_all()
    print(via_http.line())
    print(via_grpc.line())
    print(f"throughput ratio http/grpc: {via_http.rate / via_grpc.rate:.2f}")
    print(f"p50 latency ratio http/grpc: {via_http.pct(50) / via_grpc.pct(50):.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.concurrency))
