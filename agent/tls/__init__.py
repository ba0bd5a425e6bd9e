"""TLS: Consul's ``tls`` config, certificate material, reloads, and ``tls ca|cert create``."""

from __future__ import annotations

from agent.tls.config import TLSConfig, TLSSettings, ports_addresses
from agent.tls.configurator import ChannelTLS, Configurator
from agent.tls.material import Material

__all__ = [
    "ChannelTLS",
    "Configurator",
    "Material",
    "TLSConfig",
    "TLSSettings",
    "ports_addresses",
]
