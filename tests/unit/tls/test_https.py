"""HTTPServer over TLS with the Configurator's context: verify_incoming, reload."""

from __future__ import annotations

import asyncio
import shutil
import ssl
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509

from agent.http.server import HTTPServer
from agent.tls import Configurator, TLSConfig
from agent.tls.certs import CertFiles, create_ca, create_cert


async def hello(request: web.Request) -> web.Response:
    return web.Response(text="hello")


def client_context(ca: Path, cert: CertFiles | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        ctx.load_cert_chain(str(cert.cert), str(cert.key))
    return ctx


async def get(port: int, ctx: ssl.SSLContext) -> str:
    timeout = aiohttp.ClientTimeout(total=10)
    async with (
        aiohttp.ClientSession(timeout=timeout) as session,
        session.get(f"https://localhost:{port}/", ssl=ctx) as resp,
    ):
        return await resp.text()


async def test_https_verify_incoming_wants_a_certificate_from_the_ca(tmp_path: Path) -> None:
    ca = create_ca(tmp_path / "a")
    server = create_cert(tmp_path / "a", "server")
    client = create_cert(tmp_path / "a", "client")
    create_ca(tmp_path / "b")
    stranger = create_cert(tmp_path / "b", "client")
    cfg = TLSConfig.parse(
        {
            "https": {
                "ca_file": str(ca.cert),
                "cert_file": str(server.cert),
                "key_file": str(server.key),
                "verify_incoming": True,
            }
        }
    )
    tls = Configurator(cfg, datacenter="dc1").load()
    ctx = tls.https_context()
    assert ctx is not None
    app = web.Application()
    app.router.add_get("/", hello)
    async with HTTPServer(app, port=None, https=("127.0.0.1", 0, ctx)) as srv:
        assert srv.address == ""
        port = int(srv.tls_address.rpartition(":")[2])
        assert await get(port, client_context(ca.cert, client)) == "hello"
        for cert in (None, stranger):
            with pytest.raises(aiohttp.ClientError):
                await get(port, client_context(ca.cert, cert))


async def test_https_reload_serves_the_new_certificate(tmp_path: Path) -> None:
    ca = create_ca(tmp_path)
    first = create_cert(tmp_path, "server")
    live = CertFiles(tmp_path / "live.pem", tmp_path / "live-key.pem")
    shutil.copy(first.cert, live.cert)
    shutil.copy(first.key, live.key)
    cfg = TLSConfig.parse(
        {"https": {"ca_file": str(ca.cert), "cert_file": str(live.cert), "key_file": str(live.key)}}
    )
    tls = Configurator(cfg, datacenter="dc1").load()
    ctx = tls.https_context()
    assert ctx is not None
    app = web.Application()
    app.router.add_get("/", hello)
    async with HTTPServer(app, "127.0.0.1", 0, https=("127.0.0.1", 0, ctx)) as srv:
        port = int(srv.tls_address.rpartition(":")[2])
        assert srv.address and srv.address != srv.tls_address

        async def serial() -> int:
            # In a thread: the server answers on this loop.
            pem = await asyncio.to_thread(
                ssl.get_server_certificate, ("127.0.0.1", port), ca_certs=str(ca.cert), timeout=10
            )
            return x509.load_pem_x509_certificate(pem.encode()).serial_number

        before = await serial()
        second = create_cert(tmp_path, "server")
        shutil.copy(second.cert, live.cert)
        shutil.copy(second.key, live.key)
        assert tls.reload() == []
        assert await serial() != before
        assert await get(port, client_context(ca.cert, None)) == "hello"
