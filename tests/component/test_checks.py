"""Check runners against real servers on 127.0.0.1 (HTTP, TCP, gRPC) and real scripts."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest
from aiohttp import web
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from agent.checks import (
    CRITICAL,
    OUTPUT_MAX_SIZE,
    PASSING,
    USER_AGENT,
    WARNING,
    CheckManager,
    CheckSpec,
)
from agent.errors import InvalidArgument

pytestmark = pytest.mark.timeout(30)

INTERVAL = 0.05


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str, str, bool]] = []

    def __call__(self, check_id: str, status: str, output: str, status_changed: bool) -> None:
        self.events.append((check_id, status, output, status_changed))


async def wait_until(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.005)


async def wait_status(checks: CheckManager, check_id: str, status: str) -> str:
    """Wait for ``status`` and return the output it came with."""
    await wait_until(lambda: checks.get(check_id).status == status)
    return checks.get(check_id).output


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
async def checks() -> AsyncIterator[CheckManager]:
    async with CheckManager(Recorder(), min_interval=0.01, enable_script_checks=True) as m:
        yield m


# -- HTTP ------------------------------------------------------------------------------


class HTTPTarget:
    def __init__(self) -> None:
        self.code = 200
        self.body = "all good"
        self.requests: list[web.Request] = []
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append(request)
        return web.Response(status=self.code, text=self.body)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/health", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = self.runner.addresses[0][1]

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/health"


@pytest.fixture
async def http_target() -> AsyncIterator[HTTPTarget]:
    target = HTTPTarget()
    await target.start()
    yield target
    await target.stop()


async def test_http_status_codes(checks: CheckManager, http_target: HTTPTarget) -> None:
    checks.add(CheckSpec(check_id="h", http=http_target.url, interval=INTERVAL))
    assert checks.get("h").status == CRITICAL
    out = await wait_status(checks, "h", PASSING)
    assert out == f"HTTP GET {http_target.url}: 200 OK Output: all good"
    assert http_target.requests[0].headers["User-Agent"] == USER_AGENT

    http_target.code = 429
    out = await wait_status(checks, "h", WARNING)
    assert out.startswith(f"HTTP GET {http_target.url}: 429 Too Many Requests Output: ")

    http_target.code = 500
    out = await wait_status(checks, "h", CRITICAL)
    assert out == f"HTTP GET {http_target.url}: 500 Internal Server Error Output: all good"

    http_target.code = 204
    await wait_status(checks, "h", PASSING)

    await http_target.stop()
    out = await wait_status(checks, "h", CRITICAL)
    assert out == f"HTTP GET {http_target.url}: connect: Connection refused"


async def test_http_method_headers_body(checks: CheckManager, http_target: HTTPTarget) -> None:
    checks.add(CheckSpec(
        check_id="h", http=http_target.url, interval=INTERVAL, method="POST",
        headers={"X-Token": ["a", "b"], "User-Agent": ["mine"]}, body="ping",
    ))
    out = await wait_status(checks, "h", PASSING)
    assert out.startswith(f"HTTP POST {http_target.url}: 200 OK")
    req = http_target.requests[0]
    assert req.method == "POST"
    assert req.headers.getall("X-Token") == ["a", "b"]
    assert req.headers["User-Agent"] == "mine"


async def test_http_output_capped(checks: CheckManager, http_target: HTTPTarget) -> None:
    http_target.body = "y" * 100_000
    checks.add(CheckSpec(check_id="h", http=http_target.url, interval=INTERVAL))
    out = await wait_status(checks, "h", PASSING)
    assert len(out.encode()) <= OUTPUT_MAX_SIZE
    assert "Output: yyyy" in out


async def test_http_timeout(checks: CheckManager) -> None:
    # A server that accepts and never answers.
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        checks.add(CheckSpec(check_id="h", http=f"http://127.0.0.1:{port}/", interval=INTERVAL,
                             timeout=0.1, status=PASSING))
        out = await wait_status(checks, "h", CRITICAL)
        assert out == f"HTTP GET http://127.0.0.1:{port}/: timed out after 100ms"
        server.close()


async def test_http_thresholds() -> None:
    # The server answers a fixed sequence of codes; each status change is recorded
    # with the number of requests served so far, which pins the thresholds exactly.
    codes = [500, 500, 500, 200, 200, 500, 200, 500, 500, 500]
    served: list[int] = []
    changes: list[tuple[str, int]] = []

    async def handle(request: web.Request) -> web.Response:
        code = codes[len(served)] if len(served) < len(codes) else 500
        served.append(code)
        return web.Response(status=code, text=str(len(served)))

    def on_update(check_id: str, status: str, output: str, status_changed: bool) -> None:
        if status_changed:
            changes.append((status, len(served)))

    app = web.Application()
    app.router.add_get("/health", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/health"
        async with CheckManager(on_update, min_interval=0.01) as m:
            m.add(CheckSpec(check_id="h", http=url, interval=0.02, status=PASSING,
                            success_before_passing=2, failures_before_critical=3))
            # One request more than the sequence: the last answer has been applied.
            await wait_until(lambda: len(served) > len(codes))
    finally:
        await runner.cleanup()
    # Critical only at the 3rd failure in a row; passing only at the 2nd success in a
    # row; the lone success (7th) resets the failure count, so critical at the 10th.
    assert changes == [(CRITICAL, 3), (PASSING, 5), (CRITICAL, 10)]


# -- TCP ------------------------------------------------------------------------------


async def test_tcp_check(checks: CheckManager) -> None:
    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    addr = f"127.0.0.1:{port}"
    checks.add(CheckSpec(check_id="t", tcp=addr, interval=INTERVAL))
    out = await wait_status(checks, "t", PASSING)
    assert out == f"TCP connect {addr}: Success"
    server.close()
    await server.wait_closed()
    out = await wait_status(checks, "t", CRITICAL)
    assert out.startswith(f"TCP connect {addr}: ")
    assert "refused" in out.lower()


async def test_tcp_nothing_listening(checks: CheckManager) -> None:
    addr = f"127.0.0.1:{free_port()}"
    checks.add(CheckSpec(check_id="t", tcp=addr, interval=INTERVAL, status=PASSING))
    out = await wait_status(checks, "t", CRITICAL)
    assert out.startswith(f"TCP connect {addr}: ")


# -- gRPC -----------------------------------------------------------------------------


async def start_grpc() -> tuple[grpc.aio.Server, health.aio.HealthServicer, int]:
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, servicer, port


async def test_grpc_check(checks: CheckManager) -> None:
    server, servicer, port = await start_grpc()
    try:
        await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        await servicer.set("my.Svc", health_pb2.HealthCheckResponse.SERVING)
        checks.add(CheckSpec(check_id="g", grpc=f"127.0.0.1:{port}", interval=INTERVAL))
        checks.add(CheckSpec(check_id="s", grpc=f"127.0.0.1:{port}/my.Svc", interval=INTERVAL))
        out = await wait_status(checks, "g", PASSING)
        assert out == f"gRPC check 127.0.0.1:{port}: success"
        await wait_status(checks, "s", PASSING)

        await servicer.set("my.Svc", health_pb2.HealthCheckResponse.NOT_SERVING)
        out = await wait_status(checks, "s", CRITICAL)
        assert out == f"gRPC 127.0.0.1:{port}/my.Svc serving status: NOT_SERVING"
        assert checks.get("g").status == PASSING

        checks.add(CheckSpec(check_id="u", grpc=f"127.0.0.1:{port}/unknown", interval=INTERVAL,
                             status=PASSING))
        out = await wait_status(checks, "u", CRITICAL)
        assert "NOT_FOUND" in out
    finally:
        await server.stop(None)
    out = await wait_status(checks, "g", CRITICAL)
    assert out.startswith(f"gRPC 127.0.0.1:{port} failed: UNAVAILABLE")


# -- scripts --------------------------------------------------------------------------


def py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


async def test_script_refused_when_disabled() -> None:
    async with CheckManager(Recorder(), min_interval=0.01) as m:
        with pytest.raises(InvalidArgument, match="Scripts are disabled on this agent"):
            m.add(CheckSpec(check_id="s", args=py("pass"), interval=INTERVAL))


@pytest.mark.parametrize(("code", "status"), [(0, PASSING), (1, WARNING), (2, CRITICAL)])
async def test_script_exit_codes(checks: CheckManager, code: int, status: str) -> None:
    initial = PASSING if status == CRITICAL else CRITICAL
    checks.add(CheckSpec(
        check_id="s", interval=INTERVAL, status=initial,
        args=py(f"import sys; print('out'); print('err', file=sys.stderr); sys.exit({code})"),
    ))
    out = await wait_status(checks, "s", status)
    assert "out" in out
    assert "err" in out


async def test_script_output_capped_keeps_tail(checks: CheckManager) -> None:
    checks.add(CheckSpec(
        check_id="s", interval=INTERVAL,
        args=py("import sys; sys.stdout.write('x' * 100000 + 'THE END')"),
    ))
    out = await wait_status(checks, "s", PASSING)
    assert len(out.encode()) <= OUTPUT_MAX_SIZE
    assert out.startswith("Captured ")
    assert "of 100007 bytes" in out
    assert out.endswith("THE END")


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (killed, not yet reaped by its parent) counts as dead.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


SPAWN_AND_SLEEP = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])
open(sys.argv[1], 'w').write(f'{child.pid}')
print('started', flush=True)
time.sleep(60)
"""


