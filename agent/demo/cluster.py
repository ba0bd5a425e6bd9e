"""The demo's cluster: etcd (optional), dc1 servers, one dc2 server, two dc1 clients."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import shlex
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agent.demo.procs import (
    PROBE_TIMEOUT,
    Child,
    LoopbackAddrs,
    agent_command,
    etcd_command,
    free_port,
    http_get,
)
from generated.consul.agent.v1 import agent_pb2 as apb
from generated.consul.agent.v1 import agent_pb2_grpc
from generated.consul.catalog.v1 import catalog_pb2 as cpb
from generated.consul.catalog.v1 import catalog_pb2_grpc

__all__ = ["AgentProcess", "DemoCluster", "DemoError", "EtcdProcess", "NotYet", "poll", "say"]

T = TypeVar("T")

#: Pace of every bounded poll.
POLL = 0.1
#: Start-up of the whole cluster: seven Python processes importing grpc on a small
#: machine take a few seconds each, in parallel.
READY_TIMEOUT = 60.0
#: One scenario step (the failover step waits for suspect timeout plus reconcile).
STEP_TIMEOUT = 30.0
#: One RPC through a client agent: more than its 7 s rpc hold timeout, so a read
#: retried on another server after a failover still fits in one call.
CALL_TIMEOUT = 10.0
#: SIGINT -> SIGKILL for an agent: a client's graceful leave waits at most 5 s
#: for a server, a server drains its listeners for 2 s.
AGENT_GRACE = 8.0
ETCD_GRACE = 5.0
#: The ``web`` TTL, passed every third of it by the demo's heartbeat.
WEB_TTL = 15.0
#: Fast failure detection, so the failover step takes seconds: a killed server
#: or client is FAILED after 2 s without heartbeats, reaped after 30 s.
AGENT_FLAGS = ("--suspect-timeout", "2s", "--reconnect-timeout", "30s")
DC1, DC2 = "dc1", "dc2"
ETCD_INSTALL_HINT = "apt-get install etcd-server"


class DemoError(Exception):
    """A start-up or scenario failure, with a message for the user."""


class NotYet(Exception):
    """Raised by a poll check to say what it saw; the last one is in the timeout message."""


def say(text: str = "") -> None:
    print(text, flush=True)


class EtcdProcess(Child):
    """A one-member etcd on loopback with its data under the demo's directory.

    25 ms heartbeat and 250 ms election timeout (a single member on loopback
    has no peers to wait for) bring etcd's minimum lease TTL down to 1 s.
    """

    def __init__(self, binary: str, root: Path, hurry: asyncio.Event) -> None:
        super().__init__("etcd", root / "etcd.log", hurry)
        self.binary = binary
        self.data_dir = root / "etcd-data"
        self.client_port = free_port()
        self.peer_port = free_port()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    def argv(self) -> list[str]:
        return etcd_command(self.binary, "demo", self.data_dir, self.client_port, self.peer_port)

    def new_ports(self) -> None:
        self.client_port, self.peer_port = free_port(), free_port()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    async def healthy(self) -> bool:
        status, body = await http_get("127.0.0.1", self.client_port, "/health")
        return status == 200 and b'"health":"true"' in body.replace(b" ", b"")


class AgentProcess(Child, LoopbackAddrs):
    """``python -m agent.cli agent ...`` on free loopback ports."""

    def __init__(
        self,
        name: str,
        datacenter: str,
        root: Path,
        hurry: asyncio.Event,
        *,
        server: bool,
        args: Iterable[str] = (),
    ) -> None:
        super().__init__(name, root / f"{name}.log", hurry)
        self.datacenter = datacenter
        self.server = server
        self.args = list(args)
        self.data_dir = root / name
        self.rpc_port = self.grpc_port = self.http_port = 0
        self.new_ports()

    def new_ports(self) -> None:
        self.rpc_port, self.grpc_port, self.http_port = free_port(), free_port(), free_port()

    def argv(self) -> list[str]:
        cmd = agent_command(
            self.name,
            grpc_addr=self.grpc_addr,
            http_addr=self.http_addr,
            rpc_addr=self.rpc_addr if self.server else None,
            args=["--datacenter", self.datacenter, "--data-dir", str(self.data_dir)],
        )
        return cmd + list(AGENT_FLAGS) + self.args


def _bind_failed(log: str) -> bool:
    text = log.lower()
    return "already in use" in text or "cannot bind" in text


async def poll(what: str, check: Callable[[], Awaitable[T | None]], timeout: float) -> T:
    """Call ``check`` every POLL seconds until it returns something other than None.

    gRPC errors and NotYet count as "not yet"; the last one is in the timeout message.
    """
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        try:
            value = await check()
            if value is not None:
                return value
        except grpc.aio.AioRpcError as exc:
            last = f"{exc.code().name}: {exc.details()}"
        except NotYet as exc:
            last = str(exc)
        if time.monotonic() >= deadline:
            suffix = f" (last seen: {last})" if last else ""
            raise DemoError(f"timed out after {timeout:.0f}s waiting for {what}{suffix}")
        await asyncio.sleep(POLL)


# -- the cluster -------------------------------------------------------------------


class DemoCluster:
    """etcd (optional), dc1 servers, one dc2 server, two dc1 clients; an async context manager.

    ``aclose`` is bounded and idempotent; it also removes the temporary
    directory unless ``keep_logs``.
    """

    def __init__(self, *, etcd: str | None, keep_logs: bool = False) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="consul-grpc-demo-"))
        self.keep_logs = keep_logs
        self.hurry = asyncio.Event()
        self.etcd = EtcdProcess(etcd, self.root, self.hurry) if etcd else None
        self.servers: list[AgentProcess] = []
        self.clients: list[AgentProcess] = []
        self.dc2: AgentProcess | None = None
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    @property
    def agents(self) -> list[AgentProcess]:
        dc2 = [self.dc2] if self.dc2 is not None else []
        return [*self.servers, *dc2, *self.clients]

    def children(self) -> list[Child]:
        etcd: list[Child] = [self.etcd] if self.etcd is not None else []
        return [*etcd, *self.agents]

    def agent(self, name: str) -> AgentProcess:
        for a in self.agents:
            if a.name == name:
                return a
        raise DemoError(f"no agent named {name!r}")

    def channel(self, agent: AgentProcess) -> grpc.aio.Channel:
        """The demo's channel to ``agent``'s gRPC API (one per agent, reused)."""
        ch = self._channels.get(agent.name)
        if ch is None:
            ch = self._channels[agent.name] = grpc.aio.insecure_channel(agent.grpc_addr)
        return ch

    def spawn_task(self, coro: Awaitable[None]) -> None:
        """A background task owned by the cluster, cancelled by ``aclose``."""

        async def run() -> None:
            await coro

        task = asyncio.create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- start -------------------------------------------------------------------

    async def start(self) -> None:
        if self.etcd is not None:
            await self._start_etcd(self.etcd)
            store = ["--store", "etcd", "--etcd-endpoints", self.etcd.endpoint]
            count = 3
        else:
            store, count = ["--store", "memory"], 1
        for i in range(1, count + 1):
            self.servers.append(
                AgentProcess(f"server-{i}", DC1, self.root, self.hurry, server=True, args=store)
            )
        wan = [arg for s in self.servers for arg in ("--retry-join-wan", s.rpc_addr)]
        self.dc2 = AgentProcess(
            "dc2-server", DC2, self.root, self.hurry, server=True, args=["--store", "memory", *wan]
        )
        join = [arg for s in self.servers for arg in ("--retry-join", s.rpc_addr)]
        for i in (1, 2):
            self.clients.append(
                AgentProcess(f"client-{i}", DC1, self.root, self.hurry, server=False, args=join)
            )
        for agent in self.agents:  # all at once: joins are retried until the others listen
            agent.spawn()
        await asyncio.gather(*(self._wait_serving(a) for a in self.agents))
        names = {s.name for s in self.servers}
        for client in self.clients:
            await poll(
                f"{client.name} to learn every dc1 server",
                functools.partial(self._knows, client, names),
                READY_TIMEOUT,
            )
        await poll("the WAN (dc1 and dc2 seen from client-1)", self._wan_formed, READY_TIMEOUT)

    async def _start_etcd(self, etcd: EtcdProcess) -> None:
        for attempt in range(3):  # a free port may be taken before etcd binds it
            etcd.spawn()
            deadline = time.monotonic() + READY_TIMEOUT
            while time.monotonic() < deadline:
                if not etcd.alive or await etcd.healthy():
                    break
                await asyncio.sleep(POLL)
            if etcd.alive and await etcd.healthy():
                return
            log = etcd.log_tail(30)
            await etcd.stop(signal.SIGTERM, ETCD_GRACE)
            if attempt == 2 or not _bind_failed(log):
                raise DemoError(f"etcd did not start (log {etcd.log_path}):\n{log}")
            etcd.new_ports()

    async def _wait_serving(self, agent: AgentProcess) -> None:
        async def serving() -> bool | None:
            if not agent.alive:
                log = agent.log_tail(30)
                if attempts[0] < 3 and _bind_failed(log):
                    attempts[0] += 1
                    await self._drop_channel(agent)
                    agent.new_ports()
                    agent.spawn()
                    return None
                raise DemoError(
                    f"{agent.name} exited while starting (log {agent.log_path}):\n{log}"
                )
            stub = health_pb2_grpc.HealthStub(self.channel(agent))
            resp = await stub.Check(health_pb2.HealthCheckRequest(), timeout=PROBE_TIMEOUT)
            return True if resp.status == health_pb2.HealthCheckResponse.SERVING else None

        attempts = [0]
        await poll(f"{agent.name} to serve on {agent.grpc_addr}", serving, READY_TIMEOUT)

    async def _drop_channel(self, agent: AgentProcess) -> None:
        ch = self._channels.pop(agent.name, None)
        if ch is not None:
            await ch.close()

    async def router(self, agent: AgentProcess) -> list[str]:
        """The local-datacenter servers of ``agent``'s router, the one in use first."""
        me = await agent_pb2_grpc.AgentServiceStub(self.channel(agent)).Self(
            apb.SelfRequest(), timeout=CALL_TIMEOUT
        )
        for r in me.routers:
            if r.datacenter == me.datacenter:
                return [s.name for s in r.servers]
        return []

    async def _knows(self, agent: AgentProcess, names: set[str]) -> bool:
        servers = await self.router(agent)
        if set(servers) != names:
            raise NotYet(f"{agent.name}'s router: {', '.join(servers) or '(empty)'}")
        return True

    async def _wan_formed(self) -> bool:
        dcs = await catalog_pb2_grpc.CatalogServiceStub(
            self.channel(self.clients[0])
        ).ListDatacenters(cpb.ListDatacentersRequest(), timeout=CALL_TIMEOUT)
        if not {DC1, DC2} <= set(dcs.datacenters):
            seen = ", ".join(dcs.datacenters)
            raise NotYet(f"{self.clients[0].name} sees datacenters {seen}")
        return True

    # -- stop --------------------------------------------------------------------

    async def aclose(self) -> None:
        """Stop everything, clients first; bounded (about 25 s at worst)."""
        if self._closed:
            return
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2.0)
        for ch in list(self._channels.values()):
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ch.close(), 2.0)
        self._channels.clear()
        running = [c for c in self.children() if c.alive]
        if running:
            say(f"Stopping {len(running)} processes ...")
        await asyncio.gather(*(c.stop(signal.SIGINT, AGENT_GRACE) for c in self.clients))
        servers = [*self.servers, *([self.dc2] if self.dc2 is not None else [])]
        await asyncio.gather(*(s.stop(signal.SIGINT, AGENT_GRACE) for s in servers))
        if self.etcd is not None:
            await self.etcd.stop(signal.SIGTERM, ETCD_GRACE)
        if self.keep_logs:
            say(f"Logs kept in {self.root}")
        else:
            shutil.rmtree(self.root, ignore_errors=True)
        left = [c.name for c in self.children() if c.alive]
        say(f"Stopped; still running: {', '.join(left)}" if left else "Stopped.")

    async def __aenter__(self) -> DemoCluster:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


