"""The Compose demo's two apps as local processes: one registers, another discovers.

Runs ``examples/python/register_and_watch.py`` with the arguments compose.yaml
gives ``demo-web`` and ``demo-discover`` (run forever: ``--changes 0 --timeout
0``), each beside its own client agent of one datacenter, and checks that the
discoverer sees the instance turn passing, and that SIGTERM deregisters it.
"""

from __future__ import annotations

import queue
import signal
import subprocess
import sys
import threading
import time

import pytest

from tests.polyglot.conftest import ROOT, forwarding
from tests.support.procs import AgentProcess, Cluster, wait_until

EXAMPLE = ROOT / "examples" / "python" / "register_and_watch.py"


class Program:
    """A running example program whose stdout lines arrive on a queue."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(EXAMPLE), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def expect(self, needle: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            self.seen.append(line)
            if needle in line:
                return line
        output = "\n".join(self.seen)
        raise AssertionError(f"no line with {needle!r} in {timeout}s; output:\n{output}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


@pytest.mark.timeout(90)
def test_demo_web_and_demo_discover(cluster: Cluster, dev_agent: AgentProcess) -> None:
    clients = [cluster.client(f"c{i}", "--retry-join", dev_agent.rpc_addr) for i in (1, 2)]
    for c in clients:
        wait_until(lambda c=c: forwarding(c), timeout=30, what=f"{c.name} to forward")
    forever = ["--name", "web", "--changes", "0", "--timeout", "0"]
    discover = Program("--addr", clients[1].grpc_addr, "--no-register", *forever)
    web = None
    try:
        discover.expect("web: (no instances)")
        web = Program("--addr", clients[0].grpc_addr, "--id", "web-1", "--ttl", "10", *forever)
        web.expect("registered web-1 (web)")
        # Seen through the other client agent: on c1's node, and passing.
        discover.expect("web-1@c1=passing")
        assert web.stop() == 0
        web.expect("deregistered web-1")
        discover.expect("web: (no instances)")
    finally:
        if web is not None:
            web.stop()
        assert discover.stop() == 0
