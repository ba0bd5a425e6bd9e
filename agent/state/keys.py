"""How the servers' state is laid out on the store's keys.

Names (nodes, service IDs, check IDs, members) are percent-quoted so that a
name never contains ``/``; each index key ends in ``/`` so that waiting on it
as a prefix is exact. KV keys are kept verbatim and end in ``\\x00``, so that a
blocking read of ``a`` is not woken by a write to ``ab`` while ``kv/a/`` still
lists ``a/b`` (``\\x00`` sorts first, so key order is Consul's).

A recursive delete of a prefix leaves one range tombstone (``kv_range_tomb``)
instead of one per key; see ``agent.state.kv``.

Index keys carry no data: their modify index is the index of the resource
they stand for (Consul's per-table and per-service indexes). They are never
deleted, so they also serve as tombstones for deleted resources.
"""

from __future__ import annotations

from urllib.parse import quote, unquote

__all__ = [
    "ALIVE",
    "CHECKS",
    "COORDS",
    "IDX_CHECKS",
    "IDX_COORDS",
    "IDX_NODES",
    "IDX_SERVICE",
    "IDX_SERVICES",
    "KV",
    "KV_RANGE_TOMB",
    "KV_RANGE_TOMB_ALL",
    "KV_TOMB",
    "LEADER",
    "MEMBERS",
    "NODES",
    "QUERIES",
    "SERVICES",
    "SESSIONS",
    "alive_key",
    "check_key",
    "coord_key",
    "idx_node",
    "idx_service",
    "kv_key",
    "kv_name",
    "kv_range_prefix",
    "kv_range_tomb",
    "kv_tomb",
    "member_key",
    "name_of",
    "node_checks",
    "node_coords",
    "node_key",
    "node_services",
    "q",
    "service_key",
]

NODES = "nodes/"
SERVICES = "services/"
CHECKS = "checks/"
KV = "kv/"
KV_TOMB = "kvt/"
KV_RANGE_TOMB = "kvr/"
#: Every range tombstone, the one of the empty prefix (``kvr``) included.
KV_RANGE_TOMB_ALL = "kvr"
MEMBERS = "members/"
ALIVE = "alive/"
LEADER = "leader/"
SESSIONS = "sessions/"
#: Prepared queries, ``queries/<uuid>`` (agent.state.queries).
QUERIES = "queries/"
#: Network coordinates, ``coord/<node>/<segment>`` (agent.state.coordinates).
COORDS = "coord/"
IDX_COORDS = "idx/coord/"
IDX_NODES = "idx/nodes/"
IDX_SERVICES = "idx/services/"
IDX_CHECKS = "idx/checks/"
#: Under it, one index key per service name (``idx_service``).
IDX_SERVICE = "idx/svc/"


def q(name: str) -> str:
    """``name`` quoted for use as one key component."""
    return quote(name, safe="")


def name_of(key: str) -> str:
    """The unquoted last component of ``key``."""
    return unquote(key.rstrip("/").rsplit("/", 1)[-1])


def node_key(node: str) -> str:
    return f"{NODES}{q(node)}"


def node_services(node: str) -> str:
    return f"{SERVICES}{q(node)}/"


def service_key(node: str, service_id: str) -> str:
    return f"{SERVICES}{q(node)}/{q(service_id)}"


def node_checks(node: str) -> str:
    return f"{CHECKS}{q(node)}/"


def check_key(node: str, check_id: str) -> str:
    return f"{CHECKS}{q(node)}/{q(check_id)}"


def idx_node(node: str) -> str:
    return f"idx/node/{q(node)}/"


def idx_service(name: str) -> str:
    return f"{IDX_SERVICE}{q(name)}/"


def kv_key(key: str) -> str:
    return f"{KV}{key}\x00"


def kv_tomb(key: str) -> str:
    return f"{KV_TOMB}{key}\x00"


def kv_range_tomb(prefix: str) -> str:
    """The range tombstone of a recursive delete of ``prefix``.

    It must be under ``kvr/<p>`` for every proper prefix ``p`` of ``prefix``
    (so a blocking list of ``p`` wakes when the delete removes keys under it)
    and nowhere else: ``kvr/`` + ``prefix`` without its last character, NUL,
    then that character (a KV key never holds NUL). The empty prefix, which
    has no proper prefix, has ``kvr``. A list of ``prefix`` or of a prefix
    under it finds it by name (``KVState._covering``).
    """
    if not prefix:
        return KV_RANGE_TOMB_ALL
    return f"{KV_RANGE_TOMB}{prefix[:-1]}\x00{prefix[-1]}"


def kv_range_prefix(store_key: str) -> str:
    """The prefix whose recursive delete left the range tombstone ``store_key``."""
    return store_key[len(KV_RANGE_TOMB) :].replace("\x00", "")


def kv_name(store_key: str) -> str:
    """The KV key stored at ``store_key`` (a ``kv/`` or ``kvt/`` key)."""
    body = store_key[len(KV_TOMB) :] if store_key.startswith(KV_TOMB) else store_key[len(KV) :]
    return body.removesuffix("\x00")


def member_key(pool: str, name: str) -> str:
    return f"{MEMBERS}{pool}/{q(name)}"


def alive_key(pool: str, name: str) -> str:
    return f"{ALIVE}{pool}/{q(name)}"


def node_coords(node: str) -> str:
    return f"{COORDS}{q(node)}/"


def coord_key(node: str, segment: str) -> str:
    return f"{COORDS}{q(node)}/{q(segment)}"
