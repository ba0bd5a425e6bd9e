"""Client: the client agent's RPC path to its servers (Consul's Client.RPC).

Order of operations (DESIGN.md section 2), for every call:

1. ``first_check = now``, once, before the first try.
2. ``server = router.find_server()`` (the local datacenter's first server: a
   client always talks to its own servers, which forward to other
   datacenters); none -> NoServers, no retry.
3. The token bucket; empty -> RateLimited, no retry.
4. The call, over the pooled channel, with a deadline.
5. A transport failure (cannot connect, UNAVAILABLE from the transport,
   connection reset, a read's deadline) moves the server to the end of the
   list and drops its channel. Errors the server answered with (not found,
   invalid argument, permission denied, CAS conflict, no leader...) leave the
   list alone.
6. Retry, while ``now - first_check < hold`` and only when it is safe:

   ======================================  =========  ==========
   failure                                 read       write
   ======================================  =========  ==========
   could not connect (nothing was sent)    retry      retry
   transport failure after sending         retry      raise
   "No cluster leader"                     retry      retry
   server-side RESOURCE_EXHAUSTED          retry      retry
   any other answer of the server          raise      raise
   ======================================  =========  ==========

   ``hold`` is ``rpc_hold_timeout`` (7 s), plus ``wait + wait/16`` for a
   blocking read. Between tries a jittered wait that starts near
   ``rpc_hold_timeout / 16`` (about 0.44 s) and doubles, never past the hold.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import grpc
import grpc.aio
from google.protobuf.message import Message
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type

from agent.client.ratelimit import DEFAULT_MAX_BURST, TokenBucket
from agent.errors import (
    ConsulError,
    NoLeader,
    NoServers,
    RateLimited,
    Unavailable,
    from_rpc_error,
)
from agent.pool.failure import is_transport_failure
from agent.pool.pool import ConnectFailed
from agent.router.server import Server
from agent.rpc.methods import MethodSpec, request_wait, with_datacenter

__all__ = ["Client", "ClientStats", "RPCPool", "ServerRouter"]

logger = logging.getLogger(__name__)

DEFAULT_RPC_HOLD_TIMEOUT = 7.0
DEFAULT_CALL_TIMEOUT = 10.0
# Added to a blocking read's deadline (wait + wait/16) for the trip itself.
BLOCKING_MARGIN = 5.0
# Consul's JitterFraction: the server adds up to wait/16 to a blocking wait,
# and the client waits hold/16 between tries.
JITTER_FRACTION = 16


class ServerRouter(Protocol):
    """What the client needs of the router (router.Router and router.Manager fit)."""

    def find_server(self) -> Server | None: ...

    def notify_failed_server(self, server: Server) -> None: ...


class RPCPool(Protocol):
    """What the client needs of the connection pool (pool.ConnPool fits)."""

    async def call(
        self, address: str, spec: MethodSpec, request: Message, timeout: float
    ) -> Message: ...

    def stream(
        self, address: str, spec: MethodSpec, request: Message, timeout: float | None = None
    ) -> AsyncIterator[Message]: ...

    def mark_failed(self, address: str) -> None: ...


@dataclass(slots=True)
class ClientStats:
    """Counters of the RPC path."""

    rpc: int = 0  # rpc() and stream() calls
    attempts: int = 0  # calls sent to a server, first tries and retries
    failed: int = 0  # transport failures (each took a server out of first place)
    rate_limited: int = 0  # refused by our own token bucket
    retries: int = 0  # tries after the first
    no_servers: int = 0  # refused for want of a server


class _Retry(Exception):
    """A failed try that is safe to try again; carries what to raise if not."""

    def __init__(self, error: ConsulError) -> None:
        super().__init__(error.message)
        self.error = error


class Client:
    """Forwards RPCs to the servers of the local datacenter."""

    def __init__(
        self,
        router: ServerRouter,
        pool: RPCPool,
        *,
        rate: float | None = None,
        burst: int = DEFAULT_MAX_BURST,
        hold_timeout: float = DEFAULT_RPC_HOLD_TIMEOUT,
        call_timeout: float = DEFAULT_CALL_TIMEOUT,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if hold_timeout < 0:
            raise ValueError("rpc hold timeout must be >= 0")
        if call_timeout <= 0:
            raise ValueError("rpc call timeout must be positive")
        self._router = router
        self._pool = pool
        self.limiter = TokenBucket(rate, burst, clock=clock)
        self.rpc_hold_timeout = hold_timeout
        self.call_timeout = call_timeout
        self._rng = rng or random.Random()
        self._clock = clock
        self._sleep = sleep
        self.stats = ClientStats()

    # -- unary -------------------------------------------------------------

    async def rpc(
        self, spec: MethodSpec, request: Message, *, datacenter: str | None = None
    ) -> Message:
        """Send ``request`` to a server and return its answer, retrying when safe.

        ``datacenter`` fills the request's QueryOptions/WriteOptions datacenter
        when the request leaves it empty (the caller's request is not changed);
        the call still goes to a local server, which forwards it.

        Raises a ConsulError: NoServers, RateLimited, Unavailable (transport),
        or what the server answered (NotFound, NoLeader, CASConflict...).
        """
        if spec.server_streaming:
            raise ValueError(f"{spec.path} is a streaming method; use stream()")
        if not isinstance(request, spec.request_type):
            raise TypeError(
                f"{spec.path} takes {spec.request_type.__name__}, got {type(request).__name__}"
            )
        if datacenter:
            request = with_datacenter(request, datacenter)
        self.stats.rpc += 1
        first_check = self._clock()
        wait = request_wait(request) if spec.read else 0.0
        blocking_extra = wait + wait / JITTER_FRACTION
        hold = self.rpc_hold_timeout + blocking_extra
        timeout = blocking_extra + BLOCKING_MARGIN if wait > 0 else self.call_timeout

        def stop(state: RetryCallState) -> bool:
            return self._clock() - first_check >= hold

        def backoff(state: RetryCallState) -> float:
            base = self.rpc_hold_timeout / JITTER_FRACTION
            grown = base * 2 ** max(state.attempt_number - 1, 0)
            # Consul's RandomStagger: uniform in [0, wait).
            jittered = grown * self._rng.uniform(0.0, 1.0)
            remaining = hold - (self._clock() - first_check)
            return float(max(min(jittered, remaining), 0.0))

        def before_sleep(state: RetryCallState) -> None:
            self.stats.retries += 1
            outcome = state.outcome
            err = outcome.exception() if outcome is not None else None
            logger.debug(
                "retrying rpc method=%s attempt=%d error=%s",
                spec.path,
                state.attempt_number + 1,
                err,
            )

        retrying = AsyncRetrying(
            retry=retry_if_exception_type(_Retry),
            stop=stop,
            wait=backoff,
            sleep=self._sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            response: Message = await retrying(self._try_once, spec, request, timeout)
        except _Retry as exc:
            raise exc.error from exc.__cause__
        return response

    async def _try_once(self, spec: MethodSpec, request: Message, timeout: float) -> Message:
        server = self._router.find_server()
        if server is None:
            self.stats.no_servers += 1
            raise NoServers()
        if not self.limiter.allow():
            self.stats.rate_limited += 1
            raise RateLimited()
        self.stats.attempts += 1
        try:
            return await self._pool.call(server.address, spec, request, timeout)
        except ConnectFailed as exc:
            self._failed(server, spec, str(exc))
            # Nothing was sent: safe to send elsewhere, even a write.
            raise _Retry(Unavailable(f"rpc error: {exc}")) from exc
        except grpc.aio.AioRpcError as exc:
            raise self._classify(server, spec, exc) from exc

    def _classify(self, server: Server, spec: MethodSpec, exc: grpc.aio.AioRpcError) -> Exception:
        """What to raise for ``exc``: a _Retry when another try is safe."""
        code = exc.code()
        details = exc.details() or ""
        if is_transport_failure(exc, read=spec.read):
            self._failed(server, spec, f"{code.name}: {details}")
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                return _Retry(Unavailable(f"rpc error making call to {server.name}: timed out"))
            failure = Unavailable(f"rpc error making call to {server.name}: {details or code.name}")
            return _Retry(failure) if spec.read else failure
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            # A write that timed out may have been applied: neither rotate nor retry.
            return Unavailable(f"rpc error making call to {server.name}: timed out")
        error = from_rpc_error(code, details)
        if isinstance(error, NoLeader):
            return _Retry(error)
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            # The server's own limit ("retry elsewhere"): move on to the next one.
            self._router.notify_failed_server(server)
            return _Retry(error)
        return error

    def _failed(self, server: Server, spec: MethodSpec, reason: str) -> None:
        self.stats.failed += 1
        logger.warning(
            "rpc failed to server method=%s server=%s address=%s error=%s",
            spec.path,
            server.name,
            server.address,
            reason,
        )
        self._router.notify_failed_server(server)
        self._pool.mark_failed(server.address)

    # -- streams -----------------------------------------------------------

    async def stream(
        self, spec: MethodSpec, request: Message, *, timeout: float | None = None
    ) -> AsyncIterator[Message]:
        """A server-streaming call on the current first server, message by message.

        No retry here: the caller (the membership watch) reconnects. A transport
        failure moves the server out of first place first, so the caller's next
        try goes to the next server.
        """
        if not spec.server_streaming:
            raise ValueError(f"{spec.path} is not a streaming method; use rpc()")
        self.stats.rpc += 1
        server = self._router.find_server()
        if server is None:
            self.stats.no_servers += 1
            raise NoServers()
        if not self.limiter.allow():
            self.stats.rate_limited += 1
            raise RateLimited()
        self.stats.attempts += 1
        try:
            async for message in self._pool.stream(server.address, spec, request, timeout):
                yield message
        except ConnectFailed as exc:
            self._failed(server, spec, str(exc))
            raise Unavailable(f"rpc error: {exc}") from exc
        except grpc.aio.AioRpcError as exc:
            error = self._classify(server, spec, exc)
            raise (error.error if isinstance(error, _Retry) else error) from exc
