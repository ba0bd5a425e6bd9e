"""Coordinates at the edges: Consul's JSON (``Coord``) and the wire message.

Consul's JSON is ``{"Vec": [8 floats], "Error": f, "Adjustment": f,
"Height": f}``. Input is checked here, once: a JSON object with a list of
numbers, finite values, and the servers' dimensionality, else ValueError with
the text the caller answers (Consul's ``rejected bad coordinate: ...``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from agent.coordinate.vivaldi import Config, Coordinate
from generated.consul.coordinate.v1 import coordinate_pb2 as copb

__all__ = ["check", "coord_from_json", "coord_json", "from_proto", "rtt_between", "to_proto"]


def coord_json(c: Coordinate) -> dict[str, Any]:
    return {"Vec": list(c.vec), "Error": c.error, "Adjustment": c.adjustment, "Height": c.height}


def to_proto(c: Coordinate) -> copb.Coord:
    return copb.Coord(vecs=c.vec, error=c.error, adjustment=c.adjustment, height=c.height)


def from_proto(msg: copb.Coord) -> Coordinate:
    return Coordinate(list(msg.vecs), msg.error, msg.adjustment, msg.height)


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"not a number: {value!r}")
    return float(value)


def _field(doc: Mapping[str, Any], name: str, default: object) -> object:
    for key, value in doc.items():
        if isinstance(key, str) and key.lower() == name.lower():
            return value
    return default


def coord_from_json(doc: object, config: Config | None = None) -> Coordinate:
    """A Coord JSON object as a coordinate of ``config``'s dimensionality."""
    cfg = config or Config()
    if not isinstance(doc, Mapping):
        raise ValueError(f"rejected bad coordinate: {doc!r}")
    vec = _field(doc, "Vec", None)
    try:
        if not isinstance(vec, Sequence) or isinstance(vec, str | bytes):
            raise ValueError("Vec must be a list of numbers")
        coord = Coordinate(
            [_number(v) for v in vec],
            _number(_field(doc, "Error", 0.0)),
            _number(_field(doc, "Adjustment", 0.0)),
            _number(_field(doc, "Height", 0.0)),
        )
    except ValueError as exc:
        raise ValueError(f"rejected bad coordinate: {exc}") from None
    check(coord, cfg)
    return coord


def check(coord: Coordinate, config: Config | None = None) -> None:
    """ValueError unless ``coord`` is finite and of the servers' dimensionality."""
    cfg = config or Config()
    if len(coord.vec) != cfg.dimensionality or not coord.is_valid():
        raise ValueError(f"rejected bad coordinate: {json.dumps(coord_json(coord))}")


def rtt_between(a: Coordinate, b: Coordinate) -> float:
    """Estimated RTT in seconds; +inf when the coordinates are incompatible."""
    if not a.is_compatible_with(b):
        return math.inf
    return a.distance_to(b)
