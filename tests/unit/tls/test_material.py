"""Certificate material checks, the Configurator's reload, and the pool over TLS
(a real grpc.aio server with the Configurator's credentials on 127.0.0.1:0)."""

from __future__ import annotations

import shutil
import ssl
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import grpc
import pytest

from agent.errors import InvalidArgument
from agent.pool import ConnectFailed, ConnPool
from agent.router import Server
from agent.rpc import method_spec
from agent.rpc.listen import bind_grpc
from agent.tls import Configurator, Material, TLSConfig, TLSSettings
from agent.tls.certs import CertFiles, create_ca, create_cert
from generated.consul.status.v1 import status_pb2, status_pb2_grpc


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, CertFiles]:
    create_ca(tmp_path / "a")
    create_ca(tmp_path / "b")
    return {
        "ca": CertFiles(tmp_path / "a/consul-agent-ca.pem", tmp_path / "a/consul-agent-ca-key.pem"),
        "other_ca": CertFiles(
            tmp_path / "b/consul-agent-ca.pem", tmp_path / "b/consul-agent-ca-key.pem"
        ),
        "server": create_cert(tmp_path / "a", "server", datacenter="dc1"),
        "server2": create_cert(tmp_path / "a", "server", datacenter="dc1"),
        "client": create_cert(tmp_path / "a", "client", datacenter="dc1"),
        "other": create_cert(tmp_path / "b", "client", datacenter="dc1"),
    }


def settings(ca: Path | None, cert: CertFiles | None, **kw: object) -> TLSSettings:
    return TLSSettings(
        ca_file=str(ca or ""),
        cert_file=str(cert.cert) if cert else "",
        key_file=str(cert.key) if cert else "",
        **kw,  # type: ignore[arg-type]
    )


def test_good_material_loads(pki: dict[str, CertFiles]) -> None:
    m = Material.load(settings(pki["ca"].cert, pki["server"]), "defaults")
    assert m.ca_pem and m.cert_pem and m.key_pem and m.leaf is not None


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p, t: settings(t / "nope.pem", p["server"]), "ca_file: file not found"),
        (
            lambda p, t: settings(p["ca"].cert, CertFiles(p["server"].cert, t / "k.pem")),
            "key_file: file not found",
        ),
        (
            lambda p, t: settings(p["ca"].cert, CertFiles(p["server"].cert, p["client"].key)),
            "does not match the certificate",
        ),
        (lambda p, t: settings(p["other_ca"].cert, p["server"]), "was not issued by the CA"),
        (lambda p, t: settings(p["server"].key, p["server"]), "holds no valid PEM certificate"),
        (
            lambda p, t: settings(p["ca"].cert, CertFiles(p["server"].key, p["server"].key)),
            "cert_file: .* holds no valid PEM certificate",
        ),
        (
            lambda p, t: settings(p["ca"].cert, CertFiles(p["server"].cert, p["server"].cert)),
            "holds no valid unencrypted PEM private key",
        ),
        (lambda p, t: settings(t, p["server"]), "is a directory"),
        (lambda p, t: replace(settings(None, None), ca_path=str(t / "none")), "not a directory"),
        (lambda p, t: replace(settings(None, None), ca_path=str(t / "a")), "holds no valid PEM"),
    ],
)
def test_bad_material_is_refused_with_the_reason(
    pki: dict[str, CertFiles], tmp_path: Path, make: object, message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message):
        Material.load(make(pki, tmp_path), "defaults")  # type: ignore[operator]


def test_ca_path_collects_every_ca(pki: dict[str, CertFiles], tmp_path: Path) -> None:
    both = tmp_path / "both"
    both.mkdir()
    shutil.copy(pki["ca"].cert, both / "a.pem")
    shutil.copy(pki["other_ca"].cert, both / "b.crt")
    m = Material.load(replace(settings(None, pki["other"]), ca_path=str(both)), "defaults")
    assert m.ca_pem is not None and m.ca_pem.count(b"BEGIN CERTIFICATE") == 2


def test_https_context_honours_min_version_and_ciphers(pki: dict[str, CertFiles]) -> None:
    cfg = TLSConfig.parse(
        {
            "defaults": {
                "ca_file": str(pki["ca"].cert),
                "cert_file": str(pki["server"].cert),
                "key_file": str(pki["server"].key),
                "verify_incoming": True,
                "tls_min_version": "TLSv1_3",
                "tls_cipher_suites": "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
            }
        }
    )
    ctx = Configurator(cfg, datacenter="dc1").load().https_context()
    assert ctx is not None
    assert ctx.minimum_version == ssl.TLSVersion.TLSv1_3
    assert ctx.verify_mode == ssl.CERT_REQUIRED
    names = {c["name"] for c in ctx.get_ciphers() if c["protocol"] == "TLSv1.2"}
    assert names == {"ECDHE-ECDSA-AES128-GCM-SHA256"}
    bad = replace(cfg, https=replace(cfg.https, tls_cipher_suites=("TLS_RSA_WITH_RC4_128_SHA",)))
    with pytest.raises(InvalidArgument, match="unsupported cipher suite"):
        Configurator(bad, datacenter="dc1").load().https_context()


