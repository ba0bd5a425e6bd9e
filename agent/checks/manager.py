"""CheckManager: every check runner of an agent, each in its own task.

The manager validates a spec, builds the runner for its kind and runs it in a
task it owns; replacing or removing a check cancels its task (the runner is
closed first, so a cancelled runner never reports again). ``aclose`` cancels
everything and waits a bounded time. All methods are called from the event
loop's thread; none of them takes a lock because none of them awaits while
the runner table is half-changed.

Maintenance mode is not handled here: the owner adds it as a synthetic check.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

from agent.checks.grpc_check import GRPCRunner
from agent.checks.http_check import HTTPRunner
from agent.checks.runner import CheckRunner, CheckState, UpdateCallback
from agent.checks.script_check import ScriptRunner
from agent.checks.spec import MIN_INTERVAL, CheckSpec, validate_spec
from agent.checks.status import aggregate
from agent.checks.tcp_check import TCPRunner
from agent.checks.ttl_check import TTLRunner
from agent.errors import InvalidArgument, NotFound

__all__ = ["CheckManager"]

logger = logging.getLogger(__name__)

#: How long ``aclose`` waits for cancelled runners (a script is killed and reaped
#: within about 2 s; everything else ends at its next await).
DEFAULT_STOP_TIMEOUT = 5.0

_ProbingRunner = type[HTTPRunner] | type[TCPRunner] | type[GRPCRunner] | type[ScriptRunner]
_PROBING_RUNNERS: dict[str, _ProbingRunner] = {
    "http": HTTPRunner,
    "tcp": TCPRunner,
    "grpc": GRPCRunner,
    "script": ScriptRunner,
}


@dataclass(slots=True)
class _Entry:
    runner: CheckRunner
    task: asyncio.Task[None]


class CheckManager:
    """Owns the runners of one agent's checks.

    ``on_update(check_id, status, output, status_changed)`` hears every change.
    ``min_interval`` lowers the 1 s interval floor and is meant for tests only.
    ``rng`` draws each check's first-run delay (seed it in tests).
    """

    def __init__(
        self,
        on_update: UpdateCallback,
        *,
        enable_script_checks: bool = False,
        min_interval: float = MIN_INTERVAL,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        stop_timeout: float = DEFAULT_STOP_TIMEOUT,
    ) -> None:
        self._on_update = on_update
        self.enable_script_checks = enable_script_checks
        self.min_interval = min_interval
        self._rng = rng or random.Random()
        self._clock = clock
        self._stop_timeout = stop_timeout
        self._entries: dict[str, _Entry] = {}
        self._stopping: set[asyncio.Task[None]] = set()
        self._open = False
        self._closed = False

    async def __aenter__(self) -> CheckManager:
        if self._closed:
            raise RuntimeError("CheckManager is closed")
        self._open = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- registrations -------------------------------------------------------------

    def validate(self, spec: CheckSpec) -> CheckSpec:
        """``spec`` checked and normalised under this agent's settings (see ``validate_spec``)."""
        return validate_spec(
            spec, enable_script_checks=self.enable_script_checks, min_interval=self.min_interval
        )

    def add(self, spec: CheckSpec) -> CheckSpec:
        """Start running ``spec``, replacing a check with the same ID; returns the normalised spec.

        InvalidArgument if the spec is refused (nothing is replaced then).
        """
        if not self._open:
            raise RuntimeError("CheckManager is not running; use it with 'async with'")
        spec = self.validate(spec)
        runner = self._make_runner(spec)
        old = self._entries.pop(spec.check_id, None)
        if old is not None:
            self._stop(old)
        task = asyncio.create_task(runner.run(), name=f"check:{spec.check_id}")
        task.add_done_callback(self._task_done)
        self._entries[spec.check_id] = _Entry(runner, task)
        logger.debug("check added check=%s kind=%s", spec.check_id, spec.kind)
        return spec

    def remove(self, check_id: str) -> None:
        """Stop and forget a check; NotFound if there is none with that ID."""
        entry = self._entries.pop(check_id, None)
        if entry is None:
            raise NotFound(f'Unknown check ID "{check_id}"')
        self._stop(entry)
        logger.debug("check removed check=%s", check_id)

    def update_ttl(self, check_id: str, status: str, output: str = "") -> str:
        """Report a TTL check's status and restart its TTL; returns the stored output.

        NotFound for an unknown check, InvalidArgument if it is not a TTL check or
        the status is not passing, warning or critical.
        """
        entry = self._entries.get(check_id)
        if entry is None:
            raise NotFound(f'Unknown check ID "{check_id}"')
        if not isinstance(entry.runner, TTLRunner):
            raise InvalidArgument(f'CheckID "{check_id}" does not have associated TTL')
        return entry.runner.update(status, output)

    # -- reads ---------------------------------------------------------------------

    def __contains__(self, check_id: object) -> bool:
        return check_id in self._entries

    def __len__(self) -> int:
        return len(self._entries)

    def spec(self, check_id: str) -> CheckSpec:
        """The normalised spec of a check; NotFound if unknown."""
        return self._entry(check_id).runner.spec

    def get(self, check_id: str) -> CheckState:
        """The state of one check; NotFound if unknown."""
        return self._entry(check_id).runner.state()

    def states(self) -> dict[str, CheckState]:
        """The state of every check, by ID."""
        return {cid: e.runner.state() for cid, e in self._entries.items()}

    def statuses(self) -> dict[str, str]:
        """The status of every check, by ID."""
        return {cid: e.runner.status for cid, e in self._entries.items()}

    def aggregate_status(self, service_id: str | None = None) -> str:
        """The aggregate status of all checks, or of one service's checks."""
        return aggregate(
            e.runner.status
            for e in self._entries.values()
            if service_id is None or e.runner.spec.service_id == service_id
        )

    def services_to_reap(self, now: float | None = None) -> set[str]:
        """Services with a check critical for longer than its ``deregister_critical_service_after``.

        The owner deregisters them (Consul's ``reapServicesInternal``, run every few seconds).
        """
        now = self._clock() if now is None else now
        reap: set[str] = set()
        for entry in self._entries.values():
            spec = entry.runner.spec
            limit = spec.deregister_critical_service_after
            if spec.service_id and limit is not None and entry.runner.critical_for(now) > limit:
                reap.add(spec.service_id)
        return reap

    # -- shutdown ------------------------------------------------------------------

    async def aclose(self) -> None:
        """Stop every runner, waiting at most ``stop_timeout`` seconds for them to end."""
        self._open = False
        self._closed = True
        entries, self._entries = self._entries, {}
        for entry in entries.values():
            self._stop(entry)
        pending = set(self._stopping)
        if not pending:
            return
        _, still = await asyncio.wait(pending, timeout=self._stop_timeout)
        if still:
            logger.warning(
                "check runners did not stop in time count=%d timeout=%s",
                len(still), self._stop_timeout,
            )

    # -- internals -----------------------------------------------------------------

    def _entry(self, check_id: str) -> _Entry:
        entry = self._entries.get(check_id)
        if entry is None:
            raise NotFound(f'Unknown check ID "{check_id}"')
        return entry

    def _make_runner(self, spec: CheckSpec) -> CheckRunner:
        if spec.kind == "ttl":
            return TTLRunner(spec, self._on_update, clock=self._clock)
        # Each runner gets its own generator, seeded from ours, so a seeded manager
        # gives every check a reproducible first-run delay.
        rng = random.Random(self._rng.getrandbits(64))
        return _PROBING_RUNNERS[spec.kind](spec, self._on_update, rng=rng, clock=self._clock)

    def _stop(self, entry: _Entry) -> None:
        entry.runner.close()
        if not entry.task.done():
            entry.task.cancel()
            self._stopping.add(entry.task)
            entry.task.add_done_callback(self._stopping.discard)

    @staticmethod
    def _task_done(task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            logger.error(
                "check runner died check=%s", task.get_name(), exc_info=exc
            )
