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

__all__ = ["ROOT", "EchoServer", "LoadResult", "run_load"]

ROOT = Path(__file__).resolve().parents[1]


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
        if not self.latencies:
            return float("nan")
        data = sorted(self.latencies)
        return data[min(len(data) - 1, int(p / 100 * len(data)))] * 1000

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
        method = channel.unary_unary("/bench.Echo/Echo")
        return lambda: method(payload, timeout=10)
