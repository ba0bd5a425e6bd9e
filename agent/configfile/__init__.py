"""Consul's configuration files: ``-config-file``/``-config-dir``, JSON and HCL.

:func:`load_sources` reads and merges them (Consul's order and rules) into a
:class:`LoadedConfig`; :data:`KEYS` is the table of every key Consul
documents and what we do with it; :class:`ConfigRuntime` registers the
services and checks they define on a running agent and reloads them.
"""

from __future__ import annotations

from agent.configfile.keys import KEYS, KeySpec, Use
from agent.configfile.load import LoadedConfig, expand_sources, load_sources
from agent.configfile.parse import ConfigError, read_source

__all__ = [
    "KEYS",
    "ConfigError",
    "KeySpec",
    "LoadedConfig",
    "Use",
    "expand_sources",
    "load_sources",
    "read_source",
]
