"""Membership at scale: thousands of simulated members heartbeating 3 etcd servers.

    .venv/bin/python bench/membership_scale.py [--sizes 250,1000,2500] [--duration 20]
                                               [--workers 2]
    .venv/bin/python bench/membership_scale.py --sizes 5000 --duration 120   # the full size

For each size, on a fresh etcd and 3 fresh etcd-backed servers: ``--workers``
load processes join their share of the members over gRPC (spread over the 3
servers, as client routers spread), then heartbeat each at the interval the
servers answered Join with, rotating to the next server on a transport
failure (as a client agent's router does). After ``--duration`` seconds of
steady state the leader is killed with SIGKILL and the load goes on for two
suspect timeouts. Printed per size:

- heartbeat p50/p99 (goal p99 < 250 ms) and failed heartbeats, steady state
  and after the kill;
- members wrongly FAILED (goal 0): every simulated member kept heartbeating,
  so any FAILED one, during the steady state or across the leader kill, is
  wrong (only the killed server may be FAILED);
- each server's CPU (share of one core) and RSS during the steady state;
- the new leader's reconcile lag: the time from a probe member's Join until
  its node is in the catalog with a passing ``serfHealth``;
- store writes during the steady state (the etcd revision's growth): batched
  heartbeats write nothing.

The sizes side by side show how each cost grows. Everything runs on 127.0.0.1
and every loop is bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import QUIET, percentile, rss_kib
from generated.consul.catalog.v1 import catalog_pb2 as cpb
from generated.consul.catalog.v1 import catalog_pb2_grpc
from generated.consul.health.v1 import health_pb2 as hpb
from generated.consul.health.v1 import health_pb2_grpc
from generated.consul.membership.v1 import membership_pb2 as mpb
from generated.consul.membership.v1 import membership_pb2_grpc
from generated.consul.status.v1 import status_pb2 as spb
from generated.consul.status.v1 import status_pb2_grpc
from tests.support.etcd import EtcdServer
from tests.support.procs import AgentProcess, Cluster

SUSPECT = 10.0
CALL_TIMEOUT = 5.0
TRANSPORT = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}


# -- the load process ---------------------------------------------------------------


async def worker_main(spec: dict[str, object]) -> None:
    """Join and heartbeat ``count`` members; print one JSON line of results at the end."""
    servers: list[str] = list(spec["servers"])  # type: ignore[call-overload]
    first, count = int(spec["first"]), int(spec["count"])  # type: ignore[call-overload]
    until = float(spec["until"])  # type: ignore[arg-type]
    rng = random.Random(first)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # The driver closes our stdin to stop the load (``until`` bounds it anyway).
    threading.Thread(
        target=lambda: (sys.stdin.read(), loop.call_soon_threadsafe(stop.set)), daemon=True
    ).start()

    def running() -> bool:
        return not stop.is_set() and time.time() < until

    channels = [grpc.aio.insecure_channel(a) for a in servers]
    stubs = [membership_pb2_grpc.MembershipServiceStub(c) for c in channels]
    beats: list[tuple[float, float]] = []  # (wall time, latency)
    failures: list[float] = []  # wall times
    rejoins = 0

    async def member(i: int) -> None:
        nonlocal rejoins
        name = f"sim-{i:05d}"
        turn = i % len(servers)
        m = mpb.Member(
            name=name,
            address=f"10.{i // 65536}.{i // 256 % 256}.{i % 256}:8301",
            datacenter="dc1",
            role=mpb.MEMBER_ROLE_NODE,
            tags={"role": "node"},
        )
        interval = 2.5
        joined = False
        # Agents do not all start in the same second: joins spread over a while.
        await asyncio.sleep(rng.uniform(0, float(spec["join_spread"])))  # type: ignore[arg-type]
        while not joined and running():
            try:
                resp = await stubs[turn].Join(mpb.JoinRequest(member=m), timeout=CALL_TIMEOUT)
                interval = resp.heartbeat_interval.ToNanoseconds() / 1e9 or interval
                joined = True
            except grpc.aio.AioRpcError:
                turn = (turn + 1) % len(servers)
                await asyncio.sleep(0.5)
        # Spread the heartbeats over one interval, as independent agents are.
        await asyncio.sleep(rng.uniform(0, interval))
        while running():
            t0 = time.perf_counter()
            try:
                resp = await stubs[turn].Heartbeat(
                    mpb.HeartbeatRequest(name=name, datacenter="dc1"), timeout=CALL_TIMEOUT
                )
                beats.append((time.time(), time.perf_counter() - t0))
                if not resp.known:
                    rejoins += 1
                    await stubs[turn].Join(mpb.JoinRequest(member=m), timeout=CALL_TIMEOUT)
            except grpc.aio.AioRpcError as exc:
                failures.append(time.time())
                if exc.code() in TRANSPORT:
                    turn = (turn + 1) % len(servers)  # the router's rotation
                    continue  # at once to the next server, as a retry
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, interval - (time.perf_counter() - t0)))

    await asyncio.gather(*(member(i) for i in range(first, first + count)))
    for c in channels:
        await c.close()
    print(
        json.dumps({"beats": beats, "failures": failures, "rejoins": rejoins}),
        flush=True,
    )


# -- the driver ---------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def leader_of(servers: list[AgentProcess]) -> AgentProcess:
    for s in servers:
        if not s.alive:
            continue
        async with grpc.aio.insecure_channel(s.rpc_addr) as ch:
            resp = await status_pb2_grpc.StatusServiceStub(ch).Leader(
                spb.LeaderRequest(), timeout=CALL_TIMEOUT
            )
        for t in servers:
            if t.rpc_addr == resp.address:
                return t
    raise RuntimeError("no leader known")


async def failed_members(server: AgentProcess) -> list[str]:
    async with grpc.aio.insecure_channel(server.rpc_addr) as ch:
        resp = await membership_pb2_grpc.MembershipServiceStub(ch).ListMembers(
            mpb.ListMembersRequest(), timeout=CALL_TIMEOUT
        )
    return [m.name for m in resp.members if m.status == mpb.MEMBER_STATUS_FAILED]


async def reconcile_lag(server: AgentProcess) -> float:
    """Join a probe member; seconds until its node has a passing serfHealth."""
    async with grpc.aio.insecure_channel(server.rpc_addr) as ch:
        probe = mpb.Member(
            name="probe", address="10.255.255.1:8301", datacenter="dc1", role=mpb.MEMBER_ROLE_NODE
        )
        t0 = time.monotonic()
        while True:  # a survivor busy with the failover may miss one deadline
            try:
                await membership_pb2_grpc.MembershipServiceStub(ch).Join(
                    mpb.JoinRequest(member=probe), timeout=CALL_TIMEOUT
                )
                break
            except grpc.aio.AioRpcError as exc:
                if exc.code() not in TRANSPORT or time.monotonic() - t0 > 60:
                    raise
        health = health_pb2_grpc.HealthServiceStub(ch)
        while time.monotonic() - t0 < 60:
            try:
                resp = await health.NodeChecks(
                    hpb.NodeChecksRequest(node="probe"), timeout=CALL_TIMEOUT
                )
                if any(c.check_id == "serfHealth" for c in resp.checks):
                    return time.monotonic() - t0
            except grpc.aio.AioRpcError:
                pass
            await asyncio.sleep(0.05)
    return float("nan")


async def etcd_revision(endpoint: str) -> int:
    """etcd's current revision: every write to the store bumps it."""
    from agent.store.etcd import EtcdStore

    async with EtcdStore([endpoint], "/bench-probe/") as store:
        _, revision = await store.get("none")
    return revision


