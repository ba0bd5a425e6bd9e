"""Soak: mixed load with vanishing clients and server restarts; resources per minute.

    .venv/bin/python bench/soak.py [--minutes 30] [--minute 60] [--rate 100]

Starts a real etcd, two etcd-backed servers and one client agent joined to
both, then for ``--minutes`` periods of ``--minute`` seconds each (30 x 60 s by
default; ``--minutes 5 --minute 10`` is a one-minute smoke run) runs against
the client agent's HTTP API:

- paced reads (``--rate`` per second): ``/v1/health/service/web?passing``,
  ``/v1/catalog/services``, ``/v1/kv/soak/<k>``;
- writes (a tenth of the rate): KV puts over a fixed set of 200 keys (the
  data does not grow), service (de)registrations of 20 instances of ``web``;
- blocking queries (``?index=&wait=60s``) opened on raw sockets and dropped
  at a random moment, 0.1-3 s in: the client vanishes mid-query;
- every third period, SIGKILL of one server and its restart a few seconds
  later (the client fails over to the other).

After each period it prints, for the client agent and each server (from
``/v1/agent/metrics``: Consul's ``consul.runtime.*`` gauges), RSS, asyncio
tasks and open FDs, plus the p99 latency of reads and writes in that period
and the errors. Flat columns after the first periods are the figure; the
reference is the first period's values (the last line prints the ratios).
Every loop is bounded in count and time; everything runs on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import QUIET, percentile
from tests.support.etcd import EtcdServer
from tests.support.procs import AgentProcess, Cluster

KEYS = 200
INSTANCES = 20
CALL_TIMEOUT = aiohttp.ClientTimeout(total=15)
MAX_IN_FLIGHT = 500


@dataclass
class Period:
    reads: list[float] = field(default_factory=list)
    writes: list[float] = field(default_factory=list)
    errors: int = 0
    dropped_queries: int = 0


@dataclass
class Gauges:
    rss_mib: float
    tasks: int
    fds: int

    def cell(self) -> str:
        return f"{self.rss_mib:6.1f} MiB {self.tasks:5d} tasks {self.fds:4d} fds"


async def gauges(session: aiohttp.ClientSession, agent: AgentProcess) -> Gauges | None:
    try:
        async with session.get(f"http://{agent.http_addr}/v1/agent/metrics") as resp:
            data = await resp.json()
    except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError):
        return None
    values = {g["Name"]: g["Value"] for g in data.get("Gauges", [])}
    return Gauges(
        values.get("consul.runtime.sys_bytes", 0.0) / 2**20,
        int(values.get("consul.runtime.num_goroutines", 0)),
        int(values.get("consul.runtime.open_fds", 0)),
    )


class Load:
    """The paced mixed load and the vanishing blocking queries, until stopped."""

    def __init__(self, client: AgentProcess, session: aiohttp.ClientSession, rate: float) -> None:
        self.base = f"http://{client.http_addr}"
        self.host, port = client.http_addr.rsplit(":", 1)
        self.port = int(port)
        self.session = session
        self.rate = rate
        self.rng = random.Random(7)
        self.period = Period()
        self.stopped = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    async def _timed(self, bucket: list[float], method: str, path: str, body: bytes = b"") -> None:
        t0 = time.perf_counter()
        try:
            async with self.session.request(method, self.base + path, data=body or None) as resp:
                await resp.read()
                if resp.status >= 500:
                    self.period.errors += 1
                    return
        except (aiohttp.ClientError, TimeoutError):
            self.period.errors += 1
            return
        bucket.append(time.perf_counter() - t0)

    async def _vanishing_query(self) -> None:
        """A blocking query on a raw socket, closed before the server answers."""
        try:
            _reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), 5
            )
        except (OSError, TimeoutError):
            self.period.errors += 1
            return
        try:
            path = "/v1/health/service/web?index=999999999&wait=60s"
            writer.write(f"GET {path} HTTP/1.1\r\nHost: soak\r\n\r\n".encode())
            await writer.drain()
            await asyncio.sleep(self.rng.uniform(0.1, 3.0))
            self.period.dropped_queries += 1
        finally:
            writer.close()

    def _one(self) -> asyncio.Task[None] | None:
        roll = self.rng.random()
        p = self.period
        if roll < 0.3:
            coro = self._timed(p.reads, "GET", "/v1/health/service/web?passing")
        elif roll < 0.5:
            coro = self._timed(p.reads, "GET", "/v1/catalog/services")
        elif roll < 0.8:
            coro = self._timed(p.reads, "GET", f"/v1/kv/soak/{self.rng.randrange(KEYS)}")
        elif roll < 0.85:
            key = self.rng.randrange(KEYS)
            coro = self._timed(p.writes, "PUT", f"/v1/kv/soak/{key}", b"x" * 256)
        elif roll < 0.9:
            i = self.rng.randrange(INSTANCES)
            if self.rng.random() < 0.5:
                body = json.dumps({"ID": f"web-{i}", "Name": "web", "Port": 8000 + i}).encode()
                coro = self._timed(p.writes, "PUT", "/v1/agent/service/register", body)
            else:
                coro = self._timed(p.writes, "PUT", f"/v1/agent/service/deregister/web-{i}")
        else:
            coro = self._vanishing_query()
        if len(self._tasks) >= MAX_IN_FLIGHT:
            coro.close()
            self.period.errors += 1
            return None
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        start, n = loop.time(), 0
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
            self._one()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=20)


async def main(args: argparse.Namespace) -> None:
    async with EtcdServer() as etcd:
        cluster = Cluster()
        try:
            flags = [
                *("--store", "etcd", "--etcd-endpoints", etcd.endpoint),
                *("--suspect-timeout", "3s", *QUIET),
            ]
            servers = [cluster.server(f"soak-s{i}", *flags) for i in (1, 2)]
            join = [a for s in servers for a in ("--retry-join", s.rpc_addr)]
            client = cluster.client("soak-c1", *join, *QUIET)
            await soak(args, cluster, servers, client)
        finally:
            await asyncio.to_thread(cluster.stop_all)


async def soak(
    args: argparse.Namespace, cluster: Cluster, servers: list[AgentProcess], client: AgentProcess
) -> None:
    agents = [client, *servers]
    async with aiohttp.ClientSession(timeout=CALL_TIMEOUT) as session:
        load = Load(client, session, args.rate)
        runner = asyncio.create_task(load.run())
        first: dict[str, Gauges] = {}
        last: dict[str, Gauges] = {}
        header = f"{'min':>3}  {'reads p99':>9} {'writes p99':>10} {'errors':>6} {'dropped':>7}"
        print(header + "".join(f"  {a.name:<32}" for a in agents), flush=True)
        for minute in range(1, args.minutes + 1):
            load.period = Period()
            restart = minute % 3 == 0 and minute < args.minutes
            if restart:
                victim = servers[minute // 3 % len(servers)]
                await asyncio.sleep(args.minute / 3)
                await asyncio.to_thread(victim.kill)
                await asyncio.sleep(args.minute / 6)
                await asyncio.to_thread(victim.start)
                await asyncio.sleep(args.minute / 2)
            else:
                await asyncio.sleep(args.minute)
            p = load.period
            cells = []
            for agent in agents:
                g = await gauges(session, agent)
                if g is None:
                    cells.append(f"{'(no answer)':<32}")
                    continue
                first.setdefault(agent.name, g)
                last[agent.name] = g
                cells.append(f"{g.cell():<32}")
            print(
                f"{minute:>3}  {percentile(p.reads, 99) * 1000:7.1f}ms "
                f"{percentile(p.writes, 99) * 1000:8.1f}ms {p.errors:>6} {p.dropped_queries:>7}"
                + "".join(f"  {c}" for c in cells)
                + ("  (server restarted)" if restart else ""),
                flush=True,
            )
        load.stopped.set()
        await runner
    for name, g0 in first.items():
        g1 = last[name]
        print(
            f"{name}: last/first RSS {g1.rss_mib / g0.rss_mib:.2f}x, "
            f"tasks {g1.tasks}/{g0.tasks}, fds {g1.fds}/{g0.fds}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=int, default=30, help="periods to run")
    parser.add_argument("--minute", type=float, default=60.0, help="seconds per period")
    parser.add_argument("--rate", type=float, default=100.0, help="requests per second")
    asyncio.run(main(parser.parse_args()))
