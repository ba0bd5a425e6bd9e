"""Membership fan-out: how fast a JOIN reaches 500 WatchMembers streams, and what they cost.

    .venv/bin/python bench/membership_fanout.py [--streams 500] [--workers 4] [--joins 10]
                                                [--store etcd|dev|both]

Starts one server (etcd-backed, with a real etcd; or a dev server on the
memory store). The reference comes first, in the same run: one worker
process holds ONE ``MembershipService.WatchMembers`` stream, the bench joins
a new member (``MembershipService.Join``, role node) ``--joins`` times and
measures, from just before each Join call, the time until the stream has
seen that member's JOIN event; the server's RSS (VmRSS in /proc) is then read
idle. Then ``--workers`` worker processes open ``--streams`` streams between
them (each stream on its own channel, as each client agent has its own
connection), the server's RSS is read again, and the same joins are timed
until EVERY stream has seen the JOIN. Prints p50/max of the delay with 1 and
with N streams, the ratio, and the server's memory per stream
((RSS with N streams - idle RSS) / N).

Worker protocol (``--worker ADDR N``): prints ``READY`` once all N streams
have their snapshot, then for each member name read from stdin prints a JSON
list of the monotonic times (``time.monotonic``, system-wide on Linux) at
which each stream saw that member's JOIN.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import QUIET, ROOT, rss_kib
from generated.consul.membership.v1 import membership_pb2 as mpb
from generated.consul.membership.v1 import membership_pb2_grpc
from tests.support.etcd import EtcdServer
from tests.support.procs import AgentProcess, Cluster

STREAM_DEADLINE = 120.0  # no stream of a bench lives longer than this
JOIN_WAIT = 30.0  # seconds for every stream to see one JOIN
DC = "dc1"
SCRIPT = str(Path(__file__).resolve())


# -- worker process -----------------------------------------------------------


async def worker(address: str, count: int) -> None:
    """Hold ``count`` WatchMembers streams; report when each sees a named JOIN."""
    channels = [grpc.aio.insecure_channel(address) for _ in range(count)]
    ready = 0
    all_ready = asyncio.Event()
    seen: dict[str, list[float | None]] = {}
    changed = asyncio.Event()

    async def watch(i: int) -> None:
        nonlocal ready
        stub = membership_pb2_grpc.MembershipServiceStub(channels[i])
        call = stub.WatchMembers(mpb.WatchMembersRequest(), timeout=STREAM_DEADLINE)
        async for msg in call:
            if msg.type == mpb.MEMBER_EVENT_TYPE_SNAPSHOT:
                ready += 1
                if ready == count:
                    all_ready.set()
            elif msg.type == mpb.MEMBER_EVENT_TYPE_JOIN:
                now = time.monotonic()
                for m in msg.members:
                    times = seen.setdefault(m.name, [None] * count)
                    if times[i] is None:
                        times[i] = now
                changed.set()

    tasks = [asyncio.create_task(watch(i)) for i in range(count)]
    try:
        ready_task = asyncio.create_task(all_ready.wait())
        # Ready, or a stream ended (an error) first, or the time is up.
        await asyncio.wait([ready_task, *tasks], timeout=60, return_when=asyncio.FIRST_COMPLETED)
        ready_task.cancel()
        if not all_ready.is_set():
            failed = [t.exception() for t in tasks if t.done() and t.exception()]
            print(f"NOT READY {ready}/{count} {failed[:1]}", flush=True)
            return
        print("READY", flush=True)
        while name := (await asyncio.to_thread(sys.stdin.readline)).strip():
            deadline = time.monotonic() + JOIN_WAIT
            while None in seen.get(name, [None]) and time.monotonic() < deadline:
                changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), 1)
            print(json.dumps(seen.get(name, [None] * count)), flush=True)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for ch in channels:
            await ch.close()


# -- bench ----------------------------------------------------------------------


class Workers:
    """``bench/membership_fanout.py --worker`` processes holding the streams."""

    def __init__(self, address: str, streams: int, processes: int) -> None:
        per, extra = divmod(streams, processes)
        self.counts = [per + (1 if i < extra else 0) for i in range(processes)]
        self.address = address
        self.procs: list[asyncio.subprocess.Process] = []

    async def __aenter__(self) -> Workers:
        for count in self.counts:
            self.procs.append(
                await asyncio.create_subprocess_exec(
                    sys.executable,
                    SCRIPT,
                    "--worker",
                    self.address,
                    str(count),
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    cwd=ROOT,
                )
            )
        for proc in self.procs:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), 90)
            if line.strip() != b"READY":
                raise RuntimeError(f"worker failed to open its streams: {line!r}")
        return self

    async def seen(self, name: str) -> list[float | None]:
        """Tell every worker ``name``; the JOIN times of all streams."""
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(f"{name}\n".encode())
            await proc.stdin.drain()
        out: list[float | None] = []
        for proc in self.procs:
            assert proc.stdout is not None
            out += json.loads(await asyncio.wait_for(proc.stdout.readline(), JOIN_WAIT + 10))
        return out

    async def __aexit__(self, *exc: object) -> None:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.close()
        for proc in self.procs:
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def join_delays(
    channel: grpc.aio.Channel, workers: Workers, label: str, joins: int
) -> list[float]:
    """Join ``joins`` members one after the other; every stream's delay for each, in s."""
    stub = membership_pb2_grpc.MembershipServiceStub(channel)
    delays: list[float] = []
    for j in range(joins):
        name = f"bench-{label}-{j}"
        member = mpb.Member(
            name=name, address="127.0.0.1:1", datacenter=DC, role=mpb.MEMBER_ROLE_NODE
        )
        t0 = time.monotonic()
        await stub.Join(mpb.JoinRequest(member=member), timeout=10)
        times = await workers.seen(name)
        missing = times.count(None)
        if missing:
            raise RuntimeError(f"{missing} of {len(times)} streams never saw the JOIN of {name}")
        delays += [t - t0 for t in times if t is not None]
        await stub.Leave(mpb.LeaveRequest(name=name, datacenter=DC), timeout=10)
    return delays


