"""Background: the long-running loops of one object, in a TaskGroup it owns.

Every object that runs loops (a hub's watch, a membership client's heartbeat,
the leader's reconcile...) owns one ``Background``. ``spawn`` adds a loop;
``aclose`` stops them all and waits, bounded in time. The loops run inside an
``asyncio.TaskGroup`` held by a runner task of their own, so:

- a loop that dies with an exception is logged here once, and the group's
  other loops are cancelled with it (they share one fate, as a TaskGroup's do);
  the task that started the object is never cancelled by it;
- ``aclose`` cancels the runner, the TaskGroup cancels every loop and waits
  for each to finish its ``finally`` blocks; after ``timeout`` seconds the
  rest is abandoned with a warning rather than hang a shutdown;
- the caller's own cancellation is never swallowed: if the task calling
  ``aclose`` is cancelled while it waits, ``CancelledError`` propagates.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

__all__ = ["Background"]

logger = logging.getLogger(__name__)

#: How long ``aclose`` waits for cancelled loops to finish before giving up.
DEFAULT_STOP_TIMEOUT = 5.0


class Background:
    """The loops of one owner (named for the logs)."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self._group: asyncio.TaskGroup | None = None
        self._runner: asyncio.Task[None] | None = None
        self._pending: list[tuple[Coroutine[Any, Any, None], str]] = []
        self._started = asyncio.Event()
        self._closed = False

    @property
    def running(self) -> bool:
        return self._runner is not None and not self._runner.done()

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``coro`` as one of the owner's loops (started now, or at ``start``)."""
        if self._closed:
            coro.close()
            raise RuntimeError(f"{self.owner}: background loops already closed")
        if self._group is None:
            self._pending.append((coro, name))
            if self._runner is None or self._runner.done():
                self._runner = asyncio.create_task(self._run(), name=f"{self.owner}-loops")
            return
        self._group.create_task(coro, name=name)

    async def _run(self) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                pending, self._pending = self._pending, []
                for coro, name in pending:
                    group.create_task(coro, name=name)
                self._started.set()
                # Parked until aclose() cancels this runner; the TaskGroup then
                # cancels every loop and waits for them.
                await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # an ExceptionGroup of the loops that died
            logger.error("background loops failed owner=%s error=%r", self.owner, exc)
        finally:
            self._group = None

    async def aclose(self, timeout: float = DEFAULT_STOP_TIMEOUT) -> None:
        """Cancel every loop and wait for them, at most ``timeout`` seconds."""
        self._closed = True
        for coro, _ in self._pending:
            coro.close()
        self._pending = []
        runner, self._runner = self._runner, None
        if runner is None or runner.done():
            return
        runner.cancel()
        done, _ = await asyncio.wait({runner}, timeout=timeout)
        if not done:
            logger.warning(
                "background loops did not stop in time owner=%s timeout=%.1fs",
                self.owner,
                timeout,
            )


async def cancel_and_wait(*tasks: asyncio.Task[Any], timeout: float | None = None) -> None:
    """Cancel ``tasks`` and wait for them to finish (at most ``timeout`` seconds).

    Unlike ``task.cancel(); with suppress(CancelledError): await task``, the
    caller's own cancellation is not swallowed: ``asyncio.wait`` raises it. A
    task that ended with an error is logged, not raised.
    """
    live = {t for t in tasks if not t.done()}
    for task in live:
        task.cancel()
    if live:
        await asyncio.wait(live, timeout=timeout)
    for task in tasks:
        if task.done() and not task.cancelled() and task.exception() is not None:
            logger.warning("task failed name=%s error=%r", task.get_name(), task.exception())