def test_a_failed_reload_keeps_the_old_material(pki: dict[str, CertFiles], tmp_path: Path) -> None:
    live = CertFiles(tmp_path / "live.pem", tmp_path / "live-key.pem")
    shutil.copy(pki["server"].cert, live.cert)
    shutil.copy(pki["server"].key, live.key)
    cfg = TLSConfig.parse(
        {
            "defaults": {
                "ca_file": str(pki["ca"].cert),
                "cert_file": str(live.cert),
                "key_file": str(live.key),
            }
        }
    )
    tls = Configurator(cfg, datacenter="dc1").load()
    before = tls.material("internal_rpc").leaf
    shutil.copy(pki["client"].key, live.key)  # a key that does not match
    errors = tls.reload()
    assert len(errors) == 3 and "does not match" in errors[0]
    assert tls.material("internal_rpc").leaf == before
    shutil.copy(pki["server2"].cert, live.cert)
    shutil.copy(pki["server2"].key, live.key)
    assert tls.reload() == []
    assert tls.material("internal_rpc").leaf != before


PING = method_spec("/consul.status.v1.StatusService/Ping")


class Status(status_pb2_grpc.StatusServiceServicer):
    async def Ping(
        self, request: status_pb2.PingRequest, context: grpc.aio.ServicerContext
    ) -> status_pb2.PingResponse:
        return status_pb2.PingResponse()


@pytest.fixture
async def tls_server(pki: dict[str, CertFiles]) -> AsyncIterator[str]:
    """A StatusService on 127.0.0.1:0 with the server certificate, verifying clients."""
    cfg = TLSConfig.parse(
        {
            "defaults": {
                "ca_file": str(pki["ca"].cert),
                "cert_file": str(pki["server"].cert),
                "key_file": str(pki["server"].key),
                "verify_incoming": True,
            }
        }
    )
    server = grpc.aio.server()
    status_pb2_grpc.add_StatusServiceServicer_to_server(Status(), server)
    tls = Configurator(cfg, datacenter="dc1").load()
    address = bind_grpc(server, "127.0.0.1:0", tls.rpc_server_credentials())
    await server.start()
    yield address
    await server.stop(grace=None)


def client_tls(
    pki: dict[str, CertFiles], cert: CertFiles | None, *, datacenter: str, vsh: bool
) -> Configurator:
    defaults: dict[str, object] = {"ca_file": str(pki["ca"].cert), "verify_outgoing": True}
    if cert is not None:
        defaults.update(cert_file=str(cert.cert), key_file=str(cert.key))
    cfg = TLSConfig.parse({"defaults": defaults, "internal_rpc": {"verify_server_hostname": vsh}})
    return Configurator(cfg, datacenter=datacenter).load()


async def test_pool_dials_tls_and_checks_the_server_name(
    pki: dict[str, CertFiles], tls_server: str
) -> None:
    server = Server(name="s1", address=tls_server, datacenter="dc1")
    good = client_tls(pki, pki["client"], datacenter="dc1", vsh=True)
    assert good.outgoing() is not None
    async with ConnPool(security=good.outgoing()) as pool:
        assert await pool.ping(server)
    # The server's certificate names server.dc1.consul, not server.dc2.consul.
    wrong_dc = client_tls(pki, pki["client"], datacenter="dc2", vsh=True)
    async with ConnPool(security=wrong_dc.outgoing(), connect_timeout=3) as pool:
        assert not await pool.ping(server, timeout=3)
    # No client certificate: the server refuses the handshake or the call.
    anonymous = client_tls(pki, None, datacenter="dc1", vsh=True)
    async with ConnPool(security=anonymous.outgoing(), connect_timeout=3) as pool:
        assert not await pool.ping(server, timeout=3)
    # Plaintext against a TLS port never connects.
    async with ConnPool(connect_timeout=3) as pool:
        with pytest.raises((ConnectFailed, grpc.aio.AioRpcError)):
            await pool.call(tls_server, PING, status_pb2.PingRequest(), 3)


def test_no_outgoing_tls_without_verify_outgoing() -> None:
    assert Configurator(TLSConfig(), datacenter="dc1").outgoing() is None


class Names:
    """A ChannelSecurity whose server names are learned later (a WAN seed)."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials()

    def target_name(self, address: str) -> str | None:
        return self.names.get(address)


async def test_pool_redials_once_a_servers_name_becomes_known() -> None:
    names = Names()
    async with ConnPool(security=names) as pool:
        first = pool.channel("127.0.0.1:1")
        assert pool.channel("127.0.0.1:1") is first
        names.names["127.0.0.1:1"] = "server.dc2.consul"
        second = pool.channel("127.0.0.1:1")
        assert second is not first
        assert pool.channel("127.0.0.1:1") is second
        assert (pool.stats.dials, pool.stats.retired) == (2, 1)
