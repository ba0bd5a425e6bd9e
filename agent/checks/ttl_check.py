"""TTL checks: the application reports its status, silence turns it critical.

Like Consul's ``CheckTTL``: the timer starts when the check is added and each
``update`` restarts it; when it fires the check becomes critical with output
``TTL expired`` (followed by the last reported output, if any). After that it
stays critical until the next update. Updates bypass the success/failure
thresholds, as in Consul.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from agent.checks.output import cap_output
from agent.checks.runner import CheckRunner, UpdateCallback
from agent.checks.spec import CheckSpec
from agent.checks.status import CRITICAL, STATUSES
from agent.errors import InvalidArgument

__all__ = ["TTLRunner"]

logger = logging.getLogger(__name__)


class TTLRunner(CheckRunner):
    """A TTL check; ``update`` is its only input."""

    def __init__(
        self,
        spec: CheckSpec,
        on_update: UpdateCallback,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(spec, on_update, clock=clock)
        self._last_output = ""
        self._renewed = asyncio.Event()
        # None once expired: no timer runs until the next update.
        self._deadline: float | None = None

    def update(self, status: str, output: str) -> str:
        """Set the status and restart the TTL; returns the output as stored (capped)."""
        if status not in STATUSES:
            raise InvalidArgument(f"Bad check status {status!r}")
        output = cap_output(output)
        self.set_status(status, output)
        self._last_output = output
        self._deadline = asyncio.get_running_loop().time() + self.spec.ttl
        self._renewed.set()
        return output

    def expired_output(self) -> str:
        """Consul's output for a missed TTL."""
        if not self._last_output:
            return "TTL expired"
        return f"TTL expired (last output before timeout follows): {self._last_output}"

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        if self._deadline is None:
            self._deadline = loop.time() + self.spec.ttl
        while True:
            deadline = self._deadline
            self._renewed.clear()
            if deadline is None:
                await self._renewed.wait()
                continue
            try:
                async with asyncio.timeout_at(deadline):
                    await self._renewed.wait()
            except TimeoutError:
                if self._deadline == deadline:
                    logger.warning("check missed TTL, is now critical check=%s", self.check_id)
                    self._deadline = None
                    self.set_status(CRITICAL, self.expired_output())
