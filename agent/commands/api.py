"""A tiny client of Consul's HTTP API for the CLI, on aiohttp, every call with a deadline.

The address, token and TLS settings come as Consul's CLI takes them: the
``-http-addr``, ``-token``, ``-datacenter``, ``-ca-file`` flags, else the
``CONSUL_HTTP_ADDR`` (``host:port``, ``http://`` or ``https://``),
``CONSUL_HTTP_TOKEN``, ``CONSUL_HTTP_SSL`` and ``CONSUL_CACERT`` variables,
else ``127.0.0.1:8500``. A non-2xx answer is an :class:`APIError` whose text
is the Go client's (``Unexpected response code: 500 (text)``).
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Any

import aiohttp

__all__ = ["CALL_TIMEOUT", "APIError", "Client", "add_http_flags", "client_from"]

#: Deadline of one ordinary call; blocking reads add their wait.
CALL_TIMEOUT = 10.0
DEFAULT_ADDR = "127.0.0.1:8500"


class APIError(Exception):
    def __init__(self, status: int, text: str) -> None:
        self.status = status
        self.text = text
        super().__init__(f"Unexpected response code: {status} ({text.strip()})")


def _truthy(value: str) -> bool:
    return value.strip().lower() in ("1", "t", "true", "yes")


def add_http_flags(p: argparse.ArgumentParser) -> None:
    """Consul's HTTP API flags, single-dash as Consul writes them (double-dash works too)."""
    p.add_argument("-http-addr", "--http-addr", dest="http_addr", default=None)
    p.add_argument("-token", "--token", dest="token", default=None)
    p.add_argument("-datacenter", "--datacenter", dest="datacenter", default="")
    p.add_argument("-ca-file", "--ca-file", dest="ca_file", default=None)
    p.add_argument("-stale", "--stale", dest="stale", action="store_true")


class Client:
    def __init__(
        self,
        address: str = "",
        *,
        token: str = "",
        datacenter: str = "",
        use_ssl: bool = False,
        ca_file: str = "",
    ) -> None:
        address = address or DEFAULT_ADDR
        if address.startswith("https://"):
            use_ssl, address = True, address.removeprefix("https://")
        address = address.removeprefix("http://").rstrip("/")
        self.base = f"{'https' if use_ssl else 'http'}://{address}"
        self.token = token
        self.datacenter = datacenter
        self.stale = False
        self._ssl: ssl.SSLContext | None = None
        if use_ssl:
            self._ssl = ssl.create_default_context(cafile=ca_file or None)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Client:
        self._session = aiohttp.ClientSession()
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    def _params(self, params: Mapping[str, Any] | None) -> dict[str, str]:
        out = {k: ("" if v is True else str(v)) for k, v in (params or {}).items() if v is not None}
        if self.datacenter and "dc" not in out:
            out["dc"] = self.datacenter
        if self.stale:
            out.setdefault("stale", "")
        return out

    def _headers(self) -> dict[str, str]:
        return {"X-Consul-Token": self.token} if self.token else {}

    async def request(
        self,
        method: str,
        path: str,
        params: Mapping[str, Any] | None = None,
        *,
        body: bytes | None = None,
        timeout: float = CALL_TIMEOUT,
        ok_404: bool = False,
    ) -> tuple[int, Mapping[str, str], bytes]:
        """One call; (status, headers, body). 404 is returned, not raised, with ``ok_404``."""
        async with self.session.request(
            method,
            self.base + path,
            params=self._params(params),
            data=body,
            headers=self._headers(),
            ssl=self._ssl if self._ssl is not None else True,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as resp:
            data = await resp.read()
            if resp.status >= 300 and not (ok_404 and resp.status == 404):
                raise APIError(resp.status, data.decode(errors="replace"))
            return resp.status, resp.headers, data

    async def get(
        self,
        path: str,
        params: Mapping[str, Any] | None = None,
        *,
        index: int = 0,
        wait: float | None = None,
        ok_404: bool = False,
    ) -> tuple[Any, int]:
        """A read: (decoded JSON or None on 404, X-Consul-Index); blocking with ``index``."""
        query = dict(params or {})
        timeout = CALL_TIMEOUT
        if index:
            query["index"] = index
            if wait is not None:
                query["wait"] = f"{int(wait * 1000)}ms"
                timeout = wait + wait / 16 + CALL_TIMEOUT
        status, headers, data = await self.request(
            "GET", path, query, timeout=timeout, ok_404=ok_404
        )
        new_index = int(headers.get("X-Consul-Index", "0") or 0)
        if status == 404:
            return None, new_index
        return (json.loads(data) if data.strip() else None), new_index

    async def put(
        self,
        path: str,
        params: Mapping[str, Any] | None = None,
        body: bytes | str | Any | None = None,
    ) -> Any:
        raw: bytes | None
        if body is None or isinstance(body, bytes):
            raw = body
        elif isinstance(body, str):
            raw = body.encode()
        else:
            raw = json.dumps(body).encode()
        _, _, data = await self.request("PUT", path, params, body=raw)
        return json.loads(data) if data.strip() else None

    async def lines(self, path: str, params: Mapping[str, Any] | None = None) -> AsyncIterator[str]:
        """A streamed answer line by line (monitor); connects within the deadline, then reads on."""
        async with self.session.get(
            self.base + path,
            params=self._params(params),
            headers=self._headers(),
            ssl=self._ssl if self._ssl is not None else True,
            timeout=aiohttp.ClientTimeout(total=None, connect=CALL_TIMEOUT, sock_read=None),
        ) as resp:
            if resp.status >= 300:
                raise APIError(resp.status, (await resp.read()).decode(errors="replace"))
            async for raw in resp.content:
                yield raw.decode(errors="replace").rstrip("\n")


def client_from(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> Client:
    """The client the flags (else the environment, as Consul's CLI reads it) describe."""
    env = os.environ if env is None else env
    address = getattr(args, "http_addr", None) or env.get("CONSUL_HTTP_ADDR", "")
    token = getattr(args, "token", None) or env.get("CONSUL_HTTP_TOKEN", "")
    ca_file = getattr(args, "ca_file", None) or env.get("CONSUL_CACERT", "")
    client = Client(
        address,
        token=token,
        datacenter=getattr(args, "datacenter", "") or "",
        use_ssl=_truthy(env.get("CONSUL_HTTP_SSL", "")),
        ca_file=ca_file,
    )
    client.stale = bool(getattr(args, "stale", False))
    return client
