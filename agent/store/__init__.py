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

__all__ = [
    "CompactedError",
    "Compare",
    "Delete",
    "Entry",
    "Event",
    "Op",
    "Put",
    "Store",
    "prefix_end",
]
