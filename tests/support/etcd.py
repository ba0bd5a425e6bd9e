"""A real etcd for tests: one process on free loopback ports with a temporary data dir.

Use it as an async context manager::

    async with EtcdServer() as etcd:
        store = EtcdStore([etcd.endpoint], "/test/")

or, in a conftest, through the fixture factory (the fixture is synchronous, so
it can be session-scoped without tying tests to one event loop)::

    from tests.support.etcd import etcd_fixture
    etcd_server = etcd_fixture(scope="session")

The server runs with a 25 ms heartbeat and a 250 ms election timeout, which
brings etcd's minimum lease TTL down to 1 s (etcd rounds a TTL up to
1.5 x election timeout), so lease tests run in seconds. Readiness is a bounded
poll of ``/health``; stopping is SIGTERM, then SIGKILL after a grace period.
When etcd fails to start, or dies, its log is in the error message.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import pytest

from agent.demo.procs import etcd_binary, etcd_command, free_port

__all__ = ["EtcdCluster", "EtcdServer", "etcd_binary", "etcd_fixture", "free_port"]

_READY_TIMEOUT = 20.0
_STOP_GRACE = 5.0
_POLL = 0.05


class EtcdServer:
    """One single-member etcd cluster on loopback. ``endpoint`` is ``127.0.0.1:PORT``."""

    def __init__(self, *, binary: str | None = None, name: str = "test") -> None:
        self.binary = binary or etcd_binary()
        self.name = name
        self.client_port = 0
        self.peer_port = 0
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_file: Any = None
        #: ``name=peer-url,...`` of every member, for a member of an ``EtcdCluster``.
        self.initial_cluster = ""

    @property
    def endpoint(self) -> str:
        """``host:port`` for ``EtcdStore`` and etcd3aio."""
        return f"127.0.0.1:{self.client_port}"

    @property
    def url(self) -> str:
        """``http://host:port``, as etcdctl wants it."""
        return f"http://{self.endpoint}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def logs(self) -> str:
        """Everything etcd has written so far."""
        if self._tmp is None:
            return ""
        path = Path(self._tmp.name) / "etcd.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # -- start ---------------------------------------------------------------

    def _spawn(self, *, fresh: bool = True) -> None:
        """Start the process: on new ports and a new data dir, or (``fresh=False``)
        again on the ports and data of the last one (after ``kill``). A member of
        an ``EtcdCluster`` has its ports and ``initial_cluster`` set already."""
        if self.binary is None:
            raise RuntimeError(
                "etcd is not installed (apt-get install etcd-server, or set ETCD_BIN)"
            )
        if fresh or self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="etcd-test-")
            if not self.initial_cluster:
                self.client_port, self.peer_port = free_port(), free_port()
        root = Path(self._tmp.name)
        if self._log_file is not None:
            self._log_file.close()
        args = etcd_command(self.binary, self.name, root / "data", self.client_port, self.peer_port)
        if self.initial_cluster:
            args = _clustered(args, self.initial_cluster)
        self._log_file = (root / "etcd.log").open("ab")
        self._proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def _healthy(self) -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", self.client_port, timeout=0.5)
        try:
            conn.request("GET", "/health")
            resp = conn.getresponse()
            body = json.loads(resp.read() or b"{}")
            return resp.status == 200 and str(body.get("health")) == "true"
        except (OSError, ValueError, http.client.HTTPException):
            return False
        finally:
            conn.close()

    def _check_alive(self) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            raise RuntimeError(
                f"etcd exited with {self._proc.returncode} while starting:\n{self.logs()[-4000:]}"
            )

    def start_sync(self) -> None:
        """Start etcd and block until it answers ``/health`` (bounded)."""
        for attempt in range(3):  # a free port may be taken before etcd binds it
            self._spawn()
            try:
                _wait_healthy([self], "etcd", lambda: self.logs()[-4000:])
                return
            except RuntimeError:
                logs = self.logs()
                self.stop_sync()
                if attempt == 2 or "address already in use" not in logs:
                    raise

    async def start(self) -> None:
        """Start etcd and wait until it answers ``/health`` (bounded)."""
        await asyncio.to_thread(self.start_sync)

    # -- stop ----------------------------------------------------------------

    def stop_sync(self) -> None:
        """SIGTERM, then SIGKILL after a grace period; remove the data dir."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=_STOP_GRACE)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait(timeout=_STOP_GRACE)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    async def aclose(self) -> None:
        """Stop etcd (bounded)."""
        await asyncio.to_thread(self.stop_sync)

    def kill(self) -> None:
        """SIGKILL at once, keeping the data dir (for crash tests)."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait(timeout=_STOP_GRACE)

    def restart_sync(self) -> None:
        """After ``kill``: the same member again, same ports and data, until healthy."""
        self._spawn(fresh=False)
        _wait_healthy([self], "etcd", lambda: self.logs()[-4000:])

    async def __aenter__(self) -> EtcdServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __enter__(self) -> EtcdServer:
        self.start_sync()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop_sync()


