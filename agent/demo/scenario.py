"""The demo's guided scenario: register, discover, fail over, reach dc2."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import grpc
from google.protobuf.duration_pb2 import Duration

from agent.demo.cluster import (
    CALL_TIMEOUT,
    DC2,
    STEP_TIMEOUT,
    WEB_TTL,
    AgentProcess,
    DemoCluster,
    DemoError,
    poll,
    say,
)
from generated.consul.agent.v1 import agent_pb2 as apb
from generated.consul.agent.v1 import agent_pb2_grpc
from generated.consul.common.v1 import query_pb2 as qpb
from generated.consul.common.v1 import types_pb2 as pb
from generated.consul.health.v1 import health_pb2 as hpb
from generated.consul.health.v1 import health_pb2_grpc as hpb_grpc

__all__ = ["Scenario", "StepResult"]

# -- the scenario ------------------------------------------------------------------


@dataclass
class StepResult:
    title: str
    status: str = "not run"  # ok | FAILED | skipped | not run
    seconds: float = 0.0
    details: list[str] = field(default_factory=list)


def _web_definition() -> apb.ServiceDefinition:
    return apb.ServiceDefinition(
        service=pb.Service(id="web-1", name="web", address="127.0.0.1", port=8080, tags=["demo"]),
        checks=[
            apb.CheckDefinition(
                name="web TTL",
                notes="passed by the demo's heartbeat",
                definition=pb.CheckDefinition(ttl=Duration(seconds=int(WEB_TTL))),
            )
        ],
    )


WEB_CHECK = "service:web-1"


def _status(value: int) -> str:
    return pb.HealthStatus.Name(value).removeprefix("HEALTH_STATUS_").lower()  # type: ignore[arg-type]


class Scenario:
    """The four steps; each records a StepResult and raises DemoError on failure."""

    def __init__(self, cluster: DemoCluster) -> None:
        self.cluster = cluster
        self.results: list[StepResult] = []

    async def run(self) -> bool:
        steps: list[tuple[str, Callable[[], Awaitable[list[str] | None]]]] = [
            ('Register "web" with a TTL check through client-1, pass the TTL', self.register),
            ('Discover "web" through client-2 (passing only)', self.discover),
            ("kill -9 the server client-2 uses; discovery keeps working", self.failover),
            ('Register "api" in dc2, query it from client-1 with datacenter=dc2', self.cross_dc),
        ]
        self.results = [StepResult(title) for title, _ in steps]
        for n, ((title, step), result) in enumerate(zip(steps, self.results, strict=True), 1):
            say(f"\n[{n}/{len(steps)}] {title}")
            t0 = time.monotonic()
            try:
                details = await step()
            except DemoError as exc:
                result.status, result.seconds = "FAILED", time.monotonic() - t0
                say(f"      FAILED after {result.seconds:.1f}s: {exc}")
                return False
            except grpc.aio.AioRpcError as exc:
                result.status, result.seconds = "FAILED", time.monotonic() - t0
                say(f"      FAILED: {exc.code().name}: {exc.details()}")
                return False
            result.seconds = time.monotonic() - t0
            if details is None:
                result.status = "skipped"
                continue
            result.status, result.details = "ok", details
            say(f"      ok ({result.seconds:.1f}s)")
        return True

    def summary(self) -> None:
        say("\nSummary")
        for n, r in enumerate(self.results, 1):
            say(f"  {n}. {r.status:<7} {r.seconds:5.1f}s  {r.title}")
            for line in r.details[-1:]:
                say(f"                    {line}")

    def _c(self, n: int) -> AgentProcess:
        return self.cluster.clients[n - 1]

    async def register(self) -> list[str]:
        c1 = self._c(1)
        stub = agent_pb2_grpc.AgentServiceStub(self.cluster.channel(c1))
        await stub.RegisterService(
            apb.RegisterServiceRequest(definition=_web_definition()), timeout=CALL_TIMEOUT
        )
        say(
            f"      registered web-1 (127.0.0.1:8080) on {c1.name},"
            f" check {WEB_CHECK} ttl {WEB_TTL:.0f}s"
        )

        async def passed() -> str | None:
            await stub.UpdateTTL(
                apb.UpdateTTLRequest(
                    check_id=WEB_CHECK, status=pb.HEALTH_STATUS_PASSING, output="web is up"
                ),
                timeout=CALL_TIMEOUT,
            )
            checks = await stub.ListChecks(apb.ListChecksRequest(), timeout=CALL_TIMEOUT)
            for c in checks.checks:
                if c.check_id == WEB_CHECK and c.status == pb.HEALTH_STATUS_PASSING:
                    return c.output
            return None

        output = await poll(f"{WEB_CHECK} to pass on {c1.name}", passed, STEP_TIMEOUT)
        say(f"      TTL passed: {WEB_CHECK} is passing ({output!r})")
        self.cluster.spawn_task(self._heartbeat(stub))
        return [f"web-1 registered on {c1.name}, TTL check passing"]

    async def _heartbeat(self, stub: agent_pb2_grpc.AgentServiceAsyncStub) -> None:
        """The "application": pass the TTL every third of it, for the demo's life."""
        warned = False
        while True:
            await asyncio.sleep(WEB_TTL / 3)
            try:
                await stub.UpdateTTL(
                    apb.UpdateTTLRequest(
                        check_id=WEB_CHECK, status=pb.HEALTH_STATUS_PASSING, output="web is up"
                    ),
                    timeout=CALL_TIMEOUT,
                )
                warned = False
            except grpc.aio.AioRpcError as exc:
                if not warned:
                    say(f"  (web heartbeat failed: {exc.code().name}: {exc.details()})")
                    warned = True

    async def _passing(
        self, agent: AgentProcess, service: str, datacenter: str = ""
    ) -> list[str] | None:
        """Passing instances of ``service`` through ``agent``, one line each; None if none."""
        resp = await hpb_grpc.HealthServiceStub(self.cluster.channel(agent)).ServiceHealth(
            hpb.ServiceHealthRequest(
                service=service,
                passing_only=True,
                options=qpb.QueryOptions(datacenter=datacenter),
            ),
            timeout=CALL_TIMEOUT,
        )
        found = []
        for e in resp.entries:
            checks = ", ".join(f"{c.check_id}={_status(c.status)}" for c in e.checks)
            found.append(
                f"{e.service.name} -> node {e.node.name} ({e.node.datacenter})"
                f" {e.service.address}:{e.service.port}  [{checks}]"
            )
        return found or None

    async def discover(self) -> list[str]:
        c2 = self._c(2)
        found = await poll(f"web through {c2.name}", lambda: self._passing(c2, "web"), STEP_TIMEOUT)
        for line in found:
            say(f"      {line}")
        return [found[0]]

    async def failover(self) -> list[str] | None:
        cluster, c2 = self.cluster, self._c(2)
        if len(cluster.servers) < 2:
            say("      skipped: dc1 has one server (no etcd), so there is nothing to fail over to")
            return None
        before = await cluster.router(c2)
        if not before:
            raise DemoError(f"{c2.name} has no dc1 server in its router")
        victim = cluster.agent(before[0])
        say(f"      {c2.name} router: {', '.join(before)} (in use: {victim.name})")
        stats = _ReadStats()
        stop = asyncio.Event()
        reader = asyncio.create_task(self._read_loop(c2, stop, stats))
        try:
            await poll("a first read through client-2", stats.ok_after(0), STEP_TIMEOUT)
            say(f"      kill -9 {victim.name} (pid {victim.pid})")
            t0, reads_at_kill = time.monotonic(), stats.ok
            await victim.kill()

            async def dropped() -> list[str] | None:
                now = await cluster.router(c2)
                return now if victim.name not in now else None

            after = await poll(f"{victim.name} to leave {c2.name}'s router", dropped, STEP_TIMEOUT)
            gone = time.monotonic() - t0
            say(
                f"      {victim.name} left {c2.name}'s router after {gone:.1f}s: {', '.join(after)}"
            )
            await poll(
                "three more reads through client-2", stats.ok_after(stats.ok + 2), STEP_TIMEOUT
            )
        finally:
            stop.set()
            await asyncio.wait({reader}, timeout=CALL_TIMEOUT + 1)
            if not reader.done():
                reader.cancel()
        line = (
            f"discovery through {c2.name} during the failover:"
            f" {stats.ok - reads_at_kill} reads after the kill, {len(stats.failures)} failed"
        )
        say(f"      {line}")
        if stats.failures:
            raise DemoError(f"reads failed during the failover: {'; '.join(stats.failures[:5])}")
        return [f"{victim.name} killed, gone from {c2.name}'s router in {gone:.1f}s; {line}"]

    async def _read_loop(self, agent: AgentProcess, stop: asyncio.Event, stats: _ReadStats) -> None:
        while not stop.is_set():
            try:
                if await self._passing(agent, "web"):
                    stats.ok += 1
                else:
                    stats.failures.append("web not found")
            except grpc.aio.AioRpcError as exc:
                stats.failures.append(f"{exc.code().name}: {exc.details()}")
            await asyncio.sleep(0.05)

    async def cross_dc(self) -> list[str]:
        cluster, c1 = self.cluster, self._c(1)
        assert cluster.dc2 is not None
        await agent_pb2_grpc.AgentServiceStub(cluster.channel(cluster.dc2)).RegisterService(
            apb.RegisterServiceRequest(
                definition=apb.ServiceDefinition(
                    service=pb.Service(id="api-1", name="api", address="127.0.0.1", port=9090)
                )
            ),
            timeout=CALL_TIMEOUT,
        )
        say(f"      registered api-1 (127.0.0.1:9090) on {cluster.dc2.name} in {DC2}")
        found = await poll(
            f"api in {DC2} through {c1.name}",
            lambda: self._passing(c1, "api", DC2),
            STEP_TIMEOUT,
        )
        for line in found:
            say(f"      {c1.name}, datacenter={DC2}: {line}")
        return [f"{c1.name} found api in {DC2}: {found[0].split(' -> ')[1].split('  [')[0]}"]


@dataclass
class _ReadStats:
    ok: int = 0
    failures: list[str] = field(default_factory=list)

    def ok_after(self, count: int) -> Callable[[], Awaitable[bool | None]]:
        async def check() -> bool | None:
            return True if self.ok > count else None

        return check

