"""HTTP checks: 2xx is passing, 429 is warning, anything else is critical.

Like Consul's ``CheckHTTP``: one request per interval on a fresh connection (no
keep-alive, so a stale pooled connection never fails a check), the User-Agent
``Consul Health Check``, at most 4 KiB of the body read, and an output of the
form ``HTTP GET <url>: 200 OK Output: <body>``.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable

import aiohttp
from multidict import CIMultiDict

from agent.checks.output import OUTPUT_MAX_SIZE
from agent.checks.runner import IntervalRunner, UpdateCallback, describe_os_error
from agent.checks.spec import CheckSpec
from agent.checks.status import CRITICAL, PASSING, WARNING
from agent.durations import format_duration

__all__ = ["USER_AGENT", "HTTPRunner"]

logger = logging.getLogger(__name__)

USER_AGENT = "Consul Health Check"


class HTTPRunner(IntervalRunner):
    """An HTTP check; ``run`` owns the client session for the check's lifetime."""

    def __init__(
        self,
        spec: CheckSpec,
        on_update: UpdateCallback,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(spec, on_update, rng=rng, clock=clock)
        self._session: aiohttp.ClientSession | None = None
        headers: CIMultiDict[str] = CIMultiDict()
        for key, values in spec.headers.items():
            for value in values:
                headers.add(key, value)
        headers.setdefault("User-Agent", USER_AGENT)
        headers.setdefault("Accept", "text/plain, text/*, */*")
        self._headers = headers

    async def run(self) -> None:
        connector = aiohttp.TCPConnector(
            force_close=True, ssl=not self.spec.tls_skip_verify
        )
        async with aiohttp.ClientSession(connector=connector) as session:
            self._session = session
            try:
                await super().run()
            finally:
                self._session = None

    async def probe(self) -> tuple[str, str]:
        if self._session is None:
            raise RuntimeError("HTTP check probed outside run()")
        method, url = self.spec.method, self.spec.http
        prefix = f"HTTP {method} {url}"
        try:
            async with self._session.request(
                method,
                url,
                headers=self._headers,
                data=self.spec.body.encode() if self.spec.body else None,
                timeout=aiohttp.ClientTimeout(total=self.spec.timeout),
                allow_redirects=True,
            ) as resp:
                body = await _read_capped(resp.content, OUTPUT_MAX_SIZE)
                code = resp.status
                reason = resp.reason or ""
        except TimeoutError:
            return CRITICAL, f"{prefix}: timed out after {format_duration(self.spec.timeout)}"
        except aiohttp.ClientError as exc:
            return CRITICAL, f"{prefix}: {_describe(exc)}"
        text = body.decode("utf-8", errors="replace")
        output = f"{prefix}: {code} {reason} Output: {text}"
        if 200 <= code <= 299:
            return PASSING, output
        if code == 429:
            return WARNING, output
        return CRITICAL, output


async def _read_capped(stream: aiohttp.StreamReader, limit: int) -> bytes:
    """At most ``limit`` bytes of a body; the rest is left unread (the connection closes)."""
    buf = bytearray()
    while len(buf) < limit:
        chunk = await stream.read(limit - len(buf))
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


def _describe(exc: aiohttp.ClientError) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"connect: {describe_os_error(exc.os_error)}"
    return str(exc) or type(exc).__name__
