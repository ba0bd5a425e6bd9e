"""Configurator: one agent's TLS, loaded at start and reloaded on SIGHUP.

As Consul's ``tlsutil.Configurator``, one object per agent owns the current
certificate material of every protocol and hands out what each listener and
the connection pool need:

- ``rpc_server_credentials()``: server RPC and membership (``internal_rpc``);
  ``grpc_server_credentials()``: the agent gRPC API on ``ports.grpc_tls``
  (``grpc``). Both are ``grpc.dynamic_ssl_server_credentials``: gRPC asks
  the fetcher at every new handshake, which answers the new certificate once
  after a reload and "unchanged" otherwise, so a reload never touches an open
  connection. With ``verify_incoming`` a peer must present a certificate
  issued by the CA.
- ``https_context()``: the HTTPS listener's ``ssl.SSLContext``; a reload loads
  the new chain into the same context (new handshakes use it). OpenSSL can add
  CAs to a context but not drop them: a CA removed from the files is still
  trusted for HTTPS until the agent restarts.
- ``outgoing()``: the ``ChannelSecurity`` of the connection pool when
  ``internal_rpc.verify_outgoing`` is set: the current channel credentials
  (read at each dial, so channels dialed after a reload use the new
  certificate), and with ``verify_server_hostname`` the name a server's
  certificate must carry, ``server.<dc>.<domain>``, checked through
  gRPC's ``grpc.ssl_target_name_override``. Without it the server's
  certificate is checked against the CA and the address dialed (Consul's
  own certificates name 127.0.0.1 and localhost); gRPC cannot skip the name
  check altogether, unlike Go's ``InsecureSkipVerify``.

``reload()`` re-reads every file; a protocol whose new files fail the checks
keeps its current material (the error is logged and returned), as Consul keeps
serving with the old certificate after a failed reload.
"""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Callable
from typing import cast

import grpc

from agent.tls.config import TLSConfig, TLSSettings
from agent.tls.material import Material, https_context, load_chain

__all__ = ["ChannelTLS", "Configurator"]

logger = logging.getLogger(__name__)

_SECTIONS = ("internal_rpc", "https", "grpc")


class _DynamicServerCert:
    """The fetcher behind one ``dynamic_ssl_server_credentials``.

    gRPC calls it from its own threads at each new handshake: it answers the
    current configuration once per change, ``None`` ("keep yours") otherwise.
    """

    def __init__(self, material: Material) -> None:
        self._lock = threading.Lock()
        self._pending: grpc.ServerCertificateConfiguration | None = None
        self.initial = material.server_certificate_configuration()

    def update(self, material: Material) -> None:
        with self._lock:
            self._pending = material.server_certificate_configuration()

    def __call__(self) -> grpc.ServerCertificateConfiguration | None:
        with self._lock:
            pending, self._pending = self._pending, None
        return pending


class ChannelTLS:
    """What the connection pool needs to dial a server over TLS (its ChannelSecurity)."""

    def __init__(
        self, configurator: Configurator, target_name: Callable[[str], str | None]
    ) -> None:
        self._configurator = configurator
        self._target_name = target_name

    def credentials(self) -> grpc.ChannelCredentials:
        return self._configurator.material("internal_rpc").channel_credentials()

    def target_name(self, address: str) -> str | None:
        """The name the server at ``address`` must have in its certificate (None: its host)."""
        return self._target_name(address)


class Configurator:
    """The agent's TLS material, by protocol; see the module docstring."""

    def __init__(self, config: TLSConfig, *, datacenter: str, domain: str = "consul") -> None:
        self.config = config
        self.datacenter = datacenter
        self.domain = domain.strip(".") or "consul"
        self._material: dict[str, Material] = {}
        self._fetchers: dict[str, list[_DynamicServerCert]] = {s: [] for s in _SECTIONS}
        self._https: list[ssl.SSLContext] = []
        self.reloads = 0

    def settings(self, section: str) -> TLSSettings:
        settings: TLSSettings = getattr(self.config, section)
        return settings

    def load(self) -> Configurator:
        """Read and check every configured file; InvalidArgument names the first problem."""
        for section in _SECTIONS:
            settings = self.settings(section)
            if settings.has_ca or settings.has_cert:
                self._material[section] = Material.load(settings, section)
        return self

    def material(self, section: str) -> Material:
        try:
            return self._material[section]
        except KeyError:
            raise RuntimeError(f"tls.{section} is not configured (or not loaded)") from None

    def server_name(self, datacenter: str | None = None) -> str:
        """``server.<dc>.<domain>``: the name a server's certificate carries."""
        return f"server.{datacenter or self.datacenter}.{self.domain}"

    # ----- listeners ---------------------------------------------------------

    def _server_credentials(self, section: str) -> grpc.ServerCredentials | None:
        material = self._material.get(section)
        if material is None or material.cert_pem is None:
            return None
        fetcher = _DynamicServerCert(material)
        self._fetchers[section].append(fetcher)
        # grpc's stubs type the fetcher without the None it documents ("no change").
        fetch = cast(Callable[[], grpc.ServerCertificateConfiguration], fetcher)
        return grpc.dynamic_ssl_server_credentials(
            fetcher.initial,
            fetch,
            require_client_authentication=self.settings(section).verify_incoming,
        )

    def rpc_server_credentials(self) -> grpc.ServerCredentials | None:
        """TLS for server RPC and membership, or None when internal_rpc has no certificate."""
        return self._server_credentials("internal_rpc")

    def grpc_server_credentials(self) -> grpc.ServerCredentials | None:
        """TLS for the agent gRPC API (ports.grpc_tls), or None without a certificate."""
        return self._server_credentials("grpc")

    def https_context(self) -> ssl.SSLContext | None:
        """The HTTPS listener's context, or None when tls.https has no certificate."""
        material = self._material.get("https")
        if material is None or material.cert_pem is None:
            return None
        ctx = https_context(self.settings("https"), material)
        self._https.append(ctx)
        return ctx

    # ----- outgoing ----------------------------------------------------------

    def outgoing(
        self, datacenter_of: Callable[[str], str | None] | None = None
    ) -> ChannelTLS | None:
        """The pool's TLS when internal_rpc.verify_outgoing is set, else None (plaintext).

        ``datacenter_of(address)`` names the datacenter of a server address (WAN
        dials); without it every server is taken to be of this agent's datacenter.
        """
        settings = self.settings("internal_rpc")
        if not settings.verify_outgoing:
            return None

        def target_name(address: str) -> str | None:
            if not settings.verify_server_hostname:
                return None
            dc = datacenter_of(address) if datacenter_of is not None else self.datacenter
            return self.server_name(dc) if dc else None

        return ChannelTLS(self, target_name)

    # ----- reload ------------------------------------------------------------

    def reload(self) -> list[str]:
        """Re-read every file; the errors of protocols that kept their old material."""
        errors: list[str] = []
        for section in _SECTIONS:
            settings = self.settings(section)
            if section not in self._material:
                continue
            try:
                material = Material.load(settings, section)
                if section == "https":
                    for ctx in self._https:
                        load_chain(ctx, settings, material)
            except Exception as exc:
                message = getattr(exc, "message", str(exc))
                logger.error("tls reload failed section=%s error=%s", section, message)
                errors.append(message)
                continue
            self._material[section] = material
            for fetcher in self._fetchers[section]:
                if material.cert_pem is not None:
                    fetcher.update(material)
            logger.info(
                "tls reloaded section=%s serial=%s",
                section,
                format(material.leaf.serial_number, "x") if material.leaf else "-",
            )
        self.reloads += 1
        return errors
