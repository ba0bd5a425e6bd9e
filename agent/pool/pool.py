"""ConnPool: one shared grpc.aio channel per server address.

Consul's ``agent/pool/pool.go`` keeps one multiplexed connection per server and
reaps the ones left unused; this is the same idea on gRPC, where a channel
already multiplexes every call to one server:

- ``channel(address)`` returns the one channel of ``address``, dialing it on
  first use. It never awaits between "is there one?" and "store the new one",
  so on one event loop 100 tasks asking at once still make a single channel.
- Every call stamps the channel's last use. The reaper closes channels idle for
  ``idle_timeout`` (127 s, Consul's 2 min + 7 s) and with no call in flight.
- ``mark_failed(address)`` retires the channel after a transport failure: new
  calls dial a fresh one; the old one is closed once its in-flight calls end.
- With a ``security`` (TLS), channels are dialed with its credentials, read
  at each dial (so a certificate reload reaches new channels while open ones
  keep theirs), and, when it names one, with the server name the server's
  certificate must carry (``grpc.ssl_target_name_override``).
- ``call`` first makes sure the channel is connected. A server that cannot be
  reached raises :class:`ConnectFailed`, which tells the caller the request was
  never sent (so even a write is safe to send elsewhere).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol, Self

import grpc
import grpc.aio
from google.protobuf.message import Message

from agent.rpc.methods import MethodSpec, method_spec
from agent.tasks import Background

__all__ = [
    "CHANNEL_OPTIONS",
    "SERVER_KEEPALIVE_OPTIONS",
    "ChannelSecurity",
    "ConnPool",
    "ConnectFailed",
    "PoolStats",
]

logger = logging.getLogger(__name__)

# Consul closes a connection unused for 2 min + 7 s (maxTime in pool.go); the
# odd 7 s keeps the reap from lining up with the 120 s rebalance timer.
DEFAULT_IDLE_TIMEOUT = 127.0
DEFAULT_REAP_INTERVAL = 30.0
DEFAULT_PING_TIMEOUT = 1.0
# The longest a call waits for a channel to connect, inside its own deadline.
DEFAULT_CONNECT_TIMEOUT = 5.0
# How long a retired channel may finish its in-flight calls before it is closed.
RETIRE_GRACE = 30.0

# Keepalive pings detect a server that vanished without closing its sockets
# (a killed host, a dropped route) in about 10 s + 5 s, instead of the kernel's
# minutes, so a blocking query fails over well within its wait. Pings go out
# only while calls are open, and keep going through a long blocking query
# (max_pings_without_data = 0).
CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.keepalive_time_ms", 10_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.initial_reconnect_backoff_ms", 500),
    ("grpc.max_reconnect_backoff_ms", 5_000),
    # Answers up to 64 MiB (gRPC's default is 4 MiB): a KV prefix of 30,000
    # 100-byte pairs is 4.5 MB, and Consul's HTTP reads have no such limit.
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
)

# What a server must accept for CHANNEL_OPTIONS' pings not to be answered with
# GOAWAY "too_many_pings" (gRPC servers allow one ping per 5 min by default).
SERVER_KEEPALIVE_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.http2.min_recv_ping_interval_without_data_ms", 5_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_ping_strikes", 0),
)

_PING = method_spec("/consul.status.v1.StatusService/Ping")


class ConnectFailed(ConnectionError):
    """The channel to ``address`` could not connect: the request was never sent."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(f"cannot connect to {address}: {reason}")
        self.address = address
        self.reason = reason


class ChannelSecurity(Protocol):
    """TLS for dialing servers (satisfied by agent.tls.ChannelTLS)."""

    def credentials(self) -> grpc.ChannelCredentials:
        """The credentials of a channel dialed now."""
        ...

    def target_name(self, address: str) -> str | None:
        """The name the certificate of the server at ``address`` must carry (None: its host)."""
        ...


class _HasAddress(Protocol):
    """Anything with an RPC address, such as router.Server."""

    @property
    def address(self) -> str: ...


@dataclass(slots=True)
class PoolStats:
    """Counters of the pool's life, for introspection and tests."""

    dials: int = 0
    reaped: int = 0
    retired: int = 0
    connect_failures: int = 0


@dataclass(slots=True, eq=False)
class _Conn:
    address: str
    channel: grpc.aio.Channel
    last_used: float
    in_flight: int = 0
    #: The server name its TLS handshake checked (None: the address dialed).
    target: str | None = None
    retired: bool = False
    retired_at: float = 0.0
    closing: bool = field(default=False)