# -- what to look at ---------------------------------------------------------------


def _cli() -> str:
    found = shutil.which("consul-grpc")
    return "consul-grpc" if found else f"{shlex.quote(sys.executable)} -m agent.cli"


async def print_addresses(cluster: DemoCluster) -> None:
    rows = [("NAME", "ROLE", "DC", "gRPC API", "server RPC", "HTTP", "PID")]
    for a in cluster.agents:
        role = "server" if a.server else "client"
        rpc = a.rpc_addr if a.server else "-"
        rows.append((a.name, role, a.datacenter, a.grpc_addr, rpc, a.http_addr, str(a.pid)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        say("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    c1, c2 = cluster.clients
    cli = _cli()
    say("\nTry, in another terminal:")
    say(f"  {cli} members --grpc-addr {c1.grpc_addr}")
    say(f"  {cli} members --wan --grpc-addr {cluster.servers[0].grpc_addr}")
    say(f"  {cli} catalog services --grpc-addr {c2.grpc_addr}")
    say(f"  {cli} catalog services --datacenter {DC2} --grpc-addr {c1.grpc_addr}")
    say(f"  {cli} kv put greeting hello --grpc-addr {c1.grpc_addr}")
    if shutil.which("grpcurl"):
        say(f"  grpcurl -plaintext {c1.grpc_addr} list")
    status, _ = await http_get("127.0.0.1", c1.http_port, "/v1/status/leader")
    if status == 200:
        say(f"  curl http://{c1.http_addr}/v1/catalog/services")
        say(f"  curl 'http://{c2.http_addr}/v1/health/service/web?passing'")
        say(f"  curl 'http://{c1.http_addr}/v1/catalog/services?dc={DC2}'")
    else:
        say("  (the agents do not serve the HTTP API yet: use the gRPC commands above)")
    if cluster.etcd is not None and shutil.which("etcdctl"):
        say(
            f"  ETCDCTL_API=3 etcdctl --endpoints {cluster.etcd.endpoint}"
            " get '' --prefix --keys-only"
        )
    say(f"Logs: {cluster.root}/*.log")
