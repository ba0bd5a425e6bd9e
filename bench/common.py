"""Shared bench helpers: agent processes, a bare grpc.aio echo server, a load loop."""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc

__all__ = [
    "QUIET",
    "ROOT",
    "EchoServer",
    "LoadResult",
    "catalog_reads",
    "compare",
    "merge",
    "percentile",
    "register_instances",
    "result_count",
    "router_servers",
    "rss_kib",
    "run_load",
    "wait_for",
]

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the generated stubs and tests.support live at the top
    sys.path.insert(0, str(ROOT))

# Agent flags that keep a bench's agents from logging every call (the last flag wins).
QUIET = ("--log-level", "WARNING")


def percentile(values: list[float], p: float) -> float:
    """The ``p``-th percentile of ``values`` (nearest rank), NaN when empty."""
    if not values:
        return float("nan")
    data = sorted(values)
    return data[min(len(data) - 1, int(p / 100 * len(data)))]


@dataclass
class LoadResult:
    label: str
    calls: int
    errors: int
    seconds: float
    latencies: list[float]

    @property
    def rate(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0

    def pct(self, p: float) -> float:
        """The ``p``-th percentile latency, in milliseconds."""
        return percentile(self.latencies, p) * 1000

    def line(self) -> str:
        med = statistics.median(self.latencies) * 1000 if self.latencies else float("nan")
        return (
            f"{self.label:<38} {self.rate:9.0f} calls/s  p50 {med:7.2f} ms"
            f"  p99 {self.pct(99):7.2f} ms  errors {self.errors}"
        )


async def run_load(
    label: str,
    call: Callable[[], Awaitable[object]],
    *,
    concurrency: int = 16,
    seconds: float = 3.0,
) -> LoadResult:
    """Call ``call`` from ``concurrency`` tasks for ``seconds``; bounded in count and time."""
    latencies: list[float] = []
    errors = 0
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds

    async def worker() -> None:
        nonlocal errors
        while loop.time() < end and len(latencies) < 2_000_000:
            t0 = time.perf_counter()
            try:
                await call()
            except grpc.aio.AioRpcError:
                errors += 1
                continue
            latencies.append(time.perf_counter() - t0)

    start = loop.time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return LoadResult(label, len(latencies), errors, loop.time() - start, latencies)


class EchoServer:
    """``bench.echo_server`` in its own process, so it does not share the load's CPU."""

    def __init__(self) -> None:
        self.proc: asyncio.subprocess.Process | None = None
        self.address = ""

    async def __aenter__(self) -> EchoServer:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.echo_server",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            cwd=ROOT,
        )
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 30)
        self.address = line.decode().strip()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()

    def caller(self, channel: grpc.aio.Channel, payload: bytes) -> Callable[[], Awaitable[object]]:
        method: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary(
            "/bench.Echo/Echo"
        )
        return lambda: method(payload, timeout=10)


def merge(label: str, results: list[LoadResult]) -> LoadResult:
    """Several runs of the same load (interleaved rounds) as one result."""
    return LoadResult(
        label,
        sum(r.calls for r in results),
        sum(r.errors for r in results),
        sum(r.seconds for r in results),
        [x for r in results for x in r.latencies],
    )


def compare(a: LoadResult, b: LoadResult, what: str) -> list[str]:
    """Ratio lines of ``a`` over ``b``: throughput, p50 and p99 latency."""
    return [
        f"throughput ratio {what}: {a.rate / b.rate:.2f}",
        f"p50 latency ratio {what}: {a.pct(50) / b.pct(50):.2f}",
        f"p99 latency ratio {what}: {a.pct(99) / b.pct(99):.2f}",
    ]


async def wait_for(
    predicate: Callable[[], Awaitable[object]],
    timeout: float = 30.0,
    what: str = "condition",
    interval: float = 0.05,
) -> object:
    """Poll the async ``predicate`` until it returns a truthy value (bounded)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last = "none"
    while loop.time() < deadline:
        try:
            value = await predicate()
            if value:
                return value
        except grpc.aio.AioRpcError as exc:
            last = f"{exc.code().name}: {exc.details()}"
        await asyncio.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}; last error: {last}")


async def register_instances(
    channel: grpc.aio.Channel, service: str, count: int, *, prefix: str = "node"
) -> None:
    """Register ``count`` instances of ``service``, one per external node, with a check."""
    from generated.consul.catalog.v1 import catalog_pb2 as cpb
    from generated.consul.catalog.v1 import catalog_pb2_grpc
    from generated.consul.common.v1 import types_pb2 as pb

    catalog = catalog_pb2_grpc.CatalogServiceStub(channel)
    for i in range(count):
        node = f"{prefix}-{i}"
        await catalog.Register(
            cpb.RegisterRequest(
                node=pb.Node(name=node, address=f"10.0.{i // 250}.{i % 250 + 1}"),
                service=pb.Service(name=service, port=8080, tags=["v1"]),
                checks=[
                    pb.HealthCheck(
                        node=node,
                        check_id=f"service:{service}",
                        name=f"{service} alive",
                        status=pb.HEALTH_STATUS_PASSING,
                        service_id=service,
                    )
                ],
            ),
            timeout=10,
        )


def catalog_reads(
    channel: grpc.aio.Channel, service: str, datacenter: str = ""
) -> dict[str, Callable[[], Awaitable[object]]]:
    """The catalog reads the benches measure, by name, on one channel:
    ``CatalogService.ListServiceInstances`` and ``HealthService.ServiceHealth``."""
    from generated.consul.catalog.v1 import catalog_pb2 as cpb
    from generated.consul.catalog.v1 import catalog_pb2_grpc
    from generated.consul.common.v1 import query_pb2 as qpb
    from generated.consul.health.v1 import health_pb2 as hpb
    from generated.consul.health.v1 import health_pb2_grpc

    catalog = catalog_pb2_grpc.CatalogServiceStub(channel)
    health = health_pb2_grpc.HealthServiceStub(channel)
    opts = qpb.QueryOptions(datacenter=datacenter)
    list_req = cpb.ListServiceInstancesRequest(service=service, options=opts)
    health_req = hpb.ServiceHealthRequest(service=service, options=opts)
    return {
        "ListServiceInstances": lambda: catalog.ListServiceInstances(list_req, timeout=10),
        "ServiceHealth": lambda: health.ServiceHealth(health_req, timeout=10),
    }


def result_count(response: object) -> int:
    """Instances or entries in a ``catalog_reads`` answer."""
    return len(getattr(response, "instances", None) or getattr(response, "entries", None) or [])


async def router_servers(channel: grpc.aio.Channel, datacenter: str = "") -> list[str]:
    """Names of the servers in an agent's router for ``datacenter`` (its own by default),
    in order: the first is the one in use (AgentService.Self)."""
    from generated.consul.agent.v1 import agent_pb2 as apb
    from generated.consul.agent.v1 import agent_pb2_grpc

    me = await agent_pb2_grpc.AgentServiceStub(channel).Self(apb.SelfRequest(), timeout=5)
    dc = datacenter or me.datacenter
    for router in me.routers:
        if router.datacenter == dc:
            return [s.name for s in router.servers]
    return []


def rss_kib(pid: int) -> int:
    """Resident set size of process ``pid`` in KiB (``VmRSS`` in /proc/<pid>/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")