async def settled_rss(pid: int) -> int:
    """The RSS once it stops moving (bounded): three readings 0.2 s apart within 1 %."""
    last = [rss_kib(pid)]
    for _ in range(25):
        await asyncio.sleep(0.2)
        last = [*last[-2:], rss_kib(pid)]
        if len(last) == 3 and max(last) - min(last) <= max(last) // 100:
            break
    return last[-1]


def fmt(delays: list[float]) -> str:
    return (
        f"p50 {statistics.median(delays) * 1000:7.2f} ms  max {max(delays) * 1000:7.2f} ms"
        f"  ({len(delays)} deliveries)"
    )


async def measure(store: str, server: AgentProcess, args: argparse.Namespace) -> list[str]:
    assert server.proc is not None
    pid = server.proc.pid
    async with grpc.aio.insecure_channel(server.rpc_addr) as ch:
        async with Workers(server.rpc_addr, 1, 1) as one:
            ref = await join_delays(ch, one, "ref", args.joins)
        idle = await settled_rss(pid)
        async with Workers(server.rpc_addr, args.streams, args.workers) as many:
            loaded = await settled_rss(pid)
            fan = await join_delays(ch, many, "fan", args.joins)
    per_stream = (loaded - idle) / args.streams
    return [
        f"{store}: JOIN seen by 1 stream          {fmt(ref)}",
        f"{store}: JOIN seen by all {args.streams} streams   {fmt(fan)}",
        f"  delay ratio {args.streams}/1 streams: p50 "
        f"{statistics.median(fan) / statistics.median(ref):.2f}  max {max(fan) / max(ref):.2f}",
        f"{store}: server RSS idle {idle / 1024:.1f} MiB, with {args.streams} streams "
        f"{loaded / 1024:.1f} MiB: {per_stream:.1f} KiB per stream "
        f"({loaded / idle:.2f} x idle)",
    ]


async def main(args: argparse.Namespace) -> None:
    wall = time.monotonic()
    lines: list[str] = []
    if args.store in ("etcd", "both"):
        async with EtcdServer() as etcd:
            cluster = Cluster()
            try:
                server = cluster.server(
                    "bench-s1",
                    *("--store", "etcd", "--etcd-endpoints", etcd.endpoint, "--datacenter", DC),
                    *QUIET,
                )
                lines += await measure("etcd", server, args)
            finally:
                await asyncio.to_thread(cluster.stop_all)
    if args.store in ("dev", "both"):
        cluster = Cluster()
        try:
            server = cluster.server("bench-dev", "--dev", "--datacenter", DC, *QUIET)
            lines += await measure("dev", server, args)
        finally:
            await asyncio.to_thread(cluster.stop_all)
    print(
        f"{args.joins} joins per case; {args.streams} streams over {args.workers} worker "
        "processes, one channel per stream; delay from just before the Join call"
    )
    print("\n".join(lines))
    print(f"(total {time.monotonic() - wall:.0f} s)")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        asyncio.run(worker(sys.argv[2], int(sys.argv[3])))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=500)
    parser.add_argument("--workers", type=int, default=4, help="processes holding the streams")
    parser.add_argument("--joins", type=int, default=10, help="joins timed per case")
    parser.add_argument("--store", choices=["etcd", "dev", "both"], default="both")
    args = parser.parse_args()
    if args.streams < 1 or not 1 <= args.workers <= args.streams or args.joins < 1:
        parser.error("need --streams >= 1, 1 <= --workers <= --streams, --joins >= 1")
    try:
        asyncio.run(main(args))
    except (TimeoutError, RuntimeError) as exc:
        sys.exit(f"membership_fanout failed: {exc}")
