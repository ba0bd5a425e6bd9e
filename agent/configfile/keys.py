"""The table of every configuration key Consul documents, and what we do with each.

Each key is a dotted path (``ports.serf_lan``) with a :class:`KeySpec`: its
value's shape, and its use here:

- ``SUPPORTED``: read into ``AgentConfig`` (``field``), or handled by the
  loader itself (addresses, services, checks).
- ``ACCEPTED``: a Consul key for machinery we do not have (Serf ports, Raft
  tuning, gossip encryption, telemetry sinks...). The agent starts and logs one
  warning naming the key and the file, never refuses.
- ``PLANNED``: a key another part of the project is adding (DNS, UI, limits,
  ACL, TLS). Accepted with a warning until its owner plugs it in.

How a subsystem plugs in its keys: change its entries here from ``PLANNED``
to ``SUPPORTED`` with ``field=`` the name of its new ``AgentConfig`` field
(and ``shape`` the value's type), e.g.::

    "ports.dns": KeySpec(INT, SUPPORTED, field="dns_port"),

Nothing else changes: the loader type-checks the value, merges it in
Consul's order, and hands it to ``AgentConfig.merged``. A block whose own
keys are free-form (``node_meta``, ``telemetry``) has shape ``MAP`` and its
children are not checked; a block listed with its children (``ports``,
``performance``) is checked key by key, and an unknown child is an error.

Keys are matched as Consul's decoder matches them: case-insensitively (and,
as Consul's JSON aliases allow, ``NodeName`` finds ``node_name``).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = [
    "ACCEPTED",
    "ANY",
    "BLOCK",
    "BOOL",
    "CHECKS",
    "DURATION",
    "FLOAT",
    "INT",
    "KEYS",
    "LIST",
    "MAP",
    "PLANNED",
    "SERVICES",
    "STR",
    "SUPPORTED",
    "KeySpec",
    "Use",
    "fold",
    "lookup",
]


class Use(Enum):
    SUPPORTED = "supported"
    ACCEPTED = "accepted"
    PLANNED = "planned"


SUPPORTED, ACCEPTED, PLANNED = Use.SUPPORTED, Use.ACCEPTED, Use.PLANNED

# Value shapes.
STR, BOOL, INT, FLOAT, DURATION = "string", "bool", "int", "number", "duration"
LIST = "list"  # of strings (or scalars); lists append across files, as Consul merges them
MAP = "map"  # a free-form object: later files overlay earlier ones key by key
BLOCK = "block"  # an object whose keys are in this table
SERVICES, CHECKS = "services", "checks"  # service / check definitions
ANY = "any"


@dataclass(frozen=True, slots=True)
class KeySpec:
    shape: str
    use: Use = ACCEPTED
    #: The AgentConfig field a SUPPORTED key sets (None: the loader handles it).
    field: str | None = None


def _s(shape: str, field: str | None = None) -> KeySpec:
    return KeySpec(shape, SUPPORTED, field)


def _a(shape: str) -> KeySpec:
    return KeySpec(shape, ACCEPTED)


def _p(shape: str) -> KeySpec:
    return KeySpec(shape, PLANNED)


KEYS: dict[str, KeySpec] = {
    # ----- what consul-grpc reads ---------------------------------------
    "datacenter": _s(STR, "datacenter"),
    "node_name": _s(STR, "node_name"),
    "node_id": _s(STR, "node_id"),
    "data_dir": _s(STR, "data_dir"),
    "server": _s(BOOL, "server"),
    "log_level": _s(STR, "log_level"),
    "log_json": _s(BOOL, "log_json"),
    "retry_join": _s(LIST, "retry_join"),
    "start_join": _s(LIST, "retry_join"),
    "retry_join_wan": _s(LIST, "retry_join_wan"),
    "start_join_wan": _s(LIST, "retry_join_wan"),
    "enable_script_checks": _s(BOOL, "enable_script_checks"),
    "enable_local_script_checks": _s(BOOL, "enable_script_checks"),
    "advertise_addr": _s(STR, "advertise_addr"),
    "bind_addr": _s(STR, "advertise_addr"),
    "reconnect_timeout": _s(DURATION, "reconnect_timeout"),
    "client_addr": _s(STR),
    "addresses": _s(BLOCK),
    "addresses.http": _s(STR),
    "addresses.grpc": _s(STR),
    "addresses.https": _a(STR),
    "addresses.grpc_tls": _p(STR),
    "addresses.dns": _s(STR),
    "ports": _s(BLOCK),
    "ports.http": _s(INT),
    "ports.grpc": _s(INT),
    "ports.server": _s(INT),
    "ports.dns": _s(INT),
    "ports.https": _s(INT),
    "ports.grpc_tls": _s(INT),
    "ports.serf_lan": _a(INT),
    "ports.serf_wan": _a(INT),
    "ports.sidecar_min_port": _a(INT),
    "ports.sidecar_max_port": _a(INT),
    "ports.expose_min_port": _a(INT),
    "ports.expose_max_port": _a(INT),
    "performance": _s(BLOCK),
    "performance.rpc_hold_timeout": _s(DURATION, "rpc_hold_timeout"),
    "performance.raft_multiplier": _a(INT),
    "performance.leave_drain_time": _a(DURATION),
    "performance.grpc_keepalive_interval": _a(DURATION),
    "performance.grpc_keepalive_timeout": _a(DURATION),
    "service": _s(SERVICES),
    "services": _s(SERVICES),
    "check": _s(CHECKS),
    "checks": _s(CHECKS),
    # consul-grpc's own keys (the flags' names), kept from the first config loader.
    "node": _s(STR, "node_name"),
    "rpc_addr": _s(STR, "rpc_addr"),
    "http_addr": _s(STR, "http_addr"),
    "grpc_addr": _s(STR, "grpc_addr"),
    "store": _s(STR, "store"),
    "etcd_endpoints": _s(LIST, "etcd_endpoints"),
    "suspect_timeout": _s(DURATION, "suspect_timeout"),
    "leader_ttl": _s(DURATION, "leader_ttl"),
    "rebalance_interval": _s(DURATION, "rebalance_interval"),
    "rpc_rate": _s(FLOAT, "rpc_rate"),
    "rpc_max_burst": _s(INT, "rpc_max_burst"),
    "rpc_hold_timeout": _s(DURATION, "rpc_hold_timeout"),
    "dev": _s(BOOL, "dev"),
    "https_addr": _s(STR, "https_addr"),
    "grpc_tls_addr": _s(STR, "grpc_tls_addr"),
    "http_max_conns_per_client": _s(INT, "http_max_conns_per_client"),
    "http_max_blocking_queries_per_client": _s(INT, "http_max_blocking_queries_per_client"),
    # ----- being added by other parts of the project ---------------------
    "limits": _s(BLOCK),
    "limits.rpc_rate": _s(FLOAT, "rpc_rate"),
    "limits.rpc_max_burst": _s(INT, "rpc_max_burst"),
    "limits.http_max_conns_per_client": _s(INT, "http_max_conns_per_client"),
    # consul-grpc's: blocking queries one client may hold open (the HTTP edge).
    "limits.http_max_blocking_queries_per_client": _s(INT, "http_max_blocking_queries_per_client"),
    "limits.https_handshake_timeout": _p(DURATION),
    "limits.rpc_handshake_timeout": _p(DURATION),
    "limits.rpc_client_timeout": _p(DURATION),
    "limits.rpc_max_conns_per_client": _p(INT),
    "limits.kv_max_value_size": _p(INT),
    "limits.txn_max_req_len": _p(INT),
    "limits.request_limits": _p(MAP),
    "dns_config": _s(MAP, "dns_config"),
    "domain": _s(STR, "domain"),
    "alt_domain": _s(STR, "alt_domain"),
    "recursors": _s(LIST, "recursors"),
    "ui_config": _s(MAP, "ui_config"),
    "ui": _s(BOOL, "ui"),
    "ui_dir": _p(STR),
    "acl": _s(MAP, "acl"),
    "acl_datacenter": _p(STR),
    "acl_default_policy": _p(STR),
    "acl_down_policy": _p(STR),
    "acl_master_token": _p(STR),
    "acl_token": _p(STR),
    "acl_ttl": _p(DURATION),
    "primary_datacenter": _s(STR, "primary_datacenter"),
    "tls": _s(MAP, "tls"),
    "ca_file": _p(STR),
    "ca_path": _p(STR),
    "cert_file": _p(STR),
    "key_file": _p(STR),
    "verify_incoming": _p(BOOL),
    "verify_outgoing": _p(BOOL),
    "verify_server_hostname": _p(BOOL),
    "auto_encrypt": _p(MAP),
    # ----- Consul keys for machinery consul-grpc does not have -----------
    "advertise_addr_ipv4": _a(STR),
    "advertise_addr_ipv6": _a(STR),
    "advertise_addr_wan": _a(STR),
    "advertise_addr_wan_ipv4": _a(STR),
    "advertise_addr_wan_ipv6": _a(STR),
    "advertise_reconnect_timeout": _a(DURATION),
    "audit": _a(MAP),
    "auto_config": _a(MAP),
    "auto_reload_config": _a(BOOL),
    "autopilot": _a(MAP),
    "bootstrap": _a(BOOL),
    "bootstrap_expect": _a(INT),
    "check_output_max_size": _a(INT),
    "check_update_interval": _a(DURATION),
    "cloud": _a(MAP),
    "config_entries": _a(MAP),
    "connect": _a(MAP),
    "default_query_time": _a(DURATION),
    "disable_anonymous_signature": _a(BOOL),
    "disable_coordinates": _s(BOOL, "disable_coordinates"),
    "sync_coordinate_rate_target": _s(FLOAT, "sync_coordinate_rate_target"),
    "sync_coordinate_interval_min": _s(DURATION, "sync_coordinate_interval_min"),
    # Consul's server tuning block (its testing knobs): the coordinate batcher.
    "consul": _s(BLOCK),
    "consul.coordinate": _s(BLOCK),
    "consul.coordinate.update_period": _s(DURATION, "coordinate_update_period"),
    "consul.coordinate.update_batch_size": _s(INT, "coordinate_update_batch_size"),
    "consul.coordinate.update_max_batches": _s(INT, "coordinate_update_max_batches"),
    "disable_host_node_id": _a(BOOL),
    "disable_http_unprintable_char_filter": _a(BOOL),
    "disable_keyring_file": _a(BOOL),
    "disable_remote_exec": _a(BOOL),
    "disable_update_check": _a(BOOL),
    "discard_check_output": _a(BOOL),
    "discovery_max_stale": _a(DURATION),
    "enable_acl_replication": _a(BOOL),
    "enable_agent_tls_for_checks": _a(BOOL),
    "enable_central_service_config": _a(BOOL),
    "enable_debug": _a(BOOL),
    "enable_syslog": _a(BOOL),
    "encrypt": _a(STR),
    "encrypt_verify_incoming": _a(BOOL),
    "encrypt_verify_outgoing": _a(BOOL),
    "experiments": _a(LIST),
    "http_config": _a(MAP),
    "leave_on_terminate": _a(BOOL),
    "license_path": _a(STR),
    "locality": _a(MAP),
    "log_file": _a(STR),
    "log_rotate_bytes": _a(INT),
    "log_rotate_duration": _a(DURATION),
    "log_rotate_max_files": _a(INT),
    "max_query_time": _s(DURATION, "max_query_time"),
    "node_meta": _a(MAP),
    "partition": _a(STR),
    "peering": _a(MAP),
    "pid_file": _a(STR),
    "primary_gateways": _a(LIST),
    "primary_gateways_interval": _a(DURATION),
    "protocol": _a(INT),
    "raft_boltdb": _a(MAP),
    "raft_logstore": _a(MAP),
    "raft_protocol": _a(INT),
    "raft_snapshot_interval": _a(DURATION),
    "raft_snapshot_threshold": _a(INT),
    "raft_trailing_logs": _a(INT),
    "read_replica": _a(BOOL),
    "reconnect_timeout_wan": _a(DURATION),
    "rejoin_after_leave": _a(BOOL),
    "reporting": _a(MAP),
    "retry_interval": _a(DURATION),
    "retry_interval_wan": _a(DURATION),
    "retry_max": _a(INT),
    "retry_max_wan": _a(INT),
    "rpc": _a(MAP),
    "segment": _a(STR),
    "segments": _a(ANY),
    "serf_lan": _a(STR),
    "serf_lan_allowed_cidrs": _a(LIST),
    "serf_wan": _a(STR),
    "serf_wan_allowed_cidrs": _a(LIST),
    "server_name": _a(STR),
    "session_ttl_min": _a(DURATION),
    "skip_leave_on_interrupt": _a(BOOL),
    "syslog_facility": _a(STR),
    "telemetry": _a(MAP),
    "translate_wan_addrs": _a(BOOL),
    "unix_sockets": _a(MAP),
    "watches": _a(ANY),
    "xds": _a(MAP),
}


def fold(key: str) -> str:
    """How Consul's decoder compares keys: case- and underscore-insensitively."""
    return key.replace("_", "").replace("-", "").lower()


_FOLDED: dict[str, str] = {}


def lookup(parent: str, key: str) -> tuple[str, KeySpec] | None:
    """The canonical dotted path and spec of ``key`` under ``parent`` ("" at the top)."""
    if not _FOLDED or len(_FOLDED) != len(KEYS):
        _FOLDED.clear()
        _FOLDED.update({".".join(fold(p) for p in k.split(".")): k for k in KEYS})
    want = ".".join(fold(p) for p in [*parent.split("."), key] if p) if parent else fold(key)
    path = _FOLDED.get(want)
    return None if path is None else (path, KEYS[path])
