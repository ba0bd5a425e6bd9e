"""Network coordinates: Serf's Vivaldi client (``vivaldi``), its shapes at the
edges (``shapes``), ordering by estimated RTT (``near``), and the simulation
helpers Serf tests it with (``phantom``). Pure: no I/O, no asyncio."""

from agent.coordinate.near import sort_by_distance
from agent.coordinate.shapes import (
    check,
    coord_from_json,
    coord_json,
    from_proto,
    rtt_between,
    to_proto,
)
from agent.coordinate.vivaldi import (
    MAX_RTT,
    Client,
    Config,
    Coordinate,
    DimensionalityConflictError,
)

__all__ = [
    "MAX_RTT",
    "Client",
    "Config",
    "Coordinate",
    "DimensionalityConflictError",
    "check",
    "coord_from_json",
    "coord_json",
    "from_proto",
    "rtt_between",
    "sort_by_distance",
    "to_proto",
]
