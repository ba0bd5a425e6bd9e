"""TCP checks: passing when a connection to ``host:port`` opens in time.

Like Consul's ``CheckTCP``: the connection is closed at once; the output is
``TCP connect <addr>: Success`` or the reason it failed.
"""

from __future__ import annotations

import asyncio
import contextlib

from agent.checks.runner import IntervalRunner, describe_os_error
from agent.checks.spec import split_host_port
from agent.checks.status import CRITICAL, PASSING
from agent.durations import format_duration

__all__ = ["TCPRunner"]


class TCPRunner(IntervalRunner):
    """A TCP check."""

    async def probe(self) -> tuple[str, str]:
        addr = self.spec.tcp
        host, port = split_host_port(addr)
        try:
            async with asyncio.timeout(self.spec.timeout):
                _, writer = await asyncio.open_connection(host, port)
        except TimeoutError:
            return CRITICAL, (
                f"TCP connect {addr}: timed out after {format_duration(self.spec.timeout)}"
            )
        except OSError as exc:
            return CRITICAL, f"TCP connect {addr}: {describe_os_error(exc)}"
        writer.close()
        with contextlib.suppress(OSError):
            async with asyncio.timeout(self.spec.timeout):
                await writer.wait_closed()
        return PASSING, f"TCP connect {addr}: Success"
