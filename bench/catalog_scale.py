"""Catalog at scale: N service instances on N/10 nodes, 3 etcd servers (issue 16, items 2 and 3).

    .venv/bin/python bench/catalog_scale.py [--sizes 5000,10000,20000] [--agents 10]
    .venv/bin/python bench/catalog_scale.py --full        # 12,500 / 25,000 / 50,000

For each size, on a fresh etcd and 3 fresh etcd-backed servers (real processes):

1. **Registration**: N instances on N/10 nodes through ``PUT /v1/catalog/register``
   (what a deploying team or an external-service registrar uses), spread over
   the 3 servers, ``--concurrency`` requests in flight; the reference is N
   raw etcd Puts of the same value size with the same concurrency, through
   etcd3aio (the client our store uses), in the same run. Ratio goal >= 0.5.
   One service, ``big``, has 1,000 instances; the rest are spread over N/50
   services.
2. **Reads** at a server: ``GET /v1/catalog/services``, ``/v1/health/service/big``
   (1,000 instances) and ``/v1/catalog/node-services/<node>``: p50/p99 and bytes.
3. **Server RSS** after loading; a 4th server started **cold** on that etcd:
   seconds until it serves, and until its replica answers the full catalog.
4. **Fan-out**: ``--agents`` real client agents x ``--watchers`` blocking queries
   each on ``/v1/health/service/big`` (answered from the agent's view, fed by
   the server's ``Subscribe`` stream: what a client agent uses); one change to
   one instance of ``big``: time until each watcher has its answer (goal p99
   < 500 ms).
5. **Anti-entropy** (item 3): every node's full sync, run by the client
   agent's own code (``agent.local.antientropy.AntiEntropy`` with the node's
   services in a ``LocalState``, calling the servers over gRPC as a client
   agent does), twice; the etcd revision's growth in the second round (a quiet
   cluster: nothing changed) is the store writes. Scaled to writes per minute
   with Consul's interval (60 s x aeScale of the node count).

Everything runs on 127.0.0.1; every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import QUIET, percentile, rss_kib
from bench.membership_scale import cpu_seconds
from tests.support.etcd import EtcdServer
from tests.support.procs import AgentProcess, Cluster

BIG = 1000  # instances of the "big" service
READS = 30  # requests per read endpoint and size
CALL_TIMEOUT = 30.0


def spec_of(j: int, size: int) -> tuple[str, str, str]:
    """(node, service name, service id) of instance ``j`` of ``size``."""
    nodes = max(1, size // 10)
    node = f"node-{j % nodes:05d}"
    if j < BIG:
        return node, "big", f"big-{j}"
    name = f"svc-{j % max(1, size // 50):04d}"
    return node, name, f"{name}-{j}"


def register_body(j: int, size: int, port: int = 8080) -> dict[str, Any]:
    node, name, sid = spec_of(j, size)
    n = int(node.split("-")[1])
    return {
        "Node": node,
        "Address": f"10.{n // 65536}.{n // 256 % 256}.{n % 256}",
        "Service": {"ID": sid, "Service": name, "Port": port, "Tags": ["v1", "scale"]},
        "Check": {
            "CheckID": f"service:{sid}",
            "Name": f"{name} alive",
            "Status": "passing",
            "ServiceID": sid,
        },
    }


async def bounded(n: int, concurrency: int, one: Callable[[int], Awaitable[None]]) -> float:
    """Run ``one(0..n-1)`` with ``concurrency`` in flight; seconds taken."""
    it = iter(range(n))
    t0 = time.perf_counter()

    async def worker() -> None:
        for j in it:
            await one(j)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - t0


async def raw_puts(endpoint: str, n: int, value_size: int, concurrency: int) -> float:
    from etcd3aio import Etcd3Client

    client = Etcd3Client([endpoint])
    await client.connect()
    assert client.kv is not None
    kv = client.kv
    value = os.urandom(value_size)
    try:

        async def one(j: int) -> None:
            await kv.put(f"/raw-bench/{j:08d}".encode(), value, timeout=CALL_TIMEOUT)

        return await bounded(n, concurrency, one)
    finally:
        await client.close()


async def register_all(
    servers: list[AgentProcess], size: int, concurrency: int
) -> tuple[float, int]:
    """(seconds, errors) for registering ``size`` instances over HTTP, round-robin."""
    errors = 0
    conn = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=CALL_TIMEOUT)
    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as http:

        async def one(j: int) -> None:
            nonlocal errors
            addr = servers[j % len(servers)].http_addr
            async with http.put(
                f"http://{addr}/v1/catalog/register", json=register_body(j, size)
            ) as resp:
                await resp.read()
                if resp.status != 200:
                    errors += 1
                    if errors <= 3:
                        print(f"  register {j}: HTTP {resp.status} {await resp.text()}")

        return await bounded(size, concurrency, one), errors


async def read_stats(http: aiohttp.ClientSession, url: str) -> dict[str, float]:
    lat: list[float] = []
    size = 0
    for _ in range(READS):
        t0 = time.perf_counter()
        async with http.get(url) as resp:
            body = await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"GET {url}: HTTP {resp.status} {body[:200]!r}")
        lat.append(time.perf_counter() - t0)
        size = len(body)
    return {"p50": percentile(lat, 50) * 1000, "p99": percentile(lat, 99) * 1000, "bytes": size}


async def poll(predicate: Callable[[], Awaitable[bool]], timeout: float, what: str) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            if await predicate():
                return time.monotonic() - t0
        except (aiohttp.ClientError, OSError, grpc.aio.AioRpcError):
            pass
        await asyncio.sleep(0.05)
    raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")


async def services_count(http: aiohttp.ClientSession, addr: str, stale: bool = True) -> int:
    url = f"http://{addr}/v1/catalog/services" + ("?stale" if stale else "")
    async with http.get(url) as resp:
        if resp.status != 200:
            return -1
        return len(await resp.json())


async def fanout(
    http: aiohttp.ClientSession,
    server: AgentProcess,
    clients: list[AgentProcess],
    watchers: int,
    size: int,
) -> list[float]:
    """Seconds from the start of one change to ``big`` until each watcher has it."""
    url = "/v1/health/service/big"
    # Each agent's view must hold the current index first.
    indexes = []
    for c in clients:
        async with http.get(f"http://{c.http_addr}{url}") as resp:
            await resp.read()
            indexes.append(int(resp.headers["X-Consul-Index"]))
    done: list[float] = []
    started = asyncio.Event()
    t_change = 0.0

    async def watch(c: AgentProcess, index: int) -> None:
        async with http.get(
            f"http://{c.http_addr}{url}?index={index}&wait=60s",
            timeout=aiohttp.ClientTimeout(total=90),
        ) as resp:
            # The agent has answered (its headers are in); reading the 678 KB
            # body is the bench's own cost: 100 bodies in this one process.
            done.append(time.perf_counter())
            await resp.read()
            if int(resp.headers.get("X-Consul-Index", "0")) <= index:
                raise RuntimeError("a watcher woke without a change")

    tasks = [
        asyncio.create_task(watch(c, idx))
        for c, idx in zip(clients, indexes, strict=True)
        for _ in range(watchers)
    ]
    # Blocking queries parked at the agents (there is no signal to wait for:
    # give the sockets a moment, bounded; a watcher that arrives after the
    # change still returns at once, and then counts as fast).
    await asyncio.sleep(1.0)
    started.set()
    t_change = time.perf_counter()
    async with http.put(
        f"http://{server.http_addr}/v1/catalog/register", json=register_body(0, size, port=9090)
    ) as resp:
        await resp.read()
        if resp.status != 200:
            raise RuntimeError(f"change: HTTP {resp.status}")
    async with asyncio.timeout(90):
        await asyncio.gather(*tasks)
    return [t - t_change for t in done]


async def antientropy_rounds(servers: list[AgentProcess], size: int, etcd: str) -> dict[str, Any]:
    """Every node's full sync, twice, with the client agent's own code; writes per round."""
    from google.protobuf.duration_pb2 import Duration

    from agent.local.antientropy import AntiEntropy, scale_interval
    from agent.local.state import LocalState
    from agent.rpc.methods import MethodSpec
    from generated.consul.agent.v1 import agent_pb2 as apb
    from generated.consul.common.v1 import types_pb2 as pb

    channels = [grpc.aio.insecure_channel(s.rpc_addr) for s in servers]

    class Invoker:
        def __init__(self, channel: grpc.aio.Channel) -> None:
            self.channel = channel

        async def rpc(self, spec: MethodSpec, request: Any) -> Any:
            if not spec.read:
                writes_sent[0] += 1
            call = self.channel.unary_unary(
                spec.path,
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=spec.response_type.FromString,
            )
            return await call(request, timeout=CALL_TIMEOUT)

    writes_sent = [0]  # Register/Deregister calls the syncs made
    by_node: dict[str, list[int]] = {}
    for j in range(size):
        by_node.setdefault(spec_of(j, size)[0], []).append(j)
    agents = []
    stack = contextlib.AsyncExitStack()
    for n, (node, js) in enumerate(sorted(by_node.items())):
        local = await stack.enter_async_context(LocalState(node))
        for j in js:
            body = register_body(j, size)
            svc = body["Service"]
            local.add_service(
                apb.ServiceDefinition(
                    service=pb.Service(
                        id=svc["ID"], name=svc["Service"], port=svc["Port"], tags=svc["Tags"]
                    ),
                    checks=[
                        apb.CheckDefinition(
                            check_id=body["Check"]["CheckID"],
                            name=body["Check"]["Name"],
                            status=pb.HEALTH_STATUS_PASSING,
                            definition=pb.CheckDefinition(ttl=Duration(seconds=3600)),
                        )
                    ],
                )
            )
        address = register_body(js[0], size)["Address"]
        ae = AntiEntropy(
            local,
            Invoker(channels[n % len(channels)]),
            lambda node=node, address=address: pb.Node(name=node, address=address),
            datacenter="dc1",
        )
        agents.append((local, ae))

    from bench.membership_scale import etcd_revision

    rounds = []
    try:
        for _ in range(2):
            rev0 = await etcd_revision(etcd)
            writes_sent[0] = 0
            t0 = time.perf_counter()
            await bounded(len(agents), 32, lambda n: agents[n][1].sync())
            seconds = time.perf_counter() - t0
            rev1 = await etcd_revision(etcd)
            # etcd_revision's own read does not write; the difference is writes.
            rounds.append({"writes": rev1 - rev0, "seconds": seconds, "rpcs": writes_sent[0]})
    finally:
        await stack.aclose()
        for ch in channels:
            await ch.close()
    nodes = len(agents)
    interval = scale_interval(60.0, nodes)
    return {
        "nodes": nodes,
        "rounds": rounds,
        "interval": interval,
        "writes_per_min": rounds[-1]["writes"] * 60 / interval,
        "syncs_per_s": nodes / rounds[-1]["seconds"],
    }


async def one_size(size: int, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"size": size, "nodes": max(1, size // 10)}
    async with EtcdServer() as etcd:
        cluster = Cluster()
        limits = Path(tempfile.mkdtemp(prefix="catalog-scale-")) / "limits.json"
        limits.write_text(
            json.dumps(
                {
                    "limits": {
                        "http_max_conns_per_client": 0,
                        "http_max_blocking_queries_per_client": 0,
                    }
                }
            )
        )
        flags = [
            *("--store", "etcd", "--etcd-endpoints", etcd.endpoint),
            *("--config-file", str(limits), *QUIET),
        ]
        try:
            servers = await asyncio.to_thread(
                lambda: [cluster.server(f"cs-s{i}", *flags) for i in (1, 2, 3)]
            )
            value_size = len(json.dumps(register_body(size - 1, size)).encode())
            etcd_pid = etcd._proc.pid if etcd._proc else 0
            e0 = cpu_seconds(etcd_pid)
            raw = await raw_puts(etcd.endpoint, size, value_size, args.concurrency)
            e1, s1 = cpu_seconds(etcd_pid), [cpu_seconds(s.proc.pid) for s in servers if s.proc]
            reg, errors = await register_all(servers, size, args.concurrency)
            e2, s2 = cpu_seconds(etcd_pid), [cpu_seconds(s.proc.pid) for s in servers if s.proc]
            out |= {
                "etcd_ms_raw": (e1 - e0) / size * 1000,
                "etcd_ms_reg": (e2 - e1) / size * 1000,
                "servers_ms_reg": (sum(s2) - sum(s1)) / size * 1000,
                "raw_per_s": size / raw,
                "reg_per_s": size / reg,
                "reg_errors": errors,
                "value_size": value_size,
            }
            print(
                f"  {size}: registered in {reg:.1f} s ({size / reg:.0f}/s, {errors} errors); "
                f"raw etcd puts {size / raw:.0f}/s: ratio {raw / reg:.2f}",
                flush=True,
            )
            conn = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(
                connector=conn, timeout=aiohttp.ClientTimeout(total=CALL_TIMEOUT)
            ) as http:
                addr = servers[0].http_addr
                node0 = spec_of(0, size)[0]
                out["reads"] = {
                    "services": await read_stats(http, f"http://{addr}/v1/catalog/services"),
                    "health big": await read_stats(http, f"http://{addr}/v1/health/service/big"),
                    "node-services": await read_stats(
                        http, f"http://{addr}/v1/catalog/node-services/{node0}"
                    ),
                }
                out["rss"] = [rss_kib(s.proc.pid) / 1024 for s in servers if s.proc]
                expected = await services_count(http, addr, stale=False)
                # A cold server on the loaded etcd.
                t0 = time.monotonic()
                cold = AgentProcess("cs-cold", flags, cluster.log_dir, server=True)
                cluster.agents.append(cold)
                await asyncio.to_thread(cold.start, False)
                await asyncio.to_thread(cold.wait_ready, 300.0)
                out["cold_serving"] = time.monotonic() - t0

                async def complete() -> bool:
                    return await services_count(http, cold.http_addr) == expected

                await poll(complete, 300, "the cold server's catalog")
                out["cold_ready"] = time.monotonic() - t0
                out["cold_rss"] = rss_kib(cold.proc.pid) / 1024 if cold.proc else 0.0
                await asyncio.to_thread(cold.stop)
                print(f"  {size}: reads, RSS and cold start done", flush=True)

                clients = await asyncio.to_thread(
                    lambda: [
                        cluster.client(
                            f"cs-c{i}",
                            "--retry-join",
                            servers[i % 3].rpc_addr,
                            "--config-file",
                            str(limits),
                            *QUIET,
                        )
                        for i in range(args.agents)
                    ]
                )
                procs = [*servers, *clients]
                cpu0 = [cpu_seconds(p.proc.pid) for p in procs if p.proc]
                delays = await fanout(http, servers[0], clients, args.watchers, size)
                spent = [cpu_seconds(p.proc.pid) for p in procs if p.proc]
                spent = [(b - a) * 1000 for a, b in zip(cpu0, spent, strict=True)]
                out["fanout_cpu"] = {
                    "servers": sum(spent[: len(servers)]),
                    "agent_mean": sum(spent[len(servers) :]) / len(clients),
                }
                out["fanout"] = {
                    "n": len(delays),
                    "p50": percentile(delays, 50) * 1000,
                    "p99": percentile(delays, 99) * 1000,
                    "max": max(delays) * 1000,
                }
                out["client_rss"] = max(rss_kib(c.proc.pid) / 1024 for c in clients if c.proc)
                for c in clients:
                    await asyncio.to_thread(c.stop)
            out["ae"] = await antientropy_rounds(servers, size, etcd.endpoint)
        finally:
            await asyncio.to_thread(cluster.stop_all)
    return out


def report(r: dict[str, Any]) -> None:
    print(f"{r['size']} instances on {r['nodes']} nodes:")
    print(
        f"  register over HTTP {r['reg_per_s']:.0f}/s ({r['reg_errors']} errors) vs raw etcd "
        f"puts of {r['value_size']} bytes {r['raw_per_s']:.0f}/s: "
        f"ratio {r['reg_per_s'] / r['raw_per_s']:.2f} (goal >= 0.5)"
    )
    print(
        f"  CPU per registration: servers {r['servers_ms_reg']:.2f} ms (all 3), etcd "
        f"{r['etcd_ms_reg']:.2f} ms; per raw put: etcd {r['etcd_ms_raw']:.2f} ms"
    )
    for name, s in r["reads"].items():
        print(
            f"  GET {name:<14} p50 {s['p50']:8.1f} ms  p99 {s['p99']:8.1f} ms"
            f"  {s['bytes']:>9,} bytes"
        )
    rss = " ".join(f"{v:.0f}" for v in r["rss"])
    print(
        f"  servers RSS MiB {rss}; cold server serving after {r['cold_serving']:.1f} s, "
        f"catalog complete after {r['cold_ready']:.1f} s, RSS {r['cold_rss']:.0f} MiB"
    )
    f = r["fanout"]
    print(
        f"  one change to big reached {f['n']} watchers: p50 {f['p50']:.0f} ms "
        f"p99 {f['p99']:.0f} ms max {f['max']:.0f} ms (goal p99 < 500); "
        f"client agent RSS {r['client_rss']:.0f} MiB"
    )
    c = r["fanout_cpu"]
    print(
        f"  CPU for that change and one first read of big per agent: servers {c['servers']:.0f} ms"
        f" (all 3), each client agent {c['agent_mean']:.0f} ms"
    )
    ae = r["ae"]
    rounds = ", ".join(
        f"{x['rpcs']} write RPCs, {x['writes']} store writes in {x['seconds']:.1f} s"
        for x in ae["rounds"]
    )
    print(
        f"  anti-entropy: {ae['nodes']} nodes' full syncs, two rounds: {rounds}; "
        f"{ae['syncs_per_s']:.0f} syncs/s; quiet cluster: {ae['writes_per_min']:.0f} store "
        f"writes/min at Consul's interval ({ae['interval']:.0f} s for {ae['nodes']} nodes)"
    )


async def main(args: argparse.Namespace) -> None:
    sizes = [int(s) for s in ("12500,25000,50000" if args.full else args.sizes).split(",")]
    print(
        f"catalog at scale: 3 etcd servers, instances on size/10 nodes, concurrency "
        f"{args.concurrency}, {args.agents} client agents x {args.watchers} watchers; load "
        f"{os.getloadavg()[0]:.1f}",
        flush=True,
    )
    t0 = time.monotonic()
    rows = []
    for size in sizes:
        r = await one_size(size, args)
        rows.append(r)
        report(r)
    if len(rows) > 1:
        a, b = rows[0], rows[-1]
        k = b["size"] / a["size"]
        print(f"{k:.0f}x the instances:")
        for name in a["reads"]:
            print(f"  GET {name}: p50 {b['reads'][name]['p50'] / a['reads'][name]['p50']:.2f}x")
        print(
            f"  register rate {b['reg_per_s'] / a['reg_per_s']:.2f}x, server RSS growth "
            f"{(max(b['rss']) - max(a['rss'])) / (b['size'] - a['size']) * 1024:.2f} KiB/instance, "
            f"cold ready {b['cold_ready'] / a['cold_ready']:.2f}x"
        )
    print(f"(total {time.monotonic() - t0:.0f} s; load {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="5000,10000,20000", help="instance counts, one run each")
    parser.add_argument("--full", action="store_true", help="12,500 / 25,000 / 50,000 instances")
    parser.add_argument("--concurrency", type=int, default=64, help="requests in flight")
    parser.add_argument("--agents", type=int, default=10, help="client agents watching")
    parser.add_argument("--watchers", type=int, default=10, help="blocking queries per agent")
    parser.add_argument("--seed", type=int, default=1)
    a = parser.parse_args()
    random.seed(a.seed)
    asyncio.run(main(a))
