"""Stores: the async protocol (``base``) and its two implementations."""

from __future__ import annotations

from agent.store.base import (
    MAX_TXN_BYTES,
    MAX_TXN_COMPARES,
    MAX_TXN_OPS,
    CompactedError,
    Compare,
    Delete,
    Entry,
    Event,
    Op,
    Put,
    Store,
    prefix_end,
    validate_ttl,
    validate_txn,
)
from agent.store.factory import open_store

__all__ = [
    "MAX_TXN_BYTES",
    "MAX_TXN_COMPARES",
    "MAX_TXN_OPS",
    "CompactedError",
    "Compare",
    "Delete",
    "Entry",
    "Event",
    "Op",
    "Put",
    "Store",
    "open_store",
    "prefix_end",
    "validate_ttl",
    "validate_txn",
]