async def test_script_killed_on_timeout(checks: CheckManager, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    checks.add(CheckSpec(
        check_id="s", interval=INTERVAL, timeout=0.5, status=PASSING,
        args=[sys.executable, "-c", SPAWN_AND_SLEEP, str(pid_file)],
    ))
    out = await wait_status(checks, "s", CRITICAL)
    assert out.startswith("Timed out (500ms) running check")
    assert "started" in out
    # The whole process group went, grandchild included.
    grandchild = int(pid_file.read_text())
    await wait_until(lambda: not alive(grandchild))


async def test_script_missing_binary(checks: CheckManager) -> None:
    checks.add(CheckSpec(check_id="s", interval=INTERVAL, status=PASSING,
                         args=["/nonexistent/check-binary"]))
    out = await wait_status(checks, "s", CRITICAL)
    assert "Failed to invoke" in out


async def test_aclose_kills_running_scripts(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    m = CheckManager(Recorder(), min_interval=0.01, enable_script_checks=True)
    async with m:
        m.add(CheckSpec(check_id="s", interval=0.01, timeout=60,
                        args=[sys.executable, "-c", SPAWN_AND_SLEEP, str(pid_file)]))
        await wait_until(lambda: pid_file.exists() and pid_file.read_text() != "")
        task = m._entries["s"].task
    assert task.done()
    grandchild = int(pid_file.read_text())
    await wait_until(lambda: not alive(grandchild))
