"""The part every check runner shares: its state, its notifier, its loop.

A runner owns one check. Its state (status, output, ``critical_since``) changes
only through ``set_status`` (Consul's ``CheckNotifier.UpdateCheck``), which caps
the output, keeps ``critical_since`` and calls ``on_update`` when anything
changed. ``IntervalRunner`` is the loop of the probing kinds: a first run after
a random delay within one interval (so that checks registered together do not
fire together), then one run per interval after the previous run ended.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Protocol

from agent.checks.output import cap_output
from agent.checks.spec import CheckSpec
from agent.checks.status import CRITICAL, StatusHandler
from agent.durations import format_duration

__all__ = ["CheckRunner", "CheckState", "IntervalRunner", "UpdateCallback", "describe_os_error"]

logger = logging.getLogger(__name__)

def describe_os_error(exc: OSError) -> str:
    """A short reason for a failed connect, such as ``Connection refused``."""
    if isinstance(exc, socket.gaierror) and exc.strerror:
        return exc.strerror
    if exc.errno and exc.errno > 0:
        return os.strerror(exc.errno)
    return str(exc) or type(exc).__name__


class UpdateCallback(Protocol):
    """Told of every change of a check: ``status_changed`` is False for output-only ones.

    Called from the runner's task (or from ``update_ttl``'s caller); it must not
    block. The owner syncs status changes at once and batches output-only ones.
    """

    def __call__(self, check_id: str, status: str, output: str, status_changed: bool) -> None: ...


@dataclass(frozen=True, slots=True)
class CheckState:
    """A snapshot of one check's state; ``critical_since`` is on ``time.monotonic``."""

    check_id: str
    name: str
    kind: str
    service_id: str
    status: str
    output: str
    critical_since: float | None


class CheckRunner(ABC):
    """One check: its spec, its state, and ``run()``, the task body that keeps it current."""

    def __init__(
        self,
        spec: CheckSpec,
        on_update: UpdateCallback,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.spec = spec
        self._on_update = on_update
        self._clock = clock
        self.status = spec.status or CRITICAL
        self.output = ""
        #: Since when (``clock()``) the check is critical, None while it is not.
        #: A new check that starts critical counts from its creation, as in Consul.
        self.critical_since: float | None = clock() if self.status == CRITICAL else None
        self._closed = False

    @property
    def check_id(self) -> str:
        return self.spec.check_id

    def state(self) -> CheckState:
        """The check's current state."""
        return CheckState(
            check_id=self.spec.check_id,
            name=self.spec.name,
            kind=self.spec.kind,
            service_id=self.spec.service_id,
            status=self.status,
            output=self.output,
            critical_since=self.critical_since,
        )

    def critical_for(self, now: float | None = None) -> float:
        """Seconds the check has been critical without a break (0 if it is not)."""
        if self.critical_since is None:
            return 0.0
        return max(0.0, (self._clock() if now is None else now) - self.critical_since)

    def close(self) -> None:
        """Stop notifying: the check was removed or replaced. The owner cancels the task."""
        self._closed = True

    def set_status(self, status: str, output: str) -> None:
        """Record a result and tell ``on_update`` if the status or the output changed."""
        if self._closed:
            return
        output = cap_output(output)
        changed = status != self.status
        if not changed and output == self.output:
            return
        if changed:
            if status == CRITICAL:
                self.critical_since = self._clock()
            elif self.status == CRITICAL:
                self.critical_since = None
            logger.info(
                "check status changed check=%s from=%s to=%s", self.check_id, self.status, status
            )
        self.status = status
        self.output = output
        try:
            self._on_update(self.check_id, status, output, changed)
        except Exception:
            logger.exception("check update callback failed check=%s", self.check_id)

    @abstractmethod
    async def run(self) -> None:
        """Keep the check current until cancelled."""


class IntervalRunner(CheckRunner):
    """A check that probes its target every ``interval`` seconds."""

    #: A probe gets this long beyond its own timeout before the runner gives up on
    #: it; probes enforce their timeout themselves, this only guards a stuck one.
    probe_grace: ClassVar[float] = 1.0

    def __init__(
        self,
        spec: CheckSpec,
        on_update: UpdateCallback,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(spec, on_update, clock=clock)
        self._rng = rng or random.Random()
        self._handler = StatusHandler(
            spec.check_id,
            self.set_status,
            success_before_passing=spec.success_before_passing,
            failures_before_warning=spec.failures_before_warning,
            failures_before_critical=spec.failures_before_critical,
        )

    async def run(self) -> None:
        # Consul's lib.RandomStagger: the first run within one interval.
        await asyncio.sleep(self._rng.uniform(0, self.spec.interval))
        while True:
            await self.check_once()
            await asyncio.sleep(self.spec.interval)

    async def check_once(self) -> None:
        """Run the probe once and feed its result through the thresholds."""
        try:
            async with asyncio.timeout(self.spec.timeout + self.probe_grace):
                status, output = await self.probe()
        except TimeoutError:
            status = CRITICAL
            output = f"Timed out ({format_duration(self.spec.timeout)}) running check"
        except Exception as exc:
            logger.warning("check probe failed check=%s error=%r", self.check_id, exc)
            status, output = CRITICAL, f"check failed: {exc!r}"
        self._handler.update(status, output)

    @abstractmethod
    async def probe(self) -> tuple[str, str]:
        """Probe the target once, within ``spec.timeout``: (status, output)."""
