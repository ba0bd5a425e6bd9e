"""Limits of the HTTP edge, as Consul has them: connections and blocking queries per client.

- ``limits.http_max_conns_per_client`` (Consul's key, default 200): a client
  address holding that many open connections gets its next one answered
  ``429 Too Many Requests`` with go-connlimit's text and closed, before any
  request is read (Consul's ``httpConnStateHook``). 0 means no limit.
- ``limits.http_max_blocking_queries_per_client`` (ours, default 128): a
  client address with that many blocking queries (``?index=`` > 0) in flight
  gets 429 for the next one, at once, never a stall. 0 means no limit.
- ``max_query_time`` (Consul's key, default 600 s): a longer ``?wait=`` is cut
  to it, as Consul's servers do.
- A client that leaves cancels its read (the listener's handler cancellation),
  while a write runs to completion (:func:`write_shield_middleware`).

:class:`ClientTracker` keeps the counts for one listener (no lock: all on the
event loop); :class:`ClientLimitedSite` is an aiohttp site whose protocol
factory consults it on every accepted connection. :func:`http_samples` gives
the gauges ``/v1/agent/metrics`` adds (Consul-style names): open connections,
blocking queries in flight and the process's asyncio tasks (our
``num_goroutines``).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from agent.errors import ConsulError
from agent.metrics import Sample

__all__ = [
    "LIMITS",
    "TOO_MANY_CONNECTIONS",
    "TRACKER",
    "ClientLimitedSite",
    "ClientTracker",
    "HTTPLimits",
    "TooManyBlockingQueries",
    "blocking_query_middleware",
    "http_samples",
    "write_shield_middleware",
]

logger = logging.getLogger(__name__)

# go-connlimit's default 429 body, which Consul's HTTP server sends.
TOO_MANY_CONNECTIONS = (
    "Your IP is issuing too many concurrent connections, please rate limit your calls\n"
)
_REFUSAL = (
    "HTTP/1.1 429 Too Many Requests\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    f"Content-Length: {len(TOO_MANY_CONNECTIONS)}\r\n"
    "Connection: close\r\n\r\n"
    f"{TOO_MANY_CONNECTIONS}"
).encode()


class LimitsConfig(Protocol):
    """What :meth:`HTTPLimits.of` reads from an agent's configuration."""

    @property
    def http_max_conns_per_client(self) -> int: ...
    @property
    def http_max_blocking_queries_per_client(self) -> int: ...
    @property
    def max_query_time(self) -> float: ...


@dataclass(frozen=True, slots=True)
class HTTPLimits:
    max_conns_per_client: int = 200
    max_blocking_queries_per_client: int = 128
    max_query_time: float = 600.0

    @classmethod
    def of(cls, config: LimitsConfig) -> HTTPLimits:
        return cls(
            max_conns_per_client=config.http_max_conns_per_client,
            max_blocking_queries_per_client=config.http_max_blocking_queries_per_client,
            max_query_time=config.max_query_time,
        )


class TooManyBlockingQueries(ConsulError):
    http_status = 429
    default_message = "Too many concurrent blocking queries from this client"


class ClientTracker:
    """Open connections and blocking queries per client address (event-loop only)."""

    def __init__(self, limits: HTTPLimits) -> None:
        self.limits = limits
        self.connections: Counter[str] = Counter()
        self.blocking: Counter[str] = Counter()
        self.refused_connections = 0
        self.refused_blocking = 0
        # Writes whose client left, still finishing (write_shield_middleware).
        self.shielded: set[asyncio.Future[Any]] = set()

    def open_connection(self, client: str) -> bool:
        limit = self.limits.max_conns_per_client
        if limit and self.connections[client] >= limit:
            self.refused_connections += 1
            return False
        self.connections[client] += 1
        return True

    def close_connection(self, client: str) -> None:
        _decrement(self.connections, client)

    def start_blocking(self, client: str) -> bool:
        limit = self.limits.max_blocking_queries_per_client
        if limit and self.blocking[client] >= limit:
            self.refused_blocking += 1
            return False
        self.blocking[client] += 1
        return True

    def end_blocking(self, client: str) -> None:
        _decrement(self.blocking, client)


