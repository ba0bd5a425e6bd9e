"""Agent configuration: flags, a JSON config file (flags win), defaults.

Keys in the config file are Consul's (``datacenter``, ``node_name``,
``data_dir``, ``server``, ``retry_join``, ``enable_script_checks`` ...);
durations are written as Consul writes them (``500ms``, ``10s``, ``72h``).
"""

from __future__ import annotations

import json
import logging
import socket
import sys
import uuid
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from agent.durations import parse_duration
from agent.errors import InvalidArgument
from agent.tls.config import TLSConfig, ports_addresses

__all__ = [
    "VERSION",
    "ACLConfig",
    "AgentConfig",
    "acl_config",
    "load_config_file",
    "setup_logging",
    "with_node_id",
]

#: Our version, in Consul's form, as /v1/agent/self reports it.
VERSION = "1.22.0"

_DURATIONS = {
    "suspect_timeout",
    "reconnect_timeout",
    "rpc_hold_timeout",
    "leader_ttl",
    "rebalance_interval",
    "max_query_time",
    "sync_coordinate_interval_min",
    "coordinate_update_period",
}


@dataclass(frozen=True, slots=True)
class ACLConfig:
    """Consul's ``acl { ... }`` block (keys as Consul's; see ``acl_config``)."""

    enabled: bool = False
    default_policy: str = "allow"
    down_policy: str = "extend-cache"
    enable_token_persistence: bool = False
    enable_key_list_policy: bool = False
    token_ttl: float = 30.0
    initial_management: str = ""
    default_token: str = ""
    agent_token: str = ""
    agent_recovery: str = ""


#: Every ``acl`` key read from a config file: Consul's key -> ACLConfig field
#: (``tokens`` is a nested block). One table, for the JSON and HCL loaders.
ACL_KEYS = {
    "enabled": "enabled",
    "default_policy": "default_policy",
    "down_policy": "down_policy",
    "enable_token_persistence": "enable_token_persistence",
    "enable_key_list_policy": "enable_key_list_policy",
    "token_ttl": "token_ttl",
    "tokens.initial_management": "initial_management",
    "tokens.master": "initial_management",
    "tokens.default": "default_token",
    "tokens.agent": "agent_token",
    "tokens.agent_recovery": "agent_recovery",
    "tokens.agent_master": "agent_recovery",
}


def acl_config(block: Any, base: ACLConfig | None = None) -> ACLConfig:
    """``base`` (default: ACLs off) with Consul's ``acl`` config block applied."""
    if isinstance(block, ACLConfig):
        return block
    if not isinstance(block, dict):
        raise InvalidArgument("acl must be an object")
    flat: dict[str, Any] = {}
    for key, value in block.items():
        if key == "tokens" and isinstance(value, dict):
            flat.update({f"tokens.{k}": v for k, v in value.items()})
        else:
            flat[key] = value
    clean: dict[str, Any] = {}
    for key, value in flat.items():
        if key not in ACL_KEYS:
            raise InvalidArgument(f"Unknown configuration key 'acl.{key}'")
        name = ACL_KEYS[key]
        clean[name] = parse_duration(value) if name == "token_ttl" else value
    out = replace(base or ACLConfig(), **clean)
    if out.default_policy not in ("allow", "deny"):
        raise InvalidArgument(f"acl.default_policy must be allow or deny: {out.default_policy!r}")
    if out.down_policy not in ("allow", "deny", "extend-cache", "async-cache"):
        raise InvalidArgument(f"Invalid acl.down_policy {out.down_policy!r}")
    return out


