"""HTTPServer: serve an aiohttp application on host:port (and/or HTTPS), closed within a bound.

A client that goes away cancels its request's handler (aiohttp's
``handler_cancellation``): an abandoned blocking query releases its tasks, its
RPC to the server and the server's store watch at once, not when its wait
ends. Connections are counted per client address (:mod:`agent.http.limits`),
on the plaintext and the HTTPS listener alike.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from types import TracebackType

from aiohttp import web

from agent.http.limits import TRACKER, ClientLimitedSite, ClientTracker, HTTPLimits
from agent.http.logfilter import install_bad_input_log_filter

__all__ = ["HTTPServer"]

logger = logging.getLogger(__name__)

# Blocking queries can hold a request for minutes; on close they are cut off
# after this grace period rather than awaited.
SHUTDOWN_TIMEOUT = 2.0


class HTTPServer:
    """An async context manager binding ``app`` to ``host:port`` (port 0 picks a free one).

    ``port=None`` serves no plaintext listener; ``https=(host, port, ssl_context)``
    serves the same application over TLS too (``tls_address``).
    """

    def __init__(
        self,
        app: web.Application,
        host: str = "127.0.0.1",
        port: int | None = 8500,
        *,
        shutdown_timeout: float = SHUTDOWN_TIMEOUT,
        https: tuple[str, int, ssl.SSLContext] | None = None,
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.shutdown_timeout = shutdown_timeout
        self.https = https
        self._runner: web.AppRunner | None = None
        self._address = ""
        self._tls_address = ""

    @property
    def address(self) -> str:
        """The bound ``host:port`` (IPv6 hosts in brackets); empty before start."""
        return self._address

    @property
    def tls_address(self) -> str:
        """The bound HTTPS ``host:port``; empty before start or without HTTPS."""
        return self._tls_address

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("HTTPServer already started")
        install_bad_input_log_filter()
        runner = web.AppRunner(
            self.app,
            shutdown_timeout=self.shutdown_timeout,
            access_log=None,
            handler_cancellation=True,
        )
        await runner.setup()
        self._runner = runner
        tracker = self.app.get(TRACKER) or ClientTracker(HTTPLimits())
        try:
            if self.port is not None:
                self._address = await self._site(runner, tracker, self.host, self.port, None)
                logger.info("http api listening address=%s", self._address)
            if self.https is not None:
                self._tls_address = await self._site(runner, tracker, *self.https)
                logger.info("https api listening address=%s", self._tls_address)
        except BaseException:
            await self.aclose()
            raise

    @staticmethod
    async def _site(
        runner: web.AppRunner,
        tracker: ClientTracker,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None,
    ) -> str:
        before = list(runner.addresses)
        site = ClientLimitedSite(runner, host, port, tracker, ssl_context=ssl_context)
        await site.start()
        for sockname in runner.addresses:  # learn the port picked for 0
            if sockname in before:
                continue
            if isinstance(sockname, tuple) and len(sockname) >= 2:
                port = int(sockname[1])
                break
        shown = f"[{host}]" if ":" in host else host
        return f"{shown}:{port}"

    async def aclose(self) -> None:
        """Stop listening and end open requests, within shutdown_timeout plus a margin."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        try:
            async with asyncio.timeout(self.shutdown_timeout + 3.0):
                await runner.cleanup()
        except TimeoutError:
            logger.warning("http api shutdown timed out address=%s", self._address)

    async def __aenter__(self) -> HTTPServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
