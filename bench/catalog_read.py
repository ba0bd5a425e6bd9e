"""Catalog-read throughput and latency of a dev agent, beside a bare grpc.aio echo server.

    .venv/bin/python bench/catalog_read.py [--seconds 3] [--concurrency 16]

Starts a real dev agent process, registers 10 instances of a service, then
runs the same closed-loop load (one channel, N concurrent callers) against
``CatalogService.ListServiceInstances`` and against an echo server returning
a payload of the same size, in one run, and prints the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import EchoServer, run_load
from generated.consul.catalog.v1 import catalog_pb2 as cpb
from generated.consul.catalog.v1 import catalog_pb2_grpc
from generated.consul.common.v1 import types_pb2 as pb
from tests.support.procs import Cluster


async def main(seconds: float, concurrency: int) -> None:
    cluster = Cluster()
    dev = cluster.server("bench-dev", "--dev", "--log-level", "WARNING")
    try:
        async with grpc.aio.insecure_channel(dev.grpc_addr) as ch:
            catalog = catalog_pb2_grpc.CatalogServiceStub(ch)
            for i in range(10):
                await catalog.Register(
                    cpb.RegisterRequest(
                        node=pb.Node(name=f"node-{i}", address=f"10.0.0.{i}"),
                        service=pb.Service(name="web", port=8080, tags=["v1"]),
                    ),
                    timeout=10,
                )
            req = cpb.ListServiceInstancesRequest(service="web")
            size = (await catalog.ListServiceInstances(req, timeout=10)).ByteSize()
            agent = await run_load(
                "dev agent ListServiceInstances",
                lambda: catalog.ListServiceInstances(req, timeout=10),
                concurrency=concurrency,
                seconds=seconds,
            )
        async with EchoServer() as echo, grpc.aio.insecure_channel(echo.address) as ch:
            ref = await run_load(
                f"grpc.aio echo ({size} bytes)",
                echo.caller(ch, b"x" * size),
                concurrency=concurrency,
                seconds=seconds,
            )
    finally:
        cluster.stop_all()
    print(agent.line())
    print(ref.line())
    print(f"throughput ratio agent/echo: {agent.rate / ref.rate:.2f}")
    print(f"p50 latency ratio agent/echo: {agent.pct(50) / ref.pct(50):.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    asyncio.run(main(args.seconds, args.concurrency))
