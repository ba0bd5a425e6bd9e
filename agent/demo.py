"""``consul-grpc demo``: the Compose topology as local processes, and a guided scenario.

The demo starts, on loopback and free ports, in a temporary directory:

- etcd (one member) when the ``etcd`` binary is installed (``$ETCD_BIN``,
  ``etcd`` on PATH, or /usr/bin/etcd); otherwise it says how to get it
  (``apt-get install etcd-server``) and runs dc1 as ONE server on the memory
  store, which holds exactly one server per datacenter;
- three dc1 servers sharing that etcd;
- one dc2 server on the memory store, joined to dc1 with ``--retry-join-wan``;
- two dc1 client agents, each with ``--retry-join`` to every dc1 server.

It prints each agent's addresses and commands to try, then runs the scenario,
every step a bounded poll (no fixed sleeps):

1. register ``web`` with a TTL check through client-1's AgentService and pass
   the TTL (a heartbeat, the "application", keeps passing it);
2. discover ``web`` through client-2 (HealthService.ServiceHealth, passing only);
3. kill -9 the server client-2 uses (the first of its router, from
   AgentService.Self): discovery through client-2 keeps working while the dead
   server is FAILED and leaves client-2's router (skipped with one server);
4. register ``api`` on the dc2 server and query it from client-1 with
   ``datacenter=dc2``.

``--once`` exits after the summary (CI); otherwise the cluster keeps running
until Ctrl-C. Exit status: 0 when the scenario succeeded, 1 when a step or the
start-up failed (with the reason and the tail of the agents' logs), 130 when
interrupted before the scenario finished.

Shutdown, at any point, on SIGINT or SIGTERM: SIGINT to the client agents
(they leave while the servers still answer), then to the servers, SIGKILL to
whatever outlives its grace period, etcd stopped (SIGTERM, then SIGKILL), the
temporary directory removed. Every wait is bounded, so the whole teardown takes
at most about 25 s, and usually one or two; a second Ctrl-C skips the grace
periods. Children run in their own sessions (a terminal's Ctrl-C reaches only
the demo, which stops them in order) and, on Linux, are killed by the kernel
if the demo itself dies (``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import functools
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
from google.protobuf.duration_pb2 import Duration
from grpc_health.v1 import health_pb2, health_pb2_grpc

from generated.consul.agent.v1 import agent_pb2 as apb
from generated.consul.agent.v1 import agent_pb2_grpc
from generated.consul.catalog.v1 import catalog_pb2 as cpb
from generated.consul.catalog.v1 import catalog_pb2_grpc
from generated.consul.common.v1 import query_pb2 as qpb
from generated.consul.common.v1 import types_pb2 as pb
from generated.consul.health.v1 import health_pb2 as hpb
from generated.consul.health.v1 import health_pb2_grpc as hpb_grpc

__all__ = [
    "DemoCluster",
    "DemoError",
    "DemoOptions",
    "add_demo_parser",
    "cmd_demo",
    "etcd_binary",
    "run_demo",
]

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
#: One readiness probe (gRPC health, etcd /health).
PROBE_TIMEOUT = 1.0
#: SIGINT -> SIGKILL for an agent: a client's graceful leave waits at most 5 s
#: for a server, a server drains its listeners for 2 s.
AGENT_GRACE = 8.0
ETCD_GRACE = 5.0
#: After SIGKILL, how long to wait for the kernel to reap.
KILL_WAIT = 5.0
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


def etcd_binary() -> str | None:
    """The etcd executable: ``$ETCD_BIN``, else ``etcd`` on PATH, else /usr/bin/etcd."""
    env = os.environ.get("ETCD_BIN")
    if env:
        return env if os.access(env, os.X_OK) else None
    found = shutil.which("etcd")
    if found:
        return found
    return "/usr/bin/etcd" if os.access("/usr/bin/etcd", os.X_OK) else None


def free_port() -> int:
    """A loopback TCP port free right now (the usual bind-to-0 race applies)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def say(text: str = "") -> None:
    print(text, flush=True)


# -- child processes ---------------------------------------------------------------

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to SIGKILL the child when the demo dies."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))
        if os.getppid() != parent:  # the demo died before prctl took effect
            os.kill(os.getpid(), signal.SIGKILL)

    return preexec