async def one_size(size: int, args: argparse.Namespace) -> dict[str, object]:
    async with EtcdServer() as etcd:
        cluster = Cluster()
        try:
            flags = [
                *("--store", "etcd", "--etcd-endpoints", etcd.endpoint),
                *("--suspect-timeout", f"{SUSPECT:g}s", *QUIET),
            ]
            servers = [cluster.server(f"scale-s{i}", *flags) for i in (1, 2, 3)]
            args.etcd_endpoint = etcd.endpoint
            return await drive(size, args, servers)
        finally:
            await asyncio.to_thread(cluster.stop_all)


async def drive(
    size: int, args: argparse.Namespace, servers: list[AgentProcess]
) -> dict[str, object]:
    join_spread = size / 250  # joins at about 250/s
    # The load processes run until a fixed time; the steady state starts once
    # every member is in the catalog (the leader has reconciled them all).
    started = time.time()
    until = started + join_spread + 120 + args.duration + 2 * SUSPECT + 5
    per = -(-size // args.workers)
    procs = []
    for w in range(args.workers):
        spec = {
            "servers": [s.rpc_addr for s in servers],
            "first": w * per,
            "count": min(per, size - w * per),
            "until": until,
            "join_spread": join_spread,
        }
        procs.append(
            await asyncio.create_subprocess_exec(
                sys.executable,
                __file__,
                "--worker",
                json.dumps(spec),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
        )

    async def all_in_catalog() -> bool:
        try:
            async with grpc.aio.insecure_channel(servers[0].rpc_addr) as ch:
                resp = await catalog_pb2_grpc.CatalogServiceStub(ch).ListNodes(
                    cpb.ListNodesRequest(), timeout=30
                )
        except grpc.aio.AioRpcError:
            return False  # a busy server during the joins: not yet
        return len(resp.nodes) >= size + len(servers)

    try:
        return await _measure(size, args, servers, procs, all_in_catalog, started, join_spread)
    finally:
        for p in procs:
            if p.returncode is None:
                p.kill()
                await p.wait()


async def _measure(
    size: int,
    args: argparse.Namespace,
    servers: list[AgentProcess],
    procs: list[asyncio.subprocess.Process],
    all_in_catalog: Callable[[], Awaitable[bool]],
    started: float,
    join_spread: float,
) -> dict[str, object]:
    etcd_endpoint = args.etcd_endpoint

    ready_by = time.monotonic() + join_spread + 120
    while not await all_in_catalog():
        if time.monotonic() > ready_by:
            raise RuntimeError(f"{size} members not all in the catalog in time")
        await asyncio.sleep(1.0)
    steady_from = time.time()
    kill_at = steady_from + args.duration
    cpu0 = {s.name: cpu_seconds(s.proc.pid) for s in servers if s.proc}  # type: ignore[union-attr]
    rev0 = await etcd_revision(etcd_endpoint)
    t0 = time.monotonic()
    wrongly_failed_steady: set[str] = set()
    while time.time() < kill_at:
        with contextlib.suppress(grpc.aio.AioRpcError):
            wrongly_failed_steady |= set(await failed_members(servers[0]))
        await asyncio.sleep(min(2.0, max(0.0, kill_at - time.time())))
    steady_seconds = time.monotonic() - t0
    rev1 = await etcd_revision(etcd_endpoint)
    cpu = {
        s.name: (cpu_seconds(s.proc.pid) - cpu0[s.name]) / steady_seconds  # type: ignore[union-attr]
        for s in servers
    }
    rss = {s.name: rss_kib(s.proc.pid) / 1024 for s in servers}  # type: ignore[union-attr]
    leader = await leader_of(servers)
    await asyncio.to_thread(leader.kill)
    survivors = [s for s in servers if s is not leader]
    wrongly_failed_after: set[str] = set()
    after_until = time.time() + 2 * SUSPECT + 5
    while time.time() < after_until:
        try:
            names = await failed_members(survivors[0])
        except grpc.aio.AioRpcError:
            names = []
        wrongly_failed_after |= {n for n in names if n != leader.name}
        await asyncio.sleep(1.0)
    lag = await reconcile_lag(survivors[0])
    results = []
    for p in procs:
        out, _ = await p.communicate(b"")
        results.append(json.loads(out.decode().strip().splitlines()[-1]))
    beats = [b for r in results for b in r["beats"]]
    fails = [f for r in results for f in r["failures"]]
    steady = [lat for t, lat in beats if steady_from <= t < kill_at]
    after = [lat for t, lat in beats if t >= kill_at]
    return {
        "size": size,
        "steady_p50": percentile(steady, 50) * 1000,
        "steady_p99": percentile(steady, 99) * 1000,
        "after_p99": percentile(after, 99) * 1000,
        "beats": len(steady) + len(after),
        "joined_in": steady_from - started,
        "failed_steady": sum(1 for t in fails if steady_from <= t < kill_at),
        "failed_after": sum(1 for t in fails if t >= kill_at),
        "rejoins": sum(r["rejoins"] for r in results),
        "wrong_steady": len(wrongly_failed_steady),
        "wrong_after": len(wrongly_failed_after),
        "cpu": cpu,
        "rss": rss,
        "leader": leader.name,
        "lag": lag,
        "writes_per_min": (rev1 - rev0) / steady_seconds * 60,
        "steady_seconds": steady_seconds,
    }


async def main(args: argparse.Namespace) -> None:
    sizes = [int(s) for s in args.sizes.split(",")]
    print(
        f"members heartbeating 3 etcd servers (suspect timeout {SUSPECT:g}s), "
        f"{args.duration:g}s steady state, then SIGKILL of the leader; "
        f"{args.workers} load processes"
    )
    rows = []
    for size in sizes:
        r = await one_size(size, args)
        rows.append(r)
        cpu = " ".join(f"{v * 100:3.0f}%" for v in r["cpu"].values())  # type: ignore[attr-defined]
        rss = " ".join(f"{v:4.0f}" for v in r["rss"].values())  # type: ignore[attr-defined]
        print(
            f"{r['size']} members: heartbeat p50 {r['steady_p50']:6.1f} ms "
            f"p99 {r['steady_p99']:6.1f} ms (goal < 250), after kill p99 {r['after_p99']:7.1f} ms; "
            f"failed beats {r['failed_steady']}/{r['failed_after']} of {r['beats']}; "
            f"wrongly FAILED {r['wrong_steady']} steady, {r['wrong_after']} across the kill "
            f"(goal 0); all joined and reconciled in {r['joined_in']:.0f} s; "
            f"servers CPU {cpu}, RSS MiB {rss}; reconcile lag {r['lag']:.2f} s; "
            f"store writes {r['writes_per_min']:.0f}/min in steady state",
            flush=True,
        )
    if len(rows) > 1:
        a, b = rows[0], rows[-1]
        growth = b["size"] / a["size"]  # type: ignore[operator]
        cpu_a = sum(a["cpu"].values())  # type: ignore[attr-defined]
        cpu_b = sum(b["cpu"].values())  # type: ignore[attr-defined]
        print(
            f"{growth:.0f}x the members: p99 {b['steady_p99'] / a['steady_p99']:.2f}x, "  # type: ignore[operator]
            f"servers' CPU {cpu_b / cpu_a:.2f}x"
        )


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        asyncio.run(worker_main(json.loads(sys.argv[2])))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="250,1000,2500", help="member counts, one run each")
    parser.add_argument("--duration", type=float, default=20.0, help="steady-state seconds")
    parser.add_argument("--workers", type=int, default=2, help="load processes")
    asyncio.run(main(parser.parse_args()))
