"""A read of a dc2 service through a dc1 client agent, beside the same read inside dc2.

    .venv/bin/python bench/wan_read.py [--seconds 2] [--rounds 2] [--concurrency 16]
                                       [--instances 10] [--dc2-store etcd|memory]

Starts a real etcd, then two datacenters of real processes: dc1 is one
etcd-backed server and one client agent joined to it; dc2 is one server
(etcd-backed by default, its own namespace of the same etcd) that joins the
WAN with ``--retry-join-wan`` to the dc1 server. Registers ``--instances``
instances of a service in dc2, then runs the same closed-loop load (one
channel, N callers) of ``CatalogService.ListServiceInstances`` and
``HealthService.ServiceHealth`` three ways, in interleaved rounds:

- ``dc1 client, dc=dc2``: to the dc1 client agent with ``datacenter=dc2``
  (client agent -> dc1 server -> WAN forward -> dc2 server), the figure;
- ``dc1 server, dc=dc2``: to the dc1 server with ``datacenter=dc2`` (the WAN
  forward alone);
- ``dc2 server, local``: straight to the dc2 server, no datacenter (the
  reference: the same read inside dc2).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
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
from generated.consul.agent.v1 import agent_pb2 as apb
from generated.consul.agent.v1 import agent_pb2_grpc
from tests.support.etcd import EtcdServer
from tests.support.procs import Cluster

DC1, DC2 = "dc1", "dc2"


async def wan_names(address: str) -> set[str]:
    """Alive members of the WAN pool as the agent at ``address`` sees them."""
    async with grpc.aio.insecure_channel(address) as ch:
        resp = await agent_pb2_grpc.AgentServiceStub(ch).ListMembers(
            apb.ListMembersRequest(wan=True), timeout=5
        )
    return {m.name for m in resp.members if m.status == 1}


async def main(args: argparse.Namespace) -> None:
    wall = time.monotonic()
    async with EtcdServer() as etcd:
        cluster = Cluster()
        try:
            store = ["--store", "etcd", "--etcd-endpoints", etcd.endpoint]
            a1 = cluster.server("bench-a1", *store, "--datacenter", DC1, *QUIET)
            dc2_store = store if args.dc2_store == "etcd" else ["--store", "memory"]
            b1 = cluster.server(
                "bench-b1",
                *dc2_store,
                *("--datacenter", DC2, "--retry-join-wan", a1.rpc_addr),
                *QUIET,
            )
            c1 = cluster.client(
                "bench-c1", "--datacenter", DC1, "--retry-join", a1.rpc_addr, *QUIET
            )
            both = {f"bench-a1.{DC1}", f"bench-b1.{DC2}"}
            for server in (a1, b1):

                async def sees_both(addr: str = server.grpc_addr) -> bool:
                    return await wan_names(addr) >= both

                await wait_for(sees_both, timeout=30, what=f"WAN view of {server.name}")
            async with grpc.aio.insecure_channel(c1.grpc_addr) as ch:
                await wait_for(lambda: router_servers(ch), what="the client agent to know a1")
            async with grpc.aio.insecure_channel(b1.rpc_addr) as ch:
                await register_instances(ch, "web", args.instances, prefix="dc2-node")
            for addr in (a1.rpc_addr, c1.grpc_addr):  # the WAN router lags the view a bit
                async with grpc.aio.insecure_channel(addr) as ch:
                    read = catalog_reads(ch, "web", DC2)["ListServiceInstances"]

                    async def answers(read: Callable[[], Awaitable[object]] = read) -> bool:
                        return bool(result_count(await read()) == args.instances)

                    await wait_for(answers, timeout=30, what=f"dc2 reads through {addr}")
            lines = await measure(c1.grpc_addr, a1.rpc_addr, b1.rpc_addr, args)
        finally:
            await asyncio.to_thread(cluster.stop_all)
    print(
        f"closed loop, {args.concurrency} callers on one channel, {args.rounds} x "
        f"{args.seconds:g} s per target; {args.instances} instances in dc2 "
        f"(dc2 store: {args.dc2_store}); dc1: etcd server + client agent"
    )
    print("\n".join(lines))
    print(f"(total {time.monotonic() - wall:.0f} s)")


async def measure(
    client_addr: str, dc1_addr: str, dc2_addr: str, args: argparse.Namespace
) -> list[str]:
    lines: list[str] = []
    async with (
        grpc.aio.insecure_channel(client_addr) as via_client,
        grpc.aio.insecure_channel(dc1_addr) as via_dc1,
        grpc.aio.insecure_channel(dc2_addr) as in_dc2,
    ):
        targets = {
            "dc1 client, dc=dc2": catalog_reads(via_client, "web", DC2),
            "dc1 server, dc=dc2": catalog_reads(via_dc1, "web", DC2),
            "dc2 server, local": catalog_reads(in_dc2, "web"),
        }
        for read in ("ListServiceInstances", "ServiceHealth"):
            for label, calls in targets.items():
                # The answer is right, and every channel (and the WAN forward) is warm.
                found = result_count(await calls[read]())
                if found != args.instances:
                    raise RuntimeError(f"{label} {read}: {found} results, want {args.instances}")
            rounds: dict[str, list[LoadResult]] = {label: [] for label in targets}
            for _ in range(args.rounds):
                for label, calls in targets.items():
                    rounds[label].append(
                        await run_load(
                            label, calls[read], concurrency=args.concurrency, seconds=args.seconds
                        )
                    )
            client, server, local = (merge(f"{read} {label}", rounds[label]) for label in targets)
            lines += [client.line(), server.line(), local.line()]
            lines += ["  " + x for x in compare(client, local, "dc1-client-dc2/dc2-local")]
            lines += ["  " + x for x in compare(server, local, "dc1-server-dc2/dc2-local")[:2]]
    return lines


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="per round and target")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--instances", type=int, default=10)
    parser.add_argument("--dc2-store", choices=["etcd", "memory"], default="etcd")
    args = parser.parse_args()
    if args.seconds <= 0 or args.rounds < 1 or args.concurrency < 1 or args.instances < 1:
        parser.error("--seconds, --rounds, --concurrency and --instances must be positive")
    try:
        asyncio.run(main(args))
    except (TimeoutError, RuntimeError) as exc:
        sys.exit(f"wan_read failed: {exc}")
