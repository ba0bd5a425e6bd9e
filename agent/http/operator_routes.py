"""``/v1/agent/reload``, ``join``, ``force-leave`` and ``monitor``: the operator's endpoints.

The agent fills an :class:`OperatorHooks` with what it can do (reload its
config files, join an address); a hook left ``None`` answers 500 "not
supported by this agent". Force-leave needs no hook: it is the membership
Leave RPC (with ``prune``) sent through the agent's invoker. Monitor streams
the agent's log records at or above the requested level (below the agent's
own ``log_level`` too, as Consul's) as Consul's text lines, or JSON with
``?logjson``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass

from aiohttp import web

from agent.errors import ConsulError, InvalidArgument, NotFound
from agent.http.base import context
from agent.http.params import flag
from agent.rpc.methods import method_spec
from generated.consul.membership.v1 import membership_pb2 as mpb

__all__ = ["BROADCAST", "LOG_LEVELS", "LogBroadcast", "OperatorHooks", "add_operator_routes"]

logger = logging.getLogger(__name__)

_LEAVE = method_spec("/consul.membership.v1.MembershipService/Leave")

#: Consul's log level names and the logging levels they mean (trace is our debug).
LOG_LEVELS = {
    "trace": logging.DEBUG,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "err": logging.ERROR,
    "error": logging.ERROR,
}
# Lines a slow monitor reader may fall behind by before lines are dropped.
MONITOR_BUFFER = 512


@dataclass(slots=True)
class OperatorHooks:
    """What an agent lets the operator endpoints do; filled in by the agent."""

    #: Re-read the config files and apply what changes without a restart.
    reload: Callable[[], Awaitable[None]] | None = None
    #: Join the cluster through ``address`` (``wan``: the WAN pool); members contacted.
    join: Callable[[str, bool], Awaitable[int]] | None = None


class LogBroadcast(logging.Handler):
    """A logging handler copying each record to every subscribed monitor's queue."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self._subscribers: set[tuple[asyncio.AbstractEventLoop, asyncio.Queue[str], int, bool]] = (
            set()
        )
        self._text = logging.Formatter("%(asctime)s [%(levelname)s] %(name)s: %(message)s")
        # While a monitor wants more than the agent logs: the agent's level, and
        # its other handlers' levels as they were.
        self._agent_level: int | None = None
        self._held: dict[logging.Handler, int] = {}

    def emit(self, record: logging.LogRecord) -> None:
        if not self._subscribers:
            return
        try:
            text = self._text.format(record)
            as_json = json.dumps(
                {
                    "@timestamp": self._text.formatTime(record),
                    "@level": record.levelname.lower(),
                    "@module": record.name,
                    "@message": record.getMessage(),
                }
            )
        except Exception:  # a bad log call must not break logging
            return
        for loop, queue, level, want_json in list(self._subscribers):
            if record.levelno >= level:
                line = as_json if want_json else text
                with contextlib.suppress(RuntimeError):  # loop closed
                    loop.call_soon_threadsafe(_offer, queue, line)

    @contextlib.contextmanager
    def subscribe(self, level: int, as_json: bool) -> Iterator[asyncio.Queue[str]]:
        """A queue of log lines at ``level`` and above, for as long as the block runs.

        As Consul's monitor, a level below the agent's own (``debug`` on an
        ``INFO`` agent) is served: while such a monitor is attached the root
        logger lets those records through and the agent's other handlers are
        held at the agent's level, so its own log does not change.
        """
        queue: asyncio.Queue[str] = asyncio.Queue(MONITOR_BUFFER)
        entry = (asyncio.get_running_loop(), queue, level, as_json)
        self._subscribers.add(entry)
        root = logging.getLogger()
        if self not in root.handlers:
            root.addHandler(self)
        self._lower_to(min(s[2] for s in self._subscribers))
        try:
            yield queue
        finally:
            self._subscribers.discard(entry)
            self._lower_to(min((s[2] for s in self._subscribers), default=None))

    def _lower_to(self, level: int | None) -> None:
        root = logging.getLogger()
        if self._agent_level is None:
            if level is None or level >= root.level:
                return
            self._agent_level = root.level
            self._held = {h: h.level for h in root.handlers if h is not self}
            for h in self._held:
                h.setLevel(max(h.level, self._agent_level))
        if level is None or level >= self._agent_level:
            root.setLevel(self._agent_level)
            for h, original in self._held.items():
                h.setLevel(original)
            self._agent_level, self._held = None, {}
        else:
            root.setLevel(level)

    def set_agent_level(self, level: int) -> None:
        """Change the agent's log level (``reload``), minding attached monitors."""
        if self._agent_level is None:
            logging.getLogger().setLevel(level)
            return
        self._agent_level = level
        for h in self._held:
            h.setLevel(level)
        self._lower_to(min((s[2] for s in self._subscribers), default=None))


def _offer(queue: asyncio.Queue[str], line: str) -> None:
    with contextlib.suppress(asyncio.QueueFull):
        queue.put_nowait(line)


BROADCAST = LogBroadcast()


async def reload(request: web.Request) -> web.Response:
    hooks = request.app[OPERATOR]
    if hooks.reload is None:
        raise ConsulError("Reload is not supported by this agent")
    try:
        await hooks.reload()
    except InvalidArgument as exc:
        raise ConsulError(f"Failed reloading config: {exc.message}") from None
    return web.Response(status=200)


async def join(request: web.Request) -> web.Response:
    hooks = request.app[OPERATOR]
    address = request.match_info["address"]
    if hooks.join is None:
        raise ConsulError("Join is not supported by this agent")
    await hooks.join(address, flag(request.query, "wan"))
    return web.Response(status=200)


async def force_leave(request: web.Request) -> web.Response:
    ctx = context(request)
    node = request.match_info["node"]
    req = mpb.LeaveRequest(
        name=node,
        datacenter=ctx.datacenter,
        wan=flag(request.query, "wan"),
        prune=flag(request.query, "prune"),
    )
    try:
        await ctx.invoker.rpc(_LEAVE, req)
    except NotFound:
        raise ConsulError(f"agent: No node found with name '{node}'") from None
    return web.Response(status=200)


async def monitor(request: web.Request) -> web.StreamResponse:
    name = request.query.get("loglevel", "info").lower()
    level = LOG_LEVELS.get(name)
    if level is None:
        raise InvalidArgument(f"Unknown log level: {name}")
    as_json = flag(request.query, "logjson")
    response = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
    with BROADCAST.subscribe(level, as_json) as queue:
        await response.prepare(request)
        logger.info("monitor attached level=%s", name)
        try:
            while True:
                line = await queue.get()
                await response.write((line + "\n").encode())
        except (ConnectionResetError, ConnectionError):
            pass
    return response


OPERATOR = web.AppKey("consul_operator_hooks", OperatorHooks)


def add_operator_routes(app: web.Application, hooks: OperatorHooks) -> None:
    app[OPERATOR] = hooks
    app.router.add_put("/v1/agent/reload", reload)
    app.router.add_put("/v1/agent/join/{address}", join)
    app.router.add_put("/v1/agent/force-leave/{node}", force_leave)
    app.router.add_get("/v1/agent/monitor", monitor)
