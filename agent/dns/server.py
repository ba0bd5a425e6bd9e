"""The DNS listeners: UDP and TCP on one address, answering through a DNSHandler.

``DNSServer`` is an async context manager. ``start`` binds UDP (port 0 picks
one) and then TCP on the same port; ``address`` is what was bound. Every
request is answered in its own task in the server's TaskGroup, at most
``MAX_IN_FLIGHT`` at once (UDP requests over that are dropped, as a busy
resolver does; the client retries), each within ``REQUEST_DEADLINE`` (a
request that overruns gets SERVFAIL), so one slow read never stalls the
others. A TCP connection carries any number of length-prefixed messages and
is closed after ``TCP_IDLE`` seconds without one. ``aclose`` closes the
listeners and cancels what is still running, bounded.

With ``use_cache`` a reply is kept, keyed by the request's bytes after its ID
and the transport, for ``cache_max_age``; a repeated question is then
answered on the spot with its own ID, without parsing (several shuffled
renderings of a multi-answer reply take turns).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from agent.dns.config import DNSConfig
from agent.dns.handler import DNSHandler, Reply, header_only

__all__ = ["DNSServer"]

logger = logging.getLogger(__name__)

MAX_IN_FLIGHT = 512
UDP_BATCH = 64
UDP_BUFFER = 4 * 1024 * 1024
REQUEST_DEADLINE = 10.0
TCP_IDLE = 10.0
CACHE_MAX_ENTRIES = 10_000
SHUFFLES = 4
_SERVFAIL = 2


@dataclass(slots=True)
class _Cached:
    expires: float
    bodies: list[bytes]
    wanted: int
    turn: int = 0
    rendering: bool = False


class DNSServer:
    """UDP and TCP listeners on ``host:port`` serving ``handler``."""

    def __init__(
        self,
        handler: DNSHandler,
        host: str,
        port: int,
        config: DNSConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.handler = handler
        self.host = host
        self.port = port
        self.config = config
        self.clock = clock
        self.address = ""
        self._udp: socket.socket | None = None
        self._tcp: asyncio.Server | None = None
        self._group: asyncio.TaskGroup | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._cache: dict[tuple[bool, bytes], _Cached] = {}
        self.stats = {"queries": 0, "cache_hits": 0, "dropped": 0, "servfail_deadline": 0}

    async def __aenter__(self) -> DNSServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._group = asyncio.TaskGroup()
        await self._group.__aenter__()
        family, _, _, _, sockaddr = socket.getaddrinfo(
            self.host, self.port, type=socket.SOCK_DGRAM
        )[0]
        for attempt in range(20):
            sock = socket.socket(family, socket.SOCK_DGRAM)
            try:
                sock.setblocking(False)
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_BUFFER)
                sock.bind(sockaddr)
                port = sock.getsockname()[1]
                self._tcp = await asyncio.start_server(self._serve_tcp, self.host, port)
            except OSError:
                sock.close()
                if self.port != 0 or attempt == 19:
                    raise
                continue
            self._udp = sock
            loop.add_reader(sock.fileno(), self._udp_ready)
            break
        host = self.host if ":" not in self.host else f"[{self.host}]"
        self.address = f"{host}:{port}"
        logger.info("dns server started address=%s udp=true tcp=true", self.address)

    async def aclose(self) -> None:
        if self._udp is not None:
            asyncio.get_running_loop().remove_reader(self._udp.fileno())
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
        for task in list(self._tasks):
            task.cancel()
        if self._group is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._group.__aexit__(None, None, None), 5.0)
            self._group = None
        if self._tcp is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._tcp.wait_closed(), 2.0)
        logger.info("dns server stopped address=%s", self.address)

    # ----- cache ---------------------------------------------------------

    def cached(self, data: bytes, tcp: bool) -> bytes | None:
        """The cached reply to ``data`` with its ID, or None (a miss).

        A reply with several answers is kept in up to ``SHUFFLES`` renderings
        (each shuffled by the handler) served in turn, so clients still see
        the instances in varying order. Missing renderings, and a fresh reply
        once ``cache_max_age`` has passed, are made by one background request
        per question at a time while the cached ones keep being served (at
        most one more ``cache_max_age`` past expiry), so a busy name never
        turns into a burst of reads.
        """
        self.stats["queries"] += 1
        if not self.config.use_cache or len(data) < 12:
            return None
        key = (tcp, data[2:])
        hit = self._cache.get(key)
        if hit is None:
            return None
        now = self.clock()
        if now >= hit.expires + self.config.cache_max_age:
            self._cache.pop(key, None)
            return None
        if (now >= hit.expires or len(hit.bodies) < hit.wanted) and not hit.rendering:
            hit.rendering = True
            self._spawn(self._refill(hit, data, tcp))
        hit.turn += 1
        self.stats["cache_hits"] += 1
        return data[:2] + hit.bodies[hit.turn % len(hit.bodies)]

    async def _refill(self, hit: _Cached, data: bytes, tcp: bool) -> None:
        try:
            await self._answer(data, tcp, "")
        finally:
            hit.rendering = False

    def _remember(self, data: bytes, tcp: bool, reply: Reply) -> None:
        if not self.config.use_cache or not reply.cacheable:
            return
        key = (tcp, data[2:])
        body = reply.wire[2:]
        now = self.clock()
        hit = self._cache.get(key)
        if hit is not None and now < hit.expires:
            if len(hit.bodies) < hit.wanted:
                hit.bodies.append(body)
            return
        if len(self._cache) >= CACHE_MAX_ENTRIES:
            for old in [k for k, v in self._cache.items() if v.expires <= now]:
                del self._cache[old]
            if len(self._cache) >= CACHE_MAX_ENTRIES:
                self._cache.clear()
        answers = int.from_bytes(body[4:6], "big")  # ANCOUNT (the ID is cut off)
        wanted = SHUFFLES if answers > 1 else 1
        self._cache[key] = _Cached(now + self.config.cache_max_age, [body], wanted)

    # ----- requests ------------------------------------------------------

    async def _answer(self, data: bytes, tcp: bool, client_ip: str) -> bytes | None:
        try:
            async with asyncio.timeout(REQUEST_DEADLINE):
                reply = await self.handler.handle(data, tcp=tcp, client_ip=client_ip)
        except TimeoutError:
            self.stats["servfail_deadline"] += 1
            logger.warning("dns request over its deadline; SERVFAIL")
            return header_only(data, _SERVFAIL)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("dns handler crashed; SERVFAIL")
            return header_only(data, _SERVFAIL)
        if reply is None:
            return None
        self._remember(data, tcp, reply)
        return reply.wire

    @staticmethod
    async def _guarded(coro: Coroutine[Any, Any, None]) -> None:
        """Run one request's task; it never fails, or the TaskGroup would cancel
        the task that started the server (the agent's)."""
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("dns request task failed")

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> bool:
        if self._group is None or len(self._tasks) >= MAX_IN_FLIGHT:
            self.stats["dropped"] += 1
            coro.close()
            return False
        task = self._group.create_task(self._guarded(coro))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    def _udp_ready(self) -> None:
        """Drain the UDP socket: cached answers go out at once, the rest get a task.

        Reading up to UDP_BATCH datagrams per wake-up (rather than asyncio's
        one per event-loop turn) is what lets one process keep up with dnsperf.
        """
        sock = self._udp
        if sock is None:
            return
        for _ in range(UDP_BATCH):
            try:
                data, addr = sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                logger.debug("dns udp receive failed error=%r", exc)
                return
            cached = self.cached(data, False)
            if cached is not None:
                self._send(sock, cached, addr)
            else:
                self._spawn(self._udp_answer(sock, data, addr))

    def _send(self, sock: socket.socket, wire: bytes, addr: Any) -> None:
        try:
            sock.sendto(wire, addr)
        except (BlockingIOError, InterruptedError):
            self.stats["dropped"] += 1
        except OSError as exc:
            logger.debug("dns udp send failed error=%r", exc)

    async def _udp_answer(self, sock: socket.socket, data: bytes, addr: Any) -> None:
        wire = await self._answer(data, False, str(addr[0]))
        if wire is not None and self._udp is sock:
            self._send(sock, wire, addr)

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        done = asyncio.Event()

        async def run() -> None:
            peer = writer.get_extra_info("peername") or ("", 0)
            try:
                while True:
                    async with asyncio.timeout(TCP_IDLE):
                        head = await reader.readexactly(2)
                        (size,) = struct.unpack("!H", head)
                        data = await reader.readexactly(size)
                    wire = self.cached(data, True)
                    if wire is None:
                        wire = await self._answer(data, True, peer[0])
                    if wire is None:
                        continue
                    writer.write(struct.pack("!H", len(wire)) + wire)
                    await writer.drain()
            except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()
                done.set()

        if not self._spawn(run()):
            writer.close()
            return
        await done.wait()