def _decrement(counter: Counter[str], key: str) -> None:
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]


LIMITS = web.AppKey("consul_http_limits", HTTPLimits)
TRACKER = web.AppKey("consul_http_tracker", ClientTracker)


def _client_of(peer: Any) -> str:
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return "" if peer is None else str(peer)


@web.middleware
async def blocking_query_middleware(
    request: web.Request, handler: Callable[[web.Request], Any]
) -> web.StreamResponse:
    """Counts blocking reads per client address; over the cap, 429 at once."""
    index = request.query.get("index", "")
    if request.method != "GET" or index in ("", "0"):
        response: web.StreamResponse = await handler(request)
        return response
    tracker = request.app[TRACKER]
    client = request.remote or ""
    if not tracker.start_blocking(client):
        raise TooManyBlockingQueries()
    try:
        response = await handler(request)
        return response
    finally:
        tracker.end_blocking(client)


_READS = frozenset({"GET", "HEAD", "OPTIONS"})


@web.middleware
async def write_shield_middleware(
    request: web.Request, handler: Callable[[web.Request], Any]
) -> web.StreamResponse:
    """Writes run to completion even when their client leaves.

    The listener cancels the handler of a client that went away (so that an
    abandoned blocking read releases everything at once); a write half done
    would leave local state and the servers out of step, so a write is shielded
    from that cancellation, as Consul completes a write whose client left.
    Its own deadlines still bound it.
    """
    if request.method in _READS:
        response: web.StreamResponse = await handler(request)
        return response
    task = asyncio.ensure_future(handler(request))
    tracker = request.app[TRACKER]
    tracker.shielded.add(task)
    task.add_done_callback(tracker.shielded.discard)
    task.add_done_callback(_retrieve)
    response = await asyncio.shield(task)
    return response


def _retrieve(task: asyncio.Future[Any]) -> None:
    # The client is gone: nobody reads the outcome (the error middleware, inside
    # the shield, already answered errors), so only mark it retrieved.
    if not task.cancelled():
        task.exception()


class _Guarded(asyncio.Protocol):
    """Wraps aiohttp's request handler protocol: counts the connection, or refuses it."""

    def __init__(self, inner: asyncio.Protocol, tracker: ClientTracker) -> None:
        self._inner = inner
        self._tracker = tracker
        self._client: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        client = _client_of(transport.get_extra_info("peername"))
        if not self._tracker.open_connection(client):
            logger.debug("http connection refused client=%s reason=too_many_connections", client)
            if isinstance(transport, asyncio.WriteTransport):
                transport.write(_REFUSAL)
            transport.close()
            return
        self._client = client
        self._inner.connection_made(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._client is None:
            return
        self._tracker.close_connection(self._client)
        self._client = None
        self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._client is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        if self._client is not None:
            return self._inner.eof_received()
        return None

    def pause_writing(self) -> None:
        if self._client is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._client is not None:
            self._inner.resume_writing()


class ClientLimitedSite(web.BaseSite):
    """aiohttp's TCPSite, with every accepted connection counted by ``tracker``."""

    __slots__ = ("_host", "_port", "_tracker")

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        tracker: ClientTracker,
        *,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context)
        self._host = host
        self._port = port
        self._tracker = tracker

    @property
    def name(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        factory = self._runner.server
        if factory is None:
            raise RuntimeError("runner is not set up")
        tracker = self._tracker

        def protocol() -> asyncio.Protocol:
            return _Guarded(factory(), tracker)

        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            protocol,
            self._host,
            self._port,
            ssl=self._ssl_context,
            backlog=self._backlog,
            reuse_address=True,
        )


def http_samples(tracker: ClientTracker) -> list[Sample]:
    """The HTTP edge's gauges (``consul.http.connections``, ``consul.http.blocking_queries``)."""
    return [
        Sample(
            "consul_http_connections",
            "gauge",
            "open HTTP connections",
            float(sum(tracker.connections.values())),
        ),
        Sample(
            "consul_http_blocking_queries",
            "gauge",
            "HTTP blocking queries in flight",
            float(sum(tracker.blocking.values())),
        ),
    ]
