"""Polyglot fixtures: a dev server with a client agent beside it, as an application sees it.

The examples in ``examples/`` talk to "the local agent"; here that is a real
client agent process (``--retry-join`` to a real dev server), both on free
loopback ports. Tools the examples need (node and its packages, Go and
protoc, docker-compose, hadolint) come from ``scripts/bootstrap``; a missing
tool fails the test with that hint instead of skipping it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import grpc
import pytest

from generated.consul.kv.v1 import kv_pb2, kv_pb2_grpc
from tests.support.procs import AgentProcess, Cluster, wait_until

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = ROOT / ".venv" / "bin"


def require_tool(name: str) -> str:
    """The path of ``name`` (on PATH or in .venv/bin); fail loudly when it is missing."""
    path = shutil.which(name) or shutil.which(name, path=str(VENV_BIN))
    if path is None:
        pytest.fail(f"{name} is not installed: run ./scripts/bootstrap", pytrace=False)
    return path


def run(
    cmd: list[str], *, timeout: float, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd``; on failure, fail the test with its whole output."""
    proc = subprocess.run(
        cmd,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(
            f"{' '.join(cmd)} exited {proc.returncode}\n"
            f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}",
            pytrace=False,
        )
    return proc


def forwarding(agent: AgentProcess) -> bool:
    """True once a read through ``agent`` reaches a server (NOT_FOUND is an answer)."""
    with grpc.insecure_channel(agent.grpc_addr) as ch:
        try:
            kv_pb2_grpc.KVServiceStub(ch).Get(kv_pb2.GetRequest(key="polyglot/ready"), timeout=5)
        except grpc.RpcError as exc:
            return exc.code() == grpc.StatusCode.NOT_FOUND
    return True


@pytest.fixture
def dev_agent(cluster: Cluster) -> AgentProcess:
    """One dev agent (a server on the memory store, serving the agent API too)."""
    return cluster.server("dev", "--dev")


@pytest.fixture
def client_agent(cluster: Cluster, dev_agent: AgentProcess) -> AgentProcess:
    """A client agent joined to the dev server, ready to forward."""
    client = cluster.client("c1", "--retry-join", dev_agent.rpc_addr)
    wait_until(lambda: forwarding(client), timeout=30, what="the client agent to forward")
    return client