def _clustered(args: list[str], initial_cluster: str) -> list[str]:
    """A one-member command made a member of ``initial_cluster``, with timings a
    loaded 2-core machine keeps (a 250 ms election timeout flaps between peers)."""
    out = list(args)
    for flag, value in (
        ("--initial-cluster", initial_cluster),
        ("--heartbeat-interval", "50"),
        ("--election-timeout", "1000"),
    ):
        out[out.index(flag) + 1] = value
    return out


def _wait_healthy(members: list[EtcdServer], what: str, logs: Callable[[], str]) -> None:
    """Block until every member answers ``/health`` (bounded); RuntimeError if
    one exits first or time runs out (with ``logs()`` appended when it says any)."""
    deadline = time.monotonic() + _READY_TIMEOUT
    while not all(m._healthy() for m in members):
        for m in members:
            m._check_alive()
        if time.monotonic() > deadline:
            tail = logs()
            raise RuntimeError(
                f"{what} not healthy in {_READY_TIMEOUT}s" + (f":\n{tail}" if tail else "")
            )
        time.sleep(_POLL)


class EtcdCluster:
    """``size`` etcd members on loopback forming one cluster (fresh ports and data).

    ``members[i].endpoint`` is each member's client address; ``endpoints`` all
    of them. Started and stopped as a whole (``with EtcdCluster(3) as c``);
    a member removed from the cluster exits by itself, which stopping allows.
    """

    def __init__(self, size: int = 3, *, binary: str | None = None) -> None:
        self.members = [EtcdServer(binary=binary, name=f"etcd-{i}") for i in range(size)]

    @property
    def endpoints(self) -> list[str]:
        return [m.endpoint for m in self.members]

    def logs(self) -> str:
        return "\n".join(f"----- {m.name} -----\n{m.logs()[-6000:]}" for m in self.members)

    def start_sync(self) -> None:
        for attempt in range(3):  # a free port may be taken before etcd binds it
            for m in self.members:
                m.client_port, m.peer_port = free_port(), free_port()
            initial = ",".join(f"{m.name}=http://127.0.0.1:{m.peer_port}" for m in self.members)
            for m in self.members:
                m.initial_cluster = initial
                m._spawn()
            try:
                _wait_healthy(self.members, "etcd cluster", lambda: "")
                return
            except RuntimeError as exc:
                logs = self.logs()
                self.stop_sync()
                if attempt == 2 or "address already in use" not in logs:
                    raise RuntimeError(f"{exc}\n{logs}") from None

    def stop_sync(self) -> None:
        for m in self.members:
            m.stop_sync()

    def __enter__(self) -> EtcdCluster:
        self.start_sync()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_sync()


def etcd_fixture(
    scope: Literal["session", "package", "module", "class", "function"] = "session",
) -> Callable[..., Iterator[EtcdServer]]:
    """A pytest fixture yielding a started ``EtcdServer``; assign it in a conftest.

    The fixture is synchronous, so a session-wide etcd serves tests that run on
    any event loop. If etcd died during the tests, its log is printed.
    """

    @pytest.fixture(scope=scope)
    def _etcd_server() -> Iterator[EtcdServer]:
        server = EtcdServer()
        server.start_sync()
        try:
            yield server
        finally:
            if not server.running:
                print(f"etcd died during the tests; its log:\n{server.logs()[-8000:]}")
            server.stop_sync()

    return _etcd_server