class ConnPool:
    """One grpc.aio channel per server address, shared, reaped when idle.

    Use as ``async with ConnPool() as pool:``; ``aclose()`` stops the reaper and
    closes every channel.
    """

    def __init__(
        self,
        *,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        reap_interval: float = DEFAULT_REAP_INTERVAL,
        ping_timeout: float = DEFAULT_PING_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        channel_options: Sequence[tuple[str, Any]] = CHANNEL_OPTIONS,
        clock: Callable[[], float] = time.monotonic,
        security: ChannelSecurity | None = None,
    ) -> None:
        if idle_timeout <= 0 or reap_interval <= 0 or ping_timeout <= 0 or connect_timeout <= 0:
            raise ValueError("pool timeouts and intervals must be positive")
        self._idle_timeout = idle_timeout
        self._reap_interval = reap_interval
        self._ping_timeout = ping_timeout
        self._connect_timeout = connect_timeout
        self._options = list(channel_options)
        self._clock = clock
        self._security = security
        self._conns: dict[str, _Conn] = {}
        self._retired: set[_Conn] = set()
        self._closers: set[asyncio.Task[None]] = set()
        self._loops = Background("conn-pool")
        self._closed = False
        self.stats = PoolStats()

    # -- lifecycle ---------------------------------------------------------

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def start(self) -> None:
        """Start the idle reaper; idempotent."""
        if self._closed:
            raise RuntimeError("pool is closed")
        if not self._loops.running:
            self._loops.spawn(self._reap_loop(), "conn-pool-reaper")

    async def aclose(self) -> None:
        """Stop the reaper and close every channel, cancelling calls still open."""
        if self._closed:
            return
        self._closed = True
        await self._loops.aclose()
        conns = list(self._conns.values()) + list(self._retired)
        self._conns.clear()
        self._retired.clear()
        await asyncio.gather(*(c.channel.close() for c in conns), return_exceptions=True)
        if self._closers:
            await asyncio.gather(*self._closers, return_exceptions=True)

    # -- channels ----------------------------------------------------------

    def channel(self, address: str) -> grpc.aio.Channel:
        """The shared channel of ``address`` ("host:port"), dialed on first use.

        Synchronous on purpose: with no await between the lookup and the insert,
        concurrent first callers on the loop cannot dial twice.
        """
        return self._conn(address).channel

    def _conn(self, address: str) -> _Conn:
        if self._closed:
            raise RuntimeError("pool is closed")
        conn = self._conns.get(address)
        target = self._security.target_name(address) if self._security is not None else None
        if conn is not None and conn.target is None and target is not None:
            # Dialed before the server's name was known (a WAN seed): dial again
            # so that the handshake checks the name from now on.
            self._retire(address, "server name now known")
            conn = None
        if conn is None:
            if not address or ":" not in address:
                raise ValueError(f"server address must be host:port, got {address!r}")
            channel = self._dial(address, target)
            conn = _Conn(address=address, channel=channel, last_used=self._clock(), target=target)
            self._conns[address] = conn
            self.stats.dials += 1
            logger.debug("dialed server address=%s", address)
        return conn

    def _dial(self, address: str, name: str | None) -> grpc.aio.Channel:
        security = self._security
        if security is None:
            return grpc.aio.insecure_channel(address, options=self._options)
        options = list(self._options)
        if name:
            options.append(("grpc.ssl_target_name_override", name))
        return grpc.aio.secure_channel(address, security.credentials(), options=options)

    def addresses(self) -> list[str]:
        """Addresses with a live (not retired) channel."""
        return sorted(self._conns)

    def mark_failed(self, address: str) -> None:
        """Drop the channel of ``address`` after a transport failure.

        The next call dials again. Calls still running on the old channel (other
        blocking queries) may finish; it is closed when the last one ends, or
        after RETIRE_GRACE at the latest.
        """
        self._retire(address, "transport failure")

    def _retire(self, address: str, why: str) -> None:
        conn = self._conns.pop(address, None)
        if conn is None:
            return
        conn.retired = True
        conn.retired_at = self._clock()
        self.stats.retired += 1
        logger.info("dropped server channel address=%s why=%s", address, why)
        if conn.in_flight == 0:
            self._close_later(conn)
        else:
            self._retired.add(conn)

    def _close_later(self, conn: _Conn) -> None:
        if conn.closing:
            return
        conn.closing = True
        self._retired.discard(conn)
        task = asyncio.get_running_loop().create_task(conn.channel.close())
        self._closers.add(task)
        task.add_done_callback(self._closers.discard)

    def _release(self, conn: _Conn) -> None:
        conn.in_flight -= 1
        conn.last_used = self._clock()
        if conn.retired and conn.in_flight == 0:
            self._close_later(conn)

    async def reap_idle(self) -> int:
        """Close channels idle longer than the idle timeout; returns how many."""
        now = self._clock()
        idle = [
            c
            for c in self._conns.values()
            if c.in_flight == 0 and now - c.last_used >= self._idle_timeout
        ]
        for conn in idle:
            del self._conns[conn.address]
            logger.debug("closing idle server channel address=%s", conn.address)
        stale = [c for c in self._retired if now - c.retired_at >= RETIRE_GRACE]
        for conn in stale:
            self._retired.discard(conn)
        self.stats.reaped += len(idle)
        await asyncio.gather(*(c.channel.close() for c in idle + stale), return_exceptions=True)
        return len(idle)

    async def _reap_loop(self) -> None:
        while True:
            await asyncio.sleep(self._reap_interval)
            try:
                await self.reap_idle()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("idle channel reap failed")

    # -- calls -------------------------------------------------------------

    async def _ready(self, conn: _Conn, deadline: float) -> None:
        """Wait until ``conn`` is connected; ConnectFailed if it cannot be.

        A channel that reports TRANSIENT_FAILURE failed its last connect
        attempt: fail at once rather than wait for gRPC's reconnect backoff.
        """
        channel = conn.channel
        state = channel.get_state(try_to_connect=True)
        give_up = min(deadline, time.monotonic() + self._connect_timeout)
        while state != grpc.ChannelConnectivity.READY:
            if state in (
                grpc.ChannelConnectivity.TRANSIENT_FAILURE,
                grpc.ChannelConnectivity.SHUTDOWN,
            ):
                self.stats.connect_failures += 1
                raise ConnectFailed(conn.address, state.name.lower())
            remaining = give_up - time.monotonic()
            if remaining <= 0:
                self.stats.connect_failures += 1
                raise ConnectFailed(conn.address, "connect timed out")
            try:
                async with asyncio.timeout(remaining):
                    await channel.wait_for_state_change(state)
            except TimeoutError:
                continue
            state = channel.get_state(try_to_connect=True)

    async def call(
        self, address: str, spec: MethodSpec, request: Message, timeout: float
    ) -> Message:
        """One unary call of ``spec`` on ``address`` within ``timeout`` seconds.

        Raises ConnectFailed when the server cannot be reached (nothing was
        sent), grpc.aio.AioRpcError for any status the call ends with.
        """
        if spec.server_streaming:
            raise ValueError(f"{spec.path} is a streaming method; use stream()")
        if timeout <= 0:
            raise ValueError("call timeout must be positive")
        deadline = time.monotonic() + timeout
        conn = self._conn(address)
        conn.in_flight += 1
        try:
            await self._ready(conn, deadline)
            method = conn.channel.unary_unary(
                spec.path,
                request_serializer=_serialize,
                response_deserializer=spec.response_type.FromString,
            )
            remaining = max(deadline - time.monotonic(), 0.001)
            response: Message = await method(request, timeout=remaining)
            return response
        finally:
            self._release(conn)

    async def stream(
        self,
        address: str,
        spec: MethodSpec,
        request: Message,
        timeout: float | None = None,
    ) -> AsyncIterator[Message]:
        """A server-streaming call of ``spec`` on ``address``, message by message.

        ``timeout`` bounds the whole stream (None: until the server ends it or
        the connection breaks; keepalive notices a vanished server). The
        connect phase is always bounded by the connect timeout.
        """
        if not spec.server_streaming:
            raise ValueError(f"{spec.path} is not a streaming method; use call()")
        start = time.monotonic()
        deadline = start + (timeout if timeout is not None else self._connect_timeout)
        conn = self._conn(address)
        conn.in_flight += 1
        try:
            await self._ready(conn, deadline)
            method = conn.channel.unary_stream(
                spec.path,
                request_serializer=_serialize,
                response_deserializer=spec.response_type.FromString,
            )
            remaining = None if timeout is None else max(deadline - time.monotonic(), 0.001)
            responses = method(request, timeout=remaining)
            try:
                async for response in responses:
                    conn.last_used = self._clock()
                    yield response
            finally:
                responses.cancel()
        finally:
            self._release(conn)

    async def ping(self, server: _HasAddress, timeout: float | None = None) -> bool:
        """Whether ``server`` answers a StatusService Ping within the deadline.

        A server that does not answer has its channel dropped, so the next use
        dials afresh. Satisfies the router's Pinger protocol.
        """
        try:
            await self.call(
                server.address, _PING, _PING.request_type(), timeout or self._ping_timeout
            )
        except asyncio.CancelledError:
            raise
        except (ConnectFailed, grpc.aio.AioRpcError) as exc:
            logger.debug("ping failed address=%s error=%s", server.address, _brief(exc))
            self.mark_failed(server.address)
            return False
        except (ValueError, RuntimeError) as exc:
            logger.warning("ping refused address=%s error=%s", server.address, exc)
            return False
        return True


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()


def _brief(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return str(exc)
