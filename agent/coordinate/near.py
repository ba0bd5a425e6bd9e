"""Ordering by estimated round-trip time, as Consul's ``sortNodesByDistanceFrom``.

Rows are ordered by the distance from the source node's coordinate to their
node's; a node with no coordinate sorts last (+inf), and the sort is stable,
so equal distances keep the order the rows came in. Without a coordinate for
the source nothing is reordered (Consul returns the rows as they are).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from agent.coordinate.shapes import rtt_between
from agent.coordinate.vivaldi import Coordinate

__all__ = ["sort_by_distance"]

T = TypeVar("T")


def sort_by_distance(
    rows: Sequence[T],
    node_of: Callable[[T], str],
    source: str,
    coordinates: Mapping[str, Coordinate],
) -> list[T]:
    """``rows`` nearest first from ``source``'s coordinate."""
    origin = coordinates.get(source)
    if origin is None:
        return list(rows)

    def distance(row: T) -> float:
        other = coordinates.get(node_of(row))
        return math.inf if other is None else rtt_between(origin, other)

    return sorted(rows, key=distance)