@dataclass(frozen=True, slots=True)
class AgentConfig:
    server: bool = False
    dev: bool = False
    datacenter: str = "dc1"
    node_name: str = field(default_factory=socket.gethostname)
    node_id: str = ""
    data_dir: str = ""
    rpc_addr: str = "127.0.0.1:8300"
    http_addr: str = "127.0.0.1:8500"
    grpc_addr: str = "127.0.0.1:8502"
    advertise_addr: str = ""
    retry_join: tuple[str, ...] = ()
    retry_join_wan: tuple[str, ...] = ()
    store: str = "memory"
    etcd_endpoints: tuple[str, ...] = ()
    log_level: str = "INFO"
    log_json: bool = False
    suspect_timeout: float = 10.0
    reconnect_timeout: float = 72 * 3600.0
    rpc_rate: float | None = None
    rpc_max_burst: int = 1000
    rpc_hold_timeout: float = 7.0
    leader_ttl: float = 5.0
    rebalance_interval: float | None = None
    enable_script_checks: bool = False
    #: Serve the web UI at /ui/ (on for --dev; ``ui_config { enabled }`` or ``--ui``).
    ui: bool = False
    # HTTP edge limits (agent.http.limits); the first two are read from Consul's
    # "limits" block, max_query_time is Consul's top-level key.
    http_max_conns_per_client: int = 200
    http_max_blocking_queries_per_client: int = 128
    max_query_time: float = 600.0
    # TLS (Consul 1.12+ ``tls`` stanza; ``ports.https`` / ``ports.grpc_tls`` set these two).
    tls: TLSConfig = field(default_factory=TLSConfig)
    https_addr: str = ""
    grpc_tls_addr: str = ""
    domain: str = "consul"
    #: The ``-config-file``/``-config-dir`` sources, ``("file"|"dir", path)`` in
    #: command-line order, kept so ``reload`` can read them again.
    config_sources: tuple[tuple[str, str], ...] = ()
    acl: ACLConfig = field(default_factory=ACLConfig)
    primary_datacenter: str = ""
    # DNS (agent.dns): Consul's keys; ``ports.dns`` sets the port of dns_addr.
    dns_addr: str = "127.0.0.1:8600"
    alt_domain: str = ""
    recursors: tuple[str, ...] = ()
    dns_config: dict[str, Any] = field(default_factory=dict)
    # Network coordinates (agent.coordinate): Consul's keys and defaults. Agents
    # send theirs every max(members / rate_target, interval_min) s plus a
    # stagger; servers write what they were sent once per update period.
    disable_coordinates: bool = False
    sync_coordinate_rate_target: float = 64.0
    sync_coordinate_interval_min: float = 15.0
    coordinate_update_period: float = 5.0
    coordinate_update_batch_size: int = 128
    coordinate_update_max_batches: int = 5

    def validated(self) -> AgentConfig:
        if not self.datacenter or not all(c.isalnum() or c in "-_" for c in self.datacenter):
            raise InvalidArgument(f"Invalid datacenter {self.datacenter!r}")
        if not self.node_name:
            raise InvalidArgument("Node name is required")
        if self.store not in ("memory", "etcd"):
            raise InvalidArgument(f"Unknown store {self.store!r}: use memory or etcd")
        if self.store == "etcd" and not self.etcd_endpoints:
            raise InvalidArgument("--store etcd needs --etcd-endpoints")
        if self.server and self.store == "memory" and self.retry_join:
            raise InvalidArgument(
                "A server on the memory store cannot join other servers: the embedded store"
                " holds exactly one server per datacenter; use --store etcd for several"
            )
        if self.suspect_timeout < 1:
            raise InvalidArgument("suspect_timeout must be at least 1s")
        if self.sync_coordinate_rate_target <= 0 or self.sync_coordinate_interval_min <= 0:
            raise InvalidArgument(
                "sync_coordinate_rate_target and sync_coordinate_interval_min must be positive"
            )
        if (
            self.coordinate_update_period <= 0
            or self.coordinate_update_batch_size < 1
            or self.coordinate_update_max_batches < 1
        ):
            raise InvalidArgument(
                "consul.coordinate update period and batch sizes must be positive"
            )
        if self.rpc_rate is not None and self.rpc_rate <= 0:
            raise InvalidArgument("rpc_rate must be positive")
        if self.rpc_max_burst < 1:
            raise InvalidArgument("rpc_max_burst must be at least 1")
        if min(self.http_max_conns_per_client, self.http_max_blocking_queries_per_client) < 0:
            raise InvalidArgument("limits must not be negative (0 means no limit)")
        if self.max_query_time <= 0:
            raise InvalidArgument("max_query_time must be positive")
        if self.https_addr and not self.tls.https.has_cert:
            raise InvalidArgument("ports.https is set, but tls.https has no cert_file and key_file")
        if self.grpc_tls_addr and not self.tls.grpc.has_cert:
            raise InvalidArgument(
                "ports.grpc_tls is set, but tls.grpc has no cert_file and key_file"
            )
        return self

    def merged(self, overrides: dict[str, Any]) -> AgentConfig:
        """A copy with ``overrides`` (config-file or flag values) applied and typed."""
        known = {f.name for f in fields(self)} | {"ui_config"}
        limits = overrides.get("limits")
        if isinstance(limits, dict):  # Consul's limits { ... } block: its keys, flattened
            overrides = {**{k: v for k, v in overrides.items() if k != "limits"}, **limits}
        clean: dict[str, Any] = {}
        overrides = dict(overrides)
        ports = overrides.get("ports")
        if isinstance(ports, dict) and "dns" in ports:  # ports.dns: the port of dns_addr
            ports = dict(ports)
            dns_port = ports.pop("dns")
            overrides["ports"] = ports
            if dns_port is not None:
                if isinstance(dns_port, bool) or not isinstance(dns_port, int):
                    raise InvalidArgument("ports.dns must be an integer (-1 disables DNS)")
                host = str(overrides.get("dns_addr") or self.dns_addr).rpartition(":")[0]
                overrides["dns_addr"] = f"{host}:{dns_port}"
        for key, value in overrides.items():
            name = {"node": "node_name", "bind_addr": "advertise_addr"}.get(key, key)
            if name not in known and name != "ports":
                raise InvalidArgument(f"Unknown configuration key {key!r}")
            if value is None:
                continue
            if name == "acl":
                value = acl_config(value, self.acl)
            if key == "ui_config":
                name, value = "ui", _ui_enabled(value)
            if key == "ports":
                base = replace(self, **clean)
                clean.update(
                    ports_addresses(value, http_addr=base.http_addr, grpc_addr=base.grpc_addr)
                )
                continue
            if name == "tls":
                value = TLSConfig.parse(value)
            elif name in _DURATIONS:
                value = parse_duration(value)
            elif name in ("retry_join", "retry_join_wan", "etcd_endpoints", "recursors"):
                if isinstance(value, str):
                    value = [v for v in value.split(",") if v]
                value = tuple(value)
            clean[name] = value
        return replace(self, **clean)


