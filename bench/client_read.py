"""Catalog reads through a client agent, beside the same reads sent straight to its server.

    .venv/bin/python bench/client_read.py [--seconds 2] [--rounds 2] [--concurrency 16]
                                          [--instances 10] [--no-dev]

Starts a real etcd, one etcd-backed server and one client agent joined to it,
registers ``--instances`` instances of a service (each with a passing check),
then runs the same closed-loop load (one channel, N concurrent callers) of
``CatalogService.ListServiceInstances`` and ``HealthService.ServiceHealth``
against the client agent's gRPC port and against the server's RPC port: the
same server answers both, so the difference is the client agent's hop
(Client.rpc: router, rate limit, pooled channel, retry wrapper). The two
targets run in interleaved rounds so machine noise hits both alike. Then the
same with a dev (memory-store) server, unless ``--no-dev``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    QUIET,
    LoadResult,
    catalog_reads,
    compare,
    merge,
    register_instances,
    result_count,
    router_servers,
    run_load,
    wait_for,
)
from tests.support.etcd import EtcdServer
from tests.support.procs import Cluster


async def measure(
    store: str, client_addr: str, server_addr: str, args: argparse.Namespace
) -> list[str]:
    """Interleaved rounds of every read through the client and straight to the server."""
    lines = []
    async with (
        grpc.aio.insecure_channel(client_addr) as via_client,
        grpc.aio.insecure_channel(server_addr) as direct,
    ):
        client_reads = catalog_reads(via_client, "web")
        server_reads = catalog_reads(direct, "web")
        for name in client_reads:
            # Warm both paths (channels, the client's pooled channel) and check the answer.
            for call in (client_reads[name], server_reads[name]):
                found = result_count(await call())
                if found != args.instances:
                    raise RuntimeError(f"{name}: {found} results, want {args.instances}")
            via: list[LoadResult] = []
            straight: list[LoadResult] = []
            for _ in range(args.rounds):
                for target, calls, out in (
                    ("client", client_reads, via),
                    ("server", server_reads, straight),
                ):
                    out.append(
                        await run_load(
                            target, calls[name], concurrency=args.concurrency, seconds=args.seconds
                        )
                    )
            a = merge(f"{store} {name} via client", via)
            b = merge(f"{store} {name} to server", straight)
            lines += [a.line(), b.line(), *("  " + x for x in compare(a, b, "client/server"))]
    return lines


async def etcd_variant(args: argparse.Namespace) -> list[str]:
    async with EtcdServer() as etcd:
        cluster = Cluster()
        try:
            store = ["--store", "etcd", "--etcd-endpoints", etcd.endpoint]
            server = cluster.server("bench-s1", *store, "--datacenter", "dc1", *QUIET)
            client = cluster.client("bench-c1", "--retry-join", server.rpc_addr, *QUIET)
            return await run_variant("etcd", server.rpc_addr, client.grpc_addr, args)
        finally:
            await asyncio.to_thread(cluster.stop_all)


async def dev_variant(args: argparse.Namespace) -> list[str]:
    cluster = Cluster()
    try:
        server = cluster.server("bench-dev", "--dev", *QUIET)
        client = cluster.client("bench-c1", "--retry-join", server.rpc_addr, *QUIET)
        return await run_variant("dev", server.rpc_addr, client.grpc_addr, args)
    finally:
        await asyncio.to_thread(cluster.stop_all)


async def run_variant(
    store: str, server_addr: str, client_addr: str, args: argparse.Namespace
) -> list[str]:
    async with grpc.aio.insecure_channel(client_addr) as ch:
        await wait_for(lambda: router_servers(ch), what="the client agent to know its server")
    async with grpc.aio.insecure_channel(server_addr) as ch:
        await register_instances(ch, "web", args.instances)
    return await measure(store, client_addr, server_addr, args)


async def main(args: argparse.Namespace) -> None:
    start = time.monotonic()
    lines = await etcd_variant(args)
    if not args.no_dev:
        lines += await dev_variant(args)
    print(
        f"closed loop, {args.concurrency} callers on one channel, "
        f"{args.rounds} x {args.seconds:g} s per target, {args.instances} instances"
    )
    print("\n".join(lines))
    print(f"(total {time.monotonic() - start:.0f} s)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per round and target")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--instances", type=int, default=10)
    parser.add_argument("--no-dev", action="store_true", help="skip the dev-server variant")
    try:
        asyncio.run(main(parser.parse_args()))
    except (TimeoutError, RuntimeError) as exc:
        sys.exit(f"client_read failed: {exc}")
