"""Real agent processes for integration tests.

``AgentProcess`` starts ``python -m agent.cli agent ...`` on free loopback
ports, waits (bounded poll) until its gRPC port answers a Ping (servers) or
its gRPC health says SERVING (clients), and stops it with SIGINT, then
SIGKILL. ``kill()`` is ``kill -9``. Logs go to a file; ``Cluster.dump_logs``
prints every process's log, which the conftest does only when a test fails.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agent.demo.procs import LoopbackAddrs, agent_command, free_port

__all__ = ["AgentProcess", "Cluster", "wait_until"]

ROOT = Path(__file__).resolve().parents[2]


def wait_until(predicate, timeout: float = 20.0, interval: float = 0.05, what: str = "condition"):  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until it returns a truthy value; that value, or AssertionError."""
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # keep polling; report the last error
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last error: {last_exc!r}")


def _serving(address: str, timeout: float = 1.0) -> bool:
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            resp = stub.Check(health_pb2.HealthCheckRequest(), timeout=timeout)
        except grpc.RpcError:
            return False
        return bool(resp.status == health_pb2.HealthCheckResponse.SERVING)


def known_servers(agent: AgentProcess) -> list[str]:
    """Names in the agent's local router list, in order (AgentService.Self)."""
    from generated.consul.agent.v1 import agent_pb2, agent_pb2_grpc

    with grpc.insecure_channel(agent.grpc_addr) as channel:
        me = agent_pb2_grpc.AgentServiceStub(channel).Self(agent_pb2.SelfRequest(), timeout=5)
    return [s.name for r in me.routers if r.datacenter == me.datacenter for s in r.servers]


@dataclass
class AgentProcess(LoopbackAddrs):
    name: str
    args: list[str]
    log_dir: Path
    server: bool = False
    rpc_port: int = field(default_factory=free_port)
    grpc_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    dns_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def dns_addr(self) -> str:
        return f"127.0.0.1:{self.dns_port}"

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.name}.log"

    def start(self, wait: bool = True) -> AgentProcess:
        """Start the agent (and, with ``wait``, until it serves). On its first
        start, a port taken between ``free_port`` and the agent's bind (another
        process on this machine won the race) means new ports and another try."""
        first = self.proc is None
        for attempt in range(3):
            log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
            self._spawn()
            if not wait:
                return self
            try:
                self.wait_ready()
                return self
            except (RuntimeError, AssertionError):
                text = self.log_path.read_text(errors="replace")[log_start:]
                if not first or attempt == 2 or "address already in use" not in text:
                    raise
                self.rpc_port, self.grpc_port = free_port(), free_port()
                self.http_port, self.dns_port = free_port(), free_port()
        return self

    def _spawn(self) -> None:
        cmd = agent_command(
            self.name,
            grpc_addr=self.grpc_addr,
            http_addr=self.http_addr,
            dns_addr=self.dns_addr,
            rpc_addr=self.rpc_addr if self.server else None,
            args=["--log-level", "DEBUG", *self.args],
        )
        log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the process's life
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        log.close()

    def wait_ready(self, timeout: float = 30.0) -> None:
        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.proc.returncode}:\n{self.log_path.read_text()}"
                )
            return _serving(self.grpc_addr)

        wait_until(ready, timeout, what=f"{self.name} to serve")

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """kill -9."""
        if self.alive:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGINT (graceful leave), then SIGKILL."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        return self.proc.returncode


class Cluster:
    """The processes of one test; all stopped at the end."""

    def __init__(self, log_dir: Path | None = None) -> None:
        self.log_dir = log_dir or Path(tempfile.mkdtemp(prefix="consul-grpc-logs-"))
        self.agents: list[AgentProcess] = []

    def server(self, name: str, *args: str, wait: bool = True, **kw: int) -> AgentProcess:
        agent = AgentProcess(name, list(args), self.log_dir, server=True, **kw)
        self.agents.append(agent)
        return agent.start(wait)

    def client(self, name: str, *args: str, wait: bool = True) -> AgentProcess:
        """A client agent; with ``wait``, also until its router knows a server."""
        agent = AgentProcess(name, list(args), self.log_dir)
        self.agents.append(agent)
        agent.start(wait)
        if wait:
            wait_until(lambda: known_servers(agent), what=f"{name} to know a server")
        return agent

    def stop_all(self) -> None:
        for agent in reversed(self.agents):
            agent.stop()

    def dump_logs(self) -> str:
        out = []
        for agent in self.agents:
            text = agent.log_path.read_text() if agent.log_path.exists() else "(no log)"
            out.append(f"----- {agent.name} ({agent.log_path}) -----\n{text[-20000:]}")
        return "\n".join(out)


def tcp_peers(pid: int) -> set[int]:
    """Remote ports of the TCP connections process ``pid`` holds (Linux /proc)."""
    inodes = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports: set[int] = set()
    for table in ("tcp", "tcp6"):
        path = Path(f"/proc/{pid}/net/{table}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            cols = line.split()
            if len(cols) > 9 and cols[9] in inodes and cols[3] == "01":  # ESTABLISHED
                ports.add(int(cols[2].rsplit(":", 1)[1], 16))
    return ports