def _ui_enabled(value: Any) -> bool:
    """Consul's ``ui_config { enabled = true }``: a JSON object with a boolean ``enabled``."""
    if not isinstance(value, dict) or not isinstance(value.get("enabled", False), bool):
        raise InvalidArgument("ui_config must be an object such as {\"enabled\": true}")
    return bool(value.get("enabled", False))


def with_node_id(config: AgentConfig) -> AgentConfig:
    """``config`` with a node ID: the given one, else the one saved under
    ``<data-dir>/node-id``, else a new UUID (saved there when there is a data dir),
    as Consul keeps its node ID across restarts."""
    if config.node_id:
        return config
    path = Path(config.data_dir) / "node-id" if config.data_dir else None
    if path is not None and path.exists():
        saved = path.read_text().strip()
        if saved:
            return replace(config, node_id=saved)
    node_id = str(uuid.uuid4())
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(node_id + "\n")
    return replace(config, node_id=node_id)


def load_config_file(path: str) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError as exc:
        raise InvalidArgument(f"Config file not found: {path}") from exc
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"Config file {path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidArgument(f"Config file {path} must hold a JSON object")
    return data


class _JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "@timestamp": self.formatTime(record),
            "@level": record.levelname.lower(),
            "@module": record.name,
            "@message": record.getMessage(),
        }
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return json.dumps(out)


def setup_logging(level: str, as_json: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if as_json:
        handler.setFormatter(_JSONFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s [%(levelname)s] %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    try:
        root.setLevel(level.upper())
    except ValueError as exc:
        raise InvalidArgument(f"Unknown log level {level!r}") from exc
