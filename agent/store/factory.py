"""``open_store``: a store of the kind named on the command line or in the config."""

from __future__ import annotations

from collections.abc import Sequence

from agent.errors import InvalidArgument
from agent.store.base import Store
from agent.store.memory import MemoryStore

__all__ = ["STORE_KINDS", "open_store"]

#: The kinds ``open_store`` knows, as ``--store`` spells them.
STORE_KINDS = ("memory", "etcd")


def open_store(kind: str, *, endpoints: Sequence[str] = (), namespace: str = "") -> Store:
    """A new, unstarted store of ``kind``; ``await store.start()`` before use.

    ``endpoints`` (``host:port``) and ``namespace`` (a key prefix such as
    ``/consul-grpc/dc1/``) apply to etcd; a memory store takes neither.
    """
    if kind == "memory":
        if endpoints:
            raise InvalidArgument("the memory store takes no etcd endpoints")
        return MemoryStore()
    if kind == "etcd":
        if not endpoints:
            raise InvalidArgument("the etcd store needs --etcd-endpoints (host:port,...)")
        # Imported here so a memory-only agent never loads etcd3aio.
        from agent.store.etcd import EtcdStore

        return EtcdStore(list(endpoints), namespace)
    raise InvalidArgument(f"unknown store kind {kind!r}: expected one of {', '.join(STORE_KINDS)}")
