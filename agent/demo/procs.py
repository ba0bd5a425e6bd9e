"""Process supervision shared by the demo and the integration tests.

Free loopback ports, finding etcd, the command lines of an etcd member and of
an agent, and ``Child``: one child process in its own session, logging to a
file, stopped with a signal and a bounded grace period, then SIGKILL, and (on
Linux) killed by the kernel if its parent dies. The tests' synchronous
harness (``tests/support``) builds its processes from the same pieces.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from pathlib import Path

__all__ = [
    "Child",
    "LoopbackAddrs",
    "agent_command",
    "die_with_parent",
    "etcd_binary",
    "etcd_command",
    "free_port",
    "http_get",
]

#: One readiness probe (gRPC health, etcd /health).
PROBE_TIMEOUT = 1.0
#: After SIGKILL, how long to wait for the kernel to reap.
KILL_WAIT = 5.0


def etcd_binary() -> str | None:
    """The etcd executable: ``$ETCD_BIN``, else ``etcd`` on PATH, else /usr/bin/etcd."""
    env = os.environ.get("ETCD_BIN")
    if env:
        return env if os.access(env, os.X_OK) else None
    found = shutil.which("etcd")
    if found:
        return found
    return "/usr/bin/etcd" if os.access("/usr/bin/etcd", os.X_OK) else None


class LoopbackAddrs:
    """``host:port`` addresses on loopback from an agent's ``*_port`` attributes
    (the demo's agents and the tests' agents both have them)."""

    rpc_port: int
    grpc_port: int
    http_port: int

    @property
    def rpc_addr(self) -> str:
        return f"127.0.0.1:{self.rpc_port}"

    @property
    def grpc_addr(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_addr(self) -> str:
        return f"127.0.0.1:{self.http_port}"


def free_port() -> int:
    """A loopback TCP port free right now (the usual bind-to-0 race applies)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


_PR_SET_PDEATHSIG = 1


def die_with_parent() -> Callable[[], None] | None:
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
                preexec_fn=die_with_parent(),
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


def etcd_command(
    binary: str, name: str, data_dir: Path, client_port: int, peer_port: int
) -> list[str]:
    """A one-member etcd on loopback.

    25 ms heartbeat and 250 ms election timeout (a single member on loopback
    has no peers to wait for) bring etcd's minimum lease TTL down to 1 s
    (etcd rounds a TTL up to 1.5 x election timeout).
    """
    url = f"http://127.0.0.1:{client_port}"
    peer = f"http://127.0.0.1:{peer_port}"
    return [
        binary,
        "--name", name,
        "--data-dir", str(data_dir),
        "--listen-client-urls", url,
        "--advertise-client-urls", url,
        "--listen-peer-urls", peer,
        "--initial-advertise-peer-urls", peer,
        "--initial-cluster", f"{name}={peer}",
        "--initial-cluster-state", "new",
        "--heartbeat-interval", "25",
        "--election-timeout", "250",
        "--logger", "zap",
        "--log-outputs", "stderr",
    ]  # fmt: skip


def agent_command(
    name: str,
    *,
    grpc_addr: str,
    http_addr: str,
    rpc_addr: str | None,
    args: Iterable[str] = (),
    dns_addr: str = "127.0.0.1:0",
) -> list[str]:
    """``python -m agent.cli agent`` with its node name and listeners (``rpc_addr``: a server).

    DNS gets a free port unless ``dns_addr`` names one (the default, 8600, is
    one per machine).
    """
    cmd = [sys.executable, "-m", "agent.cli", "agent", "--node", name]
    cmd += ["--grpc-addr", grpc_addr, "--http-addr", http_addr, "--dns-addr", dns_addr]
    if rpc_addr is not None:
        cmd += ["--server", "--rpc-addr", rpc_addr]
    return cmd + list(args)


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
        # asyncio.timeout, not wait_for: on 3.11 wait_for returns the result and drops
        # a cancel that lands as get() finishes, and Ctrl-C then did not stop the demo.
        async with asyncio.timeout(PROBE_TIMEOUT):
            return await get()
    except (OSError, TimeoutError):
        return 0, b""
