"""Stores: the async protocol (``base``) and its two implementations."""

from __future__ import annotations

from agent.store.base import (
    CompactedError,
    Compare,
    Delete,
    Entry,
    Event,
    Op,
    Put,
    Store,
    prefix_end,
)
from agent.store.factory import open_store

__all__ = [
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
]