class Child(ABC):
    """One child process in its own session, logging to ``log_path``.

    ``stop`` sends a signal, waits (bounded, polling) and SIGKILLs what is left;
    ``hurry`` (set by a second Ctrl-C) cuts every grace period short.
    """

    def __init__(self, name: str, log_path: Path, hurry: asyncio.Event) -> None:
        self.name = name
        self.log_path = log_path
        self.hurry = hurry
        self.proc: subprocess.Popen[bytes] | None = None

    @abstractmethod
    def argv(self) -> list[str]:
        """The command line of this process."""

    def spawn(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                preexec_fn=_die_with_parent(),
            )

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 12) -> str:
        """The last warnings and errors of the log, then its last lines (at most ``lines``)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        all_lines = text.splitlines()
        last = all_lines[-(lines // 2) :]
        problems = [ln for ln in all_lines if "[WARNING]" in ln or "[ERROR]" in ln]
        picked = [ln for ln in problems[-(lines - len(last)) :] if ln not in last]
        return "\n".join([*picked, *last]) or "(empty log)"

    def _signal(self, sig: signal.Signals) -> None:
        if self.alive:
            assert self.proc is not None
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)

    async def wait_exit(self, timeout: float, *, hurry: bool = False) -> bool:
        """Poll until the process exited (and is reaped); False on timeout."""
        deadline = time.monotonic() + timeout
        while self.alive:
            if time.monotonic() >= deadline or (hurry and self.hurry.is_set()):
                return False
            await asyncio.sleep(0.02)
        return True

    async def kill(self) -> None:
        """kill -9, and reap."""
        self._signal(signal.SIGKILL)
        await self.wait_exit(KILL_WAIT)

    async def stop(self, sig: signal.Signals, grace: float) -> None:
        """``sig``, then SIGKILL after ``grace`` (or at once on a second Ctrl-C)."""
        if not self.alive:
            return
        self._signal(sig)
        if not await self.wait_exit(grace, hurry=True):
            await self.kill()


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
        url = f"http://{self.endpoint}"
        peer = f"http://127.0.0.1:{self.peer_port}"
        return [
            self.binary,
            "--name", "demo",
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", url,
            "--advertise-client-urls", url,
            "--listen-peer-urls", peer,
            "--initial-advertise-peer-urls", peer,
            "--initial-cluster", f"demo={peer}",
            "--initial-cluster-state", "new",
            "--heartbeat-interval", "25",
            "--election-timeout", "250",
            "--logger", "zap",
            "--log-outputs", "stderr",
        ]  # fmt: skip

    def new_ports(self) -> None:
        self.client_port, self.peer_port = free_port(), free_port()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    async def healthy(self) -> bool:
        status, body = await http_get("127.0.0.1", self.client_port, "/health")
        return status == 200 and b'"health":"true"' in body.replace(b" ", b"")


class AgentProcess(Child):
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

    @property
    def rpc_addr(self) -> str:
        return f"127.0.0.1:{self.rpc_port}"

    @property
    def grpc_addr(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_addr(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    def argv(self) -> list[str]:
        cmd = [sys.executable, "-m", "agent.cli", "agent", "--node", self.name]
        cmd += ["--datacenter", self.datacenter, "--data-dir", str(self.data_dir)]
        cmd += ["--grpc-addr", self.grpc_addr, "--http-addr", self.http_addr]
        cmd += ["--dns-addr", "127.0.0.1:0"]
        if self.server:
            cmd += ["--server", "--rpc-addr", self.rpc_addr]
        return cmd + list(AGENT_FLAGS) + self.args


def _bind_failed(log: str) -> bool:
    text = log.lower()
    return "already in use" in text or "cannot bind" in text


async def http_get(host: str, port: int, path: str) -> tuple[int, bytes]:
    """A bounded HTTP/1.0 GET: (status, body), or (0, b"") when nothing answers."""

    async def get() -> tuple[int, bytes]:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(f"GET {path} HTTP/1.0\r\nHost: {host}:{port}\r\n\r\n".encode())
            await writer.drain()
            raw = await reader.read(65536)
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        head, _, body = raw.partition(b"\r\n\r\n")
        parts = head.split(b" ", 2)
        return (int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0), body

    try:
        return await asyncio.wait_for(get(), PROBE_TIMEOUT)
    except (OSError, TimeoutError):
        return 0, b""


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


# -- entry point -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DemoOptions:
    once: bool = False
    no_etcd: bool = False
    keep_logs: bool = False


def _dump_logs(cluster: DemoCluster, options: DemoOptions) -> None:
    say("Last lines of each process's log:")
    for child in cluster.children():
        say(f"----- {child.name} ({child.log_path}) -----\n{child.log_tail()}")
    if not options.keep_logs:
        say("(run with --keep-logs to keep the full logs)")


async def _body(cluster: DemoCluster, options: DemoOptions, succeeded: list[bool]) -> int:
    t0 = time.monotonic()
    if cluster.etcd is not None:
        say("Starting etcd, 3 dc1 servers, 1 dc2 server, 2 dc1 clients ...")
    else:
        say("Starting 1 dc1 server, 1 dc2 server, 2 dc1 clients ...")
    try:
        await cluster.start()
    except DemoError as exc:
        say(f"\nStart-up FAILED: {exc}")
        _dump_logs(cluster, options)
        return 1
    if cluster.etcd is not None:
        say(
            f"  etcd: {cluster.etcd.endpoint} (pid {cluster.etcd.pid},"
            f" data in {cluster.etcd.data_dir})"
        )
    say(f"Cluster ready in {time.monotonic() - t0:.1f}s (temp dir {cluster.root})")
    await print_addresses(cluster)
    scenario = Scenario(cluster)
    ok = await scenario.run()
    scenario.summary()
    if not ok:
        say("\nThe demo FAILED.")
        _dump_logs(cluster, options)
        return 1
    succeeded.append(True)
    say(f"\nThe demo succeeded in {time.monotonic() - t0:.1f}s.")
    if options.once:
        return 0
    say("The cluster keeps running: try the commands above. Press Ctrl-C to stop.")
    await asyncio.Event().wait()
    return 0


async def run_demo(options: DemoOptions) -> int:
    """Run the demo; the process exit status. SIGINT/SIGTERM tear down and return."""
    binary = None if options.no_etcd else etcd_binary()
    say("consul-grpc demo: a two-datacenter cluster as local processes on loopback\n")
    if binary is None:
        why = "--no-etcd given" if options.no_etcd else "etcd is not installed"
        say(
            f"NOTE: {why}. dc1 runs as ONE server on the memory store, so the failover"
            " step is skipped.\n"
            f"      For the full demo (3 dc1 servers on etcd): {ETCD_INSTALL_HINT}"
            " (or set ETCD_BIN to an etcd binary)\n"
        )
    loop = asyncio.get_running_loop()
    cluster = DemoCluster(etcd=binary, keep_logs=options.keep_logs)
    interrupted = asyncio.Event()

    def on_signal(name: str) -> None:
        if interrupted.is_set():
            say(f"\n{name} again: killing everything now")
            cluster.hurry.set()
            return
        say(f"\n{name}: tearing the demo down (Ctrl-C again to skip the grace periods)")
        interrupted.set()

    handled = (signal.SIGINT, signal.SIGTERM)
    for sig in handled:
        loop.add_signal_handler(sig, on_signal, sig.name)
    succeeded: list[bool] = []
    body = asyncio.create_task(_body(cluster, options, succeeded))
    waiter = asyncio.create_task(interrupted.wait())
    try:
        await asyncio.wait({body, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        if not body.done():
            body.cancel()
            await asyncio.wait({body}, timeout=CALL_TIMEOUT + 1)
        await cluster.aclose()
        for sig in handled:
            loop.remove_signal_handler(sig)
            if interrupted.is_set():  # exiting anyway: a late Ctrl-C must not turn into a traceback
                signal.signal(sig, signal.SIG_IGN)
    if body.done() and not body.cancelled():
        exc = body.exception()
        if exc is not None:
            raise exc
        return body.result()
    return 0 if succeeded else 130


def add_demo_parser(sub: Any) -> None:
    """The ``demo`` subcommand, for ``agent.cli``'s subparsers."""
    p = sub.add_parser(
        "demo",
        help="run a local two-datacenter cluster and a guided scenario",
        description="Start etcd, three dc1 servers, one dc2 server and two dc1 clients on"
        " loopback, print where to look, run the scenario (register, discover, kill a"
        " server, query dc2), then keep running until Ctrl-C.",
    )
    p.add_argument("--once", action="store_true", help="exit after the scenario (for CI)")
    p.add_argument(
        "--no-etcd",
        action="store_true",
        help="do not use etcd even if installed: one dc1 server on the memory store",
    )
    p.add_argument(
        "--keep-logs", action="store_true", help="keep the temporary directory with the logs"
    )


async def cmd_demo(args: argparse.Namespace) -> int:
    """``consul-grpc demo``."""
    return await run_demo(
        DemoOptions(once=args.once, no_etcd=args.no_etcd, keep_logs=args.keep_logs)
    )
