"""Reads through a client agent while the server it uses is killed with kill -9.

    .venv/bin/python bench/failover.py [--rate 200] [--before 4] [--window 2] [--after 2]
                                       [--suspect-timeout 10s]

Starts a real etcd, three etcd-backed servers and one client agent that knows
all three, registers 10 instances of a service, then sends a paced (open-loop)
load of ``CatalogService.ListServiceInstances`` through the client agent:
``--rate`` reads per second, each latency measured from the moment the read
was due, so a stall counts in full. After ``--before`` seconds the server the
client is using (AgentService.Self -> routers[0].servers[0]) is killed with
SIGKILL. Prints the failed reads, the worst latency, the p99 of the reads
around the kill (in flight at the kill, or due in the ``--window`` seconds
after it) beside the p99 of the reads answered before it (the ratio), when the
client first rotated away from the dead server, and when the dead server left
the client's router list (it must be FAILED first, after ``--suspect-timeout``).
The load runs until ``--after`` seconds past that.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import QUIET, percentile, register_instances, router_servers, wait_for
from generated.consul.catalog.v1 import catalog_pb2 as cpb
from generated.consul.catalog.v1 import catalog_pb2_grpc
from tests.support.etcd import EtcdServer
from tests.support.procs import AgentProcess, Cluster

INSTANCES = 10
GIVE_UP = 60.0  # seconds after the kill: the dead server never left the list


@dataclass(slots=True)
class Read:
    due: float  # loop time the read was scheduled for
    latency: float  # seconds from ``due`` to the answer (or the error)
    error: str  # "" when the read succeeded


class PacedLoad:
    """``rate`` reads per second, each in its own task, until stopped (bounded)."""

    def __init__(self, channel: grpc.aio.Channel, rate: float) -> None:
        self.catalog = catalog_pb2_grpc.CatalogServiceStub(channel)
        self.rate = rate
        self.reads: list[Read] = []
        self.stopped = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    async def _one(self, due: float) -> None:
        loop = asyncio.get_running_loop()
        error = ""
        try:
            resp = await self.catalog.ListServiceInstances(
                cpb.ListServiceInstancesRequest(service="web"), timeout=10
            )
            if len(resp.instances) != INSTANCES:
                error = f"wrong answer: {len(resp.instances)} instances"
        except grpc.aio.AioRpcError as exc:
            error = f"{exc.code().name}: {exc.details()}"
        self.reads.append(Read(due, loop.time() - due, error))

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        start = loop.time()
        n = 0
        while not self.stopped.is_set():
            due = start + n / self.rate
            n += 1
            delay = due - loop.time()
            if delay > 0:
                try:
                    await asyncio.wait_for(self.stopped.wait(), delay)
                    break
                except TimeoutError:
                    pass
            if len(self._tasks) < 5000:  # bound the outstanding reads
                task = asyncio.create_task(self._one(due))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=15)


async def main(args: argparse.Namespace) -> None:
    wall = time.monotonic()
    async with EtcdServer() as etcd:
        cluster = Cluster()
        try:
            flags = [
                *("--store", "etcd", "--etcd-endpoints", etcd.endpoint, "--datacenter", "dc1"),
                *("--suspect-timeout", args.suspect_timeout, *QUIET),
            ]
            servers = [cluster.server(f"bench-s{i}", *flags) for i in (1, 2, 3)]
            join = [a for s in servers for a in ("--retry-join", s.rpc_addr)]
            client = cluster.client("bench-c1", "--datacenter", "dc1", *join, *QUIET)
            await run(args, servers, client.grpc_addr, wall)
        finally:
            await asyncio.to_thread(cluster.stop_all)


async def run(
    args: argparse.Namespace, servers: list[AgentProcess], client_addr: str, wall: float
) -> None:
    loop = asyncio.get_running_loop()
    names = {s.name for s in servers}
    async with (
        grpc.aio.insecure_channel(client_addr) as ch,
        grpc.aio.insecure_channel(client_addr) as watch_ch,
    ):

        async def knows_all() -> bool:
            return set(await router_servers(watch_ch)) == names

        await wait_for(knows_all, timeout=30, what="the client agent to know 3 servers")
        await register_instances(ch, "web", INSTANCES)

        load = PacedLoad(ch, args.rate)
        load_task = asyncio.create_task(load.run())
        start = loop.time()
        await asyncio.sleep(args.before)
        in_use = (await router_servers(watch_ch))[0]
        victim = next(s for s in servers if s.name == in_use)
        killed = loop.time()
        await asyncio.to_thread(victim.kill)

        # Poll the router list until the dead server has left it.
        rotated = gone = None
        while loop.time() - killed < GIVE_UP:
            try:
                current = await router_servers(watch_ch)
            except grpc.aio.AioRpcError:
                current = [in_use]
            now = loop.time()
            if rotated is None and current and current[0] != in_use:
                rotated = now - killed
            if in_use not in current:
                gone = now - killed
                break
            await asyncio.sleep(0.02)
        final = await router_servers(watch_ch)
        await asyncio.sleep(max(0.0, args.after - (loop.time() - killed - (gone or 0))))
        load.stopped.set()
        await load_task

    # "Before": reads answered before the kill was sent (after a warm-up second).
    # "Around": every other read due before kill + window, so the reads in flight
    # at the kill (the ones a transport failure hits) count there.
    warm = start + 1.0
    before = [
        r.latency
        for r in load.reads
        if warm <= r.due and r.due + r.latency < killed and not r.error
    ]
    after = [r for r in load.reads if r.due + r.latency >= killed]
    window = [r for r in after if r.due < killed + args.window]
    failed = Counter(r.error for r in load.reads if r.error)
    p99_before = percentile(before, 99) * 1000
    p99_window = percentile([r.latency for r in window], 99) * 1000
    worst = max((r.latency for r in after), default=float("nan")) * 1000
    worst_before = max(before, default=float("nan")) * 1000
    print(
        f"paced load {args.rate:g} reads/s through the client agent; 3 etcd servers, "
        f"suspect timeout {args.suspect_timeout}; killed {in_use} (the server in use) "
        f"at t={killed - start:.1f} s"
    )
    print(
        f"reads: {len(load.reads)} total, {len(after)} answered after the kill, "
        f"failed {sum(failed.values())}"
    )
    for error, count in failed.most_common(5):
        print(f"  {count} x {error}")
    print(
        f"before the kill  ({len(before)} reads): p50 {percentile(before, 50) * 1000:7.2f} ms"
        f"  p99 {p99_before:7.2f} ms  worst {worst_before:7.2f} ms"
    )
    print(
        f"around the kill   ({len(window)} reads): "
        f"p50 {percentile([r.latency for r in window], 50) * 1000:7.2f} ms"
        f"  p99 {p99_window:7.2f} ms  worst {worst:7.2f} ms (worst of all reads after the kill)"
    )
    slow = Counter(
        int(r.due - killed) if r.due >= killed else -1
        for r in after
        if r.latency > 4 * p99_before / 1000
    )
    print(
        f"reads after the kill slower than 4 x p99-before: {sum(slow.values())}"
        + (" (count by second due after the kill, -1 = in flight at the kill: " if slow else "")
        + ", ".join(f"{sec:+d} s: {n}" for sec, n in sorted(slow.items()))
        + (")" if slow else "")
    )
    print(f"p99 ratio around-the-kill/before: {p99_window / p99_before:.2f}")
    print(f"worst latency after the kill / p99 before: {worst / p99_before:.1f}")
    print(
        "client rotated off the dead server after "
        + (f"{rotated:.2f} s" if rotated is not None else "never (within the wait)")
    )
    print(
        "dead server left the client's router list after "
        + (f"{gone:.2f} s" if gone is not None else f"more than {GIVE_UP:.0f} s")
        + f" (suspect timeout {args.suspect_timeout}); list now {final}"
    )
    print(f"(total {time.monotonic() - wall:.0f} s)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0, help="reads per second")
    parser.add_argument("--before", type=float, default=4.0, help="seconds of load before the kill")
    parser.add_argument("--window", type=float, default=2.0, help="seconds from the kill compared")
    parser.add_argument("--after", type=float, default=2.0, help="seconds of load after removal")
    parser.add_argument("--suspect-timeout", default="10s", help="servers' --suspect-timeout")
    args = parser.parse_args()
    if args.rate <= 0 or args.before < 1.5 or args.window <= 0:
        parser.error("--rate must be > 0, --before >= 1.5 s, --window > 0")
    try:
        asyncio.run(main(args))
    except (TimeoutError, RuntimeError) as exc:
        sys.exit(f"failover failed: {exc}")
